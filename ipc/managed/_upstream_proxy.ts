// Copyright the ptkit authors. MIT license.

import { writeFull } from "../../net/conn_io.ts";
import { closeQuietly } from "../../net/_accept_loop.ts";
import type { Dialer, NetConn } from "../../net/net_conn.ts";
import type { HostPort } from "../../net/address.ts";
import { formatHostPort } from "../../net/address.ts";
import { parseIpv4, parseIpv6 } from "../../net/_ip_address.ts";
import {
  parseUserinfo,
  redactUserinfo,
  splitAuthority,
  type Userinfo,
} from "../../net/_userinfo.ts";
import { SocksReply, SocksReplyError } from "../socks/_reply.ts";
import { socks4aConnect, socks5Connect } from "../socks/_client.ts";

/** A parsed `TOR_PT_PROXY` URI. */
export interface UpstreamProxy {
  /** The proxy protocol. */
  readonly scheme: "socks5" | "socks4a" | "http";
  /** The proxy's IP address (IPv6 without brackets). */
  readonly hostname: string;
  /** The proxy's port. */
  readonly port: number;
  /** User name, when given. */
  readonly username?: string;
  /** Password, when given. */
  readonly password?: string;
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

/**
 * Parse and validate an upstream proxy URI
 * (`scheme://[user[:pass]@]ip:port`): `socks5` (user and password 1-255
 * bytes each, both or neither), `socks4a` (no password) or `http`
 * (`CONNECT`, optional basic authentication). The authority ends at the
 * last `@` and the user name at the first `:` (tor writes
 * `HTTPSProxyAuthenticator alice:p@ss:w0rd` verbatim), then `%XX` escapes
 * are decoded (see `splitAuthority`, `parseUserinfo`). The host must be an
 * IP literal; path, query and fragment are refused. Messages never hold the
 * userinfo.
 *
 * @param text The URI.
 * @returns The proxy.
 * @throws {SyntaxError} When the URI is malformed.
 * @throws {RangeError} When the scheme is unsupported or a field is out of range.
 */
export function parseUpstreamProxy(text: string): UpstreamProxy {
  const fail = (why: string) =>
    new SyntaxError(`Cannot parse proxy URI ${JSON.stringify(redactUserinfo(text))}: ${why}`);
  const schemeMatch = SCHEME.exec(text);
  if (schemeMatch === null) throw fail("expected socks5, socks4a or http, then :// and ip:port");
  const scheme = schemeMatch[1]!.toLowerCase();
  if (scheme !== "socks5" && scheme !== "socks4a" && scheme !== "http") {
    throw new RangeError(
      `Unsupported proxy scheme ${JSON.stringify(scheme)}: expected socks5, socks4a or http`,
    );
  }
  // Only the userinfo may hold "/", "?" or "#" (a password written verbatim).
  const { userinfo, host: hostPart } = splitAuthority(text.slice(schemeMatch[0].length));
  const address = hostPart.endsWith("/") ? hostPart.slice(0, -1) : hostPart;
  if (/[\/?#]/.test(address)) throw fail("a path, query or fragment is not allowed");
  const hostPort = /^(\[[^\]]*\]|[^:\[\]]*)(?::([^:]*))?$/.exec(address);
  if (hostPort === null) throw fail("expected ip:port after the scheme");
  const [, hostText, portText] = hostPort;
  let hostname = hostText!;
  if (hostname.startsWith("[")) {
    hostname = hostname.slice(1, -1);
    if (parseIpv6(hostname) === undefined) {
      throw fail("invalid IPv6 address");
    }
  } else if (parseIpv4(hostname) < 0) {
    throw fail("the host must be an IP address");
  }
  if (portText === undefined || !/^[0-9]{1,5}$/.test(portText)) throw fail("missing or bad port");
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new RangeError(`Invalid proxy port ${port}: must be 1-65535`);
  let credentials: Userinfo | undefined;
  try {
    credentials = userinfo === undefined || userinfo === ""
      ? undefined
      : parseUserinfo(userinfo, { percentDecode: true });
  } catch (error) {
    throw fail((error as Error).message.replace(/^Cannot parse user info: /, ""));
  }
  const username = credentials?.username;
  const password = credentials?.password;
  const bytes = (s: string) => new TextEncoder().encode(s).length;
  if (scheme === "socks4a" && password !== undefined) {
    throw new RangeError("Invalid socks4a proxy: SOCKS4a has no password");
  }
  if (scheme === "socks5" && (username !== undefined || password !== undefined)) {
    if (username === undefined || password === undefined) {
      throw new RangeError("Invalid socks5 proxy: give both a user name and a password");
    }
    if (
      bytes(username) < 1 || bytes(username) > 255 || bytes(password) < 1 || bytes(password) > 255
    ) {
      throw new RangeError("Invalid socks5 proxy: user name and password must be 1-255 bytes");
    }
  }
  return {
    scheme,
    hostname,
    port,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
  };
}

/**
 * A {@linkcode Dialer} that opens every connection through an upstream
 * proxy. It fails closed: when the proxy is down or refuses, the dial
 * rejects (with a {@linkcode SocksReplyError} carrying the proxy's answer
 * where there is one) and nothing is ever dialed directly.
 *
 * @param proxy The proxy, from {@linkcode parseUpstreamProxy}.
 * @returns The dialer.
 */
export function upstreamProxyDialer(proxy: UpstreamProxy): Dialer {
  return async (target: HostPort): Promise<NetConn> => {
    const conn = await Deno.connect({ hostname: proxy.hostname, port: proxy.port });
    try {
      if (proxy.scheme === "socks5") {
        await socks5Connect(conn, target, {
          ...(proxy.username === undefined ? {} : { username: proxy.username }),
          ...(proxy.password === undefined ? {} : { password: proxy.password }),
          peer: "SOCKS5 proxy",
        });
      } else if (proxy.scheme === "socks4a") {
        await socks4aConnect(conn, target, proxy.username);
      } else await httpConnect(conn, proxy, target);
      return conn;
    } catch (error) {
      closeQuietly(conn);
      throw error;
    }
  };
}

async function httpConnect(conn: Deno.Conn, proxy: UpstreamProxy, target: HostPort) {
  const authority = formatHostPort(target);
  let request = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (proxy.username !== undefined) {
    const credentials = new TextEncoder().encode(`${proxy.username}:${proxy.password ?? ""}`);
    request += `Proxy-Authorization: Basic ${btoa(String.fromCharCode(...credentials))}\r\n`;
  }
  await writeFull(conn, new TextEncoder().encode(request + "\r\n"));
  // Read the head one byte at a time so no tunnelled byte is swallowed.
  const head: number[] = [];
  const one = new Uint8Array(1);
  while (head.length < 8192) {
    const n = await conn.read(one);
    if (n === null) throw upstreamError("HTTP proxy closed the connection");
    head.push(one[0]!);
    const l = head.length;
    if (
      l >= 4 && head[l - 4] === 13 && head[l - 3] === 10 && head[l - 2] === 13 && head[l - 1] === 10
    ) {
      const status = /^HTTP\/1\.[01] ([0-9]{3})/.exec(String.fromCharCode(...head));
      if (status === null) throw upstreamError("HTTP proxy sent a bad status line");
      const code = Number(status[1]);
      if (code >= 200 && code < 300) return;
      throw new SocksReplyError(
        code === 403 || code === 407
          ? SocksReply.notAllowed
          : code === 504
          ? SocksReply.ttlExpired
          : code === 502 || code === 503
          ? SocksReply.hostUnreachable
          : SocksReply.generalFailure,
        `HTTP proxy refused CONNECT with status ${code}`,
      );
    }
  }
  throw upstreamError("HTTP proxy sent a response head over 8192 bytes");
}

function upstreamError(message: string): SocksReplyError {
  return new SocksReplyError(SocksReply.generalFailure, message);
}
