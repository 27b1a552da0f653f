// Copyright the ptkit authors. MIT license.

import { writeFull } from "../../net/conn_io.ts";
import { closeQuietly } from "../../net/_accept_loop.ts";
import { type Dialer, type NetConn, tcpDialer } from "../../net/net_conn.ts";
import type { HostPort } from "../../net/address.ts";
import { formatHostPort } from "../../net/address.ts";
import { SocksReply, SocksReplyError } from "../socks/_reply.ts";
import { HeadBuffer, HeadTooLong, statusCode } from "../../transports/_http_head.ts";
import type { UpstreamProxy } from "./_proxy_uri.ts";
import { restated } from "./_log.ts";
import { checkSocks4aTarget, socks4aConnect, socks5Connect } from "../socks/_client.ts";

/**
 * A {@linkcode Dialer} that opens every connection through an upstream
 * proxy. It fails closed: when the proxy is down or refuses, the dial
 * rejects (with a {@linkcode SocksReplyError} carrying the proxy's answer
 * where there is one) and nothing is ever dialed directly.
 *
 * @param proxy The proxy, from {@linkcode parseUpstreamProxy}.
 * @param connect Opens the connection to the proxy itself (from
 * `TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6`). Defaults to `Deno.connect`.
 * @returns The dialer.
 */
export function upstreamProxyDialer(proxy: UpstreamProxy, connect: Dialer = tcpDialer): Dialer {
  return async (target: HostPort, _settings, options = {}): Promise<NetConn> => {
    const { signal } = options;
    // A destination the proxy cannot carry fails before the proxy is
    // dialed (it would see a connection that closes without a byte).
    if (proxy.scheme === "socks4a") checkSocks4aTarget(target);
    let conn: NetConn;
    try {
      conn = await connect(
        { hostname: proxy.hostname, port: proxy.port },
        undefined,
        signal === undefined ? {} : { signal },
      );
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      // Said as the proxy's failure, not the bridge's (the class is kept:
      // a refusal is still answered as one).
      if (!(error instanceof Error)) throw error;
      throw restated(
        error,
        `Cannot reach the upstream proxy (-proxy, TOR_PT_PROXY): ${error.message}`,
      );
    }
    // An abort ends the proxy's exchange under way (a proxy that never
    // answers) by closing its connection.
    const onAbort = () => closeQuietly(conn);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      if (proxy.scheme === "socks5") {
        await socks5Connect(conn, target, {
          ...(proxy.username === undefined ? {} : { username: proxy.username }),
          ...(proxy.password === undefined ? {} : { password: proxy.password }),
          peer: "SOCKS5 proxy",
        });
      } else if (proxy.scheme === "socks4a") {
        await socks4aConnect(conn, target, proxy.username);
      } else await httpConnect(conn, proxy, target);
      signal?.throwIfAborted();
      return conn;
    } catch (error) {
      closeQuietly(conn);
      throw signal?.aborted ? signal.reason : error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  };
}

async function httpConnect(conn: NetConn, proxy: UpstreamProxy, target: HostPort) {
  const authority = formatHostPort(target);
  let request = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (proxy.username !== undefined) {
    const credentials = new TextEncoder().encode(`${proxy.username}:${proxy.password ?? ""}`);
    request += `Proxy-Authorization: Basic ${btoa(String.fromCharCode(...credentials))}\r\n`;
  }
  await writeFull(conn, new TextEncoder().encode(request + "\r\n"));
  // Read the head one byte at a time so no tunnelled byte is swallowed; it
  // ends at the first empty line (CR LF or a bare LF, as Go's proxies and
  // nginx read heads).
  const buffer = new HeadBuffer(8192);
  const one = new Uint8Array(1);
  for (;;) {
    const n = await conn.read(one);
    if (n === null) throw upstreamError("HTTP proxy closed the connection");
    let complete;
    try {
      complete = buffer.add(one);
    } catch (error) {
      if (error instanceof HeadTooLong) {
        throw upstreamError("HTTP proxy sent a response head over 8192 bytes");
      }
      throw error;
    }
    if (complete === undefined) continue;
    const code = statusCode(new TextDecoder().decode(complete.head));
    if (code === undefined) throw upstreamError("HTTP proxy sent a bad status line");
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

function upstreamError(message: string): SocksReplyError {
  return new SocksReplyError(SocksReply.generalFailure, message);
}
