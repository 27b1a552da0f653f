// Copyright the ptkit authors. MIT license.

/**
 * Parse an IPv4 or IPv6 literal into its 4 or 16 bytes.
 *
 * @param text The address, IPv6 without brackets; a `%zone` suffix is ignored.
 * @returns 4 bytes for IPv4, 16 bytes for IPv6.
 * @throws {SyntaxError} When the text is not an IP literal.
 *
 * @example Parsing IP literals
 * ```ts
 * import { parseIp } from "./ip_address.ts";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual([...parseIp("127.0.0.1")], [127, 0, 0, 1]);
 * deepStrictEqual(parseIp("::1")[15], 1);
 * throws(() => parseIp("1.2.3"), SyntaxError);
 * ```
 */
export function parseIp(text: string): Uint8Array {
  const v4 = parseIpv4(text);
  if (v4) return v4;
  const v6 = parseIpv6(text);
  if (v6) return v6;
  throw new SyntaxError(`Cannot parse IP address ${JSON.stringify(text)}`);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseIpv6(input: string): Uint8Array | undefined {
  const text = input.includes("%") ? input.slice(0, input.indexOf("%")) : input;
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9A-Fa-f]{1,4}$/.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return undefined;
    all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  } else {
    all = head;
  }
  if (all.length !== 8) return undefined;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/**
 * Format 4 or 16 address bytes as text (IPv6 in the RFC 5952 canonical form).
 *
 * @param bytes The address bytes.
 * @returns The textual address.
 * @throws {RangeError} When the length is neither 4 nor 16.
 *
 * @example Formatting IP addresses
 * ```ts
 * import { formatIp, parseIp } from "./ip_address.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(formatIp(parseIp("0:0:0:0:0:0:0:1")), "::1");
 * strictEqual(formatIp(new Uint8Array([10, 0, 0, 1])), "10.0.0.1");
 * ```
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length !== 16) {
    throw new RangeError(`Cannot format IP address: expected 4 or 16 bytes, got ${bytes.length}`);
  }
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * Tell whether an IP address is in a range a TURN server refuses as a peer by default.
 *
 * @param bytes The 4 or 16 address bytes.
 * @returns `"loopback"`, `"private"` (RFC 1918, CGNAT, ULA, link-local), `"forbidden"`
 *   (unspecified, multicast, broadcast, reserved) or `"public"`.
 *
 * @example Classifying peers
 * ```ts
 * import { classifyIp, parseIp } from "./ip_address.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(classifyIp(parseIp("127.0.0.1")), "loopback");
 * strictEqual(classifyIp(parseIp("192.168.1.1")), "private");
 * strictEqual(classifyIp(parseIp("224.0.0.1")), "forbidden");
 * strictEqual(classifyIp(parseIp("8.8.8.8")), "public");
 * ```
 */
export function classifyIp(bytes: Uint8Array): "loopback" | "private" | "forbidden" | "public" {
  if (bytes.length === 16) {
    const zeroPrefix = bytes.subarray(0, 10).every((b) => b === 0);
    if (zeroPrefix && bytes[10] === 0xff && bytes[11] === 0xff) {
      return classifyIp(bytes.subarray(12));
    }
    if (bytes.subarray(0, 15).every((b) => b === 0)) {
      return bytes[15] === 1 ? "loopback" : "forbidden";
    }
    if (bytes[0] === 0xff) return "forbidden";
    if ((bytes[0]! & 0xfe) === 0xfc) return "private";
    if (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80) return "private";
    return "public";
  }
  const [a, b] = [bytes[0]!, bytes[1]!];
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && (b & 0xf0) === 16) || (a === 192 && b === 168)) return "private";
  if (a === 169 && b === 254) return "private";
  if (a === 100 && (b & 0xc0) === 64) return "private";
  if (a === 0 || a >= 224) return "forbidden";
  return "public";
}
