// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

// IP literals, written once: parsing, formatting and the IANA special-purpose
// classes, for every part of ptkit (SOCKS, TURN, bind addresses, the
// destination policy, the UDP socket layer).

/**
 * What an IP address is, after the IANA IPv4 and IPv6 Special-Purpose
 * Address Registries (RFC 6890 and its updates), the IPv6 address
 * architecture (RFC 4291, RFC 3879 for site-local) and the multicast
 * ranges. An address that embeds an IPv4 address (IPv4-mapped
 * `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4
 * `2002::/16`) has the class of the IPv4 address it embeds.
 *
 * - `public`: globally reachable unicast.
 * - `unspecified`: `0.0.0.0/8` ("this network"; Linux connects `0.0.0.0` to
 *   the local host), `::`.
 * - `loopback`: `127.0.0.0/8`, `::1`.
 * - `private`: RFC 1918 (`10/8`, `172.16/12`, `192.168/16`).
 * - `shared`: `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
 * - `link-local`: `169.254.0.0/16`, `fe80::/10`.
 * - `unique-local`: `fc00::/7` (RFC 4193).
 * - `site-local`: `fec0::/10`, deprecated (RFC 3879) and still routed on
 *   some private networks.
 * - `multicast`: `224.0.0.0/4`, `ff00::/8`.
 * - `broadcast`: `255.255.255.255`.
 * - `documentation`: `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`,
 *   `2001:db8::/32`, `3fff::/20`.
 * - `benchmarking`: `198.18.0.0/15`, `2001:2::/48`.
 * - `reserved`: the rest of the registries that is not globally reachable
 *   (`240.0.0.0/4`, `192.0.0.0/24` but for its two global addresses, the
 *   6to4 relay anycast `192.88.99.0/24`, the discard prefix `100::/64`, the
 *   IETF protocol assignments in `2001::/23` other than their global
 *   entries, NAT64 local use `64:ff9b:1::/48`, SRv6 `5f00::/16`) and IPv6
 *   space outside `2000::/3` that no registry assigns.
 */
export type IpAddressClass =
  | "public"
  | "unspecified"
  | "loopback"
  | "private"
  | "shared"
  | "link-local"
  | "unique-local"
  | "site-local"
  | "multicast"
  | "broadcast"
  | "documentation"
  | "benchmarking"
  | "reserved";

/**
 * Parse a dotted-quad IPv4 literal without allocating: four decimal parts
 * 0-255 without leading zeros (`010` could mean 8 to a resolver that reads
 * octal, so it is refused, as Go's `net.ParseIP` does). Internal: the one
 * IPv4 parser, also the UDP socket layer's hot path.
 *
 * @param text The text.
 * @returns The address as an unsigned 32-bit number, or -1.
 */
export function parseIpv4(text: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      if (digits === 1 && part === 0) return -1; // A leading zero.
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/**
 * Parse an IPv6 literal (no brackets, no zone): eight groups of 1-4 hex
 * digits, one `::` standing for one or more zero groups, and optionally a
 * dotted-quad IPv4 tail in place of the last two groups. Internal: the one
 * IPv6 parser.
 *
 * @param text The text.
 * @returns The 16 bytes, or undefined.
 */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45 || !text.includes(":")) return undefined;
  let body = text;
  let tail = -1;
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) >= 0) {
    tail = parseIpv4(text.slice(lastColon + 1));
    if (tail < 0) return undefined;
    // Keep a `::` that ends right before the IPv4 part.
    body = text[lastColon - 1] === ":" ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
  }
  const want = tail < 0 ? 8 : 6;
  const gap = body.indexOf("::");
  if (gap >= 0 && body.indexOf("::", gap + 1) >= 0) return undefined;
  const split = (s: string) => s === "" ? [] : s.split(":");
  const head = split(gap < 0 ? body : body.slice(0, gap));
  const rest = gap < 0 ? [] : split(body.slice(gap + 2));
  if (gap < 0 ? head.length !== want : head.length + rest.length >= want) return undefined;
  const out = new Uint8Array(16);
  const put = (groups: string[], at: number): boolean => {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return false;
      const v = parseInt(g, 16);
      out[(at + i) * 2] = v >> 8;
      out[(at + i) * 2 + 1] = v & 0xff;
    }
    return true;
  };
  if (!put(head, 0) || !put(rest, want - rest.length)) return undefined;
  if (tail >= 0) {
    out[12] = tail >>> 24;
    out[13] = (tail >>> 16) & 0xff;
    out[14] = (tail >>> 8) & 0xff;
    out[15] = tail & 0xff;
  }
  return out;
}

