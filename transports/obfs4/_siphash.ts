// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * SipHash-2-4 with 64-bit output, incremental so that a running hash can be
 * summed and then fed more data (as obfs4's hash DRBG does).
 *
 * @module
 */

// 64-bit words are kept as [hi, lo] pairs of unsigned 32-bit numbers.

function rounds(v: Uint32Array, n: number): void {
  let v0h = v[0]!, v0l = v[1]!, v1h = v[2]!, v1l = v[3]!;
  let v2h = v[4]!, v2l = v[5]!, v3h = v[6]!, v3l = v[7]!;
  let s: number, t: number;
  for (let i = 0; i < n; i++) {
    // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    s = v0l + v1l;
    v0h = (v0h + v1h + (s > 0xffffffff ? 1 : 0)) >>> 0;
    v0l = s >>> 0;
    t = (v1h << 13) | (v1l >>> 19);
    v1l = (((v1l << 13) | (v1h >>> 19)) ^ v0l) >>> 0;
    v1h = (t ^ v0h) >>> 0;
    t = v0h;
    v0h = v0l;
    v0l = t;
    // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
    s = v2l + v3l;
    v2h = (v2h + v3h + (s > 0xffffffff ? 1 : 0)) >>> 0;
    v2l = s >>> 0;
    t = (v3h << 16) | (v3l >>> 16);
    v3l = (((v3l << 16) | (v3h >>> 16)) ^ v2l) >>> 0;
    v3h = (t ^ v2h) >>> 0;
    // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
    s = v0l + v3l;
    v0h = (v0h + v3h + (s > 0xffffffff ? 1 : 0)) >>> 0;
    v0l = s >>> 0;
    t = (v3h << 21) | (v3l >>> 11);
    v3l = (((v3l << 21) | (v3h >>> 11)) ^ v0l) >>> 0;
    v3h = (t ^ v0h) >>> 0;
    // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    s = v2l + v1l;
    v2h = (v2h + v1h + (s > 0xffffffff ? 1 : 0)) >>> 0;
    v2l = s >>> 0;
    t = (v1h << 17) | (v1l >>> 15);
    v1l = (((v1l << 17) | (v1h >>> 15)) ^ v2l) >>> 0;
    v1h = (t ^ v2h) >>> 0;
    t = v2h;
    v2h = v2l;
    v2l = t;
  }
  v[0] = v0h;
  v[1] = v0l;
  v[2] = v1h;
  v[3] = v1l;
  v[4] = v2h;
  v[5] = v2l;
  v[6] = v3h;
  v[7] = v3l;
}

function readLE(bytes: Uint8Array, offset: number): [number, number] {
  const lo = bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) |
    (bytes[offset + 3]! << 24);
  const hi = bytes[offset + 4]! | (bytes[offset + 5]! << 8) | (bytes[offset + 6]! << 16) |
    (bytes[offset + 7]! << 24);
  return [hi >>> 0, lo >>> 0];
}

function compress(v: Uint32Array, mh: number, ml: number): void {
  v[6] = (v[6]! ^ mh) >>> 0;
  v[7] = (v[7]! ^ ml) >>> 0;
  rounds(v, 2);
  v[0] = (v[0]! ^ mh) >>> 0;
  v[1] = (v[1]! ^ ml) >>> 0;
}

/** Where a digest finishes a copy of a state: one for all, used within one call. */
const SCRATCH = new Uint32Array(8);

/**
 * An incremental SipHash-2-4 state with a 16-byte key.
 *
 * {@linkcode SipHash.digest} does not change the state, so more data can be
 * written afterwards: the result is then the hash of everything written.
 *
 * @example Hashing a message
 * ```ts
 * import { SipHash } from "./_siphash.ts";
 * import { strictEqual } from "node:assert";
 *
 * const key = Uint8Array.from({ length: 16 }, (_, i) => i);
 * const h = new SipHash(key);
 * h.update(new Uint8Array(0));
 * strictEqual(h.digest().length, 8);
 * ```
 */
export class SipHash {
  // The state and the unabsorbed tail share one buffer: every small array
  // of its own costs about 350 bytes outside the heap (its backing store),
  // and an obfs4 connection keeps two states on each side for its life.
  #v: Uint32Array;
  #tail: Uint8Array;
  #tailLength = 0;
  #length = 0;
  #outHi = 0;
  #outLo = 0;

