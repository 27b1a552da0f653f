// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

// The managed-proxy line protocol (pt-spec, PT 2.0 draft 1 section 3.3),
// written once: what a PT prints and its parent reads, as one typed value,
// formatted by the managed proxy and parsed by the adapter, the in-Worker
// front end and the tests; the friendly CLI receives the typed values.

import type { TransportOptions } from "../../transports/transport.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../../net/address.ts";
import { isIpLiteral } from "../../net/_ip_address.ts";
import { redactUserinfo } from "../../net/_userinfo.ts";
import { formatMessageLine, MAX_MESSAGE_LINE_LENGTH, parseMessageLine } from "./_message_line.ts";
import { formatSmethodArgs, parseSmethodArgs } from "./_args.ts";
import { FirstValuePairs } from "./_first_value.ts";

/**
 * One line of the managed-proxy protocol, as a value: what a PT writes to
 * its parent (`VERSION`, the error lines, `PROXY DONE`, `CMETHOD`,
 * `SMETHOD`, `LOG`, `STATUS`, `CMESSAGE`/`SMESSAGE`). Unknown keywords parse
 * as `{ type: "unknown" }` so that a parent can ignore them, as the spec
 * requires.
 */
export type PtLine =
  | { readonly type: "VERSION"; readonly version: string }
  | { readonly type: "VERSION-ERROR"; readonly message: string }
  | { readonly type: "ENV-ERROR"; readonly message: string }
  | { readonly type: "PROXY-DONE" }
  | { readonly type: "PROXY-ERROR"; readonly message: string }
  | {
    readonly type: "CMETHOD";
    readonly transport: string;
    readonly mode: string;
    readonly address: HostPort;
  }
  | { readonly type: "CMETHOD-ERROR"; readonly transport: string; readonly message: string }
  | { readonly type: "CMETHODS-DONE" }
  | {
    readonly type: "SMETHOD";
    readonly transport: string;
    readonly address: HostPort;
    readonly args: TransportOptions;
    /** Keys the `ARGS:` field repeats (the first value is kept), when there are any. */
    readonly repeatedKeys?: readonly string[];
  }
  | { readonly type: "SMETHOD-ERROR"; readonly transport: string; readonly message: string }
  | { readonly type: "SMETHODS-DONE" }
  | {
    readonly type: "LOG";
    readonly severity: string;
    readonly message: string;
    /** Fields the line repeats (the first value is kept), when there are any. */
    readonly repeatedKeys?: readonly string[];
  }
  | {
    readonly type: "STATUS";
    readonly transport: string | undefined;
    readonly fields: Readonly<Record<string, string>>;
    /** Fields the line repeats (the first value is kept), when there are any. */
    readonly repeatedKeys?: readonly string[];
  }
  | {
    readonly type: "CMESSAGE" | "SMESSAGE";
    readonly transport: string;
    readonly payload: Uint8Array;
  }
  | { readonly type: "unknown"; readonly keyword: string };

/** Longest line accepted, in characters (a `CMESSAGE` of 16 KiB fits). */
export const MAX_PT_LINE_LENGTH: number = Math.max(16384, MAX_MESSAGE_LINE_LENGTH);

const KEYWORD = /^[A-Za-z0-9_-]+$/;
const UTF8 = new TextDecoder();
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** One word: printable ASCII without space. */
const WORD = /^[\x21-\x7e]+$/;
/** An `SMETHOD` `ARGS` value: printable ASCII without space, possibly empty. */
const ARG_VALUE = /^[\x21-\x7e]*$/;
/** A version: printable ASCII without space or comma. */
const VERSION = /^[\x21-\x2b\x2d-\x7e]+$/;

