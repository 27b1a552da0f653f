// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { sha256 } from "@noble/hashes/sha2.js";
import type { HostPort } from "../transport.ts";

/** A parsed WebTunnel `url=`: where to connect and what to ask for. */
export interface WebtunnelUrl {
  /** The URL as configured (the seed of the placeholder address). */
  readonly text: string;
  /** Whether the scheme is `https` (TLS first). */
  readonly tls: boolean;
  /** The host to dial and to send as SNI (IPv6 without brackets). */
  readonly hostname: string;
  /** The port: the URL's, else 443 for https and 80 for http. */
  readonly port: number;
  /**
   * The `Host` header: the URL's host without its port (an IPv6 address in
   * brackets), as lyrebird's client sends it.
   */
  readonly host: string;
  /** The escaped path, starting with `/`: the shared secret. */
  readonly path: string;
}

/**
 * Parse a WebTunnel `url=` value (`https://host[:port]/secret`, or `http`).
 * Errors never quote the URL: its path is the bridge's secret.
 *
 * @param text The value.
 * @returns The parsed URL.
 * @throws {TypeError} When it is not an absolute http or https URL with a host
 * (and a port from 1 to 65535 when it has one).
 *
 * @example Parsing a bridge URL
 * ```ts
 * import { parseWebtunnelUrl } from "./_config.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const url = parseWebtunnelUrl("https://[2001:db8::1]:8443/s3cret");
 * deepStrictEqual([url.hostname, url.port, url.host, url.path], [
 *   "2001:db8::1",
 *   8443,
 *   "[2001:db8::1]",
 *   "/s3cret",
 * ]);
 * ```
 */
export function parseWebtunnelUrl(text: string): WebtunnelUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(
      "Invalid WebTunnel option 'url': not an absolute URL (https://HOST[:PORT]/SECRET-PATH, the port 1-65535)",
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TypeError(
      `Invalid WebTunnel option 'url': scheme must be https or http, got '${
        url.protocol.slice(0, -1).slice(0, 16)
      }'`,
    );
  }
  if (url.hostname === "") throw new TypeError("Invalid WebTunnel option 'url': no host");
  if (url.port === "0") {
    throw new TypeError("Invalid WebTunnel option 'url': port 0 is out of range (1-65535)");
  }
  const tls = url.protocol === "https:";
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return {
    text,
    tls,
    hostname,
    port: url.port === "" ? (tls ? 443 : 80) : Number(url.port),
    host: url.hostname,
    path: url.pathname === "" ? "/" : url.pathname,
  };
}

/**
 * Parse `addr=`: `host:port`, the host an IP address or a name (dialed as
 * given), `[ipv6]:port` with brackets.
 *
 * @param text The value.
 * @returns The address.
 * @throws {TypeError} When it is not `host:port` with a port from 1 to 65535.
 *
 * @example Parsing addresses
 * ```ts
 * import { parseWebtunnelAddr } from "./_config.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(parseWebtunnelAddr("localhost:18443"), { hostname: "localhost", port: 18443 });
 * ```
 *
 * @example Refusing an unbracketed IPv6 address
 * ```ts
 * import { parseWebtunnelAddr } from "./_config.ts";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseWebtunnelAddr("[::1]:443"), { hostname: "::1", port: 443 });
 * throws(() => parseWebtunnelAddr("::1:443"), TypeError);
 * ```
 */
export function parseWebtunnelAddr(text: string): HostPort {
  let url: URL | undefined;
  try {
    // A scheme without a default port keeps every port; brackets are checked.
    url = new URL(`webtunnel-addr://${text}`);
  } catch {
    url = undefined;
  }
  if (
    url === undefined || url.port === "" || url.port === "0" || url.hostname === "" ||
    url.username !== "" ||
    url.password !== "" || url.pathname !== "" || url.search !== "" || url.hash !== "" ||
    /[@/?#\s]/.test(text)
  ) {
    throw new TypeError(
      "Invalid WebTunnel option 'addr': expected host:port (an IP address or a name, " +
        "an IPv6 address in brackets; the port 1-65535)",
    );
  }
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return { hostname, port: Number(url.port) };
}

/**
 * The placeholder address a WebTunnel bridge reports in `SMETHOD` (and so
 * in its bridge line): in 2001:db8::/32, the rest from SHA-256 of
 * `WEBTUNNEL+<url>`, as webtunnel-server derives it. Clients dial the URL's
 * host, not this.
 *
 * @param url The server's `url=` exactly as configured.
 * @returns The IPv6 address (compressed text form, no brackets).
 *
 * @example The address for a URL
 * ```ts
 * import { placeholderAddress } from "./_config.ts";
 * import { ok } from "node:assert";
 *
 * ok(placeholderAddress("https://example.com/s3cret").startsWith("2001:db8:"));
 * ```
 */
export function placeholderAddress(url: string): string {
  const hash = sha256(new TextEncoder().encode(`WEBTUNNEL+${url}`));
  const bytes = new Uint8Array(16);
  bytes.set([0x20, 0x01, 0x0d, 0xb8]);
  bytes.set(hash.subarray(4, 16), 4);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // RFC 5952: the longest run of two or more zero groups becomes "::".
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  return best < 0
    ? hex(groups)
    : `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLength))}`;
}
