// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/** A source of non-negative 63-bit integers, as Go's `rand.Source`. */
export interface Int63Source {
  /** The next value in [0, 2^63). */
  int63(): bigint;
  /** The next value in [0, 2^63) as a (rounded) number; faster when given. */
  int63Number?(): number;
  /** The top 31 bits of the next value in [0, 2^63); faster when given. */
  int63Top31?(): number;
}

/**
 * The parts of Go's `math/rand` (v1) `Rand` that obfs4 uses, drawing from an
 * {@linkcode Int63Source}, so that tables built from a seed match obfs4proxy's.
 *
 * @example Permuting with a fixed source
 * ```ts
 * import { GoRand } from "./_go_rand.ts";
 * import { HashDrbg } from "./_hash_drbg.ts";
 * import { strictEqual } from "node:assert";
 *
 * const rng = new GoRand(new HashDrbg(new Uint8Array(24)));
 * strictEqual(rng.perm(5).toSorted().join(), "0,1,2,3,4");
 * ```
 */
export class GoRand {
  #src: Int63Source;

  /**
   * Wrap a source.
   *
   * @param src Where the randomness comes from.
   */
  constructor(src: Int63Source) {
    this.#src = src;
  }

  /** @returns A value in [0, 2^31), as Go's `Int31`. */
  int31(): number {
    const src = this.#src;
    return src.int63Top31 ? src.int63Top31() : Number(src.int63() >> 32n);
  }

  /**
   * A value in [0, n), as Go's `Intn` for n < 2^31.
   *
   * @param n The bound, in [1, 2^31).
   * @returns A value in [0, n).
   */
  intn(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x7fffffff) {
      throw new RangeError(`Cannot draw a random integer: invalid bound ${n}`);
    }
    if ((n & (n - 1)) === 0) return this.int31() & (n - 1);
    const max = 0x7fffffff - (0x80000000 % n);
    let v = this.int31();
    while (v > max) v = this.int31();
    return v % n;
  }

  /** @returns A value in [0, 1), as Go's `Float64`. */
  float64(): number {
    for (;;) {
      const src = this.#src;
      const f = (src.int63Number ? src.int63Number() : Number(src.int63())) / 2 ** 63;
      if (f !== 1) return f;
    }
  }

  /**
   * A permutation of [0, n), as Go's `Perm`.
   *
   * @param n The size.
   * @returns The permutation.
   */
  perm(n: number): number[] {
    const m = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) {
      const j = this.intn(i + 1);
      m[i] = m[j]!;
      m[j] = i;
    }
    return m;
  }
}
