// Copyright the ptkit authors. MIT license.
// Internal: where a PT's protocol lines go: stdout, or stderr for the
// error lines once version 2 was negotiated; LOG lines below the log level
// are dropped.

import { concat } from "../../transports/_bytes.ts";
import { formatPtLine, type PtLine } from "./pt_line.ts";

/** Severity of a `LOG` line, most severe first. */
export type LogSeverity = "error" | "warning" | "notice" | "info" | "debug";

const SEVERITIES: readonly LogSeverity[] = ["error", "warning", "notice", "info", "debug"];

/**
 * Check a `-logLevel` value, in any case; obfs4proxy's and lyrebird's
 * `WARN` is `warning` (their `ERROR`, `INFO` and `DEBUG` are the same).
 *
 * @param value The value given.
 * @param what What errors call it: the flag or option it came from.
 * @returns The severity.
 * @throws {RangeError} When it is not a known severity.
 */
export function parseLogSeverity(value: string, what = "log level"): LogSeverity {
  const lower = value.toLowerCase();
  const severity = lower === "warn" ? "warning" : lower;
  if (!(SEVERITIES as readonly string[]).includes(severity)) {
    throw new RangeError(
      `Invalid ${what} ${JSON.stringify(value.slice(0, 32))}: expected one of ${
        SEVERITIES.join(", ")
      }`,
    );
  }
  return severity as LogSeverity;
}

/**
 * Whether a `LOG` line of `severity` is sent at `level`.
 *
 * @param severity The line's severity.
 * @param level The least severe level sent.
 * @returns True when it is sent.
 */
export function logged(severity: string, level: LogSeverity): boolean {
  const index = SEVERITIES.indexOf(severity as LogSeverity);
  return index < 0 || index <= SEVERITIES.indexOf(level);
}

/** Where {@linkcode IpcOutput} writes lines; defaults to the process's stdout and stderr. */
export interface IpcOutputOptions {
  /** Receives each protocol line for stdout, newline included. */
  readonly stdout?: (line: string) => void;
  /** Receives each line for stderr, newline included. */
  readonly stderr?: (line: string) => void;
  /** The least severe `LOG` line to send. Defaults to `"notice"`. */
  readonly logLevel?: LogSeverity;
}

/**
 * The PT side of the managed-proxy line protocol: writes each line
 * (`formatPtLine`) to the parent. Until a version is negotiated, and with
 * version 1 (tor), every line goes to stdout, the only stream tor reads;
 * with version 2 the error lines (`*-ERROR`) go to stderr, as the PT 2.0
 * draft says.
 */
export class IpcOutput {
  #stdout: (line: string) => void;
  #stderr: (line: string) => void;
  #level: LogSeverity;
  #version: string | undefined;

  /**
   * Make an output.
   *
   * @param options Where lines go and the log level.
   */
  constructor(options: IpcOutputOptions = {}) {
    const encoder = new TextEncoder();
    if (options.stdout === undefined) {
      const queue = stdoutQueue ??= new StdoutQueue(Deno.stdout);
      this.#queue = queue;
      this.#stdout = (line) => queue.push(encoder.encode(line), false);
    } else this.#stdout = options.stdout;
    this.#stderr = options.stderr ?? ((line) => writeAll(Deno.stderr, encoder.encode(line)));
    this.#level = options.logLevel ?? "notice";
  }

  #queue: StdoutQueue | undefined;

  /** The negotiated version, once a `VERSION` line was written. */
  get negotiated(): string | undefined {
    return this.#version;
  }

