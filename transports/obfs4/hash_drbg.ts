// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { SipHash } from "./siphash.ts";

/** The length of a {@linkcode HashDrbg} seed: a 16-byte SipHash key and an 8-byte IV. */
export const DRBG_SEED_LENGTH = 24;

/**
 * obfs4's hash DRBG: SipHash-2-4 in output-feedback mode over one running
 * hash. Block n is the SipHash of IV || block 1 || ... || block n-1.
 *
 * @example Drawing blocks
 * ```ts
 * import { HashDrbg } from "./hash_drbg.ts";
 * import { strictEqual } from "node:assert";
 *
 * const drbg = new HashDrbg(Uint8Array.from({ length: 24 }, (_, i) => i));
 * strictEqual(drbg.nextMask(), 0x28b5);
 * ```
 */
export class HashDrbg {
  #sip: SipHash;
  #ofb: Uint8Array;

  /**
   * Seed a DRBG.
   *
   * @param seed 24 bytes: the SipHash key (16) then the IV (8).
   */
  constructor(seed: Uint8Array) {
    if (!(seed instanceof Uint8Array) || seed.length !== DRBG_SEED_LENGTH) {
      throw new RangeError(
        `Cannot seed hash DRBG: seed must be ${DRBG_SEED_LENGTH} bytes, got ${seed?.length}`,
      );
    }
    this.#sip = new SipHash(seed.subarray(0, 16));
    this.#ofb = seed.slice(16, 24);
  }

  /**
   * The next 8-byte block.
   *
   * @returns A fresh 8-byte array.
   */
  nextBlock(): Uint8Array {
    this.#sip.update(this.#ofb);
    this.#ofb = this.#sip.digest();
    return this.#ofb.slice();
  }

  /**
   * The next frame length mask: the first two bytes of the next block, big-endian.
   *
   * @returns A 16-bit mask.
   */
  nextMask(): number {
    const block = this.nextBlock();
    return (block[0]! << 8) | block[1]!;
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
}
