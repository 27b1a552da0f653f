// Copyright the ptkit authors. MIT license.
// Internal: one side of the managed proxy from start to exit, whoever
// configured it (runManagedProxy from variables and flags, the friendly CLI
// from its own flags): the state directory, the signal hub, the shutdown
// watch, the side itself, and the exit code.

import type { LocalStore, Transport } from "../../transports/transport.ts";
import type { HostPort } from "../../net/address.ts";
import type { PtLine } from "../lines/pt_line.ts";
import type { ClientConfig, ServerConfig } from "./config.ts";
import type { RunningProxy } from "./runner.ts";
import { formatHostPort } from "../../net/address.ts";
import type { MetricsRegistry } from "../../net/metrics.ts";
import type { MetricsSnapshot } from "../../net/_metrics.ts";
import { describe } from "./_log.ts";
import {
  builtinTransports as defaultRegistry,
  HELPER_TRANSPORTS,
  preloadTransport,
} from "./_registry.ts";
import { SignalHub } from "./_signal_hub.ts";
import { ShutdownWatch } from "./_shutdown.ts";
import { fileErrorReason, FileStore } from "./_file_store.ts";
import type { WorkerPool } from "./_workers.ts";
import { ReplayHub } from "./_replay_hub.ts";
import { lockStateDir } from "./_state_lock.ts";
import { inDirectory } from "./_state_dir.ts";
import type { ConnectionLimits } from "../../net/source_limits.ts";

/** How a side runs beside its configuration. */
export interface RunHooks {
  /** Receives every protocol line (see `RunOptions.emit`). */
  readonly emit: (line: PtLine) => void;
  /** The transports on offer, by name. Defaults to {@linkcode builtinTransports}. */
  readonly registry?: ReadonlyMap<string, Transport>;
  /** Watch SIGTERM, SIGINT, stdin and (see `watchParent`) the parent process. */
  readonly process: boolean;
  /**
   * With `process`, exit when the parent process dies (tor's PT, a SIP003
   * plugin, a `-workers` child). Defaults to true; the standalone commands
   * say false (they run on under `nohup` like any daemon).
   */
  readonly watchParent?: boolean;
  /**
   * Log the shutdown notices (`Shutting down: SIGTERM`). Defaults to true;
   * false for a second side in the same process (`main.ts start`), whose
   * signals the first one already announces.
   */
  readonly shutdownNotices?: boolean;
  /**
   * The cause the end of the input names (a `-workers` child: "parent
   * stopping"). Defaults to "stdin closed".
   */
  readonly inputEnd?: string;
  /** Aborting it shuts the side down at once (as SIGTERM does). */
  readonly signal?: AbortSignal;
  /** The parent's input in place of stdin (`CMESSAGE` / `SMESSAGE` lines). */
  readonly stdin?: ReadableStream<Uint8Array>;
  /** Where each transport listens, in place of the configuration's (a worker child). */
  readonly listenAt?: ReadonlyMap<string, HostPort>;
  /**
   * Called with where each transport listens, before its CMETHOD/SMETHOD
   * line (WebTunnel's SMETHOD carries a placeholder address instead).
   */
  readonly onListening?: (transport: string, address: HostPort) => void;
  /** Listen with `SO_REUSEPORT` (a worker child). */
  readonly reusePort?: boolean;
  /** The transports' storage in place of the state directory's files (a worker child). */
  readonly local?: LocalStore;
  /** How many processes share the listening ports (a worker child: its parent's `-workers`). */
  readonly sharedBy?: number;
  /**
   * A worker child's metrics go here (to its parent, which serves the sum)
   * in place of `config.metrics`' endpoint.
   */
  readonly reportMetrics?: (snapshot: MetricsSnapshot) => void;
  /**
   * A worker child's replay lines go here (to its parent, which passes them
   * to the other children); the parent's lines come on its input.
   */
  readonly sendReplay?: (line: string) => void;
  /** A worker child's replay lines from its parent's setup, taken before it listens. */
  readonly replaySnapshot?: string;
  /**
   * Awaited once the side has started (its `*METHODS DONE` is out), before
   * the state directory's lock is released: what it writes there (the
   * SIP003 server's client options) is written under the lock, as the
   * transports' state is.
   */
  readonly whileLocked?: () => Promise<void>;
}

/**
 * Why `mkdir -p` of `path` found something in its way, when that is a
 * symbolic link to nothing (the state on a volume not mounted yet): which
 * part of the path it is and where it points. `undefined` otherwise (a file
 * in the way is said by {@linkcode fileErrorReason}).
 */
