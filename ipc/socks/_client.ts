// Copyright the ptkit authors. MIT license.
// Internal: the client side of SOCKS, written once: upstream proxies
// (SOCKS5 with RFC 1929, SOCKS4a), free mode's destination through a
// transport, and the adapter's dials through a PT's SOCKS port with the
// transport's arguments (PT 1.0 user name and password, PT 2.0 JSON).

import { readExactly, writeFull } from "../../net/conn_io.ts";
import { HandshakeIo } from "../../net/_handshake_io.ts";
import type { NetConn } from "../../net/net_conn.ts";
import type { HostPort } from "../../net/address.ts";
import type { RelayEnd } from "../../net/relay.ts";
import { parseIpv4 } from "../../net/_ip_address.ts";
import type { TransportOptions } from "../../transports/transport.ts";
import { formatTorArgs } from "../lines/_args.ts";
import { addressLength, encodeAddress } from "./_address.ts";
import { describeReply, SocksReply, SocksReplyError } from "./_reply.ts";

/** Options for {@linkcode socks5Connect}. */
export interface Socks5ConnectOptions {
  /** RFC 1929 user name (an upstream proxy's credentials), with `password`. */
  readonly username?: string;
  /** RFC 1929 password, with `username`. */
  readonly password?: string;
  /**
   * A transport's per-connection arguments, for a PT's SOCKS port. Empty or
   * absent: none are sent.
   */
  readonly settings?: TransportOptions;
  /**
   * How `settings` travel: `tor` (PT 1.0, as tor sends them: `k=v;k=v` in
   * the RFC 1929 user name, split at 255 bytes into the password, which is
   * one NUL byte when it all fits), `json` (PT 2.0 draft 1: a JSON object
   * after method `0x80`) or `json-length` (the same with a 4-byte
   * big-endian length first, as PT 2.0 draft 2 and shapeshifter-dispatcher
   * read it). Defaults to `tor`.
   */
  readonly settingsFormat?: "tor" | "json" | "json-length";
  /** Who answers, for error messages. Defaults to `"SOCKS5 server"`. */
  readonly peer?: string;
  /**
   * How long the server has to answer the greeting (its method choice, sent
   * before it dials anything), in ms; then the connection is closed and
   * the call fails with `06`. Defaults to no limit.
   */
  readonly greetingTimeout?: number;
}

const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const METHOD_JSON = 0x80;
/** The server accepts none of the methods offered (RFC 1928). */
const METHOD_REFUSED = 0xff;

/**
 * Ask a SOCKS5 server, over an open connection, to CONNECT a destination
 * (RFC 1928). Host names are sent as names (ATYP 3): nothing is resolved
 * here. With credentials, RFC 1929 is offered beside no authentication;
 * with transport settings, only the method that carries them.
 *
 * @param conn The connection to the SOCKS5 server: a socket, or a transport
 * connection (free mode carries the destination to the server's SOCKS5
 * target this way).
 * @param target The destination.
 * @param options Credentials or transport settings.
 * @returns The connection to use from now on: `conn` itself, unless the
 * server sent bytes right behind its reply (a stream connection then gives
 * those first).
 * @throws {SocksReplyError} With the server's reply code when it refuses,
 * `02` when it refuses the credentials or arguments, `06` when it did not
 * answer the greeting within `greetingTimeout`, `01` when it answers
 * nonsense or closes.
 * @throws {RangeError} When the arguments are too long for PT 1.0 (510
 * bytes) or the host name for SOCKS (255).
 */
