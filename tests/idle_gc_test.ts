// Copyright the ptkit authors. MIT license.
// Issue 12 (resident memory with 1000 idle connections): a PT that served a
// burst of connections and then idles gives the burst's garbage back.

import { deepStrictEqual, ok } from "node:assert";
import { IdleCollector, MIN_GARBAGE, QUIET_CHANGE } from "../ipc/managed/_idle_gc.ts";
import { MAIN } from "./ipc_util.ts";

const MiB = 1024 * 1024;

/** A collector over a scripted heap: `heap` is what the next look reads. */
function scripted(start: number) {
  const state = { heap: start, collections: 0, afterCollection: start };
  const collector = new IdleCollector(() => {
    state.collections++;
    state.heap = state.afterCollection;
  }, () => state.heap);
  return { state, collector };
}

Deno.test("IdleCollector collects once a heap that grew by MIN_GARBAGE stops changing, not while it grows", () => {
  const { state, collector } = scripted(10 * MiB);
  // A burst: the heap grows at every look.
  for (let heap = 12 * MiB; heap <= 40 * MiB; heap += 4 * MiB) {
    state.heap = heap;
    deepStrictEqual(collector.tick(), false, `collected while growing at ${heap}`);
  }
  // Quiet: the same heap at the next look (less than QUIET_CHANGE apart).
  state.afterCollection = 24 * MiB;
  state.heap += QUIET_CHANGE / 2;
  deepStrictEqual(collector.tick(), true);
  deepStrictEqual(state.collections, 1);
  // Quiet on at the collected size: nothing more to do.
  for (let i = 0; i < 5; i++) deepStrictEqual(collector.tick(), false);
  deepStrictEqual(state.collections, 1);
});

Deno.test("IdleCollector leaves a quiet heap that grew by less than MIN_GARBAGE, or a quarter of the last collected size, alone", () => {
  const { state, collector } = scripted(10 * MiB);
  state.heap = 10 * MiB + MIN_GARBAGE - MiB;
  collector.tick();
  deepStrictEqual(collector.tick(), false);
  // After a collection at 48 MiB, 8 MiB more is less than a quarter.
  state.heap = 60 * MiB;
  state.afterCollection = 48 * MiB;
  collector.tick();
  deepStrictEqual(collector.tick(), true);
  state.heap = 48 * MiB + 9 * MiB;
  collector.tick();
  deepStrictEqual(collector.tick(), false);
  state.heap = 48 * MiB + 13 * MiB;
  collector.tick();
  deepStrictEqual(collector.tick(), true);
  deepStrictEqual(state.collections, 2);
});

Deno.test("main.ts's shebang exposes V8's gc() to the idle collector, within Linux's 256 bytes", async () => {
  const first = (await Deno.readTextFile(MAIN)).split("\n")[0]!;
  const v8 = first.split(" ").find((flag) => flag.startsWith("--v8-flags="));
  ok(v8?.slice("--v8-flags=".length).split(",").includes("--expose-gc"), first);
  ok(new TextEncoder().encode(first).length < 255, "the shebang is too long");
});
