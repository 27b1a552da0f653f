// Copyright the ptkit authors. MIT license.

import { parsePtLine, type PtLine } from "../lines/pt_line.ts";
import { PtLogEvent, PtMessageEvent, PtStatusEvent } from "./pt_events.ts";
import type { PtEventMap } from "./managed_pt.ts";
import { formatMessageLine } from "../lines/_message_line.ts";
import { type PtLaunchResult, PtStartup } from "./pt_startup.ts";
import type { FromWorker, ToWorker } from "./_in_worker_main.ts";
import { checkTimeout } from "../../net/address.ts";
import { checkFactoryOptions } from "../../transports/_factory_options.ts";
import { checkArgsAndEnv } from "../managed/config.ts";

/** Stdout lines kept: the first ones (start-up) and the latest ones, this many each. */
const KEPT_LINES = 1000;

/** Options for {@linkcode startInWorker}. */
export interface InWorkerOptions {
  /** The command-line flags, as `main.ts` takes them. Defaults to none. */
  readonly args?: readonly string[];
  /** The `TOR_PT_*` variables, as a parent would set them. Defaults to none. */
  readonly env?: Readonly<Record<string, string>>;
  /** Milliseconds start-up may take. Defaults to 30000. */
  readonly startTimeout?: number;
}

/** Warning and error `LOG` lines of the start a failure to start quotes, at most. */
const MAX_LOGGED_SHOWN = 3;

/**
 * ptkit's own managed-proxy front end running in a `Worker` of this process
 * (PT 2.0 draft 1's inter-thread interface, 4.3): the same configuration, lines and
 * exit codes as the `main.ts` executable, with function calls and events in
 * place of stdin and stdout. `stop()` is what closing stdin (with
 * `TOR_PT_EXIT_ON_STDIN_CLOSE=1`) or SIGTERM is to the executable.
 *
 * Events: `"log"` ({@linkcode PtLogEvent}), `"status"`
 * ({@linkcode PtStatusEvent}) and `"message"` ({@linkcode PtMessageEvent})
 * for `LOG`, `STATUS` and `CMESSAGE` / `SMESSAGE` lines. A listener that
 * throws is treated as by any `EventTarget`: the front end and the other
 * listeners carry on, and the exception is reported as uncaught
 * (`globalThis`'s `"error"` event), which ends a Deno program unless a
 * handler there calls `preventDefault()`.
 *
 * @example Starting plain in a Worker and reading its CMETHOD
 * ```ts
 * import { startInWorker } from "@ptkit/ptkit/ipc/adapter";
 * import { strictEqual } from "node:assert";
 *
 * const state = await Deno.makeTempDir();
 * await using pt = await startInWorker({
 *   args: ["-client", "-transports", "plain", "-state", state],
 * });
 * strictEqual(pt.version, "2");
 * const method = pt.methods.get("plain");
 * strictEqual(method?.type === "CMETHOD" && method.mode, "socks5");
 * strictEqual(await pt.stop(), 0);
 * await Deno.remove(state, { recursive: true });
 * ```
 */
export class InWorkerPt extends EventTarget implements AsyncDisposable {
  #worker: Worker;
  #firstLines: string[] = [];
  #lastLines: string[] = [];
  #stderr = "";
  #exited: Promise<number>;
  #ready: Promise<void>;
  #result: PtLaunchResult | undefined;
  #kind: "client" | "server";
  /** stop() was called or the front end exited: nothing reads "stdin" any more. */
  #stopping = false;

