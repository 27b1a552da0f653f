// Copyright the ptkit authors. MIT license.
// Internal: SIGTERM and SIGINT from the first moment main.ts runs. Until the
// managed proxy watches them itself (before any transport starts), either
// signal ends the process at once with exit 0: nothing is open yet, and
// Deno's default action would kill it by signal (exit 143 or 130). This
// module imports nothing, so main.ts can install it before loading the rest.

const SIGNALS = ["SIGTERM", "SIGINT"] as const;

function exitNow(): void {
  Deno.exit(0);
}

let held = false;

/**
 * End the process with exit 0 on SIGTERM or SIGINT until
 * {@linkcode releaseEarlySignals} is called. Does nothing where signals
 * cannot be watched (Windows only has SIGINT and SIGBREAK).
 *
 * @example Holding and releasing
 * ```ts
 * import { holdEarlySignals, releaseEarlySignals } from "./early_signals.ts";
 *
 * holdEarlySignals();
 * releaseEarlySignals();
 * ```
 */
export function holdEarlySignals(): void {
  if (held) return;
  for (const signal of SIGNALS) {
    try {
      Deno.addSignalListener(signal, exitNow);
    } catch {
      // Not supported on this platform.
    }
  }
  held = true;
}

/**
 * Stop ending the process on SIGTERM and SIGINT: call it once the
 * caller's own listeners are installed. Idempotent.
 */
export function releaseEarlySignals(): void {
  if (!held) return;
  held = false;
  for (const signal of SIGNALS) {
    try {
      Deno.removeSignalListener(signal, exitNow);
    } catch {
      // Not supported on this platform.
    }
  }
}