/**
 * Parse an IPv4 or IPv6 literal into its 4 or 16 bytes.
 *
 * @param text A dotted quad (no leading zeros), or an IPv6 literal without
 * brackets or zone (an IPv4 tail allowed).
 * @returns 4 bytes for IPv4, 16 for IPv6.
 * @throws {SyntaxError} When the text is not an IP literal.
 *
 * @example Parsing both families
 * ```ts
 * import { parseIp } from "./_ip_address.ts";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseIp("192.0.2.1"), new Uint8Array([192, 0, 2, 1]));
 * deepStrictEqual(parseIp("::ffff:10.0.0.1").subarray(10), new Uint8Array([255, 255, 10, 0, 0, 1]));
 * throws(() => parseIp("010.0.0.1"), SyntaxError);
 * throws(() => parseIp("fe80::1%eth0"), SyntaxError);
 * ```
 */
export function parseIp(text: string): Uint8Array {
  if (typeof text === "string") {
    const v4 = parseIpv4(text);
    if (v4 >= 0) {
      return new Uint8Array([v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff]);
    }
    const v6 = parseIpv6(text);
    if (v6 !== undefined) return v6;
  }
  throw new SyntaxError(
    `Cannot parse IP address ${
      JSON.stringify(String(text).slice(0, 64))
    }: expected a dotted quad or an IPv6 literal`,
  );
}

/**
 * Whether `text` is an IP literal {@linkcode parseIp} takes. Internal.
 *
 * @param text The host.
 * @returns True for an IPv4 or IPv6 literal.
 */
export function isIpLiteral(text: string): boolean {
  return parseIpv4(text) >= 0 || parseIpv6(text) !== undefined;
}

/**
 * Format 4 or 16 address bytes as text: a dotted quad, or IPv6 in the
 * RFC 5952 form (lower case, the longest run of two or more zero groups as
 * `::`, IPv4-mapped addresses as `::ffff:a.b.c.d`).
 *
 * @param bytes The address.
 * @returns The text.
 * @throws {RangeError} When there are neither 4 nor 16 bytes.
 *
 * @example Canonical forms
 * ```ts
 * import { formatIp, parseIp } from "./_ip_address.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(formatIp(parseIp("2001:0DB8:0:0:0:0:0:1")), "2001:db8::1");
 * strictEqual(formatIp(parseIp("::ffff:7f00:1")), "::ffff:127.0.0.1");
 * strictEqual(formatIp(new Uint8Array([10, 0, 0, 1])), "10.0.0.1");
 * ```
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) {
    throw new RangeError(`Cannot format IP address: expected 4 or 16 bytes, got ${bytes.length}`);
  }
  if (isMapped(bytes)) return `::ffff:${formatIp(bytes.subarray(12))}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (groups: number[]) => groups.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLength))}`;
}

/**
 * The class of an IP address (see {@linkcode IpAddressClass}): what the
 * destination policy of free mode and of the TURN server judge.
 *
 * @param address An IP literal, or its 4 or 16 bytes.
 * @returns The class.
 * @throws {SyntaxError} When the text is not an IP literal.
 * @throws {RangeError} When the bytes are neither 4 nor 16.
 *
 * @example Classifying addresses
 * ```ts
 * import { classifyIp } from "./_ip_address.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(classifyIp("8.8.8.8"), "public");
 * strictEqual(classifyIp("::ffff:127.0.0.1"), "loopback");
 * strictEqual(classifyIp("64:ff9b::a00:1"), "private");
 * strictEqual(classifyIp("100.64.0.1"), "shared");
 * strictEqual(classifyIp("fec0::1"), "site-local");
 * ```
 */
export function classifyIp(address: string | Uint8Array): IpAddressClass {
  const bytes = typeof address === "string" ? parseIp(address) : address;
  if (bytes.length === 4) return classify4(bytes);
  if (bytes.length !== 16) {
    throw new RangeError(`Cannot classify IP address: expected 4 or 16 bytes, got ${bytes.length}`);
  }
  const embedded = embeddedIpv4(bytes);
  if (embedded !== undefined) return classify4(embedded);
  // 6to4: the IPv4 address of the site's relay router follows 2002::/16.
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return classify4(bytes.subarray(2, 6));
  return lookup(v6Table(), bytes) ?? ((bytes[0]! & 0xe0) === 0x20 ? "public" : "reserved");
}

/**
 * The IPv4 address an IPv6 address stands for: IPv4-mapped
 * (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, but for `::` and
 * `::1`) or NAT64 well-known prefix (`64:ff9b::a.b.c.d`).
 */