async function danglingLink(path: string): Promise<string | undefined> {
  let at = "";
  for (const part of path.split("/").filter((p) => p !== "")) {
    at += `/${part}`;
    try {
      if (!(await Deno.lstat(at)).isSymlink) continue;
      await Deno.stat(at);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) return undefined;
      const target = await Deno.readLink(at).catch(() => undefined);
      if (target === undefined) return undefined;
      return `${at === path ? "it" : JSON.stringify(at)} is a symbolic link to ${
        JSON.stringify(target)
      }, which does not exist (a volume not mounted yet?); nothing was created`;
    }
  }
  return undefined;
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
  // Each side loads only its own modules, and starts loading them now: the
  // state directory is made and locked meanwhile (waits on the file
  // system), so a PT starts sooner. Awaited, and any failure thrown, where
  // the side starts, as before.
  const serverModule = config.kind === "server" ? import("./server.ts") : undefined;
  const clientModule = config.kind === "server" ? undefined : import("./client.ts");
  serverModule?.catch(() => {});
  clientModule?.catch(() => {});
  // The replay filters' module loads only where a server remembers for
  // other processes (a client, or one process alone, reaches *METHODS
  // DONE without it).
  const remembering = config.kind === "server" &&
      ((config.workers ?? 1) > 1 || hooks.replaySnapshot !== undefined)
    ? import("../../transports/_replay_filter.ts")
    : undefined;
  remembering?.catch(() => {});
  const registry = hooks.registry ?? defaultRegistry;
  // A server configures its transports before SMETHODS DONE: their modules
  // load meanwhile too (a client's wait until a connection needs them).
  if (config.kind === "server") {
    for (const name of config.transports) {
      const transport = registry.get(name);
      if (transport !== undefined) preloadTransport(transport);
    }
  }
  const log = (severity: "info" | "warning" | "notice", message: string) =>
    emit({ type: "LOG", severity, message });
  let stateDir = config.stateDir ?? Deno.cwd();
  if (!stateDir.startsWith("/")) stateDir = inDirectory(Deno.cwd(), stateDir);
  // No directory given and the store in memory (a SIP003 client plugin):
  // nothing is made, locked or written on disk.
  const diskless = config.stateDir === undefined && hooks.local !== undefined;
  try {
    if (!diskless) await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    // A state path is the operator's own, not a secret: it is named.
    const why = error instanceof Deno.errors.AlreadyExists
      ? await danglingLink(stateDir) ?? fileErrorReason(error)
      : fileErrorReason(error);
    emit({
      type: "ENV-ERROR",
      message: `Cannot use state directory ${JSON.stringify(stateDir)}: ${why}`,
    });
    return 64;
  }
  if (config.stateDir === undefined && !diskless) {
    // obfs4proxy refuses to start without one; PT 2.1 falls back to here:
    // said, as keys may be written where nobody expects them.
    log(
      "notice",
      `No state directory given (-state, TOR_PT_STATE_LOCATION): state is kept in ${stateDir}`,
    );
  }
  const hub = new SignalHub(config.kind, emit);
  let pool: WorkerPool | undefined;
  // The servers' replay filters, shared by the listeners of a transport
  // and, with workers, by every process (the parent remembers for children
  // started later).
  const replays = new ReplayHub({
    ...(hooks.sendReplay === undefined ? {} : { send: hooks.sendReplay }),
    ...(remembering === undefined ? {} : { remember: (await remembering).ReplayFilter }),
    ...(hooks.replaySnapshot === undefined ? {} : { initial: hooks.replaySnapshot }),
  });
  const watch = new ShutdownWatch({
    exitOnStdinClose: config.exitOnStdinClose,
    process: hooks.process,
    watchParent: hooks.watchParent ?? true,
    ...(hooks.inputEnd === undefined ? {} : { inputEnd: hooks.inputEnd }),
    onLine: (line) => {
      if (replays.handleLine(line)) return;
      hub.handleLine(line);
      pool?.forward(line);
    },
    onTooLong: (length) => hub.tooLong(length),
    onClose: () => hub.close(),
    ...(hooks.signal === undefined ? {} : { signal: hooks.signal }),
    ...(hooks.stdin === undefined ? {} : { stdin: hooks.stdin }),
  });
  for (const message of config.warnings) log("warning", message);
  // Unknown names get no CMETHOD-ERROR (the spec says to ignore them, and
  // arti fails on one), but the operator is told.
  for (const name of new Set(config.transports.filter((t) => !registry.has(t)))) {
    // "*" was an early pt-spec draft's "every transport": tor never sends it
    // (goptlib and lyrebird take it as a name too), so it is said why.
    log(
      "warning",
      `Unknown transport ${JSON.stringify(name.slice(0, 64))} ignored${
        name === "*" ? ": pt-spec has no wildcard, list the transports by name" : ""
      } (available: ${[...registry.keys()].join(", ")})`,
    );
  }
  const metrics = hooks.reportMetrics === undefined
    ? await startMetrics(config, log)
    : await workerMetrics(hooks.reportMetrics);
  // The workers' modules load only when they may serve: a start with one
  // process (a client, by default) reaches *METHODS DONE without them, and
  // the pool itself loads after it.
  const workerCommand = (config.workers ?? 1) > 1
    ? await import("./_worker_command.ts")
    : undefined;
  const workers = workerCommand === undefined
    ? 1
    : workerCount(config, hooks, log, workerCommand.workersUnavailable);
  const sharedBy = hooks.sharedBy ?? workers;
  // With workers, the parent notes where each transport listens and what
  // state it read, for its children. Where it can (FFI), it listens alone
  // and lets its children in once it has started (SO_REUSEPORT set
  // afterwards): a second PT started at the same moment on the same port
  // (another tor's, with other keys) passes the probe bind as well, and
  // listening with SO_REUSEPORT from the start would let it join, the
  // kernel spreading each one's clients over both without a word.
  const shareLater = workers > 1 && !hooks.reusePort && libcOpens();
  const bound = new Map<string, HostPort>();
  const recording = workers > 1
    ? new (await import("./_recording_store.ts")).RecordingStore(
      hooks.local ?? new FileStore(stateDir, {
        onNotice: (message) => log("notice", message),
        onWarning: (message) => log("warning", message),
      }),
    )
    : undefined;
  const local = recording ?? hooks.local;
  // The limits' module loads here only for workers (the side loads it anyway).
  const limits = sharedBy > 1
    ? perWorkerLimits(
      sharedBy,
      (await import("../../net/source_limits.ts")).DEFAULT_CONNECTION_LIMITS,
    )
    : undefined;
  // Notices the parent gave (an ignored option, say) and the warnings it
  // gave while it started (an auth cookie it cannot read) are said once,
  // not again by each worker. A warning said later is each process's own.
  const notices = new Set<string>();
  let starting = true;
  const options = {
    emit: workers > 1
      ? (line: PtLine) => {
        if (
          line.type === "LOG" && notices.size < 1024 &&
          (line.severity === "notice" || (starting && line.severity === "warning"))
        ) {
          notices.add(line.message);
        }
        emit(line);
      }
      : emit,
    // Where each transport listens (not an SMETHOD's address: WebTunnel's
    // is a placeholder).
    ...(workers > 1 || hooks.onListening !== undefined
      ? {
        onListening: (transport: string, address: HostPort) => {
          if (workers > 1) bound.set(transport, address);
          hooks.onListening?.(transport, address);
        },
      }
      : {}),
    registry,
    signals: (name: string) => hub.pipe(name),
    replays: (name: string) => replays.env(name),
    ...(hooks.listenAt === undefined ? {} : { listenAt: hooks.listenAt }),
    ...(hooks.reusePort || (workers > 1 && !shareLater) ? { reusePort: true } : {}),
    ...(local === undefined ? {} : { local }),
    ...(limits === undefined ? {} : { limits }),
    ...(metrics === undefined ? {} : { metrics: metrics.registry }),
  };
  let idleGc: Promise<() => void> | undefined;
  try {
    // The state directory's files are read or created by one starting
    // process at a time (a worker child has its parent's state instead).
    // A signal (or, once it waited 2 s, the input's end or the parent's)
    // while it waits ends the PT: the lock's holder may never finish
    // starting.
    const locking = hooks.local === undefined
      ? lockStateDir(stateDir, () => {
        log(
          "notice",
          `Waiting for another process starting on the state directory ${stateDir}`,
        );
        watch.watchEarly();
      })
      : Promise.resolve(() => {});
    const unlock = await Promise.race([locking, watch.stopAsked.then(() => undefined)]);
    if (unlock === undefined) {
      // Released once had (the waiting thread cannot be called back).
      void locking.then((release) => release());
      const why = await watch.stopAsked;
      if (why !== "" && hooks.shutdownNotices !== false) log("notice", `Shutting down: ${why}`);
      return 0;
    }
    let running: RunningProxy;
    try {
      running = config.kind === "server"
        ? await (await serverModule!).runServer({ ...config, stateDir }, options)
        : await (await clientModule!).runClient({ ...config, stateDir }, options);
      await hooks.whileLocked?.();
    } finally {
      unlock();
    }
    starting = false;
    // The library's calls are bound now, after *METHODS DONE.
    const libc = shareLater ? await import("../../net/_libc.ts") : undefined;
    const closed = libc === undefined
      ? undefined
      : [...bound].find(([, at]) => !libc.allowReusePort(at));
    if (closed !== undefined) {
      log(
        "warning",
        `-workers ${workers}: one process serves: cannot let workers join ${
          closed[0]
        }'s listener at ${formatHostPort(closed[1])}`,
      );
    } else if (workers > 1 && bound.size > 0) {
      const { WorkerPool } = await import("./_workers.ts");
      const children = new WorkerPool({
        count: workers,
        config: { ...config, stateDir },
        listenAt: bound,
        state: recording!.values,
        emit,
        said: notices,
        ...(metrics === undefined ? {} : { metrics: metrics.registry }),
        replays,
      });
      replays.send = (line, from) => children.forward(line, from);
      const failure = children.start();
      if (failure !== undefined) {
        log(
          "warning",
          `-workers ${workers}: one process serves: cannot start worker processes: ${failure}`,
        );
      } else {
        pool = children;
        const side = running;
        running = {
          drain: async () => void await Promise.allSettled([side.drain(), children.drain()]),
          close: async () => void await Promise.allSettled([side.close(), children.close()]),
        };
      }
    }
    chooseCryptoAfterStart(log);
    // The garbage of the start and of bursts of connections is given back
    // once the process goes quiet (V8 alone would keep it resident).
    idleGc = import("./_idle_gc.ts").then(({ startIdleCollector }) => startIdleCollector());
    await watch.serve(
      running,
      hooks.shutdownNotices === false ? () => {} : (message) => log("notice", message),
    );
  } finally {
    watch.dispose();
    if (idleGc !== undefined) (await idleGc.catch(() => () => {}))();
    // The shutdown waited at most a moment: no child outlives the parent.
    pool?.kill();
    await metrics?.stop();
  }
  return 0;
}