  /**
   * Write one protocol line.
   *
   * @param line The line.
   */
  write(line: PtLine): void {
    if (line.type === "LOG" && !logged(line.severity, this.#level)) return;
    if (line.type === "VERSION") this.#version = line.version;
    if (line.type === "ENV-ERROR" && this.#version === "1") {
      // tor shows an ENV-ERROR's message only when it comes before VERSION;
      // after it, where pt-spec puts it (and goptlib sends it), tor says no
      // more than "failed the configuration protocol" and logs the line at
      // info. A LOG line it shows at its severity: the operator reads why.
      this.write({ type: "LOG", severity: "error", message: line.message });
    }
    const text = `${formatPtLine(line)}\n`;
    if (line.type.endsWith("-ERROR") && this.#version === "2") this.#stderr(text);
    else if (this.#queue !== undefined && (line.type === "LOG" || line.type === "STATUS")) {
      // Lines of the kinds that come per connection: dropped (and counted)
      // rather than held without bound while the parent does not read.
      this.#queue.push(new TextEncoder().encode(text), true);
    } else this.#stdout(text);
    // Until its methods are out, the PT's lines go out as written (its
    // parent is reading them, and an asynchronous first write to stdout
    // cost start-up 50 ms); from then on, per-connection lines come at a
    // peer's pace, and a parent that stops reading must not block them.
    if (line.type === "CMETHODS-DONE" || line.type === "SMETHODS-DONE") this.#queue?.goAsync();
  }

  /**
   * Write a `LOG` line.
   *
   * @param severity The severity.
   * @param message The message.
   */
  log(severity: LogSeverity, message: string): void {
    this.write({ type: "LOG", severity, message });
  }

  /**
   * Write the program's own text as it is (the usage, its version): not
   * protocol lines, and never holding a value from outside.
   *
   * @param text The text, newlines included.
   * @param stream Where. Defaults to stdout.
   */
  text(text: string, stream: "stdout" | "stderr" = "stdout"): void {
    if (stream === "stdout") this.#stdout(text);
    else this.#stderr(text);
  }
}

/**
 * Bytes of lines that may wait for a parent that reads stdout slowly; past
 * it, `LOG` and `STATUS` lines are dropped and counted (protocol lines
 * always wait).
 */
export const STDOUT_BACKLOG_BYTES = 256 * 1024;

/** The process's one queue toward stdout (every IpcOutput writing there shares it, in order). */
let stdoutQueue: StdoutQueue | undefined;

/**
 * Wait until the lines written to stdout so far reached it (the process is
 * about to exit), for at most `timeoutMs`: a parent that stopped reading
 * does not keep the process from exiting.
 *
 * @param timeoutMs The longest wait, in ms. Defaults to 1000.
 * @returns Resolves when they are written, or the time is up.
 */
export function flushStdout(timeoutMs = 1000): Promise<void> {
  return stdoutQueue?.flush(timeoutMs) ?? Promise.resolve();
}

/**
 * Lines on their way to stdout, written in order by one asynchronous
 * writer: a parent that stops reading (its pipe full) no longer blocks the
 * process in a synchronous write, which stopped every connection.
 */
class StdoutQueue {
  #target: { write(p: Uint8Array): Promise<number>; writeSync(p: Uint8Array): number };
  #queue: Uint8Array[] = [];
  #bytes = 0;
  #dropped = 0;
  #broken = false;
  #pumping: Promise<void> | undefined;
  /** Per-connection lines wait for this timer (see {@linkcode LINE_BATCH_MS}). */
  #batch: ReturnType<typeof setTimeout> | undefined;
  /** Lines are written synchronously until {@linkcode StdoutQueue.goAsync}. */
  #sync = true;

  constructor(target: { write(p: Uint8Array): Promise<number>; writeSync(p: Uint8Array): number }) {
    this.#target = target;
  }

  /** From now on, lines wait in the queue for the asynchronous writer. */
  goAsync(): void {
    this.#sync = false;
  }

  push(bytes: Uint8Array, droppable: boolean): void {
    if (this.#broken) return;
    if (this.#sync) {
      writeAll(this.#target, bytes);
      return;
    }
    if (droppable && this.#bytes >= STDOUT_BACKLOG_BYTES) {
      this.#dropped++;
      return;
    }
    this.#queue.push(bytes);
    this.#bytes += bytes.length;
    if (this.#pumping !== undefined) return;
    // A per-connection line waits for the others of the next
    // LINE_BATCH_MS: each write to the pipe costs this process an
    // operation (0.1 ms and more) and wakes the parent, which reads it
    // while the connection it reports on has its first exchange.
    if (droppable) this.#batch ??= setTimeout(() => this.#startPump(), LINE_BATCH_MS);
    else this.#startPump();
  }

  /** Write what is queued now (a batch waiting goes with it, in order). */
  #startPump(): void {
    clearTimeout(this.#batch);
    this.#batch = undefined;
    this.#pumping ??= this.#pump();
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        const queue = this.#queue;
        if (queue.length === 0) {
          if (this.#dropped === 0) return;
          queue.push(this.#dropNotice());
          continue;
        }
        // The lines that queued while the last write was on its way go out
        // in one write: a write to the pipe costs the event loop a blocking
        // task (0.1 ms and more), and a busy client has a STATUS line for
        // every connection. The bytes and their order are the same.
        let count = 1;
        let length = queue[0]!.length;
        while (count < queue.length && length + queue[count]!.length <= WRITE_BATCH_BYTES) {
          length += queue[count++]!.length;
        }
        const bytes = count === 1 ? queue[0]! : concat(...queue.slice(0, count));
        let offset = 0;
        while (offset < bytes.length) offset += await this.#target.write(bytes.subarray(offset));
        queue.splice(0, count);
        this.#bytes -= bytes.length;
      }
    } catch {
      // The parent stopped reading (it exited): nothing to tell it any more.
      this.#broken = true;
      this.#queue = [];
      this.#bytes = 0;
    } finally {
      this.#pumping = undefined;
    }
  }

  #dropNotice(): Uint8Array {
    const dropped = this.#dropped;
    this.#dropped = 0;
    const line = formatPtLine({
      type: "LOG",
      severity: "warning",
      message:
        `${dropped} LOG and STATUS lines were dropped: the parent process did not read stdout (over ${STDOUT_BACKLOG_BYTES} bytes waited)`,
    });
    const bytes = new TextEncoder().encode(`${line}\n`);
    this.#bytes += bytes.length;
    return bytes;
  }

  async flush(timeoutMs: number): Promise<void> {
    if (this.#batch !== undefined) this.#startPump();
    const pumping = this.#pumping;
    if (pumping === undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      pumping,
      new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
  }
}

/** The most bytes of queued lines that one write to stdout carries. */
const WRITE_BATCH_BYTES = 16384;
/**
 * How long a per-connection line (`LOG`, `STATUS`) waits for others before
 * it is written, in ms; a protocol line, or the process's exit
 * ({@linkcode flushStdout}), writes them at once, in order.
 */
const LINE_BATCH_MS = 100;

function writeAll(target: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  try {
    let offset = 0;
    while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
  } catch {
    // The parent stopped reading (it exited): nothing to tell it any more.
  }
}