  /**
   * Start the front end in a new Worker. {@linkcode startInWorker} also
   * waits for {@linkcode ready}.
   *
   * @param options Flags and variables, as for the executable.
   */
  constructor(options: InWorkerOptions = {}) {
    super();
    checkFactoryOptions(options, "start in a Worker", []);
    checkArgsAndEnv(options.args ?? [], options.env ?? {}, "startInWorker");
    const args = [...(options.args ?? [])];
    const env = { ...(options.env ?? {}) };
    this.#worker = new Worker(new URL("./_in_worker_main.ts", import.meta.url), { type: "module" });
    let resolveExit!: (code: number) => void;
    this.#exited = new Promise<number>((resolve) => resolveExit = resolve)
      .finally(() => {
        this.#stopping = true;
        this.#worker.terminate();
      });
    // As parseManagedConfig chooses: -server, else the server variable
    // unless -client or a non-empty client list says otherwise.
    const clientListed = (env.TOR_PT_CLIENT_TRANSPORTS ?? "").trim() !== "";
    this.#kind = args.some((a) => /^--?server$/i.test(a)) ||
        (!args.some((a) => /^--?client$/i.test(a)) &&
          env.TOR_PT_SERVER_TRANSPORTS !== undefined && !clientListed)
      ? "server"
      : "client";
    const startup = new PtStartup({
      kind: this.#kind,
      versions: offeredVersions(args, env),
      proxy: args.some((a) => /^--?proxy(=|$)/i.test(a)) || env.TOR_PT_PROXY !== undefined,
      warn: () => {},
    });
    let resolveReady!: () => void;
    let rejectReady!: (error: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    this.#ready.catch(() => {});
    // A whole sentence: `ready` is public, and its rejection is all a
    // caller of `new InWorkerPt()` sees.
    const failed = (why: string, cause?: unknown) =>
      rejectReady(
        new Error(`Front end failed to start: ${why}`, cause === undefined ? {} : { cause }),
      );
    const exit = (code: number, why: string) => {
      failed(why);
      resolveExit(code);
    };
    // What the front end logged at warning or error while starting (a
    // transport name it does not know): a failure to start says it, as no
    // listener can have heard it when startInWorker is what waits.
    const logged: string[] = [];
    this.#worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.type === "exit") return exit(message.code, "it exited");
      if (message.type === "crash") return exit(70, message.message);
      for (const line of this.#receive(message.type, message.text)) {
        if (
          line.type === "LOG" && (line.severity === "warning" || line.severity === "error") &&
          this.#result === undefined && logged.length < MAX_LOGGED_SHOWN
        ) {
          logged.push(line.message);
        }
        try {
          const result = startup.handle(line);
          if (result !== undefined) {
            this.#result = result;
            resolveReady();
          }
        } catch (error) {
          const why = (error as Error).message;
          failed(logged.length === 0 ? why : `${why} (it logged: ${logged.join("; ")})`, error);
        }
      }
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      exit(70, event.message);
    };
    this.#worker.postMessage({ type: "start", args, env } satisfies ToWorker);
  }

