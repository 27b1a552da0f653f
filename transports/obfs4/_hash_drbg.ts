// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { SipHash } from "./_siphash.ts";

/** The length of a {@linkcode HashDrbg} seed: a 16-byte SipHash key and an 8-byte IV. */
export const DRBG_SEED_LENGTH = 24;

/**
 * obfs4's hash DRBG: SipHash-2-4 in output-feedback mode over one running
 * hash. Block n is the SipHash of IV || block 1 || ... || block n-1.
 *
 * @example Drawing blocks
 * ```ts
 * import { HashDrbg } from "./_hash_drbg.ts";
 * import { strictEqual } from "node:assert";
 *
 * const drbg = new HashDrbg(Uint8Array.from({ length: 24 }, (_, i) => i));
 * strictEqual(drbg.nextMask(), 0x28b5);
 * ```
 */
export class HashDrbg {
  #sip: SipHash;
  #hi: number;
  #lo: number;

  /**
   * Seed a DRBG.
   *
   * @param seed 24 bytes: the SipHash key (16) then the IV (8).
   * @throws {TypeError} When `seed` is not a Uint8Array.
   * @throws {RangeError} When it is not 24 bytes long.
   */
  constructor(seed: Uint8Array) {
    if (!(seed instanceof Uint8Array)) {
      // A string's or an array's length would have been named as bytes.
      const type = Array.isArray(seed) ? "an array" : seed === null ? "null" : typeof seed;
      throw new TypeError(`Cannot seed hash DRBG: seed must be a Uint8Array, got ${type}`);
    }
    if (seed.length !== DRBG_SEED_LENGTH) {
      throw new RangeError(
        `Cannot seed hash DRBG: seed must be ${DRBG_SEED_LENGTH} bytes, got ${seed.length}`,
      );
    }
    this.#sip = new SipHash(seed.subarray(0, 16));
    const view = new DataView(seed.buffer, seed.byteOffset + 16, 8);
    this.#lo = view.getUint32(0, true);
    this.#hi = view.getUint32(4, true);
  }

  /**
   * The next 8-byte block.
   *
   * @returns A fresh 8-byte array.
   */
  nextBlock(): Uint8Array {
    this.#next();
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, this.#lo, true);
    view.setUint32(4, this.#hi, true);
    return out;
  }

  #next(): void {
    this.#hi = this.#sip.absorbWordAndDigest(this.#hi, this.#lo);
    this.#lo = this.#sip.lastLow;
  }

  /**
   * The next frame length mask: the first two bytes of the next block, big-endian.
   *
   * @returns A 16-bit mask.
   */
  nextMask(): number {
    this.#next();
    // Bytes 0 and 1 of the little-endian block.
    return ((this.#lo & 0xff) << 8) | ((this.#lo >>> 8) & 0xff);
  }

  /**
   * The next block as a non-negative 63-bit integer (big-endian, top bit
   * cleared), as Go's `rand.Source.Int63`.
   *
   * @returns A bigint in [0, 2^63).
   */
  int63(): bigint {
    const block = this.nextBlock();
    block[0]! &= 0x7f;
    return new DataView(block.buffer).getBigUint64(0, false);
  }

  /**
   * The next block as {@linkcode HashDrbg.int63} would give it, as a number
   * (rounded to nearest, ties to even, like `Number` of that bigint).
   *
   * @returns A number in [0, 2^63].
   */
  int63Number(): number {
    this.#next();
    // Big-endian reading of the little-endian words: byte-swap each.
    return (swap32(this.#lo) & 0x7fffffff) * 2 ** 32 + swap32(this.#hi);
  }

  /**
   * The top 31 bits of what {@linkcode HashDrbg.int63} would give next.
   *
   * @returns A number in [0, 2^31).
   */
  int63Top31(): number {
    this.#next();
    return swap32(this.#lo) & 0x7fffffff;
  }
}

function swap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}
