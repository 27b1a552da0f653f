// Copyright the ptkit authors. MIT license.
// Value codecs of the STUN/TURN attributes that carry more than raw bytes.

import { formatIp, parseIp } from "../../net/_ip_address.ts";
import { STUN_ERROR_REASONS, STUN_MAGIC_COOKIE } from "./_constants.ts";
import type { StunAddress } from "./_message.ts";

/**
 * Encode an XOR-*-ADDRESS value (XOR-MAPPED, XOR-RELAYED, XOR-PEER).
 *
 * @param address The address.
 * @param transactionId The message's transaction id (used for IPv6).
 * @returns The attribute value.
 *
 * @example IPv6 round trip
 * ```ts
 * import { decodeXorAddress, encodeXorAddress } from "./_attributes.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const tid = new Uint8Array(12).fill(7);
 * const a = { family: 6, address: "2001:db8::1", port: 5000 } as const;
 * deepStrictEqual(decodeXorAddress(encodeXorAddress(a, tid), tid), a);
 * ```
 */
export function encodeXorAddress(address: StunAddress, transactionId: Uint8Array): Uint8Array {
  const ip = parseIp(address.address);
  const out = new Uint8Array(4 + ip.length);
  const view = new DataView(out.buffer);
  out[1] = ip.length === 4 ? 1 : 2;
  view.setUint16(2, address.port ^ 0x2112);
  const mask = xorMask(transactionId);
  for (let i = 0; i < ip.length; i++) out[4 + i] = ip[i]! ^ mask[i]!;
  return out;
}

/**
 * Encode a MAPPED-ADDRESS value (the address as it is, not XORed: what an
 * RFC 3489 client reads).
 *
 * @param address The address.
 * @returns The attribute value.
 *
 * @example IPv4
 * ```ts
 * import { encodeAddress } from "./_attributes.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(
 *   encodeAddress({ family: 4, address: "192.0.2.1", port: 0x1234 }),
 *   new Uint8Array([0, 1, 0x12, 0x34, 192, 0, 2, 1]),
 * );
 * ```
 */
export function encodeAddress(address: StunAddress): Uint8Array {
  const ip = parseIp(address.address);
  const out = new Uint8Array(4 + ip.length);
  out[1] = ip.length === 4 ? 1 : 2;
  new DataView(out.buffer).setUint16(2, address.port);
  out.set(ip, 4);
  return out;
}

/**
 * Decode an XOR-*-ADDRESS value.
 *
 * @param value The attribute value.
 * @param transactionId The message's transaction id.
 * @returns The address.
 * @throws {SyntaxError} On a bad family or length.
 *
 * @example IPv4
 * ```ts
 * import { decodeXorAddress, encodeXorAddress } from "./_attributes.ts";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * const tid = new Uint8Array(12);
 * const a = { family: 4, address: "192.0.2.1", port: 32853 } as const;
 * deepStrictEqual(decodeXorAddress(encodeXorAddress(a, tid), tid), a);
 * throws(() => decodeXorAddress(new Uint8Array(5), tid), SyntaxError);
 * ```
 */
export function decodeXorAddress(value: Uint8Array, transactionId: Uint8Array): StunAddress {
  const family = value[1];
  const size = family === 1 ? 4 : family === 2 ? 16 : 0;
  if (value.length < 4 || size === 0 || value.length !== 4 + size) {
    throw new SyntaxError(
      `Cannot parse XOR address: family ${family} with ${value.length} bytes`,
    );
  }
  const port = ((value[2]! << 8) | value[3]!) ^ 0x2112;
  const mask = xorMask(transactionId);
  const ip = new Uint8Array(size);
  for (let i = 0; i < size; i++) ip[i] = value[4 + i]! ^ mask[i]!;
  return { family: size === 4 ? 4 : 6, address: formatIp(ip), port };
}

/**
 * The key of an IPv4 XOR-*-ADDRESS value as `UdpEndpoint.key` has it
 * (address * 65536 + port), read without decoding to text (an IPv4
 * address is XORed with the magic cookie alone, whatever the transaction).
 *
 * @param value The attribute value.
 * @returns The key, or undefined when the value is not an IPv4 address.
 *
 * @example The key of 192.0.2.1:32853
 * ```ts
 * import { encodeXorAddress, xorIpv4Key } from "./_attributes.ts";
 * import { strictEqual } from "node:assert";
 *
 * const value = encodeXorAddress({ family: 4, address: "192.0.2.1", port: 32853 }, new Uint8Array(12));
 * strictEqual(xorIpv4Key(value), 0xc0000201 * 65536 + 32853);
 * ```
 */
export function xorIpv4Key(value: Uint8Array): number | undefined {
  if (value.length !== 8 || value[1] !== 1) return undefined;
  const port = ((value[2]! << 8) | value[3]!) ^ 0x2112;
  const ip = (((value[4]! ^ 0x21) << 24) | ((value[5]! ^ 0x12) << 16) |
    ((value[6]! ^ 0xa4) << 8) | (value[7]! ^ 0x42)) >>> 0;
  return ip * 65536 + port;
}

function xorMask(transactionId: Uint8Array): Uint8Array {
  const mask = new Uint8Array(16);
  new DataView(mask.buffer).setUint32(0, STUN_MAGIC_COOKIE);
  mask.set(transactionId.subarray(0, 12), 4);
  return mask;
}

/**
 * Encode an ERROR-CODE value.
 *
 * @param code 300-699.
 * @param reason Reason phrase; defaults to the standard one.
 * @returns The attribute value.
 *
 * @example Error code round trip
 * ```ts
 * import { decodeErrorCode, encodeErrorCode } from "./_attributes.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(decodeErrorCode(encodeErrorCode(437)).code, 437);
 * ```
 */
export function encodeErrorCode(code: number, reason?: string): Uint8Array {
  const text = new TextEncoder().encode(reason ?? STUN_ERROR_REASONS[code] ?? "Error");
  const out = new Uint8Array(4 + text.length);
  out[2] = Math.floor(code / 100);
  out[3] = code % 100;
  out.set(text, 4);
  return out;
}

/**
 * Decode an ERROR-CODE value.
 *
 * @param value The attribute value.
 * @returns Code and reason.
 * @throws {SyntaxError} When shorter than 4 bytes.
 *
 * @example Decoding
 * ```ts
 * import { decodeErrorCode } from "./_attributes.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(decodeErrorCode(new Uint8Array([0, 0, 4, 1])).code, 401);
 * ```
 */
export function decodeErrorCode(value: Uint8Array): { code: number; reason: string } {
  if (value.length < 4) {
    throw new SyntaxError(`Cannot parse ERROR-CODE: ${value.length} bytes is shorter than 4`);
  }
  return {
    code: (value[2]! & 7) * 100 + value[3]!,
    reason: new TextDecoder().decode(value.subarray(4)),
  };
}

/**
 * Encode a 32-bit unsigned value (LIFETIME and the like).
 *
 * @param n The number.
 * @returns 4 bytes, big-endian.
 *
 * @example LIFETIME
 * ```ts
 * import { u32 } from "./_attributes.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual([...u32(600)], [0, 0, 2, 88]);
 * ```
 */
export function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0);
  return out;
}
