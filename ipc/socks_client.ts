// Copyright the ptkit authors. MIT license.

import { readFull, writeFull } from "../net/conn_io.ts";
import type { DialTarget, NetConn } from "../net/net_conn.ts";
import { parseIpv4, parseIpv6 } from "../net/ip_address.ts";
import { SocksReply, SocksReplyError } from "./socks_reply.ts";

/**
 * Ask a SOCKS5 server, over an open connection, to CONNECT a destination
 * (RFC 1928, with RFC 1929 user name and password when given). Host names
 * are sent as names (`ATYP 3`): nothing is resolved here. Used for upstream
 * proxies and, in free mode, to carry the application's destination
 * through a transport to the server's embedded SOCKS5 target.
 *
 * @param conn The connection to the SOCKS5 server.
 * @param target The destination.
 * @param auth User name and password, if the server needs them.
 * @returns Resolves once the server answered success; bytes then flow.
 * @throws {SocksReplyError} With the server's reply code when it refuses,
 * or `01` when it answers nonsense or closes.
 *
 * @example Connecting through a SOCKS5 server
 * ```ts
 * import { SocksServer, socks5Connect } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * using echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await using server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
 *   connect: (request) => Deno.connect({ hostname: request.hostname, port: request.port }),
 * });
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * await socks5Connect(conn, { hostname: "127.0.0.1", port: echo.addr.port });
 * using backend = await echo.accept();
 * deepStrictEqual(backend.remoteAddr.transport, "tcp");
 * ```
 */
export async function socks5Connect(
  conn: NetConn,
  target: DialTarget,
  auth: { readonly username?: string; readonly password?: string } = {},
): Promise<void> {
  const encoder = new TextEncoder();
  const useAuth = auth.username !== undefined && auth.password !== undefined;
  await writeFull(conn, new Uint8Array(useAuth ? [5, 2, 0, 2] : [5, 1, 0]));
  const choice = await readExactly(conn, 2);
  if (choice[0] !== 5) throw failure("SOCKS5 server sent a bad method reply");
  if (choice[1] === 2 && useAuth) {
    const user = encoder.encode(auth.username);
    const pass = encoder.encode(auth.password);
    await writeFull(conn, new Uint8Array([1, user.length, ...user, pass.length, ...pass]));
    const status = await readExactly(conn, 2);
    if (status[1] !== 0) {
      throw new SocksReplyError(SocksReply.notAllowed, "SOCKS5 server refused the credentials");
    }
  } else if (choice[1] !== 0) {
    throw new SocksReplyError(SocksReply.notAllowed, "SOCKS5 server accepts none of our methods");
  }
  let address: number[];
  const v4 = parseIpv4(target.hostname);
  const v6 = v4 < 0 ? parseIpv6(target.hostname) : undefined;
  if (v4 >= 0) {
    address = [1, v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff];
  } else if (v6 !== undefined) {
    address = [4, ...v6];
  } else {
    const name = encoder.encode(target.hostname);
    if (name.length === 0 || name.length > 255) {
      throw new SocksReplyError(
        SocksReply.generalFailure,
        `Invalid host name of ${name.length} bytes`,
      );
    }
    address = [3, name.length, ...name];
  }
  await writeFull(
    conn,
    new Uint8Array([5, 1, 0, ...address, target.port >> 8, target.port & 0xff]),
  );
  const head = await readExactly(conn, 5);
  if (head[0] !== 5) throw failure("SOCKS5 server sent a bad reply");
  if (head[1] !== 0) {
    throw new SocksReplyError(head[1]!, `SOCKS5 server failed the request with code ${head[1]}`);
  }
  const rest = head[3] === 1 ? 3 + 2 : head[3] === 4 ? 15 + 2 : head[3] === 3 ? head[4]! + 2 : -1;
  if (rest < 0) throw failure("SOCKS5 server sent a bad address type");
  await readExactly(conn, rest);
}

function failure(message: string): SocksReplyError {
  return new SocksReplyError(SocksReply.generalFailure, message);
}

function readExactly(conn: Pick<NetConn, "read">, n: number): Promise<Uint8Array> {
  return readFull(conn, n, (_got) => failure("SOCKS5 server closed the connection"));
}