/**
 * Whether libc's socket calls can be bound (`openLibc` in net/_libc.ts:
 * 64-bit Linux, FFI allowed, libc.so.6 found), found by opening the library
 * without binding any call: binding them cost a start 5-10 ms before
 * *METHODS DONE, this about 1 ms.
 */
function libcOpens(): boolean {
  try {
    if (Deno.build.os !== "linux") return false;
    if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return false;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return false;
    Deno.dlopen("libc.so.6", {}).close();
    return true;
  } catch {
    return false;
  }
}

/** The metrics registry, served or reported, when `-metrics` was given. */
interface RunningMetrics {
  readonly registry: MetricsRegistry;
  /** Stops serving or reporting (a worker reports its last counts first). */
  readonly stop: () => Promise<void>;
}

/**
 * Serve metrics where `config.metrics` says. A port that cannot be bound is
 * logged as a warning and the side runs on without the endpoint (metrics
 * must not take a bridge down).
 */
async function startMetrics(
  config: ClientConfig | ServerConfig,
  log: (severity: "warning" | "notice", message: string) => void,
): Promise<RunningMetrics | undefined> {
  if (config.metrics === undefined) return undefined;
  const { MetricsRegistry } = await import("../../net/metrics.ts");
  const registry = new MetricsRegistry();
  try {
    const server = registry.serve(config.metrics);
    log("notice", `Serving metrics at http://${formatHostPort(server.addr)}/metrics`);
    if (!/^(127\.|::1$|::ffff:127\.)/.test(server.addr.hostname)) {
      // Counts of connections, handshakes and probes tell a censor this is a
      // bridge: said, since -metrics 0.0.0.0:PORT is easily written.
      log(
        "warning",
        `Metrics are served beyond loopback (${server.addr.hostname}): anyone who reaches ` +
          `port ${server.addr.port} can read them; firewall it, or serve on 127.0.0.1`,
      );
    }
    return { registry, stop: () => server.shutdown().catch(() => {}) };
  } catch (error) {
    // describe() names the address (the operator's own), not the flag
    // (-metrics under tor, --metrics in main.ts server).
    log("warning", `Cannot serve metrics: ${describe(error)}`);
    return { registry, stop: () => Promise.resolve() };
  }
}