function embeddedIpv4(bytes: Uint8Array): Uint8Array | undefined {
  if (isMapped(bytes)) return bytes.subarray(12);
  if (zeros(bytes, 0, 12)) {
    // `::` and `::1` are themselves, not IPv4-compatible addresses.
    return zeros(bytes, 12, 15) && bytes[15]! <= 1 ? undefined : bytes.subarray(12);
  }
  if (bytes[0] === 0 && bytes[1] === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b) {
    if (zeros(bytes, 4, 12)) return bytes.subarray(12);
  }
  return undefined;
}

/**
 * The 4 bytes of the IPv4 address an IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`) stands for; any other address as it is. Internal.
 *
 * @param bytes 4 or 16 address bytes.
 * @returns The IPv4 address, or `bytes`.
 *
 * @example An IPv4 client of a listener on `[::]`
 * ```ts
 * import { formatIp, parseIp, unmapIpv4 } from "./_ip_address.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(formatIp(unmapIpv4(parseIp("::ffff:192.0.2.1"))), "192.0.2.1");
 * strictEqual(formatIp(unmapIpv4(parseIp("::1"))), "::1");
 * ```
 */
export function unmapIpv4(bytes: Uint8Array): Uint8Array {
  return bytes.length === 16 && isMapped(bytes) ? bytes.subarray(12) : bytes;
}

function isMapped(bytes: Uint8Array): boolean {
  return zeros(bytes, 0, 10) && bytes[10] === 0xff && bytes[11] === 0xff;
}

function zeros(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

function classify4(bytes: Uint8Array): IpAddressClass {
  return lookup(v4Table(), bytes) ?? "public";
}

/** A prefix and its class; the longest matching prefix wins. */
type Entry = readonly [prefix: Uint8Array, length: number, kind: IpAddressClass];

function entries(list: readonly [string, IpAddressClass][]): Entry[] {
  return list
    .map(([cidr, kind]): Entry => {
      const [ip, length] = cidr.split("/") as [string, string];
      return [parseIp(ip), Number(length), kind];
    })
    .sort((a, b) => b[1] - a[1]);
}

function lookup(table: readonly Entry[], bytes: Uint8Array): IpAddressClass | undefined {
  for (const [prefix, length, kind] of table) {
    if (prefix.length === bytes.length && matches(prefix, length, bytes)) return kind;
  }
  return undefined;
}

function matches(prefix: Uint8Array, length: number, bytes: Uint8Array): boolean {
  const whole = length >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== prefix[i]) return false;
  const bits = length & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (bytes[whole]! & mask) === (prefix[whole]! & mask);
}

// IANA IPv4 Special-Purpose Address Registry, and multicast.
const V4_LIST: readonly [string, IpAddressClass][] = [
  ["0.0.0.0/8", "unspecified"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "shared"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "reserved"],
  ["192.0.0.9/32", "public"], // Port Control Protocol anycast.
  ["192.0.0.10/32", "public"], // Traversal Using Relays around NAT anycast.
  ["192.0.2.0/24", "documentation"],
  ["192.88.99.0/24", "reserved"], // Deprecated 6to4 relay anycast.
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation"],
  ["203.0.113.0/24", "documentation"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved"],
  ["255.255.255.255/32", "broadcast"],
];

// IANA IPv6 Special-Purpose Address Registry, the address architecture and
// multicast. IPv4-embedding prefixes are handled before the table.
const V6_LIST: readonly [string, IpAddressClass][] = [
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["64:ff9b:1::/48", "reserved"], // NAT64 local use.
  ["100::/64", "reserved"], // Discard-only.
  ["2001::/23", "reserved"], // IETF protocol assignments...
  ["2001::/32", "public"], // ...but Teredo,
  ["2001:1::1/128", "public"], // Port Control Protocol anycast,
  ["2001:1::2/128", "public"], // TURN anycast,
  ["2001:1::3/128", "public"], // DNS-SD service registration anycast,
  ["2001:3::/32", "public"], // AMT,
  ["2001:4:112::/48", "public"], // AS112-v6,
  ["2001:20::/28", "public"], // ORCHIDv2,
  ["2001:30::/28", "public"], // Drone remote ID,
  ["2001:2::/48", "benchmarking"],
  ["2001:db8::/32", "documentation"],
  ["3fff::/20", "documentation"],
  ["5f00::/16", "reserved"], // Segment routing SIDs.
  ["fc00::/7", "unique-local"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "site-local"],
  ["ff00::/8", "multicast"],
];

// The tables are made at their first use: a start that classifies no address
// (the managed proxy before *METHODS DONE) does not parse them.
let v4: readonly Entry[] | undefined;
let v6: readonly Entry[] | undefined;
function v4Table(): readonly Entry[] {
  return v4 ??= entries(V4_LIST);
}
function v6Table(): readonly Entry[] {
  return v6 ??= entries(V6_LIST);
}