export async function socks5Connect(
  conn: RelayEnd,
  target: HostPort,
  options: Socks5ConnectOptions = {},
): Promise<RelayEnd> {
  const peer = options.peer ?? "SOCKS5 server";
  const encoder = new TextEncoder();
  const credentials = options.username !== undefined && options.password !== undefined;
  const settings = options.settings ?? {};
  const format = options.settingsFormat ?? "tor";
  let offered: number[] = [METHOD_NONE];
  let auth: Uint8Array | undefined;
  if (credentials) {
    offered = [METHOD_NONE, METHOD_USERPASS];
    auth = userPass(encoder.encode(options.username), encoder.encode(options.password));
  } else if (Object.keys(settings).length > 0 && format === "tor") {
    const text = encoder.encode(formatTorArgs(settings));
    if (text.length > 510) {
      throw new RangeError(
        `Cannot send transport arguments over SOCKS5: ${text.length} bytes, PT 1.0 allows 510`,
      );
    }
    offered = [METHOD_USERPASS];
    auth = userPass(
      text.subarray(0, 255),
      text.length > 255 ? text.subarray(255) : new Uint8Array([0]),
    );
  } else if (Object.keys(settings).length > 0) {
    const json = encoder.encode(JSON.stringify(settings));
    offered = [METHOD_JSON];
    auth = json;
    if (format === "json-length") {
      auth = new Uint8Array(4 + json.length);
      new DataView(auth.buffer).setUint32(0, json.length);
      auth.set(json, 4);
    }
  }
  const request = new Uint8Array([5, 1, 0, ...encodeAddress(target)]);
  const io = new HandshakeIo(conn);
  const read = (n: number) => readExactly(io, n, () => failure(`${peer} closed the connection`));
  await writeFull(io, new Uint8Array([5, offered.length, ...offered]));
  let silent = false;
  const timer = options.greetingTimeout === undefined ? undefined : setTimeout(() => {
    silent = true;
    conn.close();
  }, options.greetingTimeout);
  let version, method;
  try {
    [version, method] = await read(2);
  } catch (error) {
    if (!silent) throw error;
    throw new SocksReplyError(
      SocksReply.ttlExpired,
      `${peer} did not answer the SOCKS5 greeting in ${options.greetingTimeout! / 1000} s`,
    );
  } finally {
    clearTimeout(timer);
  }
  if (version !== 5) throw failure(`${peer} sent a bad method reply`);
  if (!offered.includes(method!)) {
    const hex = (m: number) => `0x${m.toString(16).padStart(2, "0")}`;
    // Offered "no authentication" alone and refused (0xff), or answered
    // with user/password all the same: a proxy that wants a user name and
    // password. Any other method it chose (GSSAPI, or a byte from something
    // that is not a SOCKS5 server, such as an echo) is not one it was offered.
    const hint = offered.length === 1 && offered[0] === METHOD_NONE &&
        (method === METHOD_REFUSED || method === METHOD_USERPASS)
      ? ": it probably needs a user name and password, and none was given"
      : method === METHOD_REFUSED
      ? ""
      : ": not one it was offered";
    throw new SocksReplyError(
      SocksReply.notAllowed,
      `${peer} accepts none of our methods (offered ${offered.map(hex).join(", ")}, chose ${
        hex(method!)
      })${hint}`,
    );
  }
  if (method === METHOD_USERPASS) {
    await writeFull(io, auth!);
    const [, status] = await read(2);
    if (status !== 0) {
      throw new SocksReplyError(
        SocksReply.notAllowed,
        `${peer} refused the ${credentials ? "credentials" : "transport arguments"}`,
      );
    }
  } else if (method === METHOD_JSON) {
    await writeFull(io, auth!);
  }
  await writeFull(io, request);
  const head = await read(5);
  if (head[0] !== 5) throw failure(`${peer} sent a bad reply`);
  if (head[1] !== 0) {
    throw new SocksReplyError(
      head[1]!,
      `${peer} failed the request: SOCKS5 reply ${describeReply(head[1]!)}`,
    );
  }
  const length = addressLength(head[3]!, head[4]!);
  if (length < 0) throw failure(`${peer} sent a bad address type`);
  await read(length - 2);
  return io.finish();
}

/**
 * Ask a SOCKS4a server to CONNECT a destination: an IPv4 literal as it is,
 * a name unresolved (SOCKS4a). SOCKS4 cannot carry IPv6 addresses.
 *
 * @param conn The connection to the server.
 * @param target The destination.
 * @param userId The user id, if any.
 * @returns Resolves once the server granted the request.
 * @throws {SocksReplyError} `08` for an IPv6 destination, `02` when the
 * server refuses for identd reasons, `01` otherwise.
 */
export async function socks4aConnect(
  conn: NetConn,
  target: HostPort,
  userId = "",
): Promise<void> {
  const encoder = new TextEncoder();
  checkSocks4aTarget(target);
  const v4 = parseIpv4(target.hostname);
  const ip = v4 >= 0 ? [v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff] : [0, 0, 0, 1];
  const name = v4 >= 0 ? [] : [...encoder.encode(target.hostname), 0];
  await writeFull(
    conn,
    new Uint8Array([
      4,
      1,
      target.port >> 8,
      target.port & 0xff,
      ...ip,
      ...encoder.encode(userId),
      0,
      ...name,
    ]),
  );
  const reply = await readExactly(
    conn,
    8,
    () => failure("SOCKS4a proxy closed the connection"),
  );
  if (reply[1] !== 0x5a) {
    throw new SocksReplyError(
      reply[1] === 0x5c || reply[1] === 0x5d ? SocksReply.notAllowed : SocksReply.generalFailure,
      `SOCKS4a proxy failed the request with code 0x${reply[1]!.toString(16)}`,
    );
  }
}

/**
 * Throw when a SOCKS4a proxy cannot carry `target` (an IPv6 address), so
 * that a dialer can refuse it before it opens a connection to the proxy.
 *
 * @param target The destination.
 * @throws {SocksReplyError} `08` for an IPv6 destination.
 */
export function checkSocks4aTarget(target: HostPort): void {
  if (target.hostname.includes(":")) {
    throw new SocksReplyError(
      SocksReply.addressTypeNotSupported,
      "SOCKS4a proxy cannot reach IPv6 addresses",
    );
  }
}

function userPass(user: Uint8Array, pass: Uint8Array): Uint8Array {
  return new Uint8Array([1, user.length, ...user, pass.length, ...pass]);
}

function failure(message: string): SocksReplyError {
  return new SocksReplyError(SocksReply.generalFailure, message);
}