/**
 * A `-workers` child's metrics: counted here, reported to the parent (which
 * serves the sum) every second and once more when the side stops.
 */
async function workerMetrics(
  report: (snapshot: MetricsSnapshot) => void,
): Promise<RunningMetrics> {
  const { MetricsRegistry, metricsCore } = await import("../../net/metrics.ts");
  // The parent reports the process metrics.
  const registry = new MetricsRegistry({ process: false });
  const send = () => report(metricsCore(registry).snapshot());
  const timer = setInterval(send, METRICS_REPORT_INTERVAL);
  return {
    registry,
    stop: () => {
      clearInterval(timer);
      send();
      return Promise.resolve();
    },
  };
}

/** How often a `-workers` child reports its metrics to the parent, in ms. */
const METRICS_REPORT_INTERVAL = 1000;

/**
 * How many processes serve: `config.workers` where processes can share a
 * port (Linux, a process of its own), else 1. A fixed port that another
 * socket holds stays an error of its transport, as with one process:
 * SO_REUSEPORT would join the other socket's group instead (a socket that
 * binds after this probe is kept out by the parent listening alone, see
 * `shareLater` in runManaged).
 */
function workerCount(
  config: ClientConfig | ServerConfig,
  hooks: RunHooks,
  log: (severity: "info" | "warning" | "notice", message: string) => void,
  workersUnavailable: (config: ClientConfig | ServerConfig) => string | undefined,
): number {
  const workers = config.workers ?? 1;
  if (workers <= 1) return 1;
  const alone = config.transports.find((name) => HELPER_TRANSPORTS.has(name));
  if (alone !== undefined) {
    log("info", `-workers: one process serves ${alone} (it has one helper process)`);
    return 1;
  }
  if (!hooks.process || Deno.build.os !== "linux") {
    log("info", "-workers: one process here (workers need Linux and a process of their own)");
    return 1;
  }
  // Without run permission every spawn would fail: say so once, serve alone.
  const unavailable = workersUnavailable(config);
  if (unavailable !== undefined) {
    log("warning", `-workers ${workers}: one process serves: ${unavailable}`);
    return 1;
  }
  const fixed = config.kind === "server"
    ? [...config.bindAddrs.values()].filter((at) => at.port !== 0)
    : config.listen.port === 0
    ? []
    : [config.listen];
  for (const at of fixed) {
    try {
      Deno.listen({ hostname: at.hostname, port: at.port }).close();
    } catch {
      // Its transport's own *-ERROR line says why; the worker count is beside the point.
      log("info", `-workers: ${formatHostPort(at)} cannot be bound; one process tries it`);
      return 1;
    }
  }
  return workers;
}

