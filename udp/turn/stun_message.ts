// Copyright the ptkit authors. MIT license.

import { hmac } from "@noble/hashes/hmac.js";
import { md5, sha1 } from "@noble/hashes/legacy.js";
import { formatIp, parseIp } from "./ip_address.ts";
import {
  STUN_ERROR_REASONS,
  STUN_MAGIC_COOKIE,
  StunAttr,
  type StunClassValue,
} from "./stun_constants.ts";

/** One STUN attribute: its type and its unpadded value. */
export interface StunAttribute {
  /** Attribute type (u16). */
  readonly type: number;
  /** Attribute value without padding. */
  readonly value: Uint8Array;
}

/** A parsed STUN message. */
export interface StunMessage {
  /** Method (12 bits), see `StunMethod`. */
  readonly method: number;
  /** Class, see `StunClass`. */
  readonly class: StunClassValue;
  /** The 12-byte transaction id. */
  readonly transactionId: Uint8Array;
  /** Attributes in wire order (those after MESSAGE-INTEGRITY other than FINGERPRINT dropped). */
  readonly attributes: readonly StunAttribute[];
  /** The whole message as received. */
  readonly raw: Uint8Array;
  /** Byte offset of MESSAGE-INTEGRITY in `raw`, or -1. */
  readonly integrityOffset: number;
  /** Byte offset of FINGERPRINT in `raw`, or -1. */
  readonly fingerprintOffset: number;
}

/** An IP transport address as STUN carries it. */
export interface StunAddress {
  /** 4 for IPv4, 6 for IPv6. */
  readonly family: 4 | 6;
  /** The IP literal (IPv6 in canonical form, no brackets). */
  readonly address: string;
  /** The port. */
  readonly port: number;
}

const FINGERPRINT_XOR = 0x5354554e;

/**
 * Tell whether a datagram looks like a STUN message (first two bits 0 and the magic cookie).
 *
 * @param bytes The datagram.
 * @returns True when it can be a STUN message.
 *
 * @example Detecting STUN
 * ```ts
 * import { isStunMessage } from "./stun_message.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(isStunMessage(new Uint8Array([0x40, 0, 0, 0])), false);
 * ```
 */
export function isStunMessage(bytes: Uint8Array): boolean {
  return bytes.length >= 20 && (bytes[0]! & 0xc0) === 0 && bytes[4] === 0x21 &&
    bytes[5] === 0x12 && bytes[6] === 0xa4 && bytes[7] === 0x42;
}

/**
 * Parse one STUN message, checking the header, lengths and attribute bounds.
 *
 * @param bytes Exactly one message.
 * @returns The parsed message.
 * @throws {SyntaxError} On a bad header, a length past the end or a truncated attribute.
 *
 * @example Round trip
 * ```ts
 * import { encodeStunMessage, parseStunMessage } from "./stun_message.ts";
 * import { StunAttr, StunMethod } from "./stun_constants.ts";
 * import { strictEqual, throws } from "node:assert";
 *
 * const bytes = encodeStunMessage({
 *   method: StunMethod.Binding,
 *   class: 0,
 *   transactionId: new Uint8Array(12),
 *   attributes: [{ type: StunAttr.Software, value: new TextEncoder().encode("x") }],
 * });
 * strictEqual(parseStunMessage(bytes).attributes[0]?.value.length, 1);
 * throws(() => parseStunMessage(bytes.subarray(0, 22)), SyntaxError);
 * ```
 */
