// Copyright the ptkit authors. MIT license.
// Internal: what ends a managed proxy: stdin closing (with
// TOR_PT_EXIT_ON_STDIN_CLOSE=1), SIGTERM, SIGINT (drain, then a second one
// exits), the parent dying (when asked: tor's PT, a SIP003 plugin, a
// -workers child; never the standalone commands, which run on like any
// daemon under nohup), an abort; and the parent's input lines.

import { MAX_MESSAGE_LINE_LENGTH } from "../lines/_message_line.ts";
import type { RunningProxy } from "./runner.ts";
import { releaseEarlySignals } from "./_early_signals.ts";

/** Options for {@linkcode ShutdownWatch}. */
export interface ShutdownOptions {
  readonly exitOnStdinClose: boolean;
  readonly process: boolean;
  /**
   * Exit when the parent process dies (with `process`): tor's PT, a SIP003
   * plugin, a `-workers` child. The standalone commands (`main.ts server`)
   * run on like any daemon started with `nohup` or `&`.
   */
  readonly watchParent: boolean;
  /** The cause the end of the input names (with `exitOnStdinClose`). Defaults to "stdin closed". */
  readonly inputEnd?: string;
  readonly signal?: AbortSignal;
  readonly stdin?: ReadableStream<Uint8Array>;
  /** Each line of the parent's input (without its newline). */
  readonly onLine: (line: string) => void;
  /** Told about each line of the parent's input dropped for its length. */
  readonly onTooLong: (length: number) => void;
  /** Called once when serving ends. */
  readonly onClose: () => void;
}

/**
 * The abort reason that stops a side whose cause was already reported (a
 * method that could not start, a SIP003 plugin's parent closing stdin): no
 * "Shutting down: aborted" line follows.
 */
export const CAUSE_REPORTED: unique symbol = Symbol("ptkit.causeReported");

/** How long an immediate shutdown (SIGTERM, stdin closed) waits for connections to close, in ms. */
const CLOSE_PATIENCE_MS = 2000;

/** Input lines held while a side waits to start (see `ShutdownWatch.watchEarly`). */
const HELD_LINES = 256;

/**
 * How long after the first SIGINT another one counts as a second (exit at
 * once) rather than the same keypress delivered twice.
 */
const SECOND_SIGINT_AFTER_MS = 500;

/**
 * Watches what should end the proxy. Started before any transport so that a
 * signal arriving during start-up is not lost (Deno's default action would
 * kill the process with a non-zero status).
 */
export class ShutdownWatch {
  #cleanups: (() => void)[] = [];
  #pending: "now" | "drain" | undefined;
  #why = "";
  #onEvent: ((kind: "now" | "drain", why: string) => void) | undefined;

  #disposed = false;
  #stopAsked = Promise.withResolvers<string>();
  /**
   * What starts with `serve`, once the side runs: reading the parent's
   * input and polling the parent. Neither is needed sooner (the pipe keeps
   * what the parent writes), and both take milliseconds to set up (Deno's
   * first timer, the line streams), which tor would wait for before
   * CMETHODS DONE.
   */
  #starts: (() => void)[] = [];
  /**
   * Input lines read before `serve` (see {@linkcode ShutdownWatch.watchEarly}),
   * given to `onLine` once it serves: the side's transports take them then.
   */
  #held: string[] | undefined;
  /** Wakes the input's reader, paused with {@linkcode HELD_LINES} lines held. */
  #resume: (() => void) | undefined;
  #onLine: (line: string) => void;