/** Whether this process has logged its crypto backend (see chooseCryptoAfterStart). */
let cryptoLogged = false;

/**
 * Once `*METHODS DONE` is out, load the crypto backend transports will use
 * (so the first connection does not wait for it) and log the choice once per
 * process: `main.ts start` runs a server and a client side here, and both
 * use the same backend.
 */
function chooseCryptoAfterStart(
  log: (severity: "info" | "warning", message: string) => void,
): void {
  if (cryptoLogged) return;
  cryptoLogged = true;
  setTimeout(() => {
    // Its modules load here too, not before the side starts.
    import("../../net/native_crypto.ts").then(({ chooseRuntimeCrypto }) => chooseRuntimeCrypto())
      .then(
        ({ backend, reason }) => log("info", `Crypto: ${backend.name}, as ${reason}`),
        (error) => log("warning", `Crypto: cannot load a backend: ${describe(error)}`),
      );
  }, 0);
}

/**
 * The connection limits of one of `count` processes sharing a port: the
 * kernel spreads a source's connections over them (SO_REUSEPORT hashes the
 * address pair), so each takes its share of the per-source limits and a
 * source still holds no more than one process would let it. The
 * per-listener limit stays per process (descriptors are per process).
 */
function perWorkerLimits(
  count: number,
  defaults: Readonly<Required<ConnectionLimits>>,
): ConnectionLimits {
  return {
    maxHandshakesPerSource: Math.ceil(defaults.maxHandshakesPerSource / count),
    maxConnectionsPerSource: Math.ceil(defaults.maxConnectionsPerSource / count),
  };
}
