// Copyright the ptkit authors. MIT license.

import type { Transport } from "../../transports/transport.ts";
import { flushStdout, IpcOutput } from "../lines/_output.ts";
import { ManagedConfigError, parseManagedConfig } from "./config.ts";
import { builtinTransports as defaultRegistry } from "./_registry.ts";
import { ENV_VARS, usage, WORKER_ARG } from "./_flags.ts";
import { PTKIT_VERSION } from "./_version.ts";
import { runManaged } from "./_run.ts";
import { checkRegistry } from "./_check_registry.ts";
import { assertTransport } from "../../transports/_transport_name.ts";
import { guardCallback } from "../../net/_accept_error.ts";
import { readValueFile } from "../cli/_value_file.ts";
import {
  checkFactoryOptions,
  checkOptionType,
  checkSignalOption,
} from "../../transports/_factory_options.ts";

/** Options for {@linkcode runManagedProxy}. */
export interface ManagedProxyOptions {
  /** Command-line arguments. */
  readonly args: readonly string[];
  /** Reads an environment variable. Defaults to `Deno.env.get`. */
  readonly getEnv?: (name: string) => string | undefined;
  /** The transports on offer, by name. Defaults to {@linkcode builtinTransports}. */
  readonly registry?: ReadonlyMap<string, Transport>;
  /** How the program is invoked, for the usage text. Defaults to `main.ts`. */
  readonly command?: string;
  /**
   * Where lines go, newline included. Defaults to the process's stdout. What
   * it throws is printed once on the console, and the proxy goes on.
   */
  readonly stdout?: (line: string) => void;
  /** Where error lines (version 2) and plain text go. Defaults to the process's stderr. */
  readonly stderr?: (line: string) => void;
  /**
   * Aborting it shuts the proxy down at once (as SIGTERM does). The process
   * signals, stdin and parent watch are only used when `process` is true.
   */
  readonly signal?: AbortSignal;
  /** Watch SIGTERM, SIGINT, stdin and the parent process. Defaults to true. */
  readonly process?: boolean;
  /**
   * The parent's input in place of stdin (for `CMESSAGE` / `SMESSAGE` lines;
   * its end is stdin closing). Defaults to the process's stdin when
   * `process` is true and stdin is not a terminal.
   */
  readonly stdin?: ReadableStream<Uint8Array>;
}

/**
 * Run the managed proxy until it should exit, and return the exit code
 * (PT 2.0 draft 1, sysexits.h): 0 graceful, 64 `ENV-ERROR` or no
 * configuration at all (the usage is printed), 69 `PROXY-ERROR`, 78
 * `VERSION-ERROR`. The configuration is `parseManagedConfig`'s, from flags
 * and `TOR_PT_*` variables (flags win); then `VERSION`, the version report
 * (`STATUS TRANSPORT=ptkit TYPE=version ...`), and the side
 * (`runClient`/`runServer`) until stdin closes (with
 * `TOR_PT_EXIT_ON_STDIN_CLOSE=1`), SIGTERM, SIGINT (drain; a second one,
 * half a second or more later, exits: one Ctrl-C reaches a PT under
 * `deno task` twice), or the parent dies. Each transport gets `local`
 * (files in the state directory) and `signals`: what it writes becomes a
 * `CMESSAGE` line (client) or `SMESSAGE` line (server) on stdout, and the
 * other kind read on stdin (whenever stdin is not a terminal) is delivered
 * to it; bad lines are logged and ignored.
 *
 * @param options Arguments, environment and output.
 * @returns The exit code.
 * @throws {TypeError} When an option is of the wrong type (`options` not an
 * object, `getEnv`, `stdout` or `stderr` not a function, `process` not a
 * boolean, `signal` not an `AbortSignal`, `stdin` not a `ReadableStream`,
 * `registry` not a `Map`), `args` is not an array of strings, or a
 * `registry` entry is not a transport, or its name is not a C identifier.
 *
 * @example Refusing a parent that speaks no known version
 * ```ts
 * import { runManagedProxy } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const lines: string[] = [];
 * const code = await runManagedProxy({
 *   args: ["-ptversion", "3", "-transports", "plain"],
 *   getEnv: () => undefined,
 *   stdout: (line) => lines.push(line),
 *   process: false,
 * });
 * deepStrictEqual([code, lines], [78, ["VERSION-ERROR no-version\n"]]);
 * ```
 */
export async function runManagedProxy(options: ManagedProxyOptions): Promise<number> {
  try {
    return await runProxy(options);
  } finally {
    // Lines still on their way to a parent that reads slowly go out before the exit.
    await flushStdout();
  }
}

