// Copyright the ptkit authors. MIT license.

// process_open_fds lists /proc/self/fd on the main thread: a costly listing
// (a bridge with many descriptors) is not repeated for every scrape.

import { deepStrictEqual, strictEqual } from "node:assert";
import { atMostOnePercent } from "../net/_process_fds.ts";

Deno.test("atMostOnePercent repeats a costly read only after 100 times its cost, a cheap one every time", () => {
  let clock = 0;
  let reads = 0;
  let cost = 12.6; // ms: /proc/self/fd with 15,000 descriptors
  const read = atMostOnePercent(() => {
    reads++;
    clock += cost;
    return reads;
  }, () => clock);
  // A thousand scrapes, 1 ms apart: one listing (the next is due 1,260 ms
  // after the first began).
  const values = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    values.add(read());
    clock += 1;
  }
  strictEqual(reads, 1);
  deepStrictEqual([...values], [1]);
  clock = 1260;
  strictEqual(read(), 2);
  // A cheap listing is read fresh each time.
  cost = 0.05;
  clock += 2000;
  for (let i = 0; i < 10; i++) read();
  strictEqual(reads, 12);
});