/**
 * Format one protocol line (without its newline): the inverse of
 * {@linkcode parsePtLine} for what a PT writes. Every argument is reduced
 * to printable ASCII so that no value can break the protocol; `LOG`
 * messages and `STATUS` values that are not plain words are C strings tor
 * and arti both read (`\"`, `\\`, `\n`, `\r`, `\t`; other control and
 * non-ASCII characters become `?`: arti refuses octal escapes). The
 * userinfo of a URI in an error, `LOG` or `STATUS` text is replaced by
 * `***`. `SMETHOD` arguments are written `ARGS:k=v,...`, keys sorted, `\`
 * `=` `,` escaped.
 *
 * @param line The line.
 * @returns Its text.
 * @throws {TypeError} When `line` is not a `PtLine`: not an object, an
 * unknown `type`, a field of the wrong type, or a word the line could not
 * carry (a transport name that is not one word of printable ASCII: the
 * name the parent asked for is written as it is, `*` or `t:1` too; a
 * keyword, mode,
 * severity or `STATUS` field name outside `[A-Za-z0-9_-]`, a version with a
 * space or comma, an address whose host is not an IP address or whose port is outside 1-65535
 * (tor refuses a host name and port 0),
 * an `SMETHOD` `ARGS` key or value that is not printable ASCII without
 * spaces, or an empty key).
 * The message names the value, never a message or argument value.
 * @throws {RangeError} On an empty or oversized `CMESSAGE`/`SMESSAGE` payload.
 *
 * @example Lines of a server PT
 * ```ts
 * import { formatPtLine, parsePtLine } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const smethod = formatPtLine({
 *   type: "SMETHOD",
 *   transport: "obfs4",
 *   address: { hostname: "::1", port: 443 },
 *   args: { "iat-mode": "0", cert: "a,b" },
 * });
 * deepStrictEqual(smethod, "SMETHOD obfs4 [::1]:443 ARGS:cert=a\\,b,iat-mode=0");
 * deepStrictEqual(parsePtLine(smethod), {
 *   type: "SMETHOD",
 *   transport: "obfs4",
 *   address: { hostname: "::1", port: 443 },
 *   args: { cert: "a,b", "iat-mode": "0" },
 * });
 * deepStrictEqual(
 *   formatPtLine({ type: "LOG", severity: "notice", message: 'said "hi"\n' }),
 *   'LOG SEVERITY=notice MESSAGE="said \\"hi\\"\\n"',
 * );
 * ```
 */
export function formatPtLine(line: PtLine): string {
  if (typeof line !== "object" || line === null) {
    throw new TypeError(`Cannot format PT line: expected an object, got ${typeName(line)}`);
  }
  const type = line.type;
  // What a field must be, checked before anything is written: a value that
  // could not be read back (`CMETHOD a b ...`) is refused, never sent.
  const word = (value: unknown, pattern: RegExp, what: string): string => {
    if (typeof value !== "string" || !pattern.test(value)) {
      throw new TypeError(`Cannot format ${type} line: invalid ${what} ${shown(value)}`);
    }
    return value;
  };
  // Free text (messages, values): checked for type only, and never quoted
  // in the error (it may hold a secret).
  const text = (value: unknown, what: string): string => {
    if (typeof value !== "string") {
      throw new TypeError(
        `Cannot format ${type} line: the ${what} must be a string, got ${typeName(value)}`,
      );
    }
    return value;
  };
  const hostPort = (value: unknown): string => {
    const { hostname, port } = (typeof value === "object" && value !== null ? value : {}) as {
      hostname?: unknown;
      port?: unknown;
    };
    if (
      typeof hostname !== "string" || !isIpLiteral(hostname) ||
      typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535
    ) {
      throw new TypeError(
        `Cannot format ${type} line: invalid address ${
          typeof hostname === "string" ? `${shown(hostname)} port ${shown(port)}` : shown(value)
        }: expected { hostname, port } with an IP address (tor refuses a name) and a port from 1 to 65535`,
      );
    }
    return formatHostPort({ hostname, port });
  };
  switch (line.type) {
    case "VERSION":
      return formatLine("VERSION", word(line.version, VERSION, "version"));
    case "VERSION-ERROR":
    case "ENV-ERROR":
    case "PROXY-ERROR":
      return formatLine(line.type, safe(text(line.message, "message")));
    case "PROXY-DONE":
      return formatLine("PROXY", "DONE");
    case "CMETHOD":
      return formatLine(
        "CMETHOD",
        `${word(line.transport, WORD, "transport name")} ${word(line.mode, KEYWORD, "mode")} ${
          hostPort(line.address)
        }`,
      );
    case "CMETHOD-ERROR":
    case "SMETHOD-ERROR":
      return formatLine(
        line.type,
        `${word(line.transport, WORD, "transport name")} ${safe(text(line.message, "message"))}`,
      );
    case "CMETHODS-DONE":
      return formatLine("CMETHODS", "DONE");
    case "SMETHOD": {
      const transport = word(line.transport, WORD, "transport name");
      const address = hostPort(line.address);
      if (typeof line.args !== "object" || line.args === null) {
        throw new TypeError(
          `Cannot format SMETHOD line: the args must be an object, got ${typeName(line.args)}`,
        );
      }
      // Each pair must reach the parent intact: the line is split at spaces
      // and reduced to printable ASCII, which would change a value silently.
      for (const [key, value] of Object.entries(line.args)) {
        word(key, WORD, "ARGS key");
        if (!ARG_VALUE.test(text(value, `value of ARGS key ${shown(key)}`))) {
          throw new TypeError(
            `Cannot format SMETHOD line: the value of ARGS key ${
              shown(key)
            } is not printable ASCII without spaces (not shown)`,
          );
        }
      }
      const args = formatSmethodArgs(line.args);
      return formatLine("SMETHOD", `${transport} ${address}${args === "" ? "" : ` ${args}`}`);
    }
    case "SMETHODS-DONE":
      return formatLine("SMETHODS", "DONE");
    case "LOG":
      return formatLine(
        "LOG",
        `SEVERITY=${word(line.severity, KEYWORD, "severity")} MESSAGE=${
          quote(safe(text(line.message, "message")))
        }`,
      );
    case "STATUS": {
      const parts = line.transport === undefined
        ? []
        : [`TRANSPORT=${word(line.transport, WORD, "transport name")}`];
      if (typeof line.fields !== "object" || line.fields === null) {
        throw new TypeError(
          `Cannot format STATUS line: the fields must be an object, got ${typeName(line.fields)}`,
        );
      }
      for (const [k, v] of Object.entries(line.fields)) {
        const key = word(k, KEYWORD, "field name");
        const value = safe(text(v, `value of ${key}`));
        parts.push(`${key}=${/^[A-Za-z0-9_.:\/-]+$/.test(value) ? value : quote(value)}`);
      }
      return formatLine("STATUS", parts.join(" "));
    }
    case "CMESSAGE":
    case "SMESSAGE":
      return formatMessageLine(line.type, line.transport, line.payload).slice(0, -1);
    case "unknown":
      return formatLine(word(line.keyword, KEYWORD, "keyword"));
    default:
      throw new TypeError(
        `Cannot format PT line: unknown type ${shown((line as { type?: unknown }).type)}`,
      );
  }
}

