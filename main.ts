#!/usr/bin/env -S deno run --quiet --no-prompt --allow-net --allow-read --allow-write --allow-env=TOR_PT_*,HOME,XDG_STATE_HOME
// Copyright the ptkit authors. MIT license.

/**
 * The ptkit pluggable transport executable: tor's `ClientTransportPlugin
 * <name> exec /path/to/main.ts` or `ServerTransportPlugin <name> exec
 * /path/to/main.ts`, the same with flags (`--help`), or the friendly
 * commands `main.ts server|client|start` (`main.ts server --help`).
 *
 * @module
 */

import { runManagedProxy } from "./ipc/managed_proxy.ts";
import { CLI_COMMANDS, runCli } from "./ipc/cli.ts";

if (import.meta.main) {
  const standalone = CLI_COMMANDS.includes(Deno.args[0] ?? "");
  Deno.exit(
    standalone ? await runCli(Deno.args) : await runManagedProxy({ args: Deno.args }),
  );
}
