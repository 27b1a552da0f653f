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
const ZERO_SEED = new Uint8Array(24);
/** No table: until the next sample builds one. */
const NO_TABLE: readonly number[] = [];
// Set while WeightedDist.fresh constructs (the constructor then takes no seed).
let making = false;
// drawTables's random words (it runs synchronously, one call at a time).
const WORDS = new Uint32Array(320);
const WORD_BYTES = new Uint8Array(WORDS.buffer);
// drawTables's shuffle scratch, for ranges up to MAX_SCRATCH values.
const MAX_SCRATCH = 4096;
let shuffle = new Int32Array(0);
const touched: number[] = [];
function scratch(count: number): Int32Array {
  if (shuffle.length < count) shuffle = new Int32Array(count).fill(-1);
  return shuffle;
}

/**
 * obfs4's weighted distribution over the integers [min, max]: a seed picks up
 * to 100 values and their weights (as obfs4proxy does with Go's `math/rand`
 * over {@linkcode HashDrbg}); samples are drawn with a CSPRNG through Vose
 * alias tables. {@linkcode WeightedDist.fresh} gives the table of a fresh
 * secret seed without the DRBG.
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
  // Set by fresh(): the table is drawn from it at the first sample.
  #fresh: ((bytes: Uint8Array) => void) | undefined;
  #values: readonly number[] = [];
  #prob: readonly number[] = [];
  #alias: readonly number[] = [];

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
    if (!making) this.reset(seed);
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
    this.#fresh = undefined;
    // The old tables are not kept until the next sample builds the new
    // ones: an idle client connection, whose own table the server's seed
    // replaced, held it (about 1.5 KiB) for its life.
    this.#values = this.#prob = this.#alias = NO_TABLE;
  }

  /**
   * The distribution of a fresh secret seed (an obfs4 client's own, until
   * the server's comes): the same law over tables as a random seed's through
   * the DRBG and Go's `Perm`, `Intn` and `Float64` (an ordered sample of 1 to
   * 100 distinct values, uniform, and a uniform weight each), drawn straight
   * from `random` at the first sample, without the 1,449 SipHash steps of
   * `Perm` (0.4 ms, on every client connection's first write).
   *
   * @example A client's own table
   * ```ts
   * import { WeightedDist } from "./_weighted_dist.ts";
   * import { ok } from "node:assert";
   *
   * const dist = WeightedDist.fresh((b) => crypto.getRandomValues(b), 0, 1448);
   * const n = dist.sample();
   * ok(n >= 0 && n <= 1448);
   * ```
   *
   * @param random Fills its argument with random bytes.
   * @param min The smallest value.
   * @param max The largest value (> min).
   * @returns The distribution.
   */
  static fresh(random: (bytes: Uint8Array) => void, min: number, max: number): WeightedDist {
    // No seed to check or copy: the table comes from `random`.
    making = true;
    let dist: WeightedDist;
    try {
      dist = new WeightedDist(ZERO_SEED, min, max);
    } finally {
      making = false;
    }
    dist.#fresh = random;
    return dist;
  }

  #build(seed: Uint8Array): void {
    const tables = cachedTables(seed, this.#min, this.#max);
    this.#values = tables.values;
    this.#prob = tables.prob;
    this.#alias = tables.alias;
  }

  /** @returns One value drawn from the distribution. */
  sample(): number {
    if (this.#seed !== undefined) {
      this.#build(this.#seed);
      this.#seed = undefined;
    } else if (this.#fresh !== undefined) {
      const tables = drawTables(this.#fresh, this.#min, this.#max);
      this.#values = tables.values;
      this.#prob = tables.prob;
      this.#alias = tables.alias;
      this.#fresh = undefined;
    }
    const n = this.#values.length;
    let i = Math.floor((uint32() / 2 ** 32) * n);
    if (uint32() / 2 ** 32 >= this.#prob[i]!) i = this.#alias[i]!;
    return this.#values[i]!;
  }
}

// Random numbers for sampling, drawn from the CSPRNG 256 at a time and
// shared by every distribution: each value is used once, so a sample is as
// random as with a pool of its own, and an idle client connection (two
// distributions) no longer keeps 2 KiB of them.
const randomPool = new Uint32Array(256);
let randomUsed = randomPool.length;

function uint32(): number {
  if (randomUsed === randomPool.length) {
    crypto.getRandomValues(randomPool);
    randomUsed = 0;
  }
  return randomPool[randomUsed++]!;
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

/**
 * The values {@linkcode WeightedDist.fresh}'s table holds when `random`
 * gives the same bytes.
 *
 * @example The values of a fresh table
 * ```ts
 * import { freshDistributionValues } from "./_weighted_dist.ts";
 * import { ok } from "node:assert";
 *
 * const values = freshDistributionValues((b) => crypto.getRandomValues(b), 0, 1448);
 * ok(values.length >= 1 && values.length <= 100);
 * ```
 *
 * @param random Fills its argument with random bytes.
 * @param min The smallest value.
 * @param max The largest value (> min).
 * @returns The values, in the order they were drawn.
 */
export function freshDistributionValues(
  random: (bytes: Uint8Array) => void,
  min: number,
  max: number,
): readonly number[] {
  checkRange(min, max);
  return drawTables(random, min, max).values;
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
  return aliasTables(values, weights);
}

/**
 * What {@linkcode build} gives for a uniformly random seed, in law: Go's
 * `Perm` is a uniform permutation, so its first `n` entries are a uniform
 * ordered sample of `n` distinct values; `n` is uniform in [1, min(count,
 * 100)] and each weight uniform in [0, 1), all independent.
 */
function drawTables(random: (bytes: Uint8Array) => void, min: number, max: number): Tables {
  const count = max + 1 - min;
  let used = WORDS.length;
  const uint32 = (): number => {
    if (used === WORDS.length) {
      random(WORD_BYTES);
      used = 0;
    }
    return WORDS[used++]!;
  };
  // Uniform in [0, k), k <= 2^32: rejection of the top partial range.
  const below = (k: number): number => {
    const limit = 2 ** 32 - (2 ** 32 % k);
    for (;;) {
      const v = uint32();
      if (v < limit) return v % k;
    }
  };
  const n = below(Math.min(Math.max(count, 1), MAX_VALUES)) + 1;
  // A partial Fisher-Yates shuffle: its first n places. Moved entries are
  // kept in a scratch array (-1: untouched, the identity), put back after.
  const perm = count <= MAX_SCRATCH ? scratch(count) : undefined;
  const moved = perm === undefined ? new Map<number, number>() : undefined;
  const get = (k: number) => perm === undefined ? moved!.get(k) ?? k : perm[k]! < 0 ? k : perm[k]!;
  const values: number[] = [];
  for (let i = 0; i < n; i++) {
    const j = i + below(count - i);
    const at = get(j);
    const here = get(i);
    if (perm === undefined) moved!.set(j, here);
    else {
      perm[j] = here;
      touched.push(j);
    }
    values.push(at + min);
  }
  for (const k of touched) perm![k] = -1;
  touched.length = 0;
  // 53 random bits each, as a double in [0, 1).
  const weights = values.map(() => ((uint32() >>> 11) * 2 ** 32 + uint32()) / 2 ** 53);
  return aliasTables(values, weights);
}

function aliasTables(values: number[], weights: number[]): Tables {
  const n = values.length;
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
