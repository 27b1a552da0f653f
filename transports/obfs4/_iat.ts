// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { nextTask } from "./_next_task.ts";

/**
 * How an obfs4 connection in IAT mode 1 or 2 waits after each network
 * write, given the delay sampled for it in milliseconds (0 to 10, in steps
 * of 0.1). The next write is made when the returned promise resolves, or at
 * once when nothing is returned. See `Obfs4Options.iatSleep`.
 */
export type IatSleep = (milliseconds: number) => Promise<void> | void;

// How late a setTimeout fires after its delay, learned as timers fire: in
// Deno about 1.1-1.5 ms (it waits in whole milliseconds, rounded up, and
// runs on a busy event loop), in browsers a few tenths. The estimate rises
// at once and falls slowly, so timers rarely land after their target.
let timerLateness = 1.5;

// Kernel waits, as Go's netpoller makes them: Atomics.wait blocks the
// thread in a futex with a timeout, which ends as late as an epoll_wait
// timeout would (timer slack, wake-up) on the same machine under the same
// load. Where the runtime does not allow it on this thread (a browser's
// main thread), waits end by yielding to the event loop instead.
const cell: Int32Array | undefined = typeof SharedArrayBuffer === "function"
  ? new Int32Array(new SharedArrayBuffer(4))
  : undefined;
let canBlock = cell !== undefined;
// The event loop is blocked at most this long at a time; socket reads and
// writes run between two blocks.
const BLOCK_SLICE_MS = 0.25;

function block(ms: number): boolean {
  if (!canBlock) return false;
  try {
    Atomics.wait(cell!, 0, 0, ms);
    return true;
  } catch {
    canBlock = false;
    return false;
  }
}

/** One sleep in progress: Go's `time.Sleep(duration)` from `start`. */
interface Sleep {
  readonly start: number;
  readonly duration: number;
  /** When the netpoller wait in progress would end without oversleeping. */
  end: number;
  readonly resolve: () => void;
}

/**
 * Go's netpoller on Linux waits for what is left of the sleep in whole
 * milliseconds (truncated), at least 1 (`epoll_wait`; golang/go#47084,
 * #53824); it waits again while the sleep has not ended.
 */
function waitEnd(sleep: Sleep, now: number): number {
  return now + Math.max(1, Math.floor(sleep.duration - (now - sleep.start)));
}

/** Every sleep in progress, one scheduler for all of them. */
const sleeps: Sleep[] = [];
let timer: ReturnType<typeof setTimeout> | undefined;
let timerFor = Infinity;
let driving = false;
// Right after a sleep ends its writer writes; blocking the thread then
// would hold that write back, so the next few tasks only yield.
const QUIET_MS = 0.1;
let quietUntil = 0;

function nearest(): Sleep | undefined {
  let next: Sleep | undefined;
  for (const s of sleeps) if (next === undefined || s.end < next.end) next = s;
  return next;
}

/** A netpoller wait of `sleep` has ended at `now`: done, or wait again. */
function woke(sleep: Sleep, now: number): void {
  if (now - sleep.start >= sleep.duration) {
    sleeps.splice(sleeps.indexOf(sleep), 1);
    quietUntil = now + QUIET_MS;
    sleep.resolve();
  } else {
    sleep.end = waitEnd(sleep, now);
  }
}

/**
 * Sleep on a timer until the nearest wait end is close, then drive the
 * last stretch (in a later task, so that writes queued now go out first).
 */
function schedule(): void {
  if (driving) return;
  const next = nearest();
  if (next === undefined) {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    timerFor = Infinity;
    return;
  }
  const start = performance.now();
  const ms = Math.floor(next.end - start - timerLateness);
  if (ms < 1) {
    driving = true;
    nextTask(drive);
    return;
  }
  if (timer !== undefined) {
    if (timerFor <= next.end) return;
    clearTimeout(timer);
  }
  timerFor = next.end;
  timer = setTimeout(() => {
    timer = undefined;
    timerFor = Infinity;
    // Up at once, down slowly; one stalled timer (a busy machine, the
    // process's first timer) counts for at most 1 ms more.
    const late = Math.min(Math.max(0, performance.now() - start - ms), timerLateness + 1);
    timerLateness += (late - timerLateness) / (late > timerLateness ? 2 : 32);
    schedule();
  }, ms);
}

function drive(): void {
  const next = nearest();
  let now = performance.now();
  if (next === undefined || Math.floor(next.end - now - timerLateness) >= 1) {
    driving = false;
    schedule();
    return;
  }
  const left = next.end - now;
  if (left <= 0) {
    woke(next, now);
  } else if (now < quietUntil && left > QUIET_MS) {
    // Let the write just made go out first.
  } else if (left <= BLOCK_SLICE_MS) {
    // The end of the wait: one kernel wait, which oversleeps as Go's does.
    if (block(left)) {
      woke(next, performance.now());
    } else if (left < 0.05) {
      while ((now = performance.now()) < next.end) { /* a few microseconds */ }
      woke(next, now);
    }
  } else {
    block(Math.min(BLOCK_SLICE_MS, left - BLOCK_SLICE_MS));
  }
  if (sleeps.length === 0) {
    driving = false;
    schedule(); // Clears the timer: nothing is left running.
    return;
  }
  nextTask(drive);
}

/**
 * Sleep as obfs4proxy's `time.Sleep` of `milliseconds` does on Linux, the
 * default `iatSleep` of obfs4's options. 0 returns nothing at once (no task boundary:
 * the next write follows back to back). Anything else starts once the write
 * made just before has gone out (one task on) and waits in whole-millisecond
 * kernel waits as Go's netpoller does (golang/go#47084: under 1 ms takes
 * 1 ms; 4.7 ms a wait of 4 ms, then one of 1 ms), each ending as late as the
 * kernel makes it, so the gaps on the wire are obfs4proxy's on the same
 * machine under the same load. One scheduler serves every sleep: it sleeps
 * on `setTimeout` while a timer can be trusted not to overshoot, then blocks
 * the thread (`Atomics.wait`, where allowed) in slices of at most 0.25 ms
 * with a task boundary between them for socket I/O, the last slice of each
 * wait being its kernel wait. A timer alone adds 1-2 ms to every wait in
 * Deno and cannot wait less than 2 ms.
 *
 * @example A 4.7 ms sleep takes about 5.1 ms (never less than 4.7)
 * ```ts
 * import { obfs4proxySleep } from "./_iat.ts";
 * import { ok, strictEqual } from "node:assert";
 *
 * strictEqual(obfs4proxySleep(0), undefined);
 * const start = performance.now();
 * await obfs4proxySleep(4.7);
 * ok(performance.now() - start >= 4.7);
 * ```
 *
 * @param milliseconds The sampled delay.
 * @returns A promise that resolves when the sleep ends, or nothing for 0.
 */
export function obfs4proxySleep(milliseconds: number): Promise<void> | void {
  if (!(milliseconds > 0)) return;
  return new Promise<void>((resolve) => {
    // The sleep starts once the write made just before has gone out (one
    // task on), as Go's starts when its write returns.
    nextTask(() => {
      const start = performance.now();
      const sleep: Sleep = { start, duration: milliseconds, end: 0, resolve };
      sleep.end = waitEnd(sleep, start);
      sleeps.push(sleep);
      schedule();
    });
  });
}
