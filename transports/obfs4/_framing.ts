// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { HashDrbg } from "./_hash_drbg.ts";
import { type RandomFill, randomInt, systemRandom } from "./_random.ts";
import type { CryptoBackend } from "../crypto_backend.ts";

/** The largest frame on the wire. */
export const MAX_SEGMENT_LENGTH = 1448;
/** Bytes a frame adds: the 2-byte length and the 16-byte tag. */
export const FRAME_OVERHEAD = 18;
/** The largest frame payload. */
export const MAX_FRAME_PAYLOAD = MAX_SEGMENT_LENGTH - FRAME_OVERHEAD;
/** The length of one direction's key material: key, nonce prefix, DRBG seed. */
export const FRAME_KEY_LENGTH = 72;

const TAG_LENGTH = 16;
/** The shortest and longest secretbox a frame carries. */
const MIN_BOX_LENGTH = TAG_LENGTH;
const MAX_BOX_LENGTH = MAX_SEGMENT_LENGTH - 2;

class Nonce {
  bytes: Uint8Array;
  #view: DataView;
  // The 64-bit counter as two 32-bit halves (no bigint per frame).
  #high = 0;
  #low = 1;

  /** A nonce laid out in `bytes` (24 bytes), starting with `prefix` (16). */
  constructor(bytes: Uint8Array, prefix: Uint8Array) {
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, 24);
    bytes.set(prefix);
  }

  next(): Uint8Array {
    if (this.#high > 0xffffffff) throw new RangeError("Cannot use frame nonce: counter wrapped");
    this.#view.setUint32(16, this.#high, false);
    this.#view.setUint32(20, this.#low, false);
    if (this.#low === 0xffffffff) {
      this.#low = 0;
      this.#high++;
    } else {
      this.#low++;
    }
    return this.bytes;
  }
}

/**
 * A codec's own copy of its secretbox key and its nonce, in one buffer:
 * every small array of its own costs about 350 bytes outside the heap (its
 * backing store), and an obfs4 connection keeps two codecs on each side for
 * its life.
 */
function codecKeys(keys: Uint8Array): [key: Uint8Array, nonce: Nonce] {
  const own = new Uint8Array(56);
  own.set(keys.subarray(0, 32));
  return [own.subarray(0, 32), new Nonce(own.subarray(32), keys.subarray(32, 48))];
}

function checkKeys(keys: Uint8Array): void {
  if (!(keys instanceof Uint8Array) || keys.length !== FRAME_KEY_LENGTH) {
    throw new RangeError(`Cannot make frame codec: keys must be 72 bytes, got ${keys?.length}`);
  }
}

/**
 * Seals obfs4 frames: 2-byte masked length, then a secretbox.
 *
 * @example Sealing a frame
 * ```ts
 * import { FrameEncoder } from "./_framing.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { strictEqual } from "node:assert";
 *
 * const encoder = new FrameEncoder(new Uint8Array(72), await loadWasmCrypto());
 * strictEqual(encoder.encode(new Uint8Array(10)).length, 28);
 * ```
 */
export class FrameEncoder {
  #key: Uint8Array;
  #nonce: Nonce;
  #drbg: HashDrbg;
  #crypto: CryptoBackend;

  /**
   * Make an encoder.
   *
   * @param keys 72 bytes: secretbox key, nonce prefix, length-mask DRBG seed.
   * @param crypto The crypto backend.
   */
  constructor(keys: Uint8Array, crypto: CryptoBackend) {
    checkKeys(keys);
    [this.#key, this.#nonce] = codecKeys(keys);
    this.#drbg = new HashDrbg(keys.slice(48, 72));
    this.#crypto = crypto;
  }

  /**
   * Seal one frame.
   *
   * @param payload At most {@linkcode MAX_FRAME_PAYLOAD} bytes.
   * @returns The frame's wire bytes.
   */
  encode(payload: Uint8Array): Uint8Array {
    const out = new Uint8Array(payload.length + FRAME_OVERHEAD);
    this.encodeInto(payload, out, 0);
    return out;
  }

  /**
   * Seal one frame into `dest` at `offset`.
   *
   * @param payload At most {@linkcode MAX_FRAME_PAYLOAD} bytes.
   * @param dest Where the frame goes; needs `payload.length + 18` bytes of room.
   * @param offset Where in `dest` the frame starts.
   * @returns The frame's length.
   */
  encodeInto(payload: Uint8Array, dest: Uint8Array, offset: number): number {
    if (payload.length > MAX_FRAME_PAYLOAD) {
      throw new RangeError(`Cannot encode frame: payload of ${payload.length} bytes is too long`);
    }
    const sealed = payload.length + TAG_LENGTH;
    const start = offset + 2;
    this.#crypto.secretboxSeal(
      dest.subarray(start, start + sealed),
      payload,
      this.#nonce.next(),
      this.#key,
    );
    const length = sealed ^ this.#drbg.nextMask();
    dest[offset] = length >> 8;
    dest[offset + 1] = length & 0xff;
    return 2 + sealed;
  }
}

