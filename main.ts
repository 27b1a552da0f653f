#!/usr/bin/env -S --block-signal=INT,TERM deno run -q --no-prompt --unstable-lazy-dynamic-imports --allow-ffi -N -R -W --allow-env=TOR_PT_*,SS_*,HOME,XDG_STATE_HOME --allow-sys=uid --allow-run=deno,sh --v8-flags=--max-semi-space-size=4,--expose-gc
// Copyright the ptkit authors. MIT license.

/**
 * The ptkit pluggable transport executable: tor's `ClientTransportPlugin
 * <name> exec /path/to/main.ts` or `ServerTransportPlugin <name> exec
 * /path/to/main.ts`, the same with flags (`--help`), or the friendly
 * commands `main.ts server|client|start` (`main.ts server --help`), and
 * `main.ts turn --listen HOST:PORT --user U:P --realm R` (a TURN server;
 * `main.ts turn --help`). `main.ts --version` prints ptkit's version.
 * Started with `SS_REMOTE_HOST`, `SS_REMOTE_PORT`, `SS_LOCAL_HOST` and
 * `SS_LOCAL_PORT` set (`ss-local --plugin /path/to/main.ts`), it is a
 * SIP003 Shadowsocks plugin (`SS_PLUGIN_OPTIONS`: `transport=obfs4;...`).
 *
 * @module
 */

// No static import: run through a symbolic link in another directory
// (`ln -s /opt/ptkit/main.ts /usr/local/bin/ptkit`, a torrc exec line naming
// the link), Deno looks for ptkit's modules and its deno.json (the npm
// packages' names) beside the link, and nothing would load: that is said
// first, in one line.
if (import.meta.main) {
  const real = linkedMainModule();
  if (real === undefined) await main();
  else refuseLink(real);
}

/**
 * Runs the command `Deno.args` names, and exits.
 *
 * @returns Never: the process exits.
 */
export async function main(): Promise<void> {
  const { holdEarlySignals } = await import("./ipc/managed/_early_signals.ts");
  const { CLI_COMMANDS, cliError } = await import("./ipc/cli/_names.ts");
  // First of all: a SIGTERM or SIGINT that arrives while the rest loads ends
  // the PT with exit 0 (the managed proxy takes the signals over before any
  // transport starts; the shebang blocks both until then). Hence the dynamic
  // imports below, of only what the command needs: a PT that tor starts
  // reaches CMETHODS DONE / SMETHODS DONE quickly.
  holdEarlySignals();
  const exitWith = (run: () => Promise<number>) => exitWithCode(run, cliError);
  const command = Deno.args[0] ?? "";
  if (Deno.args.length === 0 && sip003Started()) {
    const { runSip003 } = await import("./ipc/managed/_sip003.ts");
    const stderr = (text: string) => Deno.stderr.writeSync(new TextEncoder().encode(text));
    await exitWith(() => runSip003({ getEnv: (name) => Deno.env.get(name), stderr }));
  }
  if (command === "turn") {
    const { runTurnCommand } = await import("./ipc/cli/_turn.ts");
    // "turn" counts in the positions errors name, as the subcommand does in runCli.
    await exitWith(() => runTurnCommand(Deno.args));
  }
  // A word where a command goes (`sever`, `help`) is a person's mistyped
  // command: said as one, not answered with tor's protocol lines. Not when
  // tor started it (the variable is set): a stray word then comes from the
  // torrc exec line, and the managed proxy refuses it with an ENV-ERROR on
  // stdout, the protocol's error line that parents read, as it refuses a
  // stray flag.
  // `managed`, obfsproxy's mode word that torrc lines written for
  // obfs4proxy may still give, the managed proxy skips, as obfs4proxy and
  // lyrebird do.
  const word = /^[A-Za-z]/.test(command) && command !== "managed" &&
    !envSet("TOR_PT_MANAGED_TRANSPORT_VER");
  if (CLI_COMMANDS.includes(command) || word) {
    const { runCli } = await import("./ipc/cli/_commands.ts");
    await exitWith(() => runCli(Deno.args));
  }
  const { runManagedProxy } = await import("./ipc/managed/managed_proxy.ts");
  await exitWith(() => runManagedProxy({ args: Deno.args }));
}

/**
 * Runs a command and exits with its code. Run with fewer permissions than
 * the shebang grants (`deno run main.ts start`), Deno's NotCapable error
 * (it names the flag) is one line of stderr saying how to run main.ts
 * instead, exit 64 (EX_USAGE), not an uncaught stack trace.
 */
async function exitWithCode(
  run: () => Promise<number>,
  cliError: (message: string) => string,
): Promise<never> {
  let code: number;
  try {
    code = await run();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    const help = "(./main.ts and deno task start grant every permission ptkit needs)";
    Deno.stderr.writeSync(new TextEncoder().encode(cliError(`${error.message} ${help}`)));
    code = 64;
  }
  Deno.exit(code);
}

/**
 * main.ts's real path when this module was loaded through a symbolic link
 * to it from another directory (a link to the checkout's directory is
 * fine: deno.json is beside main.ts there); otherwise undefined. Needs read
 * permission there (`deno run main.ts` without it must not prompt), and a
 * compiled executable has no link to follow.
 */
function linkedMainModule(): string | undefined {
  const path = import.meta.filename;
  if (Deno.build.standalone || path === undefined) return undefined;
  try {
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
    const real = Deno.realPathSync(path);
    const directory = (file: string) => file.slice(0, file.lastIndexOf("/")) || "/";
    return directory(real) === Deno.realPathSync(directory(path)) ? undefined : real;
  } catch {
    return undefined;
  }
}

/**
 * Says that main.ts must be run by its own path, and exits 64: on stderr,
 * and as an `ENV-ERROR` when tor started it (tor logs that line's text at
 * `warn`, where it logs a PT's stderr only at `info`).
 */
function refuseLink(real: string): never {
  const message = `main.ts was started through a symbolic link to ${real}: Deno looks for ` +
    `ptkit's modules and deno.json beside the link; run ${real} by its path, or make the link ` +
    `a two-line script: #!/bin/sh, then exec ${real} "$@"`;
  const write = (stream: { writeSync(bytes: Uint8Array): number }, text: string) =>
    stream.writeSync(new TextEncoder().encode(text));
  if (envSet("TOR_PT_MANAGED_TRANSPORT_VER")) write(Deno.stdout, `ENV-ERROR ${message}\n`);
  write(Deno.stderr, `ptkit: error: ${message}\n`);
  Deno.exit(64);
}

/**
 * Whether a SIP003 host started this: one of its address variables is set
 * (a missing one is then the plugin's error, not the managed proxy's usage)
 * and tor's is not. `deno run` may not grant reading them.
 */
function sip003Started(): boolean {
  return !envSet("TOR_PT_MANAGED_TRANSPORT_VER") &&
    ["SS_REMOTE_HOST", "SS_REMOTE_PORT", "SS_LOCAL_HOST", "SS_LOCAL_PORT"].some(envSet);
}

/** Whether a variable is set (`deno run` may not grant reading it: then not). */
function envSet(variable: string): boolean {
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return false;
  try {
    return Deno.env.get(variable) !== undefined;
  } catch {
    return true; // Set, but not valid UTF-8: the side that reads it reports it.
  }
}
