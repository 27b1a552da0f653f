// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Time and timers, injectable so that idle timeouts can be tested without
 * waiting. Timer ids are opaque.
 *
 * @example A clock that starts at zero
 * ```ts
 * import { type Clock, systemClock } from "./_clock.ts";
 * import { ok } from "node:assert";
 *
 * const start = systemClock.now();
 * const offset: Clock = { ...systemClock, now: () => systemClock.now() - start };
 * ok(offset.now() >= 0);
 * ```
 */
export interface Clock {
  /** The current time in milliseconds. */
  now(): number;
  /** Call `callback` once after `ms` milliseconds; returns a timer id. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancel a timer made by {@linkcode Clock.setTimeout}. */
  clearTimeout(id: unknown): void;
}

/**
 * The time read once in the current task: a flow reads the clock for every
 * datagram, and `performance.now()` cost about 0.9 us a call here (most of
 * a datagram's clock reads in CPU profiles), where the datagrams one
 * receive delivers arrive in the same millisecond anyway. Forgotten at the
 * task's next microtask checkpoint.
 */
let taskNow: number | undefined;
const forgetNow = (): void => {
  taskNow = undefined;
};

/**
 * The real clock: monotonic milliseconds near the epoch
 * (`performance.timeOrigin + performance.now()`, whole: a wall clock stepped back
 * or forward stretches no timeout; read once per task, so the calls of one
 * synchronous run of code see the same millisecond) and the global timers.
 *
 * @example Reading the time
 * ```ts
 * import { systemClock } from "./_clock.ts";
 * import { ok } from "node:assert";
 *
 * ok(Math.abs(systemClock.now() - Date.now()) < 1000);
 * ```
 */
export const systemClock: Clock = {
  now: () => {
    if (taskNow === undefined) {
      taskNow = Math.floor(performance.timeOrigin + performance.now());
      queueMicrotask(forgetNow);
    }
    return taskNow;
  },
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};
