#!/usr/bin/env -S --block-signal=INT,TERM deno run --quiet --no-prompt --unstable-net --allow-ffi --allow-net --allow-read --allow-write --allow-env=TOR_PT_*,HOME,XDG_STATE_HOME --allow-sys=uid --allow-run=deno --v8-flags=--max-semi-space-size=4
// Copyright the ptkit authors. MIT license.

/**
 * The ptkit pluggable transport executable: tor's `ClientTransportPlugin
 * <name> exec /path/to/main.ts` or `ServerTransportPlugin <name> exec
 * /path/to/main.ts`, the same with flags (`--help`), or the friendly
 * commands `main.ts server|client|start` (`main.ts server --help`), and
 * `main.ts turn --listen HOST:PORT --user U:P --realm R` (a TURN server;
 * `main.ts turn --help`). `main.ts --version` prints ptkit's version.
 *
 * @module
 */

import { holdEarlySignals } from "./ipc/managed/_early_signals.ts";
import { CLI_COMMANDS } from "./ipc/cli/_names.ts";

if (import.meta.main) {
  // First of all: a SIGTERM or SIGINT that arrives while the rest loads ends
  // the PT with exit 0 (the managed proxy takes the signals over before any
  // transport starts). Hence the dynamic imports below, of only what the
  // command needs: a PT that tor starts reaches CMETHODS DONE / SMETHODS
  // DONE quickly.
  holdEarlySignals();
  const command = Deno.args[0] ?? "";
  if (command === "turn") {
    const { runTurnCommand } = await import("./ipc/cli/turn.ts");
    Deno.exit(await runTurnCommand(Deno.args.slice(1)));
  }
  if (CLI_COMMANDS.includes(command)) {
    const { runCli } = await import("./ipc/cli/commands.ts");
    Deno.exit(await runCli(Deno.args));
  }
  const { runManagedProxy } = await import("./ipc/managed/managed_proxy.ts");
  Deno.exit(await runManagedProxy({ args: Deno.args }));
}