/** What a value is, for an error: `null`, `array` or its `typeof`. */
function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/** A value quoted for an error: a string (shortened, printable), else its type. */
function shown(value: unknown): string {
  if (typeof value === "number") return String(value);
  return typeof value === "string" ? preview(value) : typeName(value);
}

/**
 * A line from a keyword and its arguments, reduced to printable ASCII
 * (newline, CR and tab become spaces, anything else `?`). Internal: the
 * one place that writes a line (goptlib's `line`).
 *
 * @param keyword `[A-Za-z0-9_-]+`.
 * @param args The rest of the line, if any.
 * @returns The line, without its newline.
 * @throws {TypeError} On an invalid keyword.
 */
export function formatLine(keyword: string, args = ""): string {
  if (typeof keyword !== "string" || !KEYWORD.test(keyword)) {
    throw new TypeError(`Invalid IPC keyword ${JSON.stringify(keyword)}`);
  }
  const rest = printable(args);
  return rest === "" ? keyword : `${keyword} ${rest}`;
}

/** Messages with the userinfo of any URI in them redacted (a safety net). */
function safe(text: string): string {
  return text.includes("://") ? redactUserinfo(text) : text;
}

/** Printable ASCII only: newline, CR and tab become spaces, anything else `?`. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/gu, (c) => c === "\n" || c === "\r" || c === "\t" ? " " : "?");
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

/**
 * Parse one line of a managed PT's output (without its newline; a trailing
 * `\r` is dropped).
 *
 * `SMETHOD` `ARGS:` values are unescaped (`\,` `\=` `\\`); `LOG` and
 * `STATUS` values may be quoted C strings (`\n \r \t \" \\` and octal
 * `\ooo`, as goptlib writes them; arti refuses octal, ptkit reads what the
 * PTs it drives write; `\xHH` too, as tor reads it). Octal and hex escapes
 * are bytes: a run of them is read as
 * UTF-8 (`caf\303\251` is `café`; a byte that is not UTF-8 becomes U+FFFD). A key that `ARGS:` or the fields of `LOG` /
 * `STATUS` repeat keeps its first value and is listed in `repeatedKeys`
 * (goptlib prints a key once per value when a transport gives several).
 * `CMESSAGE` / `SMESSAGE` payloads are decoded from base64 (see
 * `parseMessageLine`).
 *
 * @param line The line.
 * @returns What it says.
 * @throws {TypeError} When `line` is not a string.
 * @throws {SyntaxError} When the keyword is malformed, the line is too long,
 * or a known keyword has malformed arguments (a `CMETHOD` or `SMETHOD`
 * address must be an IP address and a port from 1 to 65535, as tor reads it).
 *
 * @example Parsing lines of obfs4proxy
 * ```ts
 * import { parsePtLine } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parsePtLine("VERSION 1"), { type: "VERSION", version: "1" });
 * deepStrictEqual(parsePtLine("SMETHOD obfs4 127.0.0.1:9 ARGS:cert=a\\,b,iat-mode=0"), {
 *   type: "SMETHOD",
 *   transport: "obfs4",
 *   address: { hostname: "127.0.0.1", port: 9 },
 *   args: { cert: "a,b", "iat-mode": "0" },
 * });
 * deepStrictEqual(parsePtLine("HELLO there"), { type: "unknown", keyword: "HELLO" });
 * throws(() => parsePtLine("CMETHOD obfs4 socks5 nowhere"), SyntaxError);
 * ```
 */
