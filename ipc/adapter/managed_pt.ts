// Copyright the ptkit authors. MIT license.

import { MAX_PT_LINE_LENGTH, parsePtLine, type PtLine } from "../lines/pt_line.ts";
import { RepeatedKeyLog } from "../lines/_first_value.ts";
import { type PtLaunchResult, PtStartup } from "./pt_startup.ts";
import {
  PtExitEvent,
  PtFailedEvent,
  PtLogEvent,
  PtMessageEvent,
  PtStatusEvent,
} from "./pt_events.ts";
import { formatMessageLine } from "../lines/_message_line.ts";
import { parseTransportOptions } from "../lines/_args.ts";
import { LineStream } from "../lines/_line_stream.ts";
import { checkTimeout } from "../../net/address.ts";
import { checkOptionType } from "../../transports/_factory_options.ts";

/** When and how often a PT that died is launched again. */
export interface PtRestartPolicy {
  /** Relaunches in a row before giving up. Defaults to 5. */
  readonly maxAttempts?: number;
  /** Delay before the first relaunch, in milliseconds; it doubles each time. Defaults to 500. */
  readonly initialDelay?: number;
  /** The longest delay, in milliseconds. Defaults to 30000. */
  readonly maxDelay?: number;
  /**
   * A run that lasted this long (milliseconds) resets the count of
   * relaunches. Defaults to 60000.
   */
  readonly stableAfter?: number;
}

/** Options common to {@linkcode launchClient} and {@linkcode launchServer}. */
export interface PtLaunchOptions {
  /**
   * The PT executable: looked up in `PATH` when it has no slash; a relative
   * path with one is taken from this process's working directory, whatever
   * `cwd` is.
   */
  readonly path: string;
  /** Its command-line arguments. Defaults to none. */
  readonly args?: readonly string[];
  /** The transports to start (`TOR_PT_CLIENT_TRANSPORTS` / `TOR_PT_SERVER_TRANSPORTS`). */
  readonly transports: readonly string[];
  /**
   * `TOR_PT_STATE_LOCATION` (created 0700). A relative path is taken from
   * this process's working directory, whatever `cwd` is. Defaults to a fresh
   * temporary directory, removed on close.
   */
  readonly stateDir?: string;
  /** `TOR_PT_MANAGED_TRANSPORT_VER`. Defaults to `["1", "2"]`. */
  readonly versions?: readonly string[];
  /** Extra environment variables for the PT. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Variables copied from this process's environment when set; nothing else
   * is inherited. Defaults to `PATH`, `HOME`, `TMPDIR`, `LANG`, `LC_ALL`,
   * `TZ`, `DENO_DIR` and `NO_COLOR`.
   */
  readonly inheritEnv?: readonly string[];
  /** Working directory of the PT. Defaults to this process's. */
  readonly cwd?: string;
  /**
   * Milliseconds the PT has to finish starting (`CMETHODS DONE` /
   * `SMETHODS DONE`). Defaults to 30000.
   */
  readonly startTimeout?: number;
  /**
   * Milliseconds of each wait when stopping: after closing stdin, then after
   * SIGTERM (then SIGKILL). Defaults to 2000.
   */
  readonly stopTimeout?: number;
  /** Relaunch a PT that dies, or `false` for never. Defaults to `{}` (the defaults). */
  readonly restart?: PtRestartPolicy | false;
  /**
   * Stops the PT when it aborts, as `close()` does: a start in progress
   * (`launchClient`, `launchServer`) then rejects with the signal's reason,
   * and an already aborted signal spawns nothing. Defaults to none.
   */
  readonly signal?: AbortSignal;
}

/** Environment variables a PT inherits by default: the essentials, nothing else. */
export const DEFAULT_INHERITED_ENV: readonly string[] = [
  "PATH",
  "HOME",
  "TMPDIR",
  "LANG",
  "LC_ALL",
  "TZ",
  "DENO_DIR",
  "NO_COLOR",
];