  constructor(options: ShutdownOptions) {
    const fire = (kind: "now" | "drain", why: string) => {
      // Cancelling the input on the way out is no event of its own.
      if (this.#disposed) return;
      if (this.#onEvent) this.#onEvent(kind, why);
      else if (this.#pending !== "now") {
        this.#pending = kind;
        this.#why = why;
      }
      this.#stopAsked.resolve(why);
    };
    this.#cleanups.push(options.onClose);
    this.#onLine = options.onLine;
    const watchParent = options.process && options.watchParent;
    const parent = Deno.ppid;
    const orphanedAtStart = watchParent && parent === 1;
    const given = options.stdin;
    if (
      given !== undefined ||
      (options.process && (options.exitOnStdinClose || !Deno.stdin.isTerminal()))
    ) {
      // The input's stream is made when the watch starts (Deno loads its
      // streams at their first use: after *METHODS DONE).
      this.#starts.push(() =>
        this.#readLines(given ?? stdinStream(), options, fire, orphanedAtStart)
      );
    }
    if (options.signal) {
      const signal = options.signal;
      // A start-up failure (say) already said what went wrong.
      const why = () => signal.reason === CAUSE_REPORTED ? "" : "aborted";
      if (signal.aborted) fire("now", why());
      else signal.addEventListener("abort", () => fire("now", why()), { once: true });
    }
    if (!options.process) return;
    const onTerm = () => fire("now", "SIGTERM");
    Deno.addSignalListener("SIGTERM", onTerm);
    this.#cleanups.push(() => Deno.removeSignalListener("SIGTERM", onTerm));
    // One Ctrl-C in a terminal reaches every process of the foreground
    // group, and `deno task` forwards its own copy to its child: one
    // keypress arrives twice within a millisecond. A SIGINT counts as the
    // second only when it comes SECOND_SIGINT_AFTER_MS after the first.
    let firstInterrupt: number | undefined;
    const onInt = () => {
      const now = performance.now();
      if (firstInterrupt === undefined) {
        firstInterrupt = now;
        fire("drain", "SIGINT");
      } else if (now - firstInterrupt >= SECOND_SIGINT_AFTER_MS) {
        fire("now", "second SIGINT");
      }
    };
    Deno.addSignalListener("SIGINT", onInt);
    this.#cleanups.push(() => Deno.removeSignalListener("SIGINT", onInt));
    // main.ts ended the process on these signals until now.
    releaseEarlySignals();
    // Polled even when stdin's end stops the proxy: another process may
    // hold the pipe's other end. From `serve` on (a parent gone before
    // then is seen at the first poll).
    if (watchParent && !orphanedAtStart) {
      this.#starts.push(() => {
        const timer = setInterval(() => {
          if (Deno.ppid !== parent) fire("now", "parent process exited");
        }, 1000);
        this.#cleanups.push(() => clearInterval(timer));
      });
    }
  }

  /** Deliver the parent's input lines; its end stops the proxy (see the options). */
  #readLines(
    lines: ReadableStream<Uint8Array>,
    options: ShutdownOptions,
    fire: (kind: "now" | "drain", why: string) => void,
    orphanedAtStart: boolean,
  ): void {
    // The splitter's module loads here: defining its class loads Deno's
    // streams, which a start need not wait for.
    void import("../lines/_line_stream.ts").then(({ LineStream }) => {
      if (this.#disposed) {
        lines.cancel().catch(() => {});
        return;
      }
      this.#pipeLines(lines, LineStream, options, fire, orphanedAtStart);
    });
  }

  #pipeLines(
    lines: ReadableStream<Uint8Array>,
    LineStream: typeof import("../lines/_line_stream.ts").LineStream,
    options: ShutdownOptions,
    fire: (kind: "now" | "drain", why: string) => void,
    orphanedAtStart: boolean,
  ): void {
    const reader = lines
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(
        // A trailing \r is the message parser's to drop.
        new LineStream({ maxLength: MAX_MESSAGE_LINE_LENGTH + 1, onTooLong: options.onTooLong }),
      )
      .getReader();
    this.#cleanups.push(() => reader.cancel().catch(() => {}));
    (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          if (this.#held === undefined) {
            this.#onLine(value);
            continue;
          }
          this.#held.push(value);
          if (this.#held.length >= HELD_LINES) {
            await new Promise<void>((resolve) => this.#resume = resolve);
          }
        }
      } catch {
        // A broken input counts as closed.
      }
      if (options.exitOnStdinClose) fire("now", options.inputEnd ?? "stdin closed");
      // Orphaned before this code ran (the parent died while Deno
      // started; ppid is already init's): the end of the parent's pipe
      // is the only sign left. (A container whose PID 1 is tor keeps the
      // pipe open while it lives.)
      else if (orphanedAtStart) fire("now", "parent process exited");
    })();
  }

  /**
   * Resolves with the cause (`SIGTERM`) once an event says stop, before or
   * after `serve`: a side that waits during start-up (for the state
   * directory's lock) gives up when it comes.
   */
  get stopAsked(): Promise<string> {
    return this.#stopAsked.promise;
  }

  /**
   * Start watching the input's end and the parent before `serve`: a side
   * that waits long during start-up (for the state directory's lock, whose
   * holder may never finish starting) ends when tor closes its stdin or
   * dies, not only on a signal. Lines read meanwhile are held (at most
   * {@linkcode HELD_LINES}; then the input is not read further) and given
   * to `onLine` once it serves.
   */
  watchEarly(): void {
    if (this.#disposed || this.#starts.length === 0) return;
    this.#held = [];
    for (const start of this.#starts.splice(0)) start();
  }

  /**
   * Serve until an event says stop.
   *
   * @param running What runs.
   * @param notice Writes a `LOG` line at `notice`.
   */
  async serve(running: RunningProxy, notice: (message: string) => void): Promise<void> {
    if (!this.#disposed) {
      for (const start of this.#starts.splice(0)) start();
    }
    const held = this.#held;
    this.#held = undefined;
    for (const line of held ?? []) this.#onLine(line);
    this.#resume?.();
    try {
      await new Promise<void>((resolve) => {
        // One line per event: once closing, later events (the input that
        // ends because the parent is stopping too, say) change nothing.
        let handled: "now" | "drain" | undefined;
        const handle = (kind: "now" | "drain", why: string) => {
          if (handled === "now" || (kind === "drain" && handled === "drain")) return;
          handled = kind;
          if (kind === "now") {
            if (why !== "") notice(`Shutting down: ${why}`);
            // At once means at once: whatever a close still waits for (a
            // socket a peer never answers) does not hold the process.
            const patience = setTimeout(resolve, CLOSE_PATIENCE_MS);
            running.close().finally(() => clearTimeout(patience)).then(resolve, resolve);
          } else {
            const drained = running.drain();
            notice(
              "SIGINT: no new connections; waiting for open ones to end (SIGINT again to exit now)",
            );
            // The end is said too: the last line was "waiting" (a user's report).
            // Not after a later event closed them (a second SIGINT, SIGTERM):
            // that event's line was the last word.
            drained.then(() => {
              if (handled === "drain") notice("SIGINT: the open connections have ended; exiting");
            }).then(resolve, resolve);
          }
        };
        this.#onEvent = handle;
        if (this.#pending !== undefined) handle(this.#pending, this.#why);
      });
    } finally {
      this.dispose();
    }
  }

  dispose(): void {
    this.#disposed = true;
    this.#resume?.();
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
  }
}

/** The process's stdin as a stream that ends (rather than errors) when it breaks. */
function stdinStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      const buffer = new Uint8Array(4096);
      let n: number | null = null;
      try {
        n = await Deno.stdin.read(buffer);
      } catch {
        // A broken stdin counts as closed.
      }
      if (n === null) controller.close();
      else controller.enqueue(buffer.subarray(0, n));
    },
  }, { highWaterMark: 0 });
}
