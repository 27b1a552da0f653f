// Copyright the ptkit authors. MIT license.

import { formatMessageLine, type MessageKind } from "./message_line.ts";
import { redactUserinfo } from "../net/userinfo.ts";

/** Severity of a `LOG` line, most severe first. */
export type LogSeverity = "error" | "warning" | "notice" | "info" | "debug";

const SEVERITIES: readonly LogSeverity[] = ["error", "warning", "notice", "info", "debug"];

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
 * Check a `-logLevel` value.
 *
 * @param value The value given.
 * @returns The severity.
 * @throws {RangeError} When it is not a known severity.
 *
 * @example Checking a level
 * ```ts
 * import { parseLogSeverity } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseLogSeverity("info"), "info");
 * throws(() => parseLogSeverity("loud"), RangeError);
 * ```
 */
export function parseLogSeverity(value: string): LogSeverity {
  if (!(SEVERITIES as readonly string[]).includes(value)) {
    throw new RangeError(
      `Invalid log level ${JSON.stringify(value)}: expected one of ${SEVERITIES.join(", ")}`,
    );
  }
  return value as LogSeverity;
}

/**
 * The PT side of the managed-proxy line protocol: writes `VERSION`,
 * `CMETHOD`, `LOG`, `STATUS` and the error lines to the parent.
 *
 * Every argument is reduced to printable ASCII, so a line can never break
 * the protocol. `LOG` messages and quoted `STATUS` values are C strings
 * that tor's and arti's parsers both read: `"`, `\`, newline, carriage
 * return and tab are escaped as `\"`, `\\`, `\n`, `\r`, `\t`; every other
 * control character (DEL included) and every non-ASCII character becomes
 * `?`. They are not written as octal `\ooo` escapes, as goptlib does,
 * because arti's parser refuses octal escapes and drops such a line.
 *
 * The userinfo of any URI in an error, `LOG` or `STATUS` line or plain
 * stderr text is replaced by `***` (a safety net: messages are written not
 * to hold secrets in the first place).
 *
 * Until a version is negotiated, and with version 1 (tor), every line goes
 * to stdout, the only stream tor reads; with version 2 the error lines
 * (`*-ERROR`) go to stderr, as the PT 2.0 draft says.
 *
 * @example Writing lines to a buffer
 * ```ts
 * import { IpcOutput } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const out: string[] = [];
 * const err: string[] = [];
 * const ipc = new IpcOutput({ stdout: (l) => out.push(l), stderr: (l) => err.push(l) });
 * ipc.version("2");
 * ipc.cmethod("plain", "socks5", "127.0.0.1:1080");
 * ipc.error("CMETHOD-ERROR", "obfs4 no key");
 * ipc.log("notice", 'said "hi"\n');
 * ipc.log("notice", "bell \x07, caf\u00e9");
 * deepStrictEqual(out, [
 *   "VERSION 2\n",
 *   "CMETHOD plain socks5 127.0.0.1:1080\n",
 *   'LOG SEVERITY=notice MESSAGE="said \\"hi\\"\\n"\n',
 *   'LOG SEVERITY=notice MESSAGE="bell ?, caf?"\n',
 * ]);
 * deepStrictEqual(err, ["CMETHOD-ERROR obfs4 no key\n"]);
 * ```
 */
