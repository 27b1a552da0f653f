// Copyright the ptkit authors. MIT license.
// Internal: `-workers N`, the parent's half. The parent is worker 1: it
// reads or creates the state once, listens with SO_REUSEPORT and prints the
// CMETHOD/SMETHOD lines exactly as one process does. Then it starts N-1
// children (the main module again, `--ptkit-worker`), each sent on its stdin
// one line: the typed configuration, the addresses to join and the state
// the parent read (never on a command line, never printed). The pipe stays
// open: the parent's own input lines follow, and its end (the parent
// exited, even by SIGKILL) stops the child. Children send back protocol
// lines; their LOG, STATUS and *MESSAGE lines reach the parent's output,
// and with -metrics a `PTKIT-METRICS <json>` line every second that the
// parent adds to its own counts. A child that dies is started again after a
// growing pause, and logged; its counters stay in the sum.

import type { HostPort } from "../../net/address.ts";
import { DestinationPolicy } from "../../net/destination_policy.ts";
import { LineStream } from "../lines/_line_stream.ts";
import { MAX_PT_LINE_LENGTH, parsePtLine, type PtLine } from "../lines/pt_line.ts";
import type { ClientConfig, ServerConfig } from "./config.ts";
import type { RunningProxy } from "./runner.ts";
import { describe } from "./_log.ts";
import { PARTLY_DENIED, workerArgs, workerPaths, workerProgram } from "./_worker_command.ts";

export { WORKER_DENO_FLAGS, workersUnavailable } from "./_worker_command.ts";
export { RecordingStore } from "./_recording_store.ts";
import { metricsCore, type MetricsRegistry } from "../../net/metrics.ts";
import type { ReplayHub } from "./_replay_hub.ts";
import { type FamilySnapshot, type MetricsSnapshot, sumSnapshots } from "../../net/_metrics.ts";

/** What a child reads as the first line of its stdin. */
export interface WorkerSetup {
  /** This worker's number (2..count; the parent is 1). */
  readonly index: number;
  /** How many workers serve. */
  readonly count: number;
  /** The parent's process id: a child whose parent is already gone exits. */
  readonly parent: number;
  /** The side's configuration. */
  readonly config: ClientConfig | ServerConfig;
  /** Where each transport listens (the parent's bound addresses). */
  readonly listenAt: ReadonlyMap<string, HostPort>;
  /** The state the parent read or wrote, by key. */
  readonly state: ReadonlyMap<string, string>;
  /** What the servers' replay filters have seen so far, as replay lines (see `ReplayHub`). */
  readonly replays?: string;
}

/** The keyword of a child's metrics line (not a PT line: the parent keeps it). */
const METRICS_KEYWORD = "PTKIT-METRICS";

/**
 * A child's metrics as one line for its parent: the snapshot's series that
 * are not zero (the parent registers the same families), as JSON.
 *
 * @param snapshot The child's metrics.
 * @returns The line, newline included.
 */
export function encodeWorkerMetrics(snapshot: MetricsSnapshot): string {
  const families = snapshot.families
    .map((family) => ({
      ...family,
      series: family.series.filter((series) => series.value !== 0 || (series.sum ?? 0) !== 0),
    }))
    .filter((family) => family.series.length > 0);
  return `${METRICS_KEYWORD} ${JSON.stringify({ families })}\n`;
}

/**
 * A child's metrics line, read back.
 *
 * @param line The line, without its newline.
 * @returns The snapshot, or undefined when the line is not a metrics line
 * or is malformed.
 */
export function decodeWorkerMetrics(line: string): MetricsSnapshot | undefined {
  if (!line.startsWith(`${METRICS_KEYWORD} `)) return undefined;
  try {
    const value = JSON.parse(line.slice(METRICS_KEYWORD.length + 1));
    if (!Array.isArray(value?.families)) return undefined;
    for (const family of value.families) {
      if (
        typeof family?.name !== "string" || !Array.isArray(family.series) ||
        !Array.isArray(family.labelNames) ||
        !["counter", "gauge", "histogram"].includes(family.type)
      ) {
        return undefined;
      }
    }
    return value as MetricsSnapshot;
  } catch {
    return undefined;
  }
}

/** Longest setup line a child accepts, in characters. */
export const MAX_SETUP_LENGTH = 32 << 20;

/**
 * The setup as one JSON line: maps as `{"$map": entries}`, a destination
 * policy as `{"$policy": text}`.
 */
