// Copyright the ptkit authors. MIT license.
// Internal: the subcommands `runCli` understands (`main.ts
// server|client|start`), in a module of their own so that `main.ts` tells
// a friendly command from a PT run without loading the CLI.

/** The subcommands `runCli` understands. */
export const CLI_COMMANDS: readonly string[] = ["server", "client", "start"];

/**
 * The SIP003 plugin's own keys in its options (`server;transport=obfs4;
 * state=DIR;loglevel=info`): the others are its transport's.
 */
export const SIP003_PLUGIN_KEYS: readonly string[] = ["server", "transport", "state", "loglevel"];

/**
 * An error of the standalone commands (`main.ts server|client|start|turn`,
 * a SIP003 plugin) as one line of stderr: `ptkit: error: <Sentence>`. The
 * message is written in sentence case where it is made and printed as it
 * is: a message that starts with a value (a file name, a key) keeps its
 * case.
 *
 * @param message What went wrong (never a secret: callers redact).
 * @returns The line, newline included.
 */
export function cliError(message: string): string {
  return `ptkit: error: ${message}\n`;
}

/**
 * The message of a transport that did not start, for a person: a
 * transport's own text that does not start as a sentence (`connection
 * reset`) gets `Cannot start <transport>: ` first; a sentence (`Cannot
 * configure ...`, `Cannot listen on ...`) is kept as it is.
 *
 * @param transport The transport.
 * @param message The `CMETHOD-ERROR`/`SMETHOD-ERROR` message.
 * @returns The message.
 */
export function methodErrorText(transport: string, message: string): string {
  return /^[A-Z]/.test(message) ? message : `Cannot start ${transport}: ${message}`;
}

/**
 * The exit code of a transport that did not start, from its
 * `CMETHOD-ERROR`/`SMETHOD-ERROR` message: 64 (EX_USAGE) for configuration
 * (its options, a state file that cannot be read, parsed, written or
 * replaced: a state directory it may not write to, say), 1 otherwise (its
 * address taken, a full or failing disk).
 *
 * @param message The error line's message.
 * @returns 64 or 1.
 */
export function methodErrorCode(message: string): 64 | 1 {
  // A full disk or a failing one is no configuration fault.
  if (/No space left on device|Disk quota exceeded|Input\/output error/i.test(message)) return 1;
  return /^(Cannot (configure |parse |(read|write|replace) state file |use state )|Invalid )/.test(
      message,
    )
    ? 64
    : 1;
}
