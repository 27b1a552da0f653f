// Copyright the ptkit authors. MIT license.
// Internal: one side of the managed proxy from start to exit, whoever
// configured it (runManagedProxy from variables and flags, the friendly CLI
// from its own flags): the state directory, the signal hub, the shutdown
// watch, the side itself, and the exit code.

import type { Transport } from "../../transports/transport.ts";
import type { PtLine } from "../lines/pt_line.ts";
import type { ClientConfig, ServerConfig } from "./config.ts";
import { chooseRuntimeCrypto } from "../../net/native_crypto.ts";
import { describe } from "./_log.ts";
import { registry as defaultRegistry } from "./_registry.ts";
import { SignalHub } from "./_signal_hub.ts";
import { ShutdownWatch } from "./_shutdown.ts";

/** How a side runs beside its configuration. */
export interface RunHooks {
  /** Receives every protocol line (see `RunOptions.emit`). */
  readonly emit: (line: PtLine) => void;
  /** The transports on offer. Defaults to `registry`. */
  readonly registry?: ReadonlyMap<string, Transport>;
  /** Watch SIGTERM, SIGINT, stdin and the parent process. */
  readonly process: boolean;
  /** Aborting it shuts the side down at once (as SIGTERM does). */
  readonly signal?: AbortSignal;
  /** The parent's input in place of stdin (`CMESSAGE` / `SMESSAGE` lines). */
  readonly stdin?: ReadableStream<Uint8Array>;
}

/**
 * Run one side until it should exit: create the state directory (0700),
 * start watching for the end, log the configuration's warnings and the
 * unknown transports, start the side, serve.
 *
 * @returns The exit code: 0, or 64 when the state directory cannot be made
 * (after an `ENV-ERROR` line).
 */
export async function runManaged(
  config: ClientConfig | ServerConfig,
  hooks: RunHooks,
): Promise<number> {
  const { emit } = hooks;
  const log = (severity: "info" | "warning" | "notice", message: string) =>
    emit({ type: "LOG", severity, message });
  let stateDir = config.stateDir ?? Deno.cwd();
  if (!stateDir.startsWith("/")) stateDir = `${Deno.cwd()}/${stateDir}`;
  try {
    await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    emit({
      type: "ENV-ERROR",
      message: `Cannot create state directory: ${(error as Error).message}`,
    });
    return 64;
  }
  const registry = hooks.registry ?? defaultRegistry;
  const hub = new SignalHub(config.kind, emit);
  const watch = new ShutdownWatch({
    exitOnStdinClose: config.exitOnStdinClose,
    process: hooks.process,
    onLine: (line) => hub.handleLine(line),
    onTooLong: (length) => hub.tooLong(length),
    onClose: () => hub.close(),
    ...(hooks.signal === undefined ? {} : { signal: hooks.signal }),
    ...(hooks.stdin === undefined ? {} : { stdin: hooks.stdin }),
  });
  for (const message of config.warnings) log("warning", message);
  // Unknown names get no CMETHOD-ERROR (the spec says to ignore them, and
  // arti fails on one), but the operator is told.
  for (const name of new Set(config.transports.filter((t) => !registry.has(t)))) {
    log(
      "warning",
      `Unknown transport ${JSON.stringify(name.slice(0, 64))} ignored (available: ${
        [...registry.keys()].join(", ")
      })`,
    );
  }
  const options = { emit, registry, signals: (name: string) => hub.pipe(name) };
  try {
    // Each side loads only its own modules: a PT starts quickly.
    const running = config.kind === "server"
      ? await (await import("./server.ts")).runServer({ ...config, stateDir }, options)
      : await (await import("./client.ts")).runClient({ ...config, stateDir }, options);
    chooseCryptoAfterStart(log);
    await watch.serve(running, (message) => log("notice", message));
  } finally {
    watch.dispose();
  }
  return 0;
}

/**
 * Once `*METHODS DONE` is out, load the crypto backend transports will use
 * (so the first connection does not wait for it) and log the choice once.
 */
function chooseCryptoAfterStart(
  log: (severity: "info" | "warning", message: string) => void,
): void {
  setTimeout(() => {
    chooseRuntimeCrypto().then(
      ({ backend, reason }) => log("info", `Crypto: ${backend.name}, as ${reason}`),
      (error) => log("warning", `Crypto: cannot load a backend: ${describe(error)}`),
    );
  }, 0);
}
