// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

const NOTHING = new Uint8Array(0);

/**
 * Run `then` in a later task, without the timers' clamp (a `setTimeout` of 0
 * waits 1-4 ms): after an asynchronous no-op that finishes through the
 * runtime's queue of completed operations, so socket reads and writes
 * already under way go first. (A `MessageChannel` is quicker, but in Deno its
 * messages go ahead of socket writes, which then wait while they repeat.)
 *
 * @example Deferring work past pending I/O
 * ```ts
 * import { nextTask } from "./_next_task.ts";
 * import { strictEqual } from "node:assert";
 *
 * const order: string[] = [];
 * await new Promise<void>((resolve) => {
 *   nextTask(() => {
 *     order.push("task");
 *     resolve();
 *   });
 *   order.push("now");
 * });
 * strictEqual(order.join(), "now,task");
 * ```
 *
 * @param then What to run.
 */
export function nextTask(then: () => void): void {
  crypto.subtle.digest("SHA-256", NOTHING).then(() => then(), () => then());
}