export function parsePtLine(line: string): PtLine {
  if (typeof line !== "string") {
    throw new TypeError(`Cannot parse PT line: expected a string, got ${typeName(line)}`);
  }
  if (line.length > MAX_PT_LINE_LENGTH) {
    throw new SyntaxError(
      `Cannot parse PT line: ${line.length} characters exceed ${MAX_PT_LINE_LENGTH}`,
    );
  }
  if (line.endsWith("\r")) line = line.slice(0, -1);
  const space = line.indexOf(" ");
  const keyword = space < 0 ? line : line.slice(0, space);
  const rest = space < 0 ? "" : line.slice(space + 1);
  if (!KEYWORD.test(keyword)) {
    throw new SyntaxError(`Cannot parse PT line: invalid keyword ${preview(keyword)}`);
  }
  const words = rest === "" ? [] : rest.split(" ").filter((w) => w !== "");
  const fail = (why: string) => new SyntaxError(`Cannot parse ${keyword} line: ${why}`);
  const transportName = (word: string | undefined) => {
    if (word === undefined || !NAME.test(word)) {
      throw fail(`invalid transport name ${preview(word ?? "")}`);
    }
    return word;
  };
  const messageAfter = (n: number) => words.slice(n).join(" ");
  switch (keyword) {
    case "VERSION":
      if (words.length !== 1) throw fail("expected one version");
      return { type: "VERSION", version: words[0]! };
    case "VERSION-ERROR":
    case "ENV-ERROR":
    case "PROXY-ERROR":
      return { type: keyword, message: rest.trim() };
    case "PROXY":
      if (words[0] !== "DONE") throw fail("expected PROXY DONE");
      return { type: "PROXY-DONE" };
    case "CMETHOD": {
      if (words.length < 3) throw fail("expected <transport> <mode> <address>");
      return {
        type: "CMETHOD",
        transport: transportName(words[0]),
        mode: words[1]!,
        address: address(words[2]!, fail),
      };
    }
    case "SMETHOD": {
      if (words.length < 2) throw fail("expected <transport> <address> [options]");
      let args: TransportOptions = {};
      const repeated: string[] = [];
      for (const option of words.slice(2)) {
        if (option.startsWith("ARGS:")) {
          args = parseSmethodArgs(option.slice(5), { onRepeatedKey: (k) => repeated.push(k) });
        }
      }
      return {
        type: "SMETHOD",
        transport: transportName(words[0]),
        address: address(words[1]!, fail),
        args,
        ...withRepeated(repeated),
      };
    }
    case "CMETHOD-ERROR":
    case "SMETHOD-ERROR":
      return { type: keyword, transport: transportName(words[0]), message: messageAfter(1) };
    case "CMETHODS":
    case "SMETHODS":
      if (words[0] !== "DONE") throw fail(`expected ${keyword} DONE`);
      return { type: keyword === "CMETHODS" ? "CMETHODS-DONE" : "SMETHODS-DONE" };
    case "LOG": {
      const repeated: string[] = [];
      const fields = parseFields(rest, fail, repeated);
      return {
        type: "LOG",
        severity: fields.SEVERITY ?? "notice",
        message: fields.MESSAGE ?? "",
        ...withRepeated(repeated),
      };
    }
    case "STATUS": {
      const repeated: string[] = [];
      const { TRANSPORT: transport, ...others } = parseFields(rest, fail, repeated);
      return { type: "STATUS", transport, fields: others, ...withRepeated(repeated) };
    }
    case "CMESSAGE":
    case "SMESSAGE": {
      const { kind, transport, payload } = parseMessageLine(line);
      return { type: kind, transport, payload };
    }
    default:
      return { type: "unknown", keyword };
  }
}

