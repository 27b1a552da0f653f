// Copyright the ptkit authors. MIT license.

// The obfs4 server's replay filter, on an injected clock (its `now`
// argument): a MAC is remembered for exactly three hours, at most 102,400
// MACs are kept, and the oldest go first (lyrebird's common/replayfilter).

import { strictEqual } from "node:assert";
import { ReplayFilter } from "../transports/_replay_filter.ts";

const HOUR = 3_600_000;
const TTL = 3 * HOUR;
const CAP = 102_400;
const T = 1_700_000_000_000;

/** A distinct 16-byte MAC for each `n`. */
function mac(n: number): Uint8Array {
  const bytes = new Uint8Array(16);
  new DataView(bytes.buffer).setUint32(0, n);
  bytes[15] = 0xa5;
  return bytes;
}

Deno.test("ReplayFilter remembers a MAC for three hours, then forgets it", () => {
  const filter = new ReplayFilter();
  strictEqual(filter.testAndSet(T, mac(1)), false);
  strictEqual(filter.testAndSet(T + 1, mac(1)), true);
  strictEqual(filter.testAndSet(T + TTL - 1, mac(1)), true);
  // A replay does not extend how long the MAC is remembered.
  strictEqual(filter.testAndSet(T + TTL, mac(1)), false);
  // Seen again: remembered from now on.
  strictEqual(filter.testAndSet(T + TTL + 1, mac(1)), true);
  strictEqual(filter.size, 1);
});

Deno.test("ReplayFilter drops expired MACs as time passes, oldest first, and a MAC seen again moves to the back", () => {
  const filter = new ReplayFilter();
  strictEqual(filter.testAndSet(T, mac(1)), false);
  strictEqual(filter.testAndSet(T + HOUR, mac(2)), false);
  strictEqual(filter.testAndSet(T + 2 * HOUR, mac(3)), false);
  strictEqual(filter.size, 3);
  // mac(1) expired: recorded anew at T + 3 h, behind mac(2) and mac(3).
  strictEqual(filter.testAndSet(T + TTL, mac(1)), false);
  strictEqual(filter.size, 3);
  // At T + 4 h, mac(2) has expired and goes, although mac(1) is older in insertion.
  strictEqual(filter.testAndSet(T + 4 * HOUR, mac(4)), false);
  strictEqual(filter.size, 3);
  strictEqual(filter.testAndSet(T + 4 * HOUR, mac(3)), true);
  strictEqual(filter.testAndSet(T + 4 * HOUR, mac(1)), true);
  // Much later everything but the newest has expired.
  strictEqual(filter.testAndSet(T + 100 * HOUR, mac(5)), false);
  strictEqual(filter.size, 1);
});

Deno.test("ReplayFilter holds at most 102,400 MACs, evicting the oldest first, under a flood of 150,000", () => {
  const filter = new ReplayFilter();
  for (let i = 0; i < CAP; i++) strictEqual(filter.testAndSet(T, mac(i)), false);
  strictEqual(filter.size, CAP);
  // One more evicts the oldest, mac(0).
  strictEqual(filter.testAndSet(T, mac(CAP)), false);
  strictEqual(filter.size, CAP);
  // Full, it makes room before looking (as lyrebird does): mac(1) goes.
  strictEqual(filter.testAndSet(T, mac(CAP)), true);
  strictEqual(filter.size, CAP - 1);
  // Not full: mac(2) is still there, mac(0) and mac(1) are not.
  strictEqual(filter.testAndSet(T, mac(2)), true);
  strictEqual(filter.testAndSet(T, mac(0)), false);
  strictEqual(filter.size, CAP);
  strictEqual(filter.testAndSet(T, mac(1)), false);
  // The rest of the flood, at later times within the TTL: the size holds.
  for (let i = CAP + 1; i < 150_000; i++) filter.testAndSet(T + i, mac(i));
  strictEqual(filter.size, CAP);
  // The newest are remembered, the oldest evicted.
  strictEqual(filter.testAndSet(T + 150_000, mac(149_999)), true);
  strictEqual(filter.testAndSet(T + 150_000, mac(149_999 - CAP + 100)), true);
  strictEqual(filter.size, CAP - 1);
  strictEqual(filter.testAndSet(T + 150_000, mac(3)), false);
});
