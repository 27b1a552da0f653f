// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * HTTP/1.x heads, the one home for reading them: WebTunnel's upgrade (both
 * sides), the upstream proxy's `CONNECT` reply and the metrics endpoint's
 * requests. Internal.
 *
 * @module
 */

const decoder = new TextDecoder();

/** A parsed HTTP/1.1 head: its first line and its header fields, in order. */
export interface HttpHead {
  /** The request line or status line. */
  readonly startLine: string;
  /** Header fields as `[name, value]`, names as sent, values trimmed. */
  readonly fields: readonly (readonly [string, string])[];
}

/**
 * Parse a head (everything up to and without the blank line). Lines end in
 * CR LF or a bare LF, as Go's net/textproto (webtunnel-server, lyrebird's
 * HTTP code) and nginx accept them.
 *
 * @param bytes The head's bytes, without the final `\r\n\r\n`.
 * @returns The parsed head.
 * @throws {SyntaxError} When a line is not a header field (folded lines,
 * missing colon, a name that is not a token).
 *
 * @example Parsing a response head
 * ```ts
 * import { parseHttpHead } from "./_http_head.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const head = parseHttpHead(
 *   new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"),
 * );
 * deepStrictEqual(head.fields, [["Upgrade", "websocket"]]);
 * ```
 */
export function parseHttpHead(bytes: Uint8Array): HttpHead {
  const lines = decoder.decode(bytes).split(/\r?\n/);
  const startLine = lines[0]!;
  const fields: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = colon < 0 ? "" : line.slice(0, colon);
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      throw new SyntaxError(`Cannot parse HTTP head: line ${i + 1} is not a header field`);
    }
    fields.push([name, line.slice(colon + 1).trim()]);
  }
  return { startLine, fields };
}

/**
 * The values of one header field (case-insensitive name), in order.
 *
 * @param head The parsed head.
 * @param name The field name.
 * @returns Every value sent under that name.
 *
 * @example Reading a header
 * ```ts
 * import { headerValues, parseHttpHead } from "./_http_head.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const head = parseHttpHead(new TextEncoder().encode("GET / HTTP/1.1\r\nupgrade: WebSocket"));
 * deepStrictEqual(headerValues(head, "Upgrade"), ["WebSocket"]);
 * ```
 */
export function headerValues(head: HttpHead, name: string): string[] {
  const lower = name.toLowerCase();
  return head.fields.filter(([n]) => n.toLowerCase() === lower).map(([, value]) => value);
}

/**
 * The status code of an HTTP/1.0 or HTTP/1.1 status line.
 *
 * @param line The status line (without `\r\n`; anything after it is ignored).
 * @returns The three-digit code, or `undefined` when `line` is not a status line.
 *
 * @example Reading a status code
 * ```ts
 * import { statusCode } from "./_http_head.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(statusCode("HTTP/1.1 101 Switching Protocols"), 101);
 * strictEqual(statusCode("HTTP/1.0 200"), 200);
 * strictEqual(statusCode("SSH-2.0-OpenSSH"), undefined);
 * ```
 */
export function statusCode(line: string): number | undefined {
  const status = /^HTTP\/1\.[01] ([0-9]{3})(?: |\r|\n|$)/.exec(line);
  return status === null ? undefined : Number(status[1]);
}

/**
 * Collects an HTTP head from chunks, keeping what follows it; linear in the
 * bytes added. The head ends at the first empty line; lines end in CR LF or
 * a bare LF (`\n\n`, `\r\n\n` and `\n\r\n` end a head too), as Go's
 * net/textproto and nginx read them: a request a Go server answers is not
 * left waiting for a CR LF CR LF that never comes.
 *
 * @example Finding the end of a head that arrives in pieces
 * ```ts
 * import { HeadBuffer } from "./_http_head.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const buffer = new HeadBuffer(1024);
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * deepStrictEqual(buffer.add(bytes("GET / HTTP/1.1\r\nHost: a\r")), undefined);
 * const { head, rest } = buffer.add(bytes("\n\r\nhello"))!;
 * deepStrictEqual(new TextDecoder().decode(head), "GET / HTTP/1.1\r\nHost: a");
 * deepStrictEqual(new TextDecoder().decode(rest), "hello");
 * deepStrictEqual(new TextDecoder().decode(buffer.add(bytes("GET / HTTP/1.1\nHost: a\n\n"))!.head), "GET / HTTP/1.1\nHost: a");
 * ```
 */
