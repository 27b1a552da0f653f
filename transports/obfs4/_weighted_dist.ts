// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { GoRand } from "./_go_rand.ts";
import { HashDrbg } from "./_hash_drbg.ts";

const MAX_VALUES = 100;
// Tables by seed and range: every connection to a bridge gets the same
// server seed, so its client would rebuild the same table (0.4 ms) each time.
const CACHE_SIZE = 32;
interface Tables {
  readonly values: readonly number[];
  readonly prob: readonly number[];
  readonly alias: readonly number[];
}
const cache = new Map<string, Tables>();

/**
 * obfs4's weighted distribution over the integers [min, max]: a seed picks up
 * to 100 values and their weights (as obfs4proxy does with Go's `math/rand`
 * over {@linkcode HashDrbg}); samples are drawn with a CSPRNG through Vose
 * alias tables.
 *
 * @example Sampling packet lengths
 * ```ts
 * import { WeightedDist } from "./_weighted_dist.ts";
 * import { ok } from "node:assert";
 *
 * const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
 * const n = dist.sample();
 * ok(n >= 0 && n <= 1448);
 * ```
 */
export class WeightedDist {
  #min: number;
  #max: number;
  #seed: Uint8Array | undefined;
  #values: readonly number[] = [];
  #prob: readonly number[] = [];
  #alias: readonly number[] = [];
  #random = new Uint32Array(256);
  #randomUsed = 256;

  /**
   * Build a distribution.
   *
   * @param seed The 24-byte DRBG seed.
   * @param min The smallest value.
   * @param max The largest value (> min).
   */
  constructor(seed: Uint8Array, min: number, max: number) {
    checkRange(min, max);
    this.#min = min;
    this.#max = max;
    this.reset(seed);
  }

  /**
   * Rebuild the tables from a new seed (on the next sample: a client's first
   * seed is usually replaced by the server's before it is used).
   *
   * @param seed The 24-byte DRBG seed.
   */
  reset(seed: Uint8Array): void {
    new HashDrbg(seed); // Checks the seed now.
    this.#seed = seed.slice();
  }

  #build(seed: Uint8Array): void {
    const tables = cachedTables(seed, this.#min, this.#max);
    this.#values = tables.values;
    this.#prob = tables.prob;
    this.#alias = tables.alias;
  }

  #uint32(): number {
    if (this.#randomUsed === this.#random.length) {
      crypto.getRandomValues(this.#random);
      this.#randomUsed = 0;
    }
    return this.#random[this.#randomUsed++]!;
  }

  /** @returns One value drawn from the distribution. */
  sample(): number {
    if (this.#seed !== undefined) {
      this.#build(this.#seed);
      this.#seed = undefined;
    }
    const n = this.#values.length;
    let i = Math.floor((this.#uint32() / 2 ** 32) * n);
    if (this.#uint32() / 2 ** 32 >= this.#prob[i]!) i = this.#alias[i]!;
    return this.#values[i]!;
  }
}

/**
 * The values a seed's distribution over [min, max] can yield (the same table
 * {@linkcode WeightedDist} samples from).
 *
 * @example The values of a seed
 * ```ts
 * import { distributionValues } from "./_weighted_dist.ts";
 * import { ok } from "node:assert";
 *
 * const values = distributionValues(new Uint8Array(24), 0, 1448);
 * ok(values.length >= 1 && values.length <= 100);
 * ```
 *
 * @param seed The 24-byte DRBG seed.
 * @param min The smallest value.
 * @param max The largest value (> min).
 * @returns The values, in the order the seed picked them.
 */
export function distributionValues(
  seed: Uint8Array,
  min: number,
  max: number,
): readonly number[] {
  checkRange(min, max);
  new HashDrbg(seed); // Checks the seed.
  return cachedTables(seed, min, max).values;
}

function checkRange(min: number, max: number): void {
  if (!(max > min)) throw new RangeError(`Cannot build distribution: bad range [${min}, ${max}]`);
}

function cachedTables(seed: Uint8Array, min: number, max: number): Tables {
  const key = `${min},${max},${seed.join(",")}`;
  let tables = cache.get(key);
  if (tables === undefined) {
    tables = build(seed, min, max);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(key, tables);
  }
  return tables;
}

function build(seed: Uint8Array, min: number, max: number): Tables {
  const rng = new GoRand(new HashDrbg(seed));
  const count = max + 1 - min;
  const perm = rng.perm(count);
  const n = rng.intn(Math.min(Math.max(count, 1), MAX_VALUES)) + 1;
  const values = perm.slice(0, n).map((v) => v + min);
  const weights = values.map(() => rng.float64());
  // Vose's alias method.
  const sum = weights.reduce((a, b) => a + b, 0);
  const scaled = weights.map((w) => (w * n) / sum);
  const prob = new Array<number>(n).fill(1);
  const alias = new Array<number>(n).fill(0);
  const small: number[] = [];
  const large: number[] = [];
  scaled.forEach((p, i) => (p < 1 ? small : large).push(i));
  while (small.length > 0 && large.length > 0) {
    const l = small.pop()!;
    const g = large.pop()!;
    prob[l] = scaled[l]!;
    alias[l] = g;
    scaled[g] = scaled[g]! + scaled[l]! - 1;
    (scaled[g]! < 1 ? small : large).push(g);
  }
  return { values, prob, alias };
}