  /**
   * Make a state keyed with `key`.
   *
   * @param key The 16-byte key.
   */
  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length !== 16) {
      throw new RangeError(`Cannot key SipHash: key must be 16 bytes, got ${key?.length}`);
    }
    const state = new ArrayBuffer(40);
    this.#v = new Uint32Array(state, 0, 8);
    this.#tail = new Uint8Array(state, 32, 8);
    const [k0h, k0l] = readLE(key, 0);
    const [k1h, k1l] = readLE(key, 8);
    const v = this.#v;
    v[0] = k0h ^ 0x736f6d65;
    v[1] = k0l ^ 0x70736575;
    v[2] = k1h ^ 0x646f7261;
    v[3] = k1l ^ 0x6e646f6d;
    v[4] = k0h ^ 0x6c796765;
    v[5] = k0l ^ 0x6e657261;
    v[6] = k1h ^ 0x74656462;
    v[7] = k1l ^ 0x79746573;
  }

  /**
   * Absorb more data.
   *
   * @param data The bytes to absorb.
   */
  update(data: Uint8Array): void {
    let i = 0;
    this.#length += data.length;
    if (this.#tailLength > 0) {
      while (this.#tailLength < 8 && i < data.length) this.#tail[this.#tailLength++] = data[i++]!;
      if (this.#tailLength < 8) return;
      const [mh, ml] = readLE(this.#tail, 0);
      compress(this.#v, mh, ml);
      this.#tailLength = 0;
    }
    for (; i + 8 <= data.length; i += 8) {
      const [mh, ml] = readLE(data, i);
      compress(this.#v, mh, ml);
    }
    while (i < data.length) this.#tail[this.#tailLength++] = data[i++]!;
  }

  /**
   * The hash of everything absorbed so far, as 8 bytes little-endian. The
   * state is left unchanged.
   *
   * @returns The 8-byte hash.
   */
  digest(): Uint8Array {
    const last = new Uint8Array(8);
    last.set(this.#tail.subarray(0, this.#tailLength));
    last[7] = this.#length & 0xff;
    const [mh, ml] = readLE(last, 0);
    this.#finish(mh, ml);
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, this.#outLo, true);
    view.setUint32(4, this.#outHi, true);
    return out;
  }

  #finish(mh: number, ml: number): void {
    const v = SCRATCH;
    v.set(this.#v);
    compress(v, mh, ml);
    v[5] = (v[5]! ^ 0xff) >>> 0;
    rounds(v, 4);
    this.#outHi = (v[0]! ^ v[2]! ^ v[4]! ^ v[6]!) >>> 0;
    this.#outLo = (v[1]! ^ v[3]! ^ v[5]! ^ v[7]!) >>> 0;
  }

  /**
   * Absorb one 8-byte block given as its little-endian 64-bit value split
   * into high and low 32-bit words, then return the new hash's high word
   * (its low word is {@linkcode SipHash.lastLow}). Only valid while the
   * absorbed length is a multiple of 8; avoids allocation for the DRBG.
   *
   * @param hi The block's high 32 bits.
   * @param lo The block's low 32 bits.
   * @returns The high 32 bits of the hash of everything absorbed.
   */
  absorbWordAndDigest(hi: number, lo: number): number {
    if (this.#tailLength !== 0) throw new RangeError("Cannot absorb a word: input is unaligned");
    compress(this.#v, hi, lo);
    this.#length += 8;
    this.#finish(((this.#length & 0xff) << 24) >>> 0, 0);
    return this.#outHi;
  }

  /** The low 32 bits of the hash {@linkcode SipHash.absorbWordAndDigest} last returned. */
  get lastLow(): number {
    return this.#outLo;
  }
}

/**
 * SipHash-2-4 of `data` under the 16-byte `key`, as 8 bytes little-endian.
 *
 * @example Hashing a message
 * ```ts
 * import { sipHash24 } from "./_siphash.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(sipHash24(new Uint8Array(16), new Uint8Array(3)).length, 8);
 * ```
 *
 * @param key The 16-byte key.
 * @param data The message.
 * @returns The 8-byte hash.
 */
export function sipHash24(key: Uint8Array, data: Uint8Array): Uint8Array {
  const h = new SipHash(key);
  h.update(data);
  return h.digest();
}
