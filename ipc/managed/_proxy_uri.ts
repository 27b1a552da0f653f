// Copyright the ptkit authors. MIT license.
// Internal: TOR_PT_PROXY's URI, parsed (pure, light: the configuration
// parser needs it at start-up; the dialer in _upstream_proxy.ts loads only
// when a proxy is used).

import { parseIpv4, parseIpv6 } from "../../net/_ip_address.ts";
import { checkPort } from "../../net/address.ts";
import { parseUserinfo, splitAuthority, type Userinfo } from "../../net/_userinfo.ts";

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
 * A proxy URI as an error may show it: the scheme, `***@` for a userinfo,
 * and the address after it only when it holds nothing but what an IP
 * address and port hold. A user and password with the `@ip:port` left out
 * look like `host:port`, and a password holding `@` (tor writes it
 * verbatim) leaves its tail after the last `@`: both were printed.
 */
function shownProxyUri(text: string): string {
  const scheme = SCHEME.exec(text)?.[0] ?? "";
  const rest = text.slice(scheme.length);
  const at = rest.lastIndexOf("@");
  const address = rest.slice(at + 1);
  const shown = `${scheme}${at < 0 ? "" : "***@"}`;
  if (/^[0-9A-Fa-f.:\[\]\/]*$/.test(address)) return JSON.stringify(shown + address);
  const hidden = `${address.length} characters, not shown: they may hold a password`;
  return shown === "" ? `(${hidden})` : `${JSON.stringify(shown)} (then ${hidden})`;
}

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
    new SyntaxError(`Cannot parse proxy URI ${shownProxyUri(text)}: ${why}`);
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
  const port = checkPort(Number(portText), `proxy URI ${shownProxyUri(text)}`, 1);
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