/**
 * Opens obfs4 frames from a byte stream.
 *
 * A frame whose de-masked length is outside [16, 1446] is not refused at
 * once: as obfs4proxy does (the countermeasure to length-field probing in
 * Albrecht, Paterson and Watson's attacks on SSH), the decoder takes a
 * random valid length, waits for that many bytes, and only then fails, so
 * a tampered length and a tampered box look the same on the wire.
 *
 * @example Opening what an encoder sealed
 * ```ts
 * import { FrameDecoder, FrameEncoder } from "./_framing.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const box = await loadWasmCrypto();
 * const wire = new FrameEncoder(new Uint8Array(72), box).encode(new Uint8Array([7]));
 * const decoder = new FrameDecoder(new Uint8Array(72), box);
 * deepStrictEqual(decoder.decode(wire, 0), { payload: new Uint8Array([7]), consumed: 19 });
 * ```
 */
export class FrameDecoder {
  #key: Uint8Array;
  #nonce: Nonce;
  #drbg: HashDrbg;
  #crypto: CryptoBackend;
  #random: RandomFill;
  #pending = -1;
  #badLength = false;

  /**
   * Make a decoder.
   *
   * @param keys 72 bytes: secretbox key, nonce prefix, length-mask DRBG seed.
   * @param crypto The crypto backend.
   * @param random Draws the stand-in length of a bad frame. Defaults to the
   * system CSPRNG.
   */
  constructor(keys: Uint8Array, crypto: CryptoBackend, random: RandomFill = systemRandom) {
    checkKeys(keys);
    [this.#key, this.#nonce] = codecKeys(keys);
    this.#drbg = new HashDrbg(keys.slice(48, 72));
    this.#crypto = crypto;
    this.#random = random;
  }

  /**
   * Open the frame at `offset` of `buffer` if it is complete.
   *
   * @param buffer Received bytes.
   * @param offset Where the next frame starts.
   * @returns The payload and how many bytes the frame took, or `undefined`
   * when more bytes are needed. Throws a `SyntaxError` for a bad frame (for
   * a bad length, once a random 16 to 1446 bytes followed it).
   */
  decode(
    buffer: Uint8Array,
    offset: number,
  ): { payload: Uint8Array; consumed: number } | undefined {
    const length = this.#frameLength(buffer, offset);
    if (length < 0) return undefined;
    const payload = new Uint8Array(length - TAG_LENGTH);
    this.#open(buffer, offset, length, payload, 0);
    return { payload, consumed: 2 + length };
  }

  /**
   * Open the frame at `offset` of `buffer` into `dest` at `destOffset` if
   * the frame is complete.
   *
   * @param buffer Received bytes.
   * @param offset Where the next frame starts.
   * @param dest Where the payload goes; needs up to 1430 bytes of room.
   * @param destOffset Where in `dest` the payload starts.
   * @returns How many bytes the frame took (its payload is that minus 18),
   * or 0 when more bytes are needed. Throws a `SyntaxError` for a bad frame
   * (for a bad length, once a random 16 to 1446 bytes followed it).
   */
  decodeInto(buffer: Uint8Array, offset: number, dest: Uint8Array, destOffset: number): number {
    const length = this.#frameLength(buffer, offset);
    if (length < 0) return 0;
    this.#open(buffer, offset, length, dest, destOffset);
    return 2 + length;
  }

  #frameLength(buffer: Uint8Array, offset: number): number {
    const available = buffer.length - offset;
    if (this.#pending < 0) {
      if (available < 2) return -1;
      let length = ((buffer[offset]! << 8) | buffer[offset + 1]!) ^ this.#drbg.nextMask();
      if (length < MIN_BOX_LENGTH || length > MAX_BOX_LENGTH) {
        this.#badLength = true;
        length = randomInt(this.#random, MIN_BOX_LENGTH, MAX_BOX_LENGTH);
      }
      this.#pending = length;
    }
    if (available < 2 + this.#pending) return -1;
    if (this.#badLength) throw new SyntaxError("Cannot decode obfs4 frame: invalid length");
    return this.#pending;
  }

  #open(
    buffer: Uint8Array,
    offset: number,
    length: number,
    dest: Uint8Array,
    destOffset: number,
  ): void {
    const opened = this.#crypto.secretboxOpen(
      dest.subarray(destOffset, destOffset + length - TAG_LENGTH),
      buffer.subarray(offset + 2, offset + 2 + length),
      this.#nonce.next(),
      this.#key,
    );
    if (!opened) throw new SyntaxError("Cannot decode obfs4 frame: bad tag");
    this.#pending = -1;
  }
}
