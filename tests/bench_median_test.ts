// Copyright the ptkit authors. MIT license.
// The free-mode bench's figure is a median with a distribution-free 95%
// confidence interval; its ranks are checked against the binomial tables.

import { deepStrictEqual as assertEquals } from "node:assert";
import { medianInterval } from "../bench/free_bench.ts";

const ranks = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

Deno.test("medianInterval gives the binomial ranks of a 95% interval for the median", () => {
  // P(Binomial(n, 1/2) < k) <= 0.025 for the largest k: n = 6 -> 1, 16 -> 4, 48 -> 17.
  assertEquals(medianInterval(ranks(6)), [1, 6]);
  assertEquals(medianInterval(ranks(16)), [4, 13]);
  assertEquals(medianInterval(ranks(48)), [17, 32]);
  assertEquals(medianInterval(ranks(100)), [40, 61]);
});

Deno.test("medianInterval gives no interval for five values or fewer", () => {
  for (const n of [0, 1, 5]) assertEquals(medianInterval(ranks(n)), null);
});
