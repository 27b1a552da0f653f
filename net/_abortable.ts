// Copyright the ptkit authors. MIT license.

import { closeQuietly } from "./_accept_loop.ts";

/**
 * `pending`, or a rejection with `signal`'s reason as soon as it aborts
 * (at once when it already has); a connection that arrives after that is
 * closed, never handed out. For dials and connection attempts that may not
 * heed the signal themselves.
 *
 * @example Giving up on a dial
 * ```ts
 * import { abortable } from "./_abortable.ts";
 * import { rejects, strictEqual } from "node:assert";
 *
 * let closed = false;
 * let arrive = (_: { close(): void }) => {};
 * const dialing = new Promise<{ close(): void }>((resolve) => arrive = resolve);
 * const giveUp = new AbortController();
 * const result = abortable(dialing, giveUp.signal);
 * giveUp.abort(new Error("Too late"));
 * await rejects(result, /Too late/);
 * arrive({ close: () => closed = true });
 * await dialing;
 * strictEqual(closed, true);
 * ```
 *
 * @param pending The connection to come.
 * @param signal Gives it up.
 * @returns The connection, unless the signal aborted first.
 */
export function abortable<T extends { close(): void }>(
  pending: Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    pending.then((value) => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) closeQuietly(value);
      else resolve(value);
    }, (error) => {
      signal.removeEventListener("abort", onAbort);
      reject(error);
    });
  });
}
