// Copyright the ptkit authors. MIT license.
// Internal: gives the JS heap's garbage back to the system once the process
// has gone quiet. V8 collects its old generation when that generation
// reaches a limit, and frees pages then; its memory reducer, which would
// collect a heap that stopped growing, is driven by the embedder's idle
// notifications, and Deno sends none. So a PT that served a burst of
// connections and then idles keeps the burst's garbage resident for good:
// main.ts client and server with 1000 idle obfs4 connections, 1 s and 15 s
// after the last one connected, held the same RSS (126 + 119 MiB); a full
// garbage collection then gave back 13 and 8 MiB. main.ts's shebang
// exposes V8's gc() (`--v8-flags=...,--expose-gc`); without it (a library
// user's program) nothing is done.

/** How often the heap is looked at, in milliseconds. */
export const IDLE_TICK_MS = 500;
/** The least growth over the heap after the last collection worth one. */
export const MIN_GARBAGE = 8 * 1024 * 1024;
/** A heap that changed less than this between two looks is quiet. */
export const QUIET_CHANGE = 256 * 1024;

/**
 * Decides when to collect: the heap grew by at least
 * {@linkcode MIN_GARBAGE} (and a quarter) over what it held after the last
 * collection (or at the start), and then stopped changing between two
 * looks: a busy process allocates all the time, and V8's own collections
 * serve it.
 */
export class IdleCollector {
  readonly #collect: () => void;
  readonly #heapUsed: () => number;
  #baseline: number;
  #last: number;

  /**
   * @param collect Runs a full collection that gives memory back.
   * @param heapUsed The heap's used bytes now.
   */
  constructor(collect: () => void, heapUsed: () => number) {
    this.#collect = collect;
    this.#heapUsed = heapUsed;
    this.#baseline = this.#last = heapUsed();
  }

  /**
   * One look at the heap.
   *
   * @returns Whether it collected.
   */
  tick(): boolean {
    const used = this.#heapUsed();
    const quiet = Math.abs(used - this.#last) < QUIET_CHANGE;
    this.#last = used;
    const grown = used - this.#baseline;
    if (!quiet || grown < Math.max(MIN_GARBAGE, this.#baseline / 4)) return false;
    this.#collect();
    this.#baseline = this.#last = this.#heapUsed();
    return true;
  }
}

/** The process's one collector's timer, and how many sides use it. */
let running: { timer: number; users: number } | undefined;

/**
 * Look at the heap every {@linkcode IDLE_TICK_MS} and collect once it is
 * quiet (see {@linkcode IdleCollector}), where V8's gc() is exposed. One
 * timer per process (`main.ts start` runs two sides), which does not keep
 * the process alive.
 *
 * @returns Stops this side's use of it.
 */
export function startIdleCollector(): () => void {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== "function") return () => {};
  if (running === undefined) {
    // "last-resort": every collection it takes to free what can be freed,
    // and the freed pages given back (a plain gc() kept them pooled: RSS
    // unchanged).
    const collector = new IdleCollector(
      () => gc({ type: "major", execution: "sync", flavor: "last-resort" }),
      () => Deno.memoryUsage().heapUsed,
    );
    const timer = setInterval(() => collector.tick(), IDLE_TICK_MS) as unknown as number;
    Deno.unrefTimer(timer);
    running = { timer, users: 0 };
  }
  const use = running;
  use.users++;
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    if (--use.users > 0) return;
    clearInterval(use.timer);
    if (running === use) running = undefined;
  };
}