  /**
   * Resolves once the transports are started (`CMETHODS DONE` or
   * `SMETHODS DONE`); rejects with the reason when start-up failed (an error
   * line, or an exit before the end of start-up): `Front end failed to
   * start: ...`.
   */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /**
   * The lines printed on "stdout", without newlines: the first 1000 (start-up)
   * and the latest 1000, as a long-running front end prints lines for each
   * connection; every line while there are no more than 2000.
   */
  get lines(): readonly string[] {
    return [...this.#firstLines, ...this.#lastLines.slice(-KEPT_LINES)];
  }

  /** Everything printed on "stderr" so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The negotiated version, once started. */
  get version(): string | undefined {
    return this.#result?.version;
  }

  /** The `CMETHOD` / `SMETHOD` lines, by transport name. */
  get methods(): ReadonlyMap<string, PtLine> {
    return this.#result?.methods ?? new Map();
  }

  /** The `CMETHOD-ERROR` / `SMETHOD-ERROR` messages, by transport name. */
  get errors(): ReadonlyMap<string, string> {
    return this.#result?.errors ?? new Map();
  }

  /** Resolves with the exit code once the front end has stopped. */
  get exited(): Promise<number> {
    return this.#exited;
  }

  /**
   * Shut down (as stdin closing or SIGTERM would) and wait.
   *
   * @returns The exit code.
   */
  stop(): Promise<number> {
    this.#stopping = true;
    this.#worker.postMessage({ type: "stop" } satisfies ToWorker);
    return this.#exited;
  }

  /**
   * Deliver an out-of-band message from the other side: the front end reads
   * it as an `SMESSAGE` line (client side) or `CMESSAGE` line (server side)
   * on its "stdin". The `"message"` event ({@linkcode PtMessageEvent})
   * carries the lines it writes for the other side.
   *
   * @param transport The transport's name.
   * @param payload 1 to 16384 bytes.
   * @throws {TypeError} On a bad transport name.
   * @throws {RangeError} When the payload is empty or too large.
   * @throws {Error} When the front end was stopped or exited.
   */
  sendMessage(transport: string, payload: Uint8Array): void {
    const kind = this.#kind === "client" ? "SMESSAGE" : "CMESSAGE";
    const text = formatMessageLine(kind, transport, payload);
    if (this.#stopping) throw new Error(`Cannot send ${kind}: the front end is not running`);
    this.#worker.postMessage({ type: "stdin", text } satisfies ToWorker);
  }

  /** Stop and wait. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /**
   * Listen for an event (typed for `"log"`, `"status"` and `"message"`, as
   * in {@linkcode PtEventMap}).
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options The usual listener options.
   */
  override addEventListener<K extends "log" | "status" | "message">(
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
  override removeEventListener<K extends "log" | "status" | "message">(
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

  #keep(line: string): void {
    if (this.#firstLines.length < KEPT_LINES) {
      this.#firstLines.push(line);
      return;
    }
    this.#lastLines.push(line);
    // Trimmed now and then, not at every line.
    if (this.#lastLines.length >= 2 * KEPT_LINES) {
      this.#lastLines = this.#lastLines.slice(-KEPT_LINES);
    }
  }

  #receive(stream: "stdout" | "stderr", text: string): PtLine[] {
    if (stream === "stderr") this.#stderr += text;
    const parsed: PtLine[] = [];
    for (const line of text.split("\n")) {
      if (line === "") continue;
      if (stream === "stdout") this.#keep(line);
      let value: PtLine;
      try {
        value = parsePtLine(line);
      } catch {
        continue; // Usage text and other plain output.
      }
      // PT 2.0 sends error lines to stderr; other stderr text is not protocol.
      if (stream === "stderr" && !value.type.endsWith("-ERROR")) continue;
      if (value.type === "LOG") this.dispatchEvent(new PtLogEvent(value.severity, value.message));
      else if (value.type === "STATUS") {
        this.dispatchEvent(new PtStatusEvent(value.transport, value.fields));
      } else if (value.type === (this.#kind === "client" ? "CMESSAGE" : "SMESSAGE")) {
        const { type, transport, payload } = value as Extract<PtLine, { type: "CMESSAGE" }>;
        this.dispatchEvent(new PtMessageEvent(type, transport, payload));
      }
      parsed.push(value);
    }
    return parsed;
  }
}

/** The versions a parent offers with flags or the variable (flags alone mean 2). */
function offeredVersions(args: readonly string[], env: Readonly<Record<string, string>>): string[] {
  let list = env.TOR_PT_MANAGED_TRANSPORT_VER;
  args.forEach((arg, i) => {
    const match = /^--?(?:pt)?version(?:=(.*))?$/i.exec(arg);
    if (match) list = match[1] ?? args[i + 1];
  });
  return (list ?? "2").split(",").filter((v) => v !== "");
}

/**
 * Run ptkit's managed-proxy front end in a `Worker` and wait until it has
 * started its transports (`CMETHODS DONE` or `SMETHODS DONE`).
 *
 * @param options Flags and variables, as for the executable.
 * @returns The running front end.
 * @throws {TypeError} When `options` is not an object, `args` not an array
 * of strings, or `env` not an object whose `TOR_PT_*` values are strings
 * (checked before the `Worker` starts).
 * @throws {RangeError} When `startTimeout` is not a positive number of ms.
 * @throws {Error} When it fails to start (the message quotes the error line,
 * the first warnings it logged while starting, and the exit code) or does
 * not finish starting within the timeout.
 *
 * @example Refusing a parent that offers no known version
 * ```ts
 * import { startInWorker } from "@ptkit/ptkit/ipc/adapter";
 * import { rejects } from "node:assert";
 *
 * await rejects(
 *   startInWorker({ env: { TOR_PT_MANAGED_TRANSPORT_VER: "3", TOR_PT_CLIENT_TRANSPORTS: "plain" } }),
 *   /VERSION-ERROR no-version.*exit code 78/,
 * );
 * ```
 */
export async function startInWorker(options: InWorkerOptions = {}): Promise<InWorkerPt> {
  checkFactoryOptions(options, "start in a Worker", []);
  checkTimeout(options.startTimeout, "startTimeout", "start in a Worker");
  const pt = new InWorkerPt(options);
  const timeout = options.startTimeout ?? 30000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      pt.ready,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `Front end failed to start: it did not finish starting within ${timeout} ms`,
              ),
            ),
          timeout,
        );
      }),
    ]);
    return pt;
  } catch (error) {
    const code = await pt.stop();
    throw new Error(`${(error as Error).message} (exit code ${code})`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}