/**
 * Check the options before anything runs: a value of the wrong type failed
 * with JavaScript's own error ('readEnv is not a function'), or was taken
 * (`process: "no"` as true, watching the application's own signals).
 */
function checkOptions(options: ManagedProxyOptions): void {
  const what = "run the managed proxy";
  checkFactoryOptions(options, what, ["getEnv", "stdout", "stderr"]);
  if (options === undefined) {
    throw new TypeError(`Cannot ${what}: options must be an object, got undefined`);
  }
  checkOptionType(options.process, "boolean", "process", what);
  checkOptionType(options.command, "string", "command", what);
  checkSignalOption(options.signal, what);
  if (options.stdin !== undefined && !(options.stdin instanceof ReadableStream)) {
    throw new TypeError(
      `Cannot ${what}: stdin must be a ReadableStream, got ${
        options.stdin === null ? "null" : typeof options.stdin
      }`,
    );
  }
  checkRegistry(options.registry, what);
}

async function runProxy(options: ManagedProxyOptions): Promise<number> {
  checkOptions(options);
  // Arguments that are not an array of strings are parseManagedConfig's to name.
  if (Array.isArray(options.args) && options.args[0] === WORKER_ARG && options.args.length === 1) {
    // A `-workers` child of this very program: its setup comes on stdin.
    const { runWorker } = await import("./_worker_main.ts");
    return await runWorker(options.registry ?? defaultRegistry);
  }
  const readEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const command = options.command ?? "main.ts";
  const registry = options.registry ?? defaultRegistry;
  // A transport may be offered under another name (an alias: the name
  // asked for is the one METHOD lines carry, checked as tor's names are).
  for (const transport of registry.values()) assertTransport(transport, "run the managed proxy");
  const env: Record<string, string> = {};
  const notUtf8: string[] = [];
  for (const name of ENV_VARS) {
    try {
      const value = readEnv(name);
      if (value !== undefined) env[name] = value;
    } catch (error) {
      // Deno throws InvalidData for a value that is not valid UTF-8.
      if (!(error instanceof Deno.errors.InvalidData)) throw error;
      notUtf8.push(name);
    }
  }
  // The application's stdout is guarded: a throw is printed once on the
  // console and the proxy goes on (it would otherwise fail a transport that
  // is serving, or end the side with its listeners open).
  const stdout = guardCallback(options.stdout, "runManagedProxy() stdout");
  const writer = new IpcOutput({
    ...(stdout === undefined ? {} : { stdout }),
    ...(options.stderr === undefined ? {} : { stderr: options.stderr }),
  });
  let config;
  try {
    config = parseManagedConfig(options.args, env, {
      notUtf8,
      known: registry.keys(),
      free: [...registry.values()].filter((t) => t.free === true).map((t) => t.name),
      cpus: navigator.hardwareConcurrency,
      readValueFile: (path, flag) => readValueFile(`@${path}`, flag),
    });
  } catch (error) {
    if (!(error instanceof ManagedConfigError)) throw error;
    if (error.keyword === undefined) {
      writer.text(usage(command), "stderr");
      writer.text(`${error.message}\n`, "stderr");
    } else {
      if (error.version !== undefined) versionLines(writer, error.version);
      writer.write({ type: error.keyword, message: error.message });
    }
    return error.exitCode;
  }
  if (config.kind === "help") {
    writer.text(usage(command));
    return 0;
  }
  if (config.kind === "ptkit-version") {
    writer.text(`ptkit ${PTKIT_VERSION}\n`);
    return 0;
  }
  const output = new IpcOutput({
    ...(stdout === undefined ? {} : { stdout }),
    ...(options.stderr === undefined ? {} : { stderr: options.stderr }),
    logLevel: config.logLevel,
  });
  versionLines(output, config.version);
  return await runManaged(config, {
    emit: (line) => output.write(line),
    registry,
    process: options.process ?? true,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
  });
}

/**
 * `VERSION`, then pt-spec's version report (tor records it). Older arti
 * refuses a `STATUS` line without `TRANSPORT=`, so one comes first, naming
 * ptkit.
 */
function versionLines(output: IpcOutput, version: string): void {
  output.write({ type: "VERSION", version });
  output.write({
    type: "STATUS",
    transport: "ptkit",
    fields: { TYPE: "version", IMPLEMENTATION: "ptkit", VERSION: PTKIT_VERSION },
  });
}
