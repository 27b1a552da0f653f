#!/usr/bin/env -S deno run --quiet --no-prompt --allow-net --allow-read --allow-write --allow-env=TOR_PT_*,HOME,XDG_STATE_HOME
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

import { runManagedProxy } from "./ipc/managed_proxy.ts";
import { CLI_COMMANDS, runCli } from "./ipc/cli.ts";
import { runTurnCommand } from "./udp/turn/cli.ts";

if (import.meta.main) {
  const command = Deno.args[0] ?? "";
  Deno.exit(
    command === "turn"
      ? await runTurnCommand(Deno.args.slice(1))
      : CLI_COMMANDS.includes(command)
      ? await runCli(Deno.args)
      : await runManagedProxy({ args: Deno.args }),
  );
}