export function encodeWorkerSetup(setup: WorkerSetup): string {
  return JSON.stringify(setup, (_key, value) => {
    if (value instanceof Map) return { $map: [...value] };
    if (value instanceof DestinationPolicy) return { $policy: value.toString() };
    return value;
  }) + "\n";
}

/**
 * Parse a setup line.
 *
 * @throws {SyntaxError} When it is not one {@linkcode encodeWorkerSetup} made.
 */
export function decodeWorkerSetup(line: string): WorkerSetup {
  const setup = JSON.parse(line, (_key, value) => {
    if (typeof value === "object" && value !== null) {
      if (Array.isArray(value.$map)) return new Map(value.$map);
      if (typeof value.$policy === "string") return DestinationPolicy.parse(value.$policy);
    }
    return value;
  });
  if (
    typeof setup !== "object" || setup === null || !Number.isInteger(setup.index) ||
    !Number.isInteger(setup.count) || !Number.isInteger(setup.parent) ||
    !(setup.listenAt instanceof Map) || !(setup.state instanceof Map) ||
    (setup.config?.kind !== "server" && setup.config?.kind !== "client")
  ) {
    throw new SyntaxError("Cannot parse worker setup: missing or malformed fields");
  }
  return setup as WorkerSetup;
}

/** Options for {@linkcode WorkerPool}. */
export interface WorkerPoolOptions {
  /** How many workers serve, the parent included. */
  readonly count: number;
  readonly config: ClientConfig | ServerConfig;
  readonly listenAt: ReadonlyMap<string, HostPort>;
  readonly state: ReadonlyMap<string, string>;
  /** Where the children's lines go. */
  readonly emit: (line: PtLine) => void;
  /**
   * Notices and start-up warnings the parent already gave: a child's same
   * notice or warning is not repeated.
   */
  readonly said?: ReadonlySet<string>;
  /** First pause before a restart, in ms (doubles up to 30 s). Defaults to 500. */
  readonly restartDelay?: number;
  /**
   * The parent's metrics (`-metrics`): the children's reported counts are
   * added to them, a dead child's counters kept. Defaults to none.
   */
  readonly metrics?: MetricsRegistry;
  /**
   * The parent's share of the replay filters: children's replay lines go
   * to it, and a child that starts gets what it remembers. Defaults to none.
   */
  readonly replays?: ReplayHub;
}

/**
 * A dead child's snapshot with its open connections counted as closed by
 * `error` (the kernel closed them with the process), so that accepted stays
 * open plus closed by outcome once its gauges drop out of the sum. (A child
 * sends only series that are not zero: the `error` series, or the whole
 * family, may be missing; the parent's own family names it first.)
 */
function closeOpenConnections(snapshot: MetricsSnapshot): MetricsSnapshot {
  const open = snapshot.families.find((f) => f.name === "ptkit_connections_open");
  const lost = (open?.series ?? []).filter((series) => series.value > 0).map((series) => ({
    labels: [...series.labels, "error"],
    value: series.value,
  }));
  if (open === undefined || lost.length === 0) return snapshot;
  const closed: FamilySnapshot = {
    name: "ptkit_connections_total",
    help: "",
    type: "counter",
    labelNames: [...open.labelNames, "outcome"],
    series: lost,
  };
  return sumSnapshots([snapshot, { families: [closed] }], { gauges: false });
}

/** Longest pause between restarts of one worker, in ms. */
const MAX_RESTART_DELAY = 30_000;
/** A worker that served this long starts the next restart from the first pause. */
const HEALTHY_AFTER = 60_000;
/** Restarts in a row after which a worker is given up. */
const MAX_RESTARTS = 20;
/** How long children get to exit after SIGTERM before SIGKILL. */
const KILL_AFTER = 5_000;
/**
 * Bytes of lines (the parent's input, other workers' replay values) that a
 * child may leave unread; beyond, it is stuck (stopped, or its event loop
 * blocked) and is killed, then started again with a fresh setup line.
 */
const MAX_UNREAD = 1 << 20;

/**
 * A child's notice that it stops, or that its drain ended (the parent's own
 * notices say both, once for all).
 */
const SHUTDOWN_NOTICE =
  /^(Shutting down: |SIGINT: no new connections|SIGINT: the open connections have ended)/;

