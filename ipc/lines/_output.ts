// Copyright the ptkit authors. MIT license.
// Internal: where a PT's protocol lines go: stdout, or stderr for the
// error lines once version 2 was negotiated; LOG lines below the log level
// are dropped.

import { formatPtLine, type PtLine } from "./pt_line.ts";

/** Severity of a `LOG` line, most severe first. */
export type LogSeverity = "error" | "warning" | "notice" | "info" | "debug";

const SEVERITIES: readonly LogSeverity[] = ["error", "warning", "notice", "info", "debug"];

/**
 * Check a `-logLevel` value, in any case; obfs4proxy's and lyrebird's
 * `WARN` is `warning` (their `ERROR`, `INFO` and `DEBUG` are the same).
 *
 * @param value The value given.
 * @returns The severity.
 * @throws {RangeError} When it is not a known severity.
 */
export function parseLogSeverity(value: string): LogSeverity {
  const lower = value.toLowerCase();
  const severity = lower === "warn" ? "warning" : lower;
  if (!(SEVERITIES as readonly string[]).includes(severity)) {
    throw new RangeError(
      `Invalid log level ${JSON.stringify(value.slice(0, 32))}: expected one of ${
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
    this.#stdout = options.stdout ?? ((line) => writeAll(Deno.stdout, encoder.encode(line)));
    this.#stderr = options.stderr ?? ((line) => writeAll(Deno.stderr, encoder.encode(line)));
    this.#level = options.logLevel ?? "notice";
  }

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
    const text = `${formatPtLine(line)}\n`;
    if (line.type.endsWith("-ERROR") && this.#version === "2") this.#stderr(text);
    else this.#stdout(text);
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

function writeAll(target: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  try {
    let offset = 0;
    while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
  } catch {
    // The parent stopped reading (it exited): nothing to tell it any more.
  }
}
