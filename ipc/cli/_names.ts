// Copyright the ptkit authors. MIT license.
// Internal: the subcommands `runCli` understands (`main.ts
// server|client|start`), in a module of their own so that `main.ts` tells
// a friendly command from a PT run without loading the CLI.

/** The subcommands `runCli` understands. */
export const CLI_COMMANDS: readonly string[] = ["server", "client", "start"];
