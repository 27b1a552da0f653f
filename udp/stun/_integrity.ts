// Copyright the ptkit authors. MIT license.

import { md5 } from "@noble/hashes/legacy.js";
import { hmacSha1 } from "./_hmac.ts";
import { STUN_FINGERPRINT_XOR } from "./_constants.ts";
import type { StunMessage } from "./_message.ts";

/**
 * The long-term credential key, MD5(username ":" realm ":" password).
 *
 * @param username The user name.
 * @param realm The realm.
 * @param password The password.
 * @returns The 16-byte key.
 *
 * @example Key derivation
 * ```ts
 * import { longTermKey } from "./_integrity.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(longTermKey("u", "r", "p").length, 16);
 * ```
 */
export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  return md5(new TextEncoder().encode(`${username}:${realm}:${password}`));
}

/**
 * Check MESSAGE-INTEGRITY (HMAC-SHA1) of a parsed message.
 *
 * @param message The parsed message.
 * @param key The key.
 * @returns False when the attribute is absent or wrong.
 *
 * @example Missing integrity
 * ```ts
 * import { encodeStunMessage, parseStunMessage } from "./_message.ts";
 * import { verifyIntegrity } from "./_integrity.ts";
 * import { strictEqual } from "node:assert";
 *
 * const m = parseStunMessage(
 *   encodeStunMessage({ method: 1, class: 0, transactionId: new Uint8Array(12), attributes: [] }),
 * );
 * strictEqual(verifyIntegrity(m, new Uint8Array(16)), false);
 * ```
 */
export function verifyIntegrity(message: StunMessage, key: Uint8Array): boolean {
  const at = message.integrityOffset;
  if (at < 0) return false;
  // The header with its length adjusted to end at MESSAGE-INTEGRITY, then the
  // attributes before it, as they are (no copy of the message).
  const header = message.raw.slice(0, 20);
  new DataView(header.buffer).setUint16(2, at + 24 - 20);
  const mac = hmacSha1(key, header, message.raw.subarray(20, at));
  const got = message.raw.subarray(at + 4, at + 24);
  let diff = 0;
  for (let i = 0; i < 20; i++) diff |= mac[i]! ^ got[i]!;
  return diff === 0;
}

/**
 * Check FINGERPRINT; a message without one passes.
 *
 * @param message The parsed message.
 * @returns False only when a FINGERPRINT is present and wrong.
 *
 * @example Corrupted fingerprint
 * ```ts
 * import { encodeStunMessage, parseStunMessage } from "./_message.ts";
 * import { verifyFingerprint } from "./_integrity.ts";
 * import { strictEqual } from "node:assert";
 *
 * const bytes = encodeStunMessage(
 *   { method: 1, class: 0, transactionId: new Uint8Array(12), attributes: [] },
 *   { fingerprint: true },
 * );
 * bytes[bytes.length - 1]! ^= 1;
 * strictEqual(verifyFingerprint(parseStunMessage(bytes)), false);
 * ```
 */
export function verifyFingerprint(message: StunMessage): boolean {
  const at = message.fingerprintOffset;
  if (at < 0) return true;
  const view = new DataView(message.raw.buffer, message.raw.byteOffset, message.raw.byteLength);
  return ((crc32(message.raw.subarray(0, at)) ^ STUN_FINGERPRINT_XOR) >>> 0) ===
    view.getUint32(at + 4);
}

// Slicing-by-8 tables: table k maps a byte to its CRC after k more zero bytes.
let crcTables: Uint32Array | undefined;

function tables(): Uint32Array {
  if (crcTables) return crcTables;
  const t = new Uint32Array(256 * 8);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let k = 256; k < 256 * 8; k++) t[k] = (t[k - 256]! >>> 8) ^ t[t[k - 256]! & 0xff]!;
  return crcTables = t;
}

/**
 * CRC-32 (IEEE 802.3), as FINGERPRINT uses.
 *
 * @param bytes The input.
 * @returns The unsigned CRC.
 *
 * @example Check value
 * ```ts
 * import { crc32 } from "./_integrity.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  const t = tables();
  const n = bytes.length;
  const whole = n - (n & 7);
  let crc = ~0;
  let i = 0;
  // Eight bytes a step (about five times faster than one: FINGERPRINT is
  // checked on every Send indication and made for every Data indication).
  for (; i < whole; i += 8) {
    const a = crc ^
      (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    const b = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    crc = t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^ t[768 + (b & 0xff)]! ^ t[512 + ((b >>> 8) & 0xff)]! ^
      t[256 + ((b >>> 16) & 0xff)]! ^ t[b >>> 24]!;
  }
  for (; i < n; i++) crc = t[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}