export class IpcOutput {
  #stdout: (line: string) => void;
  #stderr: (line: string) => void;
  #level: number;
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
    this.#level = SEVERITIES.indexOf(options.logLevel ?? "notice");
  }

  /** The negotiated version, once {@linkcode IpcOutput.version} was called. */
  get negotiated(): string | undefined {
    return this.#version;
  }

  /**
   * Send `VERSION <v>`; from now on error lines follow that version's rule.
   *
   * @param version The version chosen.
   */
  version(version: string): void {
    this.#version = version;
    this.line("VERSION", version);
  }

  /**
   * Send an error line (`VERSION-ERROR`, `ENV-ERROR`, `PROXY-ERROR`,
   * `CMETHOD-ERROR`, `SMETHOD-ERROR`): to stderr with version 2, else stdout.
   *
   * @param keyword The keyword.
   * @param message The rest of the line.
   */
  error(keyword: string, message: string): void {
    const text = format(keyword, safe(message));
    if (this.#version === "2") this.#stderr(text);
    else this.#stdout(text);
  }

  /**
   * Send `CMETHOD <name> <mode> <address>`.
   *
   * @param name The transport.
   * @param mode `socks5`, `socks4` or `transparent-TCP`.
   * @param address The listener's `ip:port`.
   */
  cmethod(name: string, mode: string, address: string): void {
    this.line("CMETHOD", `${name} ${mode} ${address}`);
  }

  /**
   * Send `SMETHOD <name> <address> [ARGS:...]`.
   *
   * @param name The transport.
   * @param address The listener's `ip:port`.
   * @param args The `ARGS:` field (see `formatSmethodArgs`), or `""`.
   */
  smethod(name: string, address: string, args = ""): void {
    this.line("SMETHOD", args === "" ? `${name} ${address}` : `${name} ${address} ${args}`);
  }

  /**
   * Send `LOG SEVERITY=<s> MESSAGE="<m>"` when `severity` is at or above
   * the log level.
   *
   * @param severity The severity.
   * @param message The message, written as a C string: `"`, `\`, `\n`,
   * `\r` and `\t` are escaped; other control characters and non-ASCII
   * characters become `?` (no octal escapes: arti refuses them).
   */
  log(severity: LogSeverity, message: string): void {
    if (SEVERITIES.indexOf(severity) > this.#level) return;
    this.line("LOG", `SEVERITY=${severity} MESSAGE=${quote(safe(message))}`);
  }

  /**
   * Send `STATUS TRANSPORT=<name> K=V ...`; values that are not plain words
   * are quoted as C strings, as in {@linkcode IpcOutput.log}.
   *
   * @param transport The transport the status is about.
   * @param fields The other fields.
   */
  status(transport: string, fields: Readonly<Record<string, string>>): void {
    const parts = [`TRANSPORT=${transport}`];
    for (const [k, v] of Object.entries(fields)) {
      const value = safe(v);
      parts.push(`${k}=${/^[A-Za-z0-9_.:\/-]+$/.test(value) ? value : quote(value)}`);
    }
    this.line("STATUS", parts.join(" "));
  }

  /**
   * Send an out-of-band message line, `CMESSAGE <transport> <base64>` (client
   * to server) or `SMESSAGE <transport> <base64>` (server to client).
   *
   * @param kind `CMESSAGE` or `SMESSAGE`.
   * @param transport The transport's name.
   * @param payload 1 to 16384 bytes.
   */
  message(kind: MessageKind, transport: string, payload: Uint8Array): void {
    this.#stdout(formatMessageLine(kind, transport, payload));
  }

  /**
   * Send any line to stdout.
   *
   * @param keyword The keyword.
   * @param args The rest of the line, if any.
   */
  line(keyword: string, args = ""): void {
    this.#stdout(format(keyword, args));
  }

  /**
   * Write a line of plain text to stderr (not part of the protocol).
   *
   * @param text The text.
   */
  stderr(text: string): void {
    this.#stderr(`${printable(safe(text))}\n`);
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

/** Messages with the userinfo of any URI in them redacted. */
function safe(text: string): string {
  return text.includes("://") ? redactUserinfo(text) : text;
}

/** Printable ASCII only: newline, CR and tab become spaces, anything else `?`. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/gu, (c) => c === "\n" || c === "\r" || c === "\t" ? " " : "?");
}

function format(keyword: string, args: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(keyword)) {
    throw new TypeError(`Invalid IPC keyword ${JSON.stringify(keyword)}`);
  }
  const rest = printable(args);
  return rest === "" ? `${keyword}\n` : `${keyword} ${rest}\n`;
}

/**
 * A C string that tor and arti both read: the escapes they share, and `?`
 * for what only an octal escape could carry (arti refuses those).
 */
function quote(text: string): string {
  const escaped = text.replace(
    /[\\"\n\r\t]/g,
    (c) => c === "\n" ? "\\n" : c === "\r" ? "\\r" : c === "\t" ? "\\t" : `\\${c}`,
  );
  return `"${printable(escaped)}"`;
}
