// Copyright the ptkit authors. MIT license.
// GenerationalReplayFilter (Shadowsocks salts): what it always remembers,
// how long, what it shares, and that memory follows use.

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert";
import { GenerationalReplayFilter } from "../transports/_replay_filter.ts";

const value = (n: number) => {
  const bytes = new Uint8Array(32);
  new DataView(bytes.buffer).setUint32(0, n);
  bytes[4] = n & 0xff;
  return bytes;
};

Deno.test("GenerationalReplayFilter always remembers the newest half of maxEntries, and forgets beyond maxEntries", () => {
  const filter = new GenerationalReplayFilter({ maxEntries: 1000 });
  for (let n = 0; n < 5000; n++) strictEqual(filter.testAndSet(0, value(n)), false);
  ok(filter.size <= 1000, `holds ${filter.size}`);
  // The newest 500 are remembered, whatever came before.
  for (let n = 4500; n < 5000; n++) strictEqual(filter.testAndSet(0, value(n)), true, `${n}`);
  // The oldest are forgotten: memory stays bounded.
  strictEqual(filter.testAndSet(0, value(0)), false);
});

Deno.test("GenerationalReplayFilter remembers a value for at least its time to live, at most twice it", () => {
  const filter = new GenerationalReplayFilter({ ttlMs: 1000 });
  filter.testAndSet(0, value(1));
  strictEqual(filter.testAndSet(999, value(1)), true);
  filter.testAndSet(1000, value(2)); // a new generation; value 1 is in the previous
  strictEqual(filter.testAndSet(1999, value(1)), true);
  strictEqual(filter.testAndSet(1999, value(2)), true);
  // Two generations later, both are gone.
  strictEqual(filter.testAndSet(4100, value(3)), false);
  strictEqual(filter.testAndSet(4100, value(1)), false);
});

Deno.test("GenerationalReplayFilter shares what it records, takes what others record, and gives values back", () => {
  const shared: Uint8Array[] = [];
  let add: ((v: Uint8Array) => void) | undefined;
  let stopped = false;
  const filter = new GenerationalReplayFilter({
    now: () => 0,
    share: {
      recorded: (v) => shared.push(v.slice()),
      subscribe: (f) => (add = f, () => void (stopped = true)),
    },
  });
  strictEqual(filter.testAndSet(0, value(1)), false);
  deepStrictEqual(shared, [value(1)]);
  add!(value(2));
  strictEqual(filter.testAndSet(0, value(2)), true);
  strictEqual(shared.length, 1);
  // Values come back as the 6 bytes compared; recorded elsewhere, they are refused there.
  const other = new GenerationalReplayFilter();
  for (const v of filter.values(0)) other.record(0, v);
  strictEqual(other.testAndSet(0, value(1)), true);
  strictEqual(other.testAndSet(0, value(2)), true);
  strictEqual(other.testAndSet(0, value(3)), false);
  filter.close();
  ok(stopped);
  throws(() => filter.testAndSet(0, new Uint8Array(5)), RangeError);
  // Shared in from elsewhere, a value too short is ignored, not thrown at the sharer.
  add!(new Uint8Array(5));
  strictEqual(filter.size, 2);
  throws(() => new GenerationalReplayFilter({ maxEntries: 1 }), RangeError);
});

Deno.test("GenerationalReplayFilter tells apart chosen salts whose keys share their low bits", () => {
  const filter = new GenerationalReplayFilter();
  // 200,000 salts whose first 6 bytes differ only in the top 24 bits: with
  // an unseeded hash of the low bits they would all probe one run of slots.
  const salt = (n: number) => {
    const bytes = new Uint8Array(32);
    bytes[0] = n >> 16;
    bytes[1] = (n >> 8) & 0xff;
    bytes[2] = n & 0xff;
    return bytes;
  };
  for (let n = 0; n < 200_000; n++) strictEqual(filter.testAndSet(0, salt(n)), false);
  for (let n = 0; n < 200_000; n += 997) strictEqual(filter.testAndSet(0, salt(n)), true);
  strictEqual(filter.size, 200_000);
});
