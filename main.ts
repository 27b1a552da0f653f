#!/usr/bin/env -S deno run --quiet --no-prompt --allow-net --allow-read --allow-write --allow-env=TOR_PT_*,HOME,XDG_STATE_HOME
// Copyright the ptkit authors. MIT license.

/**
 * The ptkit pluggable transport executable: tor's `ClientTransportPlugin
 * <name> exec /path/to/main.ts`, or standalone with flags (`--help`).
 *
 * @module
 */

import { runManagedProxy } from "./ipc/managed_proxy.ts";

if (import.meta.main) {
  Deno.exit(await runManagedProxy({ args: Deno.args }));
}
