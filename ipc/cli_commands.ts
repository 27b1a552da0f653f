// Copyright the ptkit authors. MIT license.

/**
 * The subcommands `runCli` understands (`main.ts server|client|start`).
 * A module of its own so that `main.ts` can tell a friendly command from a
 * PT run without loading the CLI.
 *
 * @example Telling the commands apart
 * ```ts
 * import { CLI_COMMANDS } from "@ptkit/ptkit/ipc";
 * import { ok } from "node:assert";
 *
 * ok(CLI_COMMANDS.includes("server") && !CLI_COMMANDS.includes("turn"));
 * ```
 */
export const CLI_COMMANDS: readonly string[] = ["server", "client", "start"];
