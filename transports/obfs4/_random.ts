// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/** Random bytes: fills its argument. */
export type RandomFill = (bytes: Uint8Array) => void;

/**
 * The system CSPRNG as a {@linkcode RandomFill} (any length).
 *
 * @example Filling a buffer
 * ```ts
 * import { systemRandom } from "./_random.ts";
 * import { strictEqual } from "node:assert";
 *
 * const bytes = new Uint8Array(100_000);
 * systemRandom(bytes);
 * strictEqual(bytes.every((b) => b === 0), false);
 * ```
 *
 * @param bytes The buffer to fill.
 */
export function systemRandom(bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(bytes.length, i + 65536)));
  }
}

/**
 * A uniformly random integer in [min, max] (both included), as Go's
 * `rand.Intn(max + 1 - min) + min`: rejection sampling, no modulo bias.
 *
 * @example A frame length in [16, 1446]
 * ```ts
 * import { randomInt, systemRandom } from "./_random.ts";
 * import { ok } from "node:assert";
 *
 * const n = randomInt(systemRandom, 16, 1446);
 * ok(Number.isInteger(n) && n >= 16 && n <= 1446);
 * ```
 *
 * @param random The random byte source.
 * @param min The smallest value.
 * @param max The largest value; `max - min` below 2^32.
 * @returns The value.
 */
export function randomInt(random: RandomFill, min: number, max: number): number {
  const range = max - min + 1;
  if (!Number.isInteger(range) || range < 1 || range > 2 ** 32) {
    throw new RangeError(`Cannot draw a random integer: bad range [${min}, ${max}]`);
  }
  const limit = 2 ** 32 - (2 ** 32 % range);
  const word = new Uint32Array(1);
  const bytes = new Uint8Array(word.buffer);
  for (;;) {
    random(bytes);
    if (word[0]! < limit) return min + (word[0]! % range);
  }
}

/**
 * `n` random bytes.
 *
 * @example Padding
 * ```ts
 * import { randomBytes, systemRandom } from "./_random.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(randomBytes(systemRandom, 8128).length, 8128);
 * ```
 *
 * @param random The random byte source.
 * @param n How many.
 * @returns The bytes.
 */
export function randomBytes(random: RandomFill, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) random(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}
