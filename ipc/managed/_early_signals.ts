// Copyright the ptkit authors. MIT license.
// Internal: SIGTERM and SIGINT from the first moment main.ts runs. Until the
// managed proxy watches them itself (before any transport starts), either
// signal ends the process at once with exit 0: nothing is open yet, and
// Deno's default action would kill it by signal (exit 143 or 130). This
// module imports nothing, so main.ts can install it before loading the rest.
//
// Deno itself takes 20-100 ms to start before any of the program's code
// runs. So that a signal in that window is not lost either, main.ts's
// shebang blocks SIGTERM and SIGINT across exec (`env --block-signal`): the
// kernel keeps them pending. Once the listeners are in place, this module
// unblocks them (pthread_sigmask through FFI, Linux only), and a pending
// signal is delivered to the listener. Processes that ptkit starts get an
// empty mask from Deno's spawn.

const SIGNALS = ["SIGTERM", "SIGINT"] as const;

function exitNow(): void {
  Deno.exit(0);
}

let held = false;

/** `SIG_UNBLOCK` and the bits of SIGINT (2) and SIGTERM (15) in a Linux `sigset_t`. */
const SIG_UNBLOCK = 1;
const BLOCKED_BY_SHEBANG = (1n << 1n) | (1n << 14n);

/**
 * Unblock SIGINT and SIGTERM in this thread (where Deno's signal listeners
 * run), if they were blocked across exec. Needs `--allow-ffi`; without it,
 * or off Linux, nothing is done (and nothing was blocked by the shebang
 * unless it was exec'd through it).
 */
function unblockSignals(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return;
    const libc = Deno.dlopen("libc.so.6", {
      pthread_sigmask: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    });
    try {
      const set = new BigUint64Array(16); // sizeof(sigset_t) = 128 bytes
      set[0] = BLOCKED_BY_SHEBANG;
      libc.symbols.pthread_sigmask(SIG_UNBLOCK, set, null);
    } finally {
      libc.close();
    }
  } catch {
    // No libc.so.6 (musl) or no FFI: the signals were not blocked by us.
  }
}

/**
 * End the process with exit 0 on SIGTERM or SIGINT until
 * {@linkcode releaseEarlySignals} is called. Does nothing where signals
 * cannot be watched (Windows only has SIGINT and SIGBREAK).
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
  unblockSignals();
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