/** The events of a {@linkcode ManagedPt}, by type. */
export interface PtEventMap {
  /** A `LOG` line, or a warning of the adapter's own. */
  log: PtLogEvent;
  /** A `STATUS` line. */
  status: PtStatusEvent;
  /** A `CMESSAGE` line of a client PT or an `SMESSAGE` line of a server PT. */
  message: PtMessageEvent;
  /** The PT exited without being asked to. */
  exit: PtExitEvent;
  /** A relaunched PT finished starting. */
  ready: Event;
  /** The adapter gave up relaunching. */
  failed: PtFailedEvent;
}

/** @internal How a client or server PT differs. */
export interface PtRole {
  /** `client` or `server`. */
  readonly kind: "client" | "server";
  /** The role's `TOR_PT_*` variables for the next launch. */
  env(): Record<string, string>;
  /** Whether `TOR_PT_PROXY` is set (so `PROXY DONE` is required). */
  readonly proxy: boolean;
  /** Called with the result of every successful launch. */
  update(result: PtLaunchResult): void;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VERSION = /^[\x21-\x2b\x2d-\x7e]+$/;
const TAIL = 2048;
/** Ignored start-up lines a failure's message names, at most. */
const MAX_IGNORED_SHOWN = 3;
const DRAIN_GRACE = 500;

interface Run {
  readonly child: Deno.ChildProcess;
  readonly stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly status: Promise<Deno.CommandStatus>;
  /** The process exited (its pid may be reused from then on). */
  exited: boolean;
  /** The process exited and both output readers finished (or were cancelled). */
  finished: Promise<void>;
  stderrTail: string;
  stopping: Promise<void> | undefined;
}

/**
 * A managed PT process (the parent side of the managed-proxy IPC): launches
 * it with a clean environment, reads every protocol line, reports `LOG` and
 * `STATUS` lines as events, relaunches it with exponential backoff when it
 * dies, and stops it the spec's way (close stdin, wait, SIGTERM, wait,
 * SIGKILL). Made by {@linkcode launchClient} and {@linkcode launchServer}.
 *
 * Events: `"log"` ({@linkcode PtLogEvent}), `"status"`
 * ({@linkcode PtStatusEvent}), `"message"` ({@linkcode PtMessageEvent}, an
 * out-of-band message for the PT on the other side, which
 * {@linkcode ManagedPt.sendMessage} delivers), `"exit"` ({@linkcode PtExitEvent}, an
 * unexpected exit), `"ready"` (a relaunch finished starting), `"failed"`
 * ({@linkcode PtFailedEvent}, gave up relaunching). Listeners are called as
 * by any `EventTarget` (Deno's `WebSocket` and `Worker` too): one that
 * throws stops neither the PT nor the other listeners, and its exception
 * is reported as uncaught (`globalThis`'s `"error"` event), which ends a
 * Deno program unless a handler there calls `preventDefault()`. Catch in
 * the listener what it may throw.
 *
 * @example Watching a PT's log lines
 * ```ts
 * import { launchClient } from "@ptkit/ptkit/ipc/adapter";
 * import { ok } from "node:assert";
 *
 * await using pt = await launchClient({ path: "obfs4proxy", transports: ["obfs4"] });
 * pt.addEventListener("log", (event) => console.log(event.severity, event.message));
 * ok(pt.pid !== undefined);
 * ```
 */
export class ManagedPt extends EventTarget implements AsyncDisposable {
  #options: PtLaunchOptions;
  #role: PtRole;
  #versions: readonly string[];
  #stateDir: string | undefined;
  #ownStateDir = false;
  #run: Run | undefined;
  #version: string | undefined;
  #state: "new" | "starting" | "running" | "restarting" | "failed" | "closed" = "new";
  #ready: Promise<void> = Promise.resolve();
  #readyResolve: (() => void) | undefined;
  #readyReject: ((error: Error) => void) | undefined;
  #failure: Error | undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  #startedAt = 0;
  #closing: Promise<void> | undefined;
  #abortLaunch: ((error: Error) => void) | undefined;
  #repeated = new RepeatedKeyLog((message) => this.#warn(message));
  /** The executable as spawned (a relative path made absolute at the first launch). */
  #command: string | undefined;