function withRepeated(repeated: string[]): { repeatedKeys?: readonly string[] } {
  return repeated.length === 0 ? {} : { repeatedKeys: repeated };
}

function address(text: string, fail: (why: string) => SyntaxError): HostPort {
  let hostPort: HostPort;
  try {
    // tor refuses port 0 ("Transport address ... has no port"): nothing
    // can connect to it.
    hostPort = parseHostPort(text, "PT address", 1);
  } catch (error) {
    // One sentence: "Cannot parse CMETHOD line: PT address "x": ...", not
    // "Cannot parse CMETHOD line: Cannot parse PT address ...".
    throw fail(
      (error as Error).message.replace(/^Cannot parse /, "").replace(/^Invalid /, "invalid "),
    );
  }
  // tor reads the address with tor_addr_parse, arti as a SocketAddr: a
  // name is refused ("Error parsing transport address").
  if (!isIpLiteral(hostPort.hostname)) {
    throw fail(
      `PT address ${
        JSON.stringify(text)
      } has a host name where an IP address belongs (tor refuses it)`,
    );
  }
  return hostPort;
}

/** `K=V K="quoted \"C\" string"` pairs; repeated keys go to `repeated`. */
function parseFields(
  text: string,
  fail: (why: string) => SyntaxError,
  repeated: string[],
): Record<string, string> {
  const fields = new FirstValuePairs((key) => repeated.push(key));
  let i = 0;
  while (i < text.length) {
    if (text[i] === " ") {
      i++;
      continue;
    }
    const eq = text.indexOf("=", i);
    const nextSpace = text.indexOf(" ", i);
    if (eq < 0 || (nextSpace >= 0 && nextSpace < eq)) {
      throw fail(
        `field ${preview(text.slice(i, nextSpace < 0 ? undefined : nextSpace))} has no '='`,
      );
    }
    const key = text.slice(i, eq);
    if (!KEYWORD.test(key)) throw fail(`invalid field name ${preview(key)}`);
    i = eq + 1;
    let value = "";
    if (text[i] === '"') {
      i++;
      let closed = false;
      // Octal escapes are bytes (goptlib writes each byte of UTF-8 text
      // outside printable ASCII as \ooo): a run of them is decoded as UTF-8.
      let bytes: number[] = [];
      const flush = () => {
        if (bytes.length > 0) value += UTF8.decode(new Uint8Array(bytes));
        bytes = [];
      };
      while (i < text.length) {
        const c = text[i]!;
        if (c === "\\" && /[0-7]/.test(text[i + 1] ?? "")) {
          const digits = /^[0-7]{1,3}/.exec(text.slice(i + 1))![0];
          bytes.push(parseInt(digits, 8) & 0xff);
          i += 1 + digits.length;
          continue;
        }
        // \xHH, one byte, as tor's C-string reader takes it.
        const hex = c === "\\" ? /^[xX]([0-9A-Fa-f]{2})/.exec(text.slice(i + 1)) : null;
        if (hex !== null) {
          bytes.push(parseInt(hex[1]!, 16));
          i += 4;
          continue;
        }
        flush();
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        if (c === "\\") {
          const n = text[i + 1];
          if (n === undefined) break;
          value += n === "n" ? "\n" : n === "r" ? "\r" : n === "t" ? "\t" : n;
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
      if (!closed) throw fail(`unterminated quoted value of ${key}`);
      if (i < text.length && text[i] !== " ") throw fail(`junk after the quoted value of ${key}`);
    } else {
      const end = text.indexOf(" ", i);
      value = text.slice(i, end < 0 ? undefined : end);
      i = end < 0 ? text.length : end;
    }
    fields.add(key, value);
  }
  return fields.values;
}

function preview(text: string): string {
  const short = text.length > 40 ? `${text.slice(0, 40)}...` : text;
  return JSON.stringify(short.replace(/[^\x20-\x7e]/g, "?"));
}
