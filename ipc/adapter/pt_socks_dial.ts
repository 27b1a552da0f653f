// Copyright the ptkit authors. MIT license.

import type { NetConn } from "../../net/net_conn.ts";
import { readFull, writeFull } from "../../net/conn_io.ts";
import type { TransportOptions } from "../../transports/transport.ts";
import type { DialTarget } from "../../net/net_conn.ts";
import type { HostPort } from "../../net/address.ts";
import { isIpLiteral, parseIp } from "../../net/ip_address.ts";
import { formatTorArgs } from "../settings.ts";
import { SocksReplyError } from "../socks_reply.ts";

/** Options for {@linkcode ptSocksDial}. */
export interface PtSocksDialOptions {
  /**
   * The PT's negotiated version: `"1"` sends the arguments as tor does
   * (RFC 1929 user name and password), `"2"` as JSON after method `0x80`.
   * Defaults to `"1"`.
   */
  readonly version?: string;
  /**
   * With version 2, put a 4-byte big-endian length before the JSON (PT 2.0
   * draft 2 and shapeshifter-dispatcher); draft 1 sends the JSON alone.
   * Defaults to false.
   */
  readonly jsonLengthPrefix?: boolean;
  /** Milliseconds the SOCKS handshake may take. Defaults to 30000. */
  readonly timeout?: number;
}

const REPLY_TEXT: Record<number, string> = {
  1: "general failure",
  2: "not allowed",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
  0x10: "settings too large",
  0x11: "timeout",
  0x12: "settings parse error",
  0x13: "invalid or missing settings",
};

/**
 * Open a connection through a PT client's SOCKS5 port (its `CMETHOD`
 * address) to a PT server, passing the transport's arguments: with PT 1.0,
 * tor's `k=v;k=v` form (`\` and `;` escaped) in the RFC 1929 user name,
 * split at 255 bytes into the password (a single NUL byte when it all fits);
 * with PT 2.0, a JSON object after method `0x80`. Without arguments no
 * authentication is offered. After it resolves, the connection carries the
 * application's plain bytes.
 *
 * @param proxy The PT's SOCKS5 address.
 * @param target The PT server to reach.
 * @param args The transport's arguments (a bridge line's `k=v` pairs).
 * @param options The version and the JSON framing.
 * @returns The connection.
 * @throws {RangeError} When PT 1.0 arguments exceed 510 bytes.
 * @throws {SocksReplyError} When the PT refuses (its reply code is kept).
 *
 * @example Dialing through a PT that is not running
 * ```ts
 * import { ptSocksDial } from "./pt_socks_dial.ts";
 * import { rejects } from "node:assert";
 *
 * const port = (() => {
 *   using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 *   return l.addr.port;
 * })();
 * await rejects(ptSocksDial({ hostname: "127.0.0.1", port }, { hostname: "127.0.0.1", port: 1 }, {}));
 * ```
 */
export async function ptSocksDial(
  proxy: HostPort,
  target: DialTarget,
  args: TransportOptions,
  options: PtSocksDialOptions = {},
): Promise<Deno.TcpConn> {
  const encoder = new TextEncoder();
  const version = options.version ?? "1";
  const hasArgs = Object.keys(args).length > 0;
  let auth: Uint8Array | undefined;
  let method = 0;
  if (hasArgs && version === "2") {
    const json = encoder.encode(JSON.stringify(args));
    method = 0x80;
    if (options.jsonLengthPrefix) {
      auth = new Uint8Array(4 + json.length);
      new DataView(auth.buffer).setUint32(0, json.length);
      auth.set(json, 4);
    } else {
      auth = json;
    }
  } else if (hasArgs) {
    const text = encoder.encode(formatTorArgs(args));
    if (text.length > 510) {
      throw new RangeError(
        `Cannot dial through the PT: arguments are ${text.length} bytes, PT 1.0 allows 510`,
      );
    }
    const user = text.subarray(0, 255);
    const pass = text.length > 255 ? text.subarray(255) : new Uint8Array([0]);
    method = 2;
    auth = new Uint8Array([1, user.length, ...user, pass.length, ...pass]);
  }
  const request = connectRequest(target);

  const conn = await Deno.connect({ hostname: proxy.hostname, port: proxy.port });
  const timeout = options.timeout ?? 30000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, timeout);
  try {
    await writeFull(conn, new Uint8Array([5, 1, method]));
    const choice = await readExactly(conn, 2);
    if (choice[0] !== 5 || choice[1] !== method) {
      throw new SocksReplyError(
        1,
        `PT SOCKS5 port refused authentication method 0x${method.toString(16)} (chose 0x${
          choice[1]!.toString(16)
        })`,
      );
    }
    if (method === 2) {
      await writeFull(conn, auth!);
      const status = await readExactly(conn, 2);
      if (status[1] !== 0) {
        throw new SocksReplyError(2, "PT SOCKS5 port refused the transport arguments");
      }
    } else if (method === 0x80) {
      await writeFull(conn, auth!);
    }
    await writeFull(conn, request);
    const head = await readExactly(conn, 5);
    if (head[0] !== 5) throw new SocksReplyError(1, "PT SOCKS5 port sent a malformed reply");
    if (head[1] !== 0) {
      const code = head[1]!;
      throw new SocksReplyError(
        code,
        `PT failed to connect to the server: SOCKS5 reply 0x${
          code.toString(16).padStart(2, "0")
        } (${REPLY_TEXT[code] ?? "unknown"})`,
      );
    }
    const rest = head[3] === 1 ? 5 : head[3] === 4 ? 17 : head[3] === 3 ? head[4]! + 2 : -1;
    if (rest < 0) throw new SocksReplyError(1, "PT SOCKS5 port sent a bad address type");
    await readExactly(conn, rest);
    return conn;
  } catch (error) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    if (timedOut) {
      throw new SocksReplyError(0x11, `PT SOCKS5 handshake timed out after ${timeout} ms`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function connectRequest(target: DialTarget): Uint8Array {
  const port = [target.port >> 8, target.port & 0xff];
  if (isIpLiteral(target.hostname)) {
    const ip = parseIp(target.hostname);
    return new Uint8Array([5, 1, 0, ip.length === 4 ? 1 : 4, ...ip, ...port]);
  }
  const name = new TextEncoder().encode(target.hostname);
  if (name.length === 0 || name.length > 255) {
    throw new RangeError(`Cannot dial through the PT: host name of ${name.length} bytes`);
  }
  return new Uint8Array([5, 1, 0, 3, name.length, ...name, ...port]);
}

function readExactly(conn: Pick<NetConn, "read">, n: number): Promise<Uint8Array> {
  return readFull(
    conn,
    n,
    (_got) => new SocksReplyError(1, "PT SOCKS5 port closed the connection during the handshake"),
  );
}