export function parseStunMessage(bytes: Uint8Array): StunMessage {
  if (bytes.length < 20) {
    throw new SyntaxError(`Cannot parse STUN message: ${bytes.length} bytes is shorter than 20`);
  }
  if ((bytes[0]! & 0xc0) !== 0) {
    throw new SyntaxError(
      `Cannot parse STUN message: first byte 0x${hex2(bytes[0]!)} has the top bits set`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = view.getUint16(0);
  const length = view.getUint16(2);
  if (view.getUint32(4) !== STUN_MAGIC_COOKIE) {
    throw new SyntaxError("Cannot parse STUN message: magic cookie missing");
  }
  if (length % 4 !== 0) {
    throw new SyntaxError(`Cannot parse STUN message: length ${length} is not a multiple of 4`);
  }
  if (20 + length > bytes.length) {
    throw new SyntaxError(
      `Cannot parse STUN message: length ${length} runs past the end (${bytes.length - 20} bytes)`,
    );
  }
  if (20 + length < bytes.length) {
    throw new SyntaxError(
      `Cannot parse STUN message: ${
        bytes.length - 20 - length
      } trailing bytes after length ${length}`,
    );
  }
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const cls = (((type >> 4) & 1) | ((type >> 7) & 2)) as StunClassValue;
  const attributes: StunAttribute[] = [];
  let integrityOffset = -1;
  let fingerprintOffset = -1;
  let offset = 20;
  const end = 20 + length;
  while (offset < end) {
    if (fingerprintOffset >= 0) {
      throw new SyntaxError("Cannot parse STUN message: attribute after FINGERPRINT");
    }
    if (offset + 4 > end) {
      throw new SyntaxError(
        `Cannot parse STUN message: truncated attribute header at offset ${offset}`,
      );
    }
    const attrType = view.getUint16(offset);
    const attrLen = view.getUint16(offset + 2);
    const padded = (attrLen + 3) & ~3;
    if (offset + 4 + padded > end) {
      throw new SyntaxError(
        `Cannot parse STUN message: attribute 0x${hex4(attrType)} length ${attrLen} ` +
          `runs past the end at offset ${offset}`,
      );
    }
    const value = bytes.subarray(offset + 4, offset + 4 + attrLen);
    if (attrType === StunAttr.Fingerprint) {
      if (attrLen !== 4) {
        throw new SyntaxError(`Cannot parse STUN message: FINGERPRINT length ${attrLen}`);
      }
      fingerprintOffset = offset;
      attributes.push({ type: attrType, value });
    } else if (integrityOffset < 0) {
      if (attrType === StunAttr.MessageIntegrity) {
        if (attrLen !== 20) {
          throw new SyntaxError(`Cannot parse STUN message: MESSAGE-INTEGRITY length ${attrLen}`);
        }
        integrityOffset = offset;
      }
      attributes.push({ type: attrType, value });
    }
    offset += 4 + padded;
  }
  return {
    method,
    class: cls,
    transactionId: bytes.subarray(8, 20),
    attributes,
    raw: bytes,
    integrityOffset,
    fingerprintOffset,
  };
}

/** What {@linkcode encodeStunMessage} takes. */
export interface StunMessageInit {
  /** Method (12 bits). */
  readonly method: number;
  /** Class 0-3. */
  readonly class: StunClassValue;
  /** The 12-byte transaction id. */
  readonly transactionId: Uint8Array;
  /** Attributes, in order; MESSAGE-INTEGRITY and FINGERPRINT are added by options. */
  readonly attributes: readonly StunAttribute[];
}

/** Options of {@linkcode encodeStunMessage}. */
export interface EncodeStunOptions {
  /** Add MESSAGE-INTEGRITY (HMAC-SHA1) with this key. */
  readonly integrityKey?: Uint8Array;
  /** Add FINGERPRINT. */
  readonly fingerprint?: boolean;
}

/**
 * Encode a STUN message, padding attributes and optionally adding MESSAGE-INTEGRITY and
 * FINGERPRINT.
 *
 * @param init The message.
 * @param options Integrity key and fingerprint switch.
 * @returns The message bytes.
 * @throws {RangeError} When the transaction id is not 12 bytes or the message is too long.
 *
 * @example Encoding with integrity and fingerprint
 * ```ts
 * import {
 *   encodeStunMessage, longTermKey, parseStunMessage, verifyFingerprint, verifyIntegrity,
 * } from "./stun_message.ts";
 * import { strictEqual } from "node:assert";
 *
 * const key = longTermKey("u", "r", "p");
 * const bytes = encodeStunMessage(
 *   { method: 1, class: 0, transactionId: new Uint8Array(12), attributes: [] },
 *   { integrityKey: key, fingerprint: true },
 * );
 * const message = parseStunMessage(bytes);
 * strictEqual(verifyIntegrity(message, key), true);
 * strictEqual(verifyFingerprint(message), true);
 * ```
 */
export function encodeStunMessage(
  init: StunMessageInit,
  options: EncodeStunOptions = {},
): Uint8Array {
  if (init.transactionId.length !== 12) {
    throw new RangeError(
      `Cannot encode STUN message: transaction id is ${init.transactionId.length} bytes, not 12`,
    );
  }
  let size = 20;
  for (const a of init.attributes) size += 4 + ((a.value.length + 3) & ~3);
  const withMi = options.integrityKey !== undefined;
  if (withMi) size += 24;
  if (options.fingerprint) size += 8;
  if (size - 20 > 0xffff) {
    throw new RangeError(`Cannot encode STUN message: length ${size - 20} exceeds 65535`);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  const m = init.method;
  const c = init.class;
  view.setUint16(
    0,
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 1) << 4) | ((c & 2) << 7),
  );
  view.setUint32(4, STUN_MAGIC_COOKIE);
  out.set(init.transactionId, 8);
  let offset = 20;
  for (const a of init.attributes) {
    view.setUint16(offset, a.type);
    view.setUint16(offset + 2, a.value.length);
    out.set(a.value, offset + 4);
    offset += 4 + ((a.value.length + 3) & ~3);
  }
  if (withMi) {
    view.setUint16(2, offset + 24 - 20);
    const mac = hmac(sha1, options.integrityKey!, out.subarray(0, offset));
    view.setUint16(offset, StunAttr.MessageIntegrity);
    view.setUint16(offset + 2, 20);
    out.set(mac, offset + 4);
    offset += 24;
  }
  view.setUint16(2, size - 20);
  if (options.fingerprint) {
    view.setUint16(offset, StunAttr.Fingerprint);
    view.setUint16(offset + 2, 4);
    view.setUint32(offset + 4, (crc32(out.subarray(0, offset)) ^ FINGERPRINT_XOR) >>> 0);
  }
  return out;
}

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
 * import { longTermKey } from "./stun_message.ts";
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
 * import { encodeStunMessage, parseStunMessage, verifyIntegrity } from "./stun_message.ts";
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
  const copy = message.raw.slice(0, at);
  new DataView(copy.buffer).setUint16(2, at + 24 - 20);
  const mac = hmac(sha1, key, copy);
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
 * import { encodeStunMessage, parseStunMessage, verifyFingerprint } from "./stun_message.ts";
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
  return ((crc32(message.raw.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0) === view.getUint32(at + 4);
}

let crcTable: Uint32Array | undefined;

/**
 * CRC-32 (IEEE 802.3), as FINGERPRINT uses.
 *
 * @param bytes The input.
 * @returns The unsigned CRC.
 *
 * @example Check value
 * ```ts
 * import { crc32 } from "./stun_message.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * Find the first attribute of a type.
 *
 * @param message The message.
 * @param type The attribute type.
 * @returns The value, or undefined.
 *
 * @example Looking up an attribute
 * ```ts
 * import { getAttribute } from "./stun_message.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(getAttribute({ attributes: [] }, 6), undefined);
 * ```
 */
export function getAttribute(
  message: Pick<StunMessage, "attributes">,
  type: number,
): Uint8Array | undefined {
  for (const a of message.attributes) if (a.type === type) return a.value;
  return undefined;
}

/**
 * Encode an XOR-*-ADDRESS value (XOR-MAPPED, XOR-RELAYED, XOR-PEER).
 *
 * @param address The address.
 * @param transactionId The message's transaction id (used for IPv6).
 * @returns The attribute value.
 *
 * @example IPv6 round trip
 * ```ts
 * import { decodeXorAddress, encodeXorAddress } from "./stun_message.ts";
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
 * Decode an XOR-*-ADDRESS value.
 *
 * @param value The attribute value.
 * @param transactionId The message's transaction id.
 * @returns The address.
 * @throws {SyntaxError} On a bad family or length.
 *
 * @example IPv4
 * ```ts
 * import { decodeXorAddress, encodeXorAddress } from "./stun_message.ts";
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
 * import { decodeErrorCode, encodeErrorCode } from "./stun_message.ts";
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
 * import { decodeErrorCode } from "./stun_message.ts";
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
 * import { u32 } from "./stun_message.ts";
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

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}
