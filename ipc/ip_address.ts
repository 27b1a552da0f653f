// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: IP literal parsing for bind addresses and destination checks.

/**
 * Whether `text` is an IPv4 dotted quad or an IPv6 literal (no brackets, no
 * zone).
 *
 * @param text The host.
 * @returns True for an IP literal.
 *
 * @example Telling IP literals from names
 * ```ts
 * import { isIpLiteral } from "./ip_address.ts";
 * import { ok } from "node:assert";
 *
 * ok(isIpLiteral("127.0.0.1") && isIpLiteral("::1") && !isIpLiteral("localhost"));
 * ```
 */
export function isIpLiteral(text: string): boolean {
  return ipv4Bytes(text) !== undefined || ipv6Bytes(text) !== undefined;
}

/** The 4 bytes of a dotted quad, or undefined. */
export function ipv4Bytes(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  if (!parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.map(Number);
}

/** The 16 bytes of an IPv6 literal (with an optional dotted-quad tail), or undefined. */
export function ipv6Bytes(text: string): number[] | undefined {
  if (!text.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  let groups: string[];
  let tail: number[] = [];
  let body = text;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = v4;
    body = text[lastColon - 1] === ":" ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
  }
  const want = tail.length > 0 ? 6 : 8;
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const parse = (s: string) => s === "" ? [] : s.split(":");
  if (halves.length === 2) {
    const left = parse(halves[0]!);
    const right = parse(halves[1]!);
    if (left.length + right.length >= want) return undefined;
    groups = [...left, ...Array(want - left.length - right.length).fill("0"), ...right];
  } else {
    groups = parse(body);
  }
  if (groups.length !== want || !groups.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) {
    return undefined;
  }
  return [
    ...groups.flatMap((g) => {
      const v = parseInt(g, 16);
      return [v >> 8, v & 0xff];
    }),
    ...tail,
  ];
}

/**
 * Bracket an IPv6 address written without brackets before its port
 * (`1:2::3:4:9999` becomes `[1:2::3:4]:9999`), as goptlib repairs what old
 * tor versions put in `TOR_PT_SERVER_BINDADDR`, `TOR_PT_ORPORT` and
 * `TOR_PT_EXTENDED_SERVER_PORT`: the last `:` starts the port. Anything
 * else (bracketed, IPv4, a name, or a host that is no IPv6 literal) is
 * returned unchanged for the address parser to judge.
 *
 * @param text `addr:port` as tor wrote it.
 * @returns The text with the IPv6 host in brackets, or unchanged.
 *
 * @example Repairing an old tor's address
 * ```ts
 * import { bracketBareIpv6 } from "./ip_address.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(bracketBareIpv6("1:2::3:4:9999"), "[1:2::3:4]:9999");
 * deepStrictEqual(bracketBareIpv6("1:2::3:4::9999"), "1:2::3:4::9999");
 * deepStrictEqual(bracketBareIpv6("127.0.0.1:9999"), "127.0.0.1:9999");
 * ```
 */
export function bracketBareIpv6(text: string): string {
  const colon = text.lastIndexOf(":");
  if (text.startsWith("[") || text.indexOf(":") === colon) return text;
  const host = text.slice(0, colon);
  return ipv6Bytes(host) === undefined ? text : `[${host}]${text.slice(colon)}`;
}