  /**
   * Use {@linkcode launchClient} or {@linkcode launchServer}.
   *
   * @param options The launch options.
   * @param role What differs between clients and servers.
   * @ignore
   */
  constructor(options: PtLaunchOptions, role: PtRole) {
    super();
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `Cannot launch PT: options must be an object, got ${
          options === null ? "null" : typeof options
        }`,
      );
    }
    if (typeof options.path !== "string" || options.path === "") {
      throw new TypeError(`Cannot launch PT: invalid path ${JSON.stringify(options.path)}`);
    }
    if (
      options.stateDir !== undefined &&
      (typeof options.stateDir !== "string" || options.stateDir === "")
    ) {
      throw new TypeError(
        `Cannot launch PT: invalid stateDir ${JSON.stringify(options.stateDir)}`,
      );
    }
    if (!Array.isArray(options.transports) || options.transports.length === 0) {
      throw new TypeError("Cannot launch PT: transports must be a non-empty array of names");
    }
    for (const name of options.transports) {
      if (typeof name !== "string" || !NAME.test(name)) {
        throw new TypeError(`Cannot launch PT: invalid transport name ${JSON.stringify(name)}`);
      }
    }
    const twice = options.transports.find((name, i) => options.transports.indexOf(name) !== i);
    if (twice !== undefined) {
      throw new TypeError(`Cannot launch PT: transport ${JSON.stringify(twice)} is listed twice`);
    }
    checkStringList(options.args, "args");
    checkStringList(options.versions, "versions");
    checkStringList(options.inheritEnv, "inheritEnv");
    checkStringRecord(options.env, "env");
    checkOptionType(options.cwd, "string", "cwd", "launch PT");
    this.#versions = options.versions ?? ["1", "2"];
    if (this.#versions.length === 0 || !this.#versions.every((v) => VERSION.test(v))) {
      throw new TypeError(
        `Cannot launch PT: invalid versions ${JSON.stringify(this.#versions)}`,
      );
    }
    for (const key of ["startTimeout", "stopTimeout"] as const) {
      checkTimeout(options[key], key, "launch PT");
    }
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot launch PT: signal must be an AbortSignal, got ${
          options.signal === null ? "null" : typeof options.signal
        }`,
      );
    }
    if (options.restart !== undefined && options.restart !== false) {
      if (typeof options.restart !== "object" || options.restart === null) {
        throw new TypeError(
          `Cannot launch PT: restart must be an object or false, got ${
            options.restart === null ? "null" : typeof options.restart
          }`,
        );
      }
      for (const key of ["maxAttempts", "initialDelay", "maxDelay", "stableAfter"] as const) {
        const value = options.restart[key];
        if (value !== undefined && typeof value !== "number") {
          throw new TypeError(
            `Cannot launch PT: restart.${key} must be a number, got ${typeof value}`,
          );
        }
        if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
          throw new RangeError(
            `Cannot launch PT: restart.${key} must be a non-negative integer, got ${value}`,
          );
        }
      }
    }
    this.#options = options;
    this.#role = role;
  }

  /**
   * Listen for an event (typed for the events in {@linkcode PtEventMap}).
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options The usual listener options.
   */
  override addEventListener<K extends keyof PtEventMap>(
    type: K,
    listener: (event: PtEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Listen for an event.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options The usual listener options.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | ((event: never) => void) | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  /**
   * Stop listening.
   *
   * @param type The event type.
   * @param listener The listener given to `addEventListener`.
   * @param options The usual listener options.
   */
  override removeEventListener<K extends keyof PtEventMap>(
    type: K,
    listener: (event: PtEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Stop listening.
   *
   * @param type The event type.
   * @param listener The listener given to `addEventListener`.
   * @param options The usual listener options.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | ((event: never) => void) | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(
      type,
      listener as EventListenerOrEventListenerObject | null,
      options,
    );
  }

  /** The version the PT negotiated (`"1"` or `"2"` usually). */
  get version(): string | undefined {
    return this.#version;
  }

  /**
   * The process id of the running PT, if one runs: `undefined` once it has
   * exited (the system may give the number to another process).
   */
  get pid(): number | undefined {
    const run = this.#run;
    return run === undefined || run.exited ? undefined : run.child.pid;
  }

  /** The state directory (`TOR_PT_STATE_LOCATION`). */
  get stateDir(): string | undefined {
    return this.#stateDir;
  }

  /**
   * Resolves when the PT is up (at once, unless a relaunch is under way);
   * rejects once the adapter gave up or was closed.
   *
   * @returns When the PT can be used.
   */
  ready(): Promise<void> {
    if (this.#state === "closed") return Promise.reject(new Error("PT adapter is closed"));
    if (this.#state === "failed") return Promise.reject(this.#failure);
    return this.#ready;
  }

  /**
   * Launch the PT and wait until it reported its transports (what
   * {@linkcode launchClient} and {@linkcode launchServer} do after
   * construction). Construct, add event listeners, then call it to see the
   * `LOG` lines a PT prints while starting.
   *
   * @returns What the PT reported.
   * @throws {Error} When the PT fails to start; the adapter is then closed.
   */
  async start(): Promise<PtLaunchResult> {
    if (this.#state !== "new") throw new Error("PT adapter was already started");
    this.#state = "starting";
    const signal = this.#options.signal;
    try {
      signal?.throwIfAborted();
      signal?.addEventListener("abort", this.#onAbort, { once: true });
      if (this.#options.stateDir !== undefined) {
        // Absolute: the PT may run in another working directory (`cwd`).
        this.#stateDir = absolutePath(this.#options.stateDir);
        await Deno.mkdir(this.#stateDir, { recursive: true, mode: 0o700 });
      } else {
        this.#stateDir = await Deno.makeTempDir({ prefix: "ptkit_pt_" });
        this.#ownStateDir = true;
      }
      if ((this.#state as string) === "closed") {
        // close() ran while the directory was made: spawn nothing, and
        // remove a directory close() could not know of yet.
        if (this.#ownStateDir) {
          await Deno.remove(this.#stateDir, { recursive: true }).catch(() => {});
        }
        if (signal?.aborted) throw signal.reason;
        throw new Error("PT adapter closed while the PT was starting");
      }
      return await this.#launch();
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /**
   * Stop the PT (close stdin, wait, SIGTERM, wait, SIGKILL), cancel any
   * pending relaunch, and remove a temporary state directory. Calling it
   * again returns the same promise.
   *
   * @returns Resolves once the process has exited.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#state = "closed";
      this.#options.signal?.removeEventListener("abort", this.#onAbort);
      clearTimeout(this.#restartTimer);
      this.#abortLaunch?.(new Error("PT adapter closed while the PT was starting"));
      this.#readyReject?.(new Error("PT adapter is closed"));
      if (this.#run !== undefined) await this.#stop(this.#run);
      if (this.#ownStateDir && this.#stateDir !== undefined) {
        await Deno.remove(this.#stateDir, { recursive: true }).catch(() => {});
      }
    })();
    return this.#closing;
  }

  /**
   * Deliver an out-of-band message from the other side to one of the PT's
   * transports: writes `SMESSAGE <transport> <base64>` to a client PT's
   * stdin, `CMESSAGE <transport> <base64>` to a server PT's. Relay a client
   * PT's `"message"` events to the server PT this way, and back.
   *
   * @param transport One of the transports the PT was launched with.
   * @param payload 1 to 16384 bytes.
   * @returns Resolves once the line was written.
   * @throws {TypeError} When the transport was not launched.
   * @throws {RangeError} When the payload is empty or too large.
   * @throws {Error} When the PT is not running.
   */
  async sendMessage(transport: string, payload: Uint8Array): Promise<void> {
    const kind = this.#role.kind === "client" ? "SMESSAGE" : "CMESSAGE";
    if (!this.#options.transports.includes(transport)) {
      throw new TypeError(
        `Cannot send ${kind}: transport ${JSON.stringify(transport)} was not launched`,
      );
    }
    const line = formatMessageLine(kind, transport, payload);
    const run = this.#run;
    if (this.#state !== "running" || run === undefined || run.stopping !== undefined) {
      throw new Error(`Cannot send ${kind}: the PT is not running`);
    }
    await run.stdin.write(new TextEncoder().encode(line));
  }

  /** The signal aborted: a start in progress fails with its reason, then the PT stops. */
  #onAbort = (): void => {
    this.#abortLaunch?.(this.#options.signal!.reason);
    this.close().catch(() => {});
  };

  /** Stop the PT. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #env(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of this.#options.inheritEnv ?? DEFAULT_INHERITED_ENV) {
      let value: string | undefined;
      try {
        value = Deno.env.get(name);
      } catch {
        // No permission to read it: not inherited.
      }
      if (value !== undefined) env[name] = value;
    }
    Object.assign(env, this.#options.env);
    env.TOR_PT_MANAGED_TRANSPORT_VER = this.#versions.join(",");
    env.TOR_PT_STATE_LOCATION = this.#stateDir!;
    env.TOR_PT_EXIT_ON_STDIN_CLOSE = "1";
    Object.assign(env, this.#role.env());
    return env;
  }

  /** One launch: spawn, read lines until `*METHODS DONE`, or fail and stop it. */
  async #launch(): Promise<PtLaunchResult> {
    const { path } = this.#options;
    const env = this.#env();
    this.#secrets = secretsOf(env);
    // A relative path with a slash is this process's, as stateDir's is,
    // not the PT's working directory's (`cwd`); fixed at the first launch.
    this.#command ??= path.includes("/") ? absolutePath(path) : path;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.#command, {
        args: [...(this.#options.args ?? [])],
        env,
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        ...(this.#options.cwd === undefined ? {} : { cwd: this.#options.cwd }),
      }).spawn();
    } catch (error) {
      // Deno says "entity not found" for a name missing from PATH.
      const why = !(error instanceof Deno.errors.NotFound)
        ? (error as Error).message
        : path.includes("/")
        ? "no such file"
        : "not found in PATH (install it, or give its full path)";
      throw new Error(`Cannot launch PT ${path}: ${why}`, { cause: error });
    }
    const kind = this.#role.kind;
    const doneText = kind === "client" ? "CMETHODS DONE" : "SMETHODS DONE";
    let settled = false;
    // What was ignored while starting, for the failure's message: the
    // caller of launchClient / launchServer has no listener for the
    // warnings yet, and a malformed CMETHOD is otherwise only "started none".
    const ignored: string[] = [];
    const warn = (message: string) => {
      if (!settled && ignored.length < MAX_IGNORED_SHOWN) ignored.push(message);
      this.#warn(message);
    };
    const startup = new PtStartup({
      kind,
      versions: this.#versions,
      requested: new Set(this.#options.transports),
      proxy: this.#role.proxy,
      warn,
    });
    let resolveStart!: (result: PtLaunchResult) => void;
    let rejectStart!: (error: Error) => void;
    const started = new Promise<PtLaunchResult>((resolve, reject) => {
      resolveStart = resolve;
      rejectStart = reject;
    });

    const status = child.status;
    const readers: Promise<void>[] = [];
    const cancels: (() => Promise<void>)[] = [];
    const run: Run = {
      child,
      stdin: child.stdin.getWriter(),
      status,
      finished: Promise.resolve(),
      stderrTail: "",
      stopping: undefined,
      exited: false,
    };
    status.then(() => run.exited = true, () => run.exited = true);
    this.#run = run;
    run.stdin.closed.catch(() => {});

    // The PT's words (its error lines, its stderr) may repeat a secret it
    // was given (a proxy's password, a server's keys): never in ours.
    const withTail = (message: string) => {
      const tail = run.stderrTail.trim();
      return redact(tail === "" ? message : `${message}; stderr: ${tail}`, this.#secrets);
    };
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      // "Ignored a malformed line ...": lowercased after the message.
      const why = ignored.length === 0
        ? ""
        : ` (${ignored.map((text) => text[0]!.toLowerCase() + text.slice(1)).join("; ")})`;
      rejectStart(new Error(withTail(`PT ${path} failed to start: ${message}${why}`)));
    };
    this.#abortLaunch = (error) => {
      if (!settled) {
        settled = true;
        rejectStart(error);
      }
    };

    const handle = (line: string, fromStderr: boolean) => {
      let parsed: PtLine;
      try {
        parsed = parsePtLine(line);
      } catch (error) {
        if (!fromStderr) {
          warn(`Ignored a malformed line from the PT: ${(error as Error).message}`);
        }
        return;
      }
      // PT 2.0 sends error lines to stderr; other stderr text is not protocol.
      if (fromStderr && !parsed.type.endsWith("-ERROR")) return;
      if ("repeatedKeys" in parsed && parsed.repeatedKeys !== undefined) {
        for (const key of parsed.repeatedKeys) {
          this.#repeated.report(`${parsed.type} lines of the PT`, key);
        }
      }
      if (parsed.type === "LOG") {
        this.dispatchEvent(new PtLogEvent(parsed.severity, parsed.message));
        return;
      }
      if (parsed.type === "STATUS") {
        this.dispatchEvent(new PtStatusEvent(parsed.transport, parsed.fields));
        return;
      }
      if (parsed.type === "CMESSAGE" || parsed.type === "SMESSAGE") {
        const expected = kind === "client" ? "CMESSAGE" : "SMESSAGE";
        if (parsed.type !== expected) {
          warn(`Ignored ${parsed.type} from a ${kind} PT: expected ${expected}`);
        } else {
          this.dispatchEvent(new PtMessageEvent(parsed.type, parsed.transport, parsed.payload));
        }
        return;
      }
      if (settled) return; // Later method lines are ignored, as tor does.
      let result: PtLaunchResult | undefined;
      try {
        result = startup.handle(parsed);
      } catch (error) {
        return fail((error as Error).message);
      }
      if (result !== undefined) {
        settled = true;
        resolveStart(result);
      }
    };

    const read = (stream: ReadableStream<Uint8Array>, fromStderr: boolean) => {
      const text = stream.pipeThrough(new TextDecoderStream());
      const reader = (fromStderr
        ? text.pipeThrough(
          new TransformStream<string, string>({
            transform: (chunk, controller) => {
              run.stderrTail = (run.stderrTail + chunk).slice(-TAIL);
              controller.enqueue(chunk);
            },
          }),
        )
        : text)
        .pipeThrough(
          new LineStream({
            maxLength: MAX_PT_LINE_LENGTH,
            onTooLong: () => {
              if (!fromStderr) {
                warn(`Ignored a line of over ${MAX_PT_LINE_LENGTH} characters from the PT`);
              }
            },
          }),
        )
        .getReader();
      cancels.push(() => reader.cancel().catch(() => {}));
      return (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            handle(value, fromStderr);
          }
        } catch {
          // Cancelled, or the pipe broke: the process is gone.
        }
      })();
    };
    readers.push(read(child.stdout, false), read(child.stderr, true));
    const drained = Promise.all(readers).then(() => {});

    // After exit, give the readers a moment to deliver the last lines (a
    // grandchild may hold the pipes open), then cancel them.
    const finished = status.then(async (s) => {
      if (!(await settleWithin(drained, DRAIN_GRACE))) {
        await Promise.all(cancels.map((cancel) => cancel()));
        await drained;
      }
      return s;
    });
    run.finished = finished.then(() => {});

    finished.then((s) => {
      if (!settled) {
        fail(
          `it exited with ${describeStatus(s)} before ${doneText}` +
            (startup.version === undefined ? " (no VERSION line)" : ""),
        );
      } else if (this.#run === run && run.stopping === undefined && this.#state === "running") {
        this.#stop(run); // Releases its stdin; the process is already gone.
        this.#onUnexpectedExit(s, run.stderrTail.trim());
      }
    });

    const timeout = this.#options.startTimeout ?? 30000;
    const timer = setTimeout(
      () => fail(`no ${doneText} within ${timeout} ms`),
      timeout,
    );
    try {
      const result = await started;
      if (this.#state === "starting" || this.#state === "restarting") this.#state = "running";
      this.#version = result.version;
      this.#role.update(result);
      this.#startedAt = performance.now();
      return result;
    } catch (error) {
      await this.#stop(run);
      throw error;
    } finally {
      clearTimeout(timer);
      this.#abortLaunch = undefined;
    }
  }

  #stop(run: Run): Promise<void> {
    run.stopping ??= (async () => {
      const timeout = this.#options.stopTimeout ?? 2000;
      // Not awaited: the close waits behind queued messages, which a PT
      // that does not read its stdin never takes; the signals still come.
      run.stdin.close().catch(() => {});
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        if (await settleWithin(run.status, timeout)) break;
        try {
          run.child.kill(signal);
        } catch {
          // Already exited.
        }
      }
      await run.status;
      await run.finished;
    })();
    return run.stopping;
  }

  /** What the last launch's environment holds that must not be printed (see {@linkcode secretsOf}). */
  #secrets: readonly string[] = [];

  #warn(message: string): void {
    this.dispatchEvent(new PtLogEvent("warning", message));
  }

  /** A PT that exited while running; `stderr` is the tail of what it wrote there (a panic, say). */
  #onUnexpectedExit(status: Deno.CommandStatus, stderr: string): void {
    const policy = this.#options.restart ?? {};
    this.#state = "restarting";
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.#ready.catch(() => {});
    const stableAfter = policy === false ? 0 : policy.stableAfter ?? 60000;
    if (policy !== false && performance.now() - this.#startedAt >= stableAfter) this.#attempt = 0;
    this.#scheduleRestart(
      new Error(`PT ${this.#options.path} exited with ${describeStatus(status)}`),
      status,
      stderr,
    );
  }

  #scheduleRestart(cause: Error, status?: Deno.CommandStatus, stderr = ""): void {
    const policy = this.#options.restart ?? {};
    const maxAttempts = policy === false ? 0 : policy.maxAttempts ?? 5;
    const code = status?.code ?? -1;
    const signal = status?.signal ?? null;
    if (this.#attempt >= maxAttempts) {
      const error = new Error(
        (maxAttempts === 0
          ? `${cause.message}; relaunching is off`
          : `${cause.message}; gave up after ${this.#attempt} relaunches`) +
          (stderr === "" ? "" : `; stderr: ${redact(stderr, this.#secrets)}`),
        { cause },
      );
      this.#state = "failed";
      this.#failure = error;
      this.#run = undefined;
      this.#readyReject?.(error);
      this.dispatchEvent(new PtExitEvent(code, signal, undefined, this.#attempt + 1));
      this.dispatchEvent(new PtFailedEvent(error));
      return;
    }
    const initial = policy === false ? 0 : policy.initialDelay ?? 500;
    const max = policy === false ? 0 : policy.maxDelay ?? 30000;
    const delay = Math.min(max, initial * 2 ** this.#attempt);
    this.#attempt++;
    this.dispatchEvent(new PtExitEvent(code, signal, delay, this.#attempt));
    this.#restartTimer = setTimeout(async () => {
      this.#restartTimer = undefined;
      if (this.#state !== "restarting") return;
      try {
        await this.#launch();
      } catch (error) {
        if ((this.#state as string) !== "restarting") return;
        this.#warn((error as Error).message);
        this.#scheduleRestart(error as Error);
        return;
      }
      if ((this.#state as string) !== "running") return; // Died again meanwhile.
      this.#readyResolve?.();
      this.dispatchEvent(new Event("ready"));
    }, delay);
  }
}

/**
 * A path as given to a PT: relative paths are taken from this process's
 * working directory, so that a PT with another `cwd` finds the same place.
 *
 * @param path A path.
 * @returns The path, absolute.
 */
export function absolutePath(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/** Whether `promise` settles within `ms` milliseconds (the timer is always cleared). */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function describeStatus(status: Deno.CommandStatus): string {
  return status.signal !== null ? `signal ${status.signal}` : `code ${status.code}`;
}

/**
 * Check a launch option that is a list of strings (`args`, `versions`,
 * `inheritEnv`): `undefined` or an array of strings. A string was taken as
 * its characters, or failed with JavaScript's own error. Internal.
 *
 * @param value The option's value.
 * @param name The option's name, for the message.
 * @throws {TypeError} When it is neither.
 */
export function checkStringList(value: unknown, name: string): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    throw new TypeError(
      `Cannot launch PT: ${name} must be an array of strings, got ${
        value === null ? "null" : typeof value
      }`,
    );
  }
  value.forEach((item, i) => {
    if (typeof item !== "string") {
      throw new TypeError(
        `Cannot launch PT: ${name}[${i}] must be a string, got ${
          item === null ? "null" : typeof item
        }`,
      );
    }
  });
}

/**
 * Check a launch option that maps names to strings (`env`, one transport's
 * server options): `undefined` or an object whose values are strings. The
 * message names the key, never a value (it may be a secret). Internal.
 *
 * @param value The option's value.
 * @param name The option's name, for the message.
 * @throws {TypeError} When it is neither.
 */
export function checkStringRecord(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(
      `Cannot launch PT: ${name} must be an object of strings, got ${
        value === null ? "null" : Array.isArray(value) ? "an array" : typeof value
      }`,
    );
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw new TypeError(
        `Cannot launch PT: ${name} ${JSON.stringify(key)} must be a string, got ${
          item === null ? "null" : typeof item
        }`,
      );
    }
  }
}

/**
 * The values in a PT's environment that are secrets: the upstream proxy's
 * user name and password (`TOR_PT_PROXY`, raw and decoded) and the server
 * transport options' values of 8 characters or more (keys, passwords, a
 * WebTunnel path), longest first.
 */
function secretsOf(env: Record<string, string>): string[] {
  const secrets = new Set<string>();
  const proxy = env.TOR_PT_PROXY;
  if (proxy !== undefined) {
    try {
      const url = new URL(proxy);
      for (const part of [url.username, url.password]) {
        if (part === "") continue;
        secrets.add(part);
        try {
          secrets.add(decodeURIComponent(part));
        } catch {
          // Not percent-encoded text: the raw form is enough.
        }
      }
    } catch {
      // Not a URI: the PT refuses it, and it was never parsed into parts.
    }
  }
  const options = env.TOR_PT_SERVER_TRANSPORT_OPTIONS;
  if (options !== undefined) {
    try {
      for (const values of parseTransportOptions(options).values()) {
        for (const value of Object.values(values)) if (value.length >= 8) secrets.add(value);
      }
    } catch {
      // Malformed: the PT refuses it.
    }
  }
  return [...secrets].sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of each secret replaced by `***`. */
function redact(text: string, secrets: readonly string[]): string {
  for (const secret of secrets) text = text.replaceAll(secret, "***");
  return text;
}