/** The parent's children, started, restarted, stopped together. */
export class WorkerPool implements RunningProxy {
  #options: WorkerPoolOptions;
  #slots: WorkerSlot[] = [];
  #stopping = false;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    for (let index = 2; index <= options.count; index++) {
      this.#slots.push(new WorkerSlot(index, options, () => this.#stopping));
    }
    if (options.metrics !== undefined) {
      metricsCore(options.metrics).include(() =>
        sumSnapshots(this.#slots.map((slot) => slot.metrics()))
      );
    }
  }

  /**
   * Start every child.
   *
   * @returns Why none could be started (the first could not be spawned:
   * nothing is retried, one process serves), or undefined.
   */
  start(): string | undefined {
    const [first, ...others] = this.#slots;
    const failure = first?.startFirst();
    if (failure !== undefined) {
      this.#stopping = true;
      return failure;
    }
    for (const slot of others) slot.start();
    return undefined;
  }

  /**
   * Pass one line on to every child (the parent's input, a replay line) but
   * the one numbered `except`.
   */
  forward(line: string, except?: number): void {
    const text = line.endsWith("\n") ? line : `${line}\n`;
    for (const slot of this.#slots) if (slot.index !== except) slot.send(text);
  }

  /** SIGINT to every child (they drain); resolves once they have exited. */
  async drain(): Promise<void> {
    this.#stopping = true;
    await Promise.allSettled(this.#slots.map((slot) => slot.stop("SIGINT")));
  }

  /** SIGTERM and end of input to every child; resolves once they have exited. */
  async close(): Promise<void> {
    this.#stopping = true;
    await Promise.allSettled(this.#slots.map((slot) => slot.stop("SIGTERM")));
  }

  /**
   * SIGKILL every child still running, at once: the parent is about to exit
   * without waiting for the rest of {@linkcode WorkerPool.close}'s grace (a
   * stopped child reads no end of input and would outlive it).
   */
  kill(): void {
    this.#stopping = true;
    for (const slot of this.#slots) slot.kill();
  }
}

/** One child process, started again when it dies. */
class WorkerSlot {
  /** Its number (2..count). */
  readonly index: number;
  #options: WorkerPoolOptions;
  #stopping: () => boolean;
  #child: Deno.ChildProcess | undefined;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #exited: Promise<void> = Promise.resolve();
  /** The running child's lines not yet taken by the pipe. */
  #unread = { bytes: 0 };
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failures = 0;
  #encoder = new TextEncoder();
  /** The running child's last reported metrics. */
  #metrics: MetricsSnapshot | undefined;
  /** Counters and histograms of children that have exited. */
  #retired: MetricsSnapshot = { families: [] };

  constructor(index: number, options: WorkerPoolOptions, stopping: () => boolean) {
    this.index = index;
    this.#options = options;
    this.#stopping = stopping;
  }

  #unprefixed(message: string): string {
    const prefix = `Worker ${this.index} of ${this.#options.count}: `;
    return message.startsWith(prefix) ? message.slice(prefix.length) : message;
  }

  #log(severity: "error" | "warning" | "notice" | "info", message: string): void {
    this.#options.emit({
      type: "LOG",
      severity,
      message: `Worker ${this.index} of ${this.#options.count}: ${message}`,
    });
  }

  /** The first start: a spawn that fails is returned, not retried. */
  startFirst(): string | undefined {
    try {
      this.#spawn(this.#spawnChild());
      return undefined;
    } catch (error) {
      return describe(error);
    }
  }

  #spawnChild(): Deno.ChildProcess {
    const args = workerArgs(workerPaths(this.#options.config));
    if (args === undefined) throw new Error(PARTLY_DENIED);
    return new Deno.Command(workerProgram(), {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  }

  start(): void {
    this.#timer = undefined;
    if (this.#stopping()) return;
    let child: Deno.ChildProcess;
    try {
      child = this.#spawnChild();
    } catch (error) {
      this.#log("error", `cannot start: ${describe(error)}`);
      this.#scheduleRestart(performance.now());
      return;
    }
    this.#spawn(child);
  }

  /** Set up a spawned child: its setup line, its lines, its restart. */
  #spawn(child: Deno.ChildProcess): void {
    const started = performance.now();
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#unread = { bytes: 0 };
    const { config, listenAt, state, count } = this.#options;
    // With what every process has seen: its filters have it before it listens.
    const replays = this.#options.replays?.snapshot();
    // The setup line (up to MAX_SETUP_LENGTH) does not count as unread.
    this.#stdin.write(this.#encoder.encode(
      encodeWorkerSetup({
        index: this.index,
        count,
        parent: Deno.pid,
        config,
        listenAt,
        state,
        ...(replays ? { replays } : {}),
      }),
    )).catch(() => {});
    const lines = this.#readLines(child);
    this.#exited = (async () => {
      const status = await child.status;
      await lines;
      this.#child = undefined;
      // Counters never go backwards: a dead child's last counts stay.
      if (this.#metrics !== undefined) {
        this.#retired = sumSnapshots([this.#retired, closeOpenConnections(this.#metrics)], {
          gauges: false,
        });
        this.#metrics = undefined;
      }
      this.#stdin?.close().catch(() => {});
      this.#stdin = undefined;
      if (this.#stopping()) return;
      this.#log(
        "warning",
        `exited (${status.signal ?? `code ${status.code}`}); starting it again`,
      );
      this.#scheduleRestart(started);
    })();
  }

  #scheduleRestart(started: number): void {
    if (performance.now() - started >= HEALTHY_AFTER) this.#failures = 0;
    this.#failures++;
    if (this.#failures > MAX_RESTARTS) {
      this.#log("error", `failed ${MAX_RESTARTS} times in a row; not started again`);
      return;
    }
    const delay = Math.min(
      (this.#options.restartDelay ?? 500) * 2 ** (this.#failures - 1),
      MAX_RESTART_DELAY,
    );
    this.#timer = setTimeout(() => this.start(), delay);
  }

  /** The child's protocol lines: LOG, STATUS and *MESSAGE go on; a method error is logged. */
  async #readLines(child: Deno.ChildProcess): Promise<void> {
    const reader = child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new LineStream({ maxLength: MAX_PT_LINE_LENGTH }))
      .getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const metrics = decodeWorkerMetrics(value);
        if (metrics !== undefined) {
          this.#metrics = metrics;
          continue;
        }
        if (this.#options.replays?.handleLine(value, this.index)) continue;
        let line: PtLine;
        try {
          line = parsePtLine(value);
        } catch {
          continue;
        }
        switch (line.type) {
          case "LOG":
            if (
              (line.severity === "notice" || line.severity === "warning") &&
              (this.#options.said?.has(this.#unprefixed(line.message)) ||
                // The parent said why it stops, once for all.
                (this.#stopping() && SHUTDOWN_NOTICE.test(this.#unprefixed(line.message))))
            ) {
              break;
            }
            this.#options.emit(line);
            break;
          case "STATUS":
          case "CMESSAGE":
          case "SMESSAGE":
            this.#options.emit(line);
            break;
          case "CMETHOD-ERROR":
          case "SMETHOD-ERROR":
            this.#log("warning", `${line.transport}: ${line.message}`);
            break;
          case "CMETHODS-DONE":
          case "SMETHODS-DONE":
            this.#log("info", "serving");
            break;
        }
      }
    } catch {
      // The child's stdout broke: it is exiting.
    }
  }

  /** What this slot's children counted: the running one's and those that exited. */
  metrics(): MetricsSnapshot {
    return this.#metrics === undefined
      ? this.#retired
      : sumSnapshots([this.#retired, this.#metrics]);
  }

  send(text: string): void {
    const stdin = this.#stdin;
    if (stdin === undefined) return;
    const bytes = this.#encoder.encode(text);
    const unread = this.#unread;
    if (unread.bytes + bytes.length > MAX_UNREAD) {
      if (unread.bytes <= MAX_UNREAD) {
        unread.bytes = Infinity; // Once.
        this.#log("warning", "does not read its input; killing it (it starts again)");
        try {
          this.#child?.kill("SIGKILL");
        } catch {
          // Already exited.
        }
      }
      return;
    }
    unread.bytes += bytes.length;
    stdin.write(bytes).then(() => unread.bytes -= bytes.length, () => {});
  }

  /** SIGKILL the running child, if any, now. */
  kill(): void {
    clearTimeout(this.#timer);
    try {
      this.#child?.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }

  async stop(signal: "SIGINT" | "SIGTERM"): Promise<void> {
    clearTimeout(this.#timer);
    const child = this.#child;
    if (child === undefined) return;
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
    if (signal === "SIGTERM") {
      const kill = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already exited.
        }
      }, KILL_AFTER);
      // Not awaited: a child that stopped reading would hold the close
      // (its lines still queued) and with it the kill.
      this.#stdin?.close().catch(() => {});
      await this.#exited;
      clearTimeout(kill);
    } else {
      await this.#exited;
    }
  }
}
