// Copyright the ptkit authors. MIT license.

import {
  STUN_FINGERPRINT_XOR,
  STUN_MAGIC_COOKIE,
  StunAttr,
  type StunClassValue,
} from "./_constants.ts";
import { crc32 } from "./_integrity.ts";
import { hmacSha1 } from "./_hmac.ts";

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

/**
 * Tell whether a datagram looks like a STUN message (first two bits 0 and the magic cookie).
 *
 * @param bytes The datagram.
 * @returns True when it can be a STUN message.
 *
 * @example Detecting STUN
 * ```ts
 * import { isStunMessage } from "./_message.ts";
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
 * import { encodeStunMessage, parseStunMessage } from "./_message.ts";
 * import { StunAttr, StunMethod } from "./_constants.ts";
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
 * import { encodeStunMessage, parseStunMessage } from "./_message.ts";
 * import { longTermKey, verifyFingerprint, verifyIntegrity } from "./_integrity.ts";
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
    const mac = hmacSha1(options.integrityKey!, out.subarray(0, offset));
    view.setUint16(offset, StunAttr.MessageIntegrity);
    view.setUint16(offset + 2, 20);
    out.set(mac, offset + 4);
    offset += 24;
  }
  view.setUint16(2, size - 20);
  if (options.fingerprint) {
    view.setUint16(offset, StunAttr.Fingerprint);
    view.setUint16(offset + 2, 4);
    view.setUint32(offset + 4, (crc32(out.subarray(0, offset)) ^ STUN_FINGERPRINT_XOR) >>> 0);
  }
  return out;
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
 * import { getAttribute } from "./_message.ts";
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

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}
