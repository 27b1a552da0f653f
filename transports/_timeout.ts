// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the one check of a timer option's value (ms), shared by the
// runtime's options (`handshakeTimeout`) and the transports' own.

/** The longest delay `setTimeout` takes, in ms: a larger one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Check a timer option: `undefined` (the default applies) or a finite
 * number of milliseconds, positive (or also 0 with `zero`), no larger than
 * 2,147,483,647. A larger one would fire at once (Node's timers say
 * `TimeoutOverflowWarning` and wait 1 ms), as would a negative one or NaN.
 *
 * @example Refusing a timeout no timer can hold
 * ```ts
 * import { checkTimerMs } from "./_timeout.ts";
 * import { throws } from "node:assert";
 *
 * checkTimerMs(30_000, "drainTimeout", "create a Shadowsocks transport");
 * throws(() => checkTimerMs(2 ** 40, "drainTimeout", "create a Shadowsocks transport"), RangeError);
 * ```
 *
 * @param value The option's value.
 * @param name The option's name, for the message (`drainTimeout`).
 * @param what What is being set up, for the message (`listen`).
 * @param zero Whether 0 is allowed (at once).
 * @throws {TypeError} When it is neither `undefined` nor a number.
 * @throws {RangeError} When it is a number out of range (or NaN).
 */
export function checkTimerMs(value: unknown, name: string, what: string, zero = false): void {
  if (
    value !== undefined &&
    !(typeof value === "number" && Number.isFinite(value) && (zero ? value >= 0 : value > 0) &&
      value <= MAX_TIMER_MS)
  ) {
    if (typeof value !== "number") {
      throw new TypeError(
        `Cannot ${what}: ${name} must be a number, got ${value === null ? "null" : typeof value}`,
      );
    }
    throw new RangeError(
      `Cannot ${what}: invalid ${name} ${value}: must be a ${
        zero ? "non-negative" : "positive"
      } number of ms up to ${MAX_TIMER_MS}`,
    );
  }
}