export class HeadBuffer {
  // The bytes so far, copied: a head sent one byte per segment must not keep
  // an array (a few hundred bytes each) or a whole read buffer per byte.
  #bytes = new Uint8Array(0);
  #length = 0;
  /**
   * Where the bytes so far stand: 0 inside a line, 1 at the start of a line
   * (after its LF), 2 at the start of a line after a CR.
   */
  #state = 0;
  /** Whether the last byte added was a CR. */
  #cr = false;
  /** Whether the last line that ended did in CR LF (not a bare LF). */
  #crlf = false;
  #maxBytes: number;

  /**
   * Make an empty buffer.
   *
   * @param maxBytes The longest head accepted, in bytes (without the blank line).
   */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /**
   * Add a chunk.
   *
   * @param chunk The next bytes received.
   * @returns The head (without the blank line) and the bytes after it once
   * the head is complete, `undefined` before.
   * @throws {HeadTooLong} When the head is longer than `maxBytes`.
   */
  add(chunk: Uint8Array): { head: Uint8Array; rest: Uint8Array } | undefined {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (byte === 10 && this.#state !== 0) {
        // An empty line: the head is what came before the line ending of
        // its last line.
        const all = this.#join(chunk);
        const end = this.#length + i + 1;
        const blank = (this.#state === 2 ? 2 : 1) + (this.#crlf ? 2 : 1);
        if (end - blank > this.#maxBytes) throw new HeadTooLong(this.#maxBytes);
        this.#bytes = new Uint8Array(0);
        this.#length = 0;
        this.#state = 0;
        this.#cr = this.#crlf = false;
        return { head: all.subarray(0, Math.max(0, end - blank)), rest: all.subarray(end) };
      }
      if (byte === 10) {
        this.#crlf = this.#cr;
        this.#state = 1;
      } else this.#state = byte === 13 && this.#state === 1 ? 2 : 0;
      this.#cr = byte === 13;
      if (this.#length + i + 1 > this.#maxBytes + 4) throw new HeadTooLong(this.#maxBytes);
    }
    const length = this.#length + chunk.length;
    if (length > this.#bytes.length) {
      // Doubling, up to the longest head accepted (the checks above bound
      // what is kept).
      const grown = new Uint8Array(
        Math.max(length, Math.min(2 * this.#bytes.length, this.#maxBytes + 4), 256),
      );
      grown.set(this.#bytes.subarray(0, this.#length));
      this.#bytes = grown;
    }
    this.#bytes.set(chunk, this.#length);
    this.#length = length;
    return undefined;
  }

  #join(last: Uint8Array): Uint8Array {
    const all = new Uint8Array(this.#length + last.length);
    all.set(this.#bytes.subarray(0, this.#length));
    all.set(last, this.#length);
    return all;
  }
}

/**
 * A head longer than a {@linkcode HeadBuffer} accepts.
 *
 * @example Catching an overlong head
 * ```ts
 * import { HeadBuffer, HeadTooLong } from "./_http_head.ts";
 * import { throws } from "node:assert";
 *
 * throws(() => new HeadBuffer(4).add(new Uint8Array(16)), HeadTooLong);
 * ```
 */
export class HeadTooLong extends RangeError {
  /**
   * Make the error.
   *
   * @param maxBytes The limit that was exceeded, in bytes.
   */
  constructor(maxBytes: number) {
    super(`HTTP head longer than ${maxBytes} bytes`);
    this.name = "HeadTooLong";
  }
}
