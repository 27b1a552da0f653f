// Copyright the ptkit authors. MIT license.
// Internal: the server side of the SOCKS4/4a/5 handshake, with PT
// per-connection settings, on a socket or inside a transport connection.

import { writeFull } from "../../net/conn_io.ts";
import { formatIp } from "../../net/_ip_address.ts";
import { HandshakeIo, isNetConn } from "../../net/_handshake_io.ts";
import type { RelayEnd } from "../../net/relay.ts";
import type { TransportOptions } from "../../transports/transport.ts";
import { parseJsonSettings, parseTorArgs } from "../lines/_args.ts";
import { addressLength, ATYP_NAME, decodeAddress } from "./_address.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "./_reply.ts";
import { concat } from "../../transports/_bytes.ts";

/** How the client passed per-connection settings. */
export type SocksAuthMethod = "none" | "userpass" | "json" | "socks4";

/** A parsed SOCKS CONNECT request, waiting for its reply. */
export interface SocksRequest {
  /** 4 (SOCKS4/4a) or 5. */
  readonly version: 4 | 5;
  /** The destination host: an IP literal (IPv6 without brackets) or a name. */
  readonly hostname: string;
  /** The destination port. */
  readonly port: number;
  /** Per-connection settings (empty when none were sent). */
  readonly settings: TransportOptions;
  /** How the settings arrived. */
  readonly method: SocksAuthMethod;
  /**
   * Keys the `k=v;k=v` settings gave more than once, each listed once; the
   * first value is in `settings` (goptlib keeps every value and transports
   * read the first). Names only, for a log line.
   */
  readonly repeatedKeys: readonly string[];
  /**
   * Send the reply: `0` for success, else a SOCKS5 reply code (SOCKS4
   * clients get `0x5b`). After a success the connection carries data:
   * relay the connection itself (its streams are unlocked). After a
   * failure the caller closes it.
   */
  reply(code: number): Promise<void>;
}

/** Options for {@linkcode socksHandshake}. */
export interface SocksHandshakeOptions {
  /**
   * Largest settings block accepted, in bytes (JSON body, SOCKS4 user id).
   * Defaults to 16384. RFC 1929 settings are limited to 510 bytes anyway.
   */
  readonly maxSettingsBytes?: number;
  /** Aborting it ends the handshake (the caller then closes the connection). */
  readonly signal?: AbortSignal;
  /**
   * Told the SOCKS5 code of every reply sent (a SOCKS4 client's `0x5a` or
   * `0x5b` as the code it stands for), the request's own `reply` included:
   * for metrics. Defaults to nothing.
   */
  readonly onReply?: (code: number) => void;
  /**
   * Whether the client's authentication carries per-connection transport
   * settings, as tor's does. `false` for an application's SOCKS proxy whose
   * transport was fully configured at start (`main.ts client`): "no
   * authentication" is preferred, a user name and password are accepted and
   * ignored (applications send them for their own reasons: stream
   * isolation, a habit), the PT 2.0 JSON methods are not offered, and a
   * SOCKS4 user id (Java sends the OS user name) is ignored; `settings` is
   * then always empty. Defaults to `true`.
   */
  readonly settings?: boolean;
}

/** Each handshake's `onReply`, read wherever a reply is sent. */
const REPLY_HOOKS = new WeakMap<HandshakeIo, (code: number) => void>();

const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const METHOD_JSON = 0x09;
const METHOD_JSON_OLD = 0x80;
const NO_METHOD = 0xff;

/**
 * Read a SOCKS5 or SOCKS4/4a CONNECT request from a client, with its
 * per-connection transport settings: RFC 1929 user name and password in
 * tor's `k=v;k=v` form (split at 255 bytes, a password of one NUL byte
 * meaning none), PT 2.0 JSON after method `0x80` or `0x09` (with or without
 * a 4-byte big-endian length), or a SOCKS4 user id.
 *
 * Protocol errors are answered with the matching reply where the protocol
 * allows one (`01` malformed request header or reserved byte, RFC 1929
 * status `01` for an unknown sub-negotiation version, `07` command, `08`
 * address type, `12` settings that do not parse, `10` too large, `0x5b`
 * for SOCKS4) and then rejected with a {@linkcode SocksReplyError}; the
 * caller closes the connection. Settings are checked when the request
 * arrives, not at authentication, so that they get the PT 2.0 reply `12`. A
 * key the settings repeat keeps its first value (see `repeatedKeys`). Bytes
 * sent before a reply is due (pipelining) are an error. Nothing here logs.
 *
 * @param conn The client connection: a socket, or a transport connection
 * (free mode), whose streams are locked until the reply.
 * @param options Limits and an abort signal.
 * @returns The request; call its `reply` once the destination is connected.
 * @throws {SocksReplyError} On malformed input.
 */
export async function socksHandshake(
  conn: RelayEnd,
  options: SocksHandshakeOptions = {},
): Promise<SocksRequest> {
  const maxSettings = options.maxSettingsBytes ?? 16384;
  const io = new HandshakeIo(conn);
  if (options.onReply !== undefined) REPLY_HOOKS.set(io, options.onReply);
  const reader = new HandshakeReader(io, maxSettings + 600, options.signal);
  const version = (await reader.need(1))[0];
  const settings = options.settings ?? true;
  if (version === 5) return await socks5(io, reader, maxSettings, settings);
  if (version === 4) return await socks4(io, reader, settings);
  if (version! >= 0x41 && version! <= 0x5a) {
    // An HTTP method's first letter (CONNECT, GET, POST...): an application
    // set up for an HTTP proxy. Its user sees why, as a page, not an empty reply.
    // Its head is read first: closed with bytes unread, the connection would
    // be reset, and the page lost with it.
    try {
      for (let n = 4; n <= 8192; n++) {
        const head = await reader.need(n);
        if (head[n - 4] === 13 && head[n - 3] === 10 && head[n - 2] === 13 && head[n - 1] === 10) {
          break;
        }
      }
    } catch {
      // Closed, too long or timed out: answer what came.
    }
    const body = "This is a SOCKS5 proxy, not an HTTP proxy: set the application's proxy " +
      "to SOCKS5 (socks5h://HOST:PORT), or SOCKS4a.\n";
    const sent = await writeFull(
      io,
      new TextEncoder().encode(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n" +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      ),
    ).then(() => true, () => false);
    // A request body (a POST) left unread would reset the connection as it
    // closes, and the page with it: read a little of it first.
    if (sent) await lingerAfterPage(conn, options.signal);
    throw new SocksReplyError(SocksReply.generalFailure, HTTP_REQUEST_MESSAGE);
  }
  throw new SocksReplyError(
    SocksReply.generalFailure,
    `Cannot parse SOCKS greeting: unsupported version 0x${hex(version!)}`,
  );
}

/** After the 400 page: how long and how much of the rest of a request is read and dropped. */
const LINGER_MS = 1_000;
const LINGER_BYTES = 64 * 1024;

/**
 * Shut the write side of a socket that got the 400 page and read what else
 * its client sends, up to 64 KiB or 1 s, so that closing it does not reset
 * it. A stream connection (SOCKS inside a transport) is left as it is.
 */
async function lingerAfterPage(conn: RelayEnd, signal: AbortSignal | undefined): Promise<void> {
  if (!isNetConn(conn)) return;
  try {
    await conn.closeWrite();
  } catch {
    return;
  }
  const chunk = new Uint8Array(4096);
  const deadline = AbortSignal.any([AbortSignal.timeout(LINGER_MS), ...(signal ? [signal] : [])]);
  const stopped = new Promise<null>((resolve) => {
    if (deadline.aborted) resolve(null);
    deadline.addEventListener("abort", () => resolve(null), { once: true });
  });
  let dropped = 0;
  while (dropped < LINGER_BYTES && !deadline.aborted) {
    // The read left pending at the deadline ends when the caller closes the socket.
    const n = await Promise.race([conn.read(chunk).catch(() => null), stopped]);
    if (n === null) return;
    dropped += n;
  }
}

/**
 * The message of the {@linkcode SocksReplyError} {@linkcode socksHandshake}
 * throws when an HTTP request came instead of a SOCKS greeting (the
 * application is set up for an HTTP proxy): its user's mistake, worth a
 * warning where a probe's garbage is not.
 */
export const HTTP_REQUEST_MESSAGE =
  "Cannot parse SOCKS greeting: an HTTP request came (the application is set up for an HTTP proxy; this port speaks SOCKS5 and SOCKS4a)";

async function socks5(
  conn: HandshakeIo,
  reader: HandshakeReader,
  maxSettings: number,
  withSettings: boolean,
) {
  const [, count] = await reader.need(2);
  // A copy of the methods alone: what follows them (a pipelined message)
  // is in the same buffer, and consume() moves it over them.
  const methods = (await reader.need(2 + count!)).slice(2, 2 + count!);
  reader.consume(2 + count!);
  // A client that offers one method knows which comes next, and may send
  // it at once (obfs4proxy answers such a client too); one that offers
  // several must wait for the choice.
  if (count !== 1) reader.noPipelining("greeting");
  let method = NO_METHOD;
  const order = withSettings
    ? [METHOD_JSON, METHOD_JSON_OLD, METHOD_USERPASS, METHOD_NONE]
    : [METHOD_NONE, METHOD_USERPASS];
  for (const preferred of order) {
    if (methods.includes(preferred)) {
      method = preferred;
      break;
    }
  }
  await writeFull(conn, new Uint8Array([5, method]));
  if (method === NO_METHOD) {
    throw new SocksReplyError(
      SocksReply.generalFailure,
      "Cannot parse SOCKS5 greeting: no acceptable authentication method",
    );
  }

  let settings: TransportOptions = {};
  let settingsError: SocksReplyError | undefined;
  const repeatedKeys: string[] = [];
  let kind: SocksAuthMethod = "none";
  if (method === METHOD_USERPASS) {
    kind = "userpass";
    const [subVersion] = await reader.need(1);
    if (subVersion !== 1) {
      await writeFull(conn, new Uint8Array([1, 1]));
      throw new SocksReplyError(
        SocksReply.generalFailure,
        `Cannot parse SOCKS5 user/password: unsupported version 0x${hex(subVersion!)}`,
      );
    }
    const [, ulen] = await reader.need(2);
    const plen = (await reader.need(3 + ulen!))[2 + ulen!]!;
    const all = await reader.need(3 + ulen! + plen);
    const user = all.slice(2, 2 + ulen!);
    const pass = all.slice(3 + ulen!, 3 + ulen! + plen);
    reader.consume(3 + ulen! + plen);
    // The request may follow at once (whatever the answer, it comes next).
    const bytes = pass.length === 1 && pass[0] === 0 ? user : concat(user, pass);
    try {
      if (withSettings) {
        settings = parseTorArgs(decodeUtf8(bytes), {
          onRepeatedKey: (k) => repeatedKeys.push(k),
        });
      }
    } catch (error) {
      settingsError = new SocksReplyError(
        SocksReply.settingsParseError,
        (error as Error).message,
        { cause: error },
      );
    }
    // Authentication itself always succeeds; bad settings fail the request.
    await writeFull(conn, new Uint8Array([1, 0]));
  } else if (method === METHOD_JSON || method === METHOD_JSON_OLD) {
    kind = "json";
    const first = (await reader.need(1))[0]!;
    let body: Uint8Array;
    if (first === 0x7b) {
      const length = await reader.jsonObjectLength(maxSettings);
      if (length < 0) {
        await reply5(conn, SocksReply.settingsTooLarge);
        throw new SocksReplyError(
          SocksReply.settingsTooLarge,
          `Cannot parse SOCKS5 settings: JSON longer than ${maxSettings} bytes`,
        );
      }
      body = (await reader.need(length)).slice(0, length);
      reader.consume(length);
    } else {
      const head = await reader.need(4);
      const length = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
      if (length > maxSettings) {
        await reply5(conn, SocksReply.settingsTooLarge);
        throw new SocksReplyError(
          SocksReply.settingsTooLarge,
          `Cannot parse SOCKS5 settings: length ${length} exceeds ${maxSettings}`,
        );
      }
      body = (await reader.need(4 + length)).slice(4, 4 + length);
      reader.consume(4 + length);
    }
    try {
      settings = parseJsonSettings(decodeUtf8(body), {
        onRepeatedKey: (k) => repeatedKeys.push(k),
      });
    } catch (error) {
      settingsError = new SocksReplyError(
        SocksReply.settingsParseError,
        (error as Error).message,
        { cause: error },
      );
    }
  }

  const head = await reader.need(4);
  const [ver, command, reserved, atyp] = head;
  if (ver !== 5) {
    await reply5(conn, SocksReply.generalFailure);
    throw new SocksReplyError(
      SocksReply.generalFailure,
      `Cannot parse SOCKS5 request: unsupported version 0x${hex(ver!)}`,
    );
  }
  if (reserved !== 0) {
    await reply5(conn, SocksReply.generalFailure);
    throw new SocksReplyError(
      SocksReply.generalFailure,
      `Cannot parse SOCKS5 request: reserved byte 0x${hex(reserved!)} is not 0x00`,
    );
  }
  if (addressLength(atyp!, 0) < 0) {
    await reply5(conn, SocksReply.addressTypeNotSupported);
    throw new SocksReplyError(
      SocksReply.addressTypeNotSupported,
      `Cannot parse SOCKS5 request: unsupported address type 0x${hex(atyp!)}`,
    );
  }
  const end = 3 + addressLength(atyp!, (await reader.need(5))[4]!);
  const { hostname, port, valid } = decodeAddress((await reader.need(end)).subarray(3, end));
  reader.consume(end);
  if (!valid) {
    await reply5(conn, SocksReply.generalFailure);
    throw new SocksReplyError(
      SocksReply.generalFailure,
      `Cannot parse SOCKS5 request: invalid domain name of ${end - 7} bytes`,
    );
  }
  if (command !== 1) {
    await reply5(conn, SocksReply.commandNotSupported);
    throw new SocksReplyError(
      SocksReply.commandNotSupported,
      `Cannot parse SOCKS5 request: unsupported command 0x${hex(command!)}`,
    );
  }
  try {
    reader.noPipelining("request");
  } catch (error) {
    await reply5(conn, SocksReply.generalFailure);
    throw error;
  }
  if (settingsError !== undefined) {
    await reply5(conn, settingsError.code);
    // The request was read: the error says where it was going (the
    // bridge, under tor), for the STATUS line a refused connection gets.
    throw new SocksReplyError(settingsError.code, settingsError.message, {
      cause: settingsError.cause,
      destination: { hostname, port },
    });
  }
  if (port === 0) {
    await reply5(conn, SocksReply.generalFailure);
    throw new SocksReplyError(SocksReply.generalFailure, "Cannot parse SOCKS5 request: port 0");
  }
  return {
    version: 5,
    hostname,
    port,
    settings,
    method: kind,
    repeatedKeys,
    reply: (code: number) => reply5(conn, code, true),
  } satisfies SocksRequest;
}

async function socks4(
  conn: HandshakeIo,
  reader: HandshakeReader,
  withSettings: boolean,
): Promise<SocksRequest> {
  const head = await reader.need(8);
  const command = head[1]!;
  const port = (head[2]! << 8) | head[3]!;
  const ip = head.slice(4, 8);
  let offset = 8;
  // A field past its bound is answered (0x5b), as every other refusal after
  // the request's head is: the client is told, not left with a closed socket.
  // The user ID is the settings: the rest of the handshake's bound is its.
  const userLimit = reader.max - 9;
  const userEnd = await overBound(
    conn,
    reader.findZero(offset, userLimit, "SOCKS4 request: user ID"),
    SocksReply.settingsTooLarge,
  );
  const userId = (await reader.need(userEnd)).slice(offset, userEnd);
  offset = userEnd + 1;
  let hostname = formatIp(ip);
  if (ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] !== 0) {
    const nameEnd = await overBound(
      conn,
      reader.findZero(offset, 255, "SOCKS4a request: host name"),
      SocksReply.generalFailure,
    );
    hostname = new TextDecoder().decode((await reader.need(nameEnd)).slice(offset, nameEnd));
    offset = nameEnd + 1;
    if (!decodeAddress(socks4aName(hostname)).valid) {
      reader.consume(offset);
      await reply4(conn, 1);
      throw new SocksReplyError(
        SocksReply.generalFailure,
        "Cannot parse SOCKS4a request: invalid domain name",
      );
    }
  }
  reader.consume(offset);
  const fail = async (
    code: number,
    message: string,
    options?: ConstructorParameters<typeof SocksReplyError>[2],
  ) => {
    await reply4(conn, code);
    return new SocksReplyError(code, message, options);
  };
  if (command !== 1) {
    throw await fail(
      SocksReply.commandNotSupported,
      `Cannot parse SOCKS4 request: unsupported command 0x${hex(command)}`,
    );
  }
  try {
    reader.noPipelining("request");
  } catch (error) {
    await reply4(conn, 1);
    throw error;
  }
  let settings: TransportOptions = {};
  const repeatedKeys: string[] = [];
  try {
    if (withSettings) {
      settings = parseTorArgs(decodeUtf8(userId), { onRepeatedKey: (k) => repeatedKeys.push(k) });
    }
  } catch (error) {
    throw await fail(SocksReply.settingsParseError, (error as Error).message, {
      cause: error,
      destination: { hostname, port },
    });
  }
  if (port === 0) {
    throw await fail(SocksReply.generalFailure, "Cannot parse SOCKS4 request: port 0");
  }
  return {
    version: 4,
    hostname,
    port,
    settings,
    method: "socks4",
    repeatedKeys,
    reply: (code: number) => reply4(conn, code, true),
  } satisfies SocksRequest;
}

/** Send a SOCKS5 reply; after the final one, a success hands the connection back. */
async function reply5(conn: HandshakeIo, code: number, final = false): Promise<void> {
  await writeFull(conn, new Uint8Array([5, code, 0, 1, 0, 0, 0, 0, 0, 0]));
  REPLY_HOOKS.get(conn)?.(code);
  if (final && code === 0) conn.finish();
}

/**
 * The NUL a SOCKS4 field ends with; past the field's bound (or the
 * handshake's), reply 0x5b and fail with the same message and `code`.
 */
async function overBound(
  conn: HandshakeIo,
  found: Promise<number>,
  code: number,
): Promise<number> {
  try {
    return await found;
  } catch (error) {
    if (!TOO_LONG.has(error as object)) throw error;
    await reply4(conn, code);
    throw new SocksReplyError(code, (error as Error).message);
  }
}

/** The errors HandshakeReader throws for input past a bound (not a closed connection). */
const TOO_LONG = new WeakSet<object>();

/** Send a SOCKS4 reply; a success hands the connection back. */
async function reply4(conn: HandshakeIo, code: number, final = false): Promise<void> {
  await writeFull(conn, new Uint8Array([0, code === 0 ? 0x5a : 0x5b, 0, 0, 0, 0, 0, 0]));
  REPLY_HOOKS.get(conn)?.(code);
  if (final && code === 0) conn.finish();
}

/** A SOCKS4a host name as a SOCKS5 name address, to judge it by the same rule. */
function socks4aName(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  return new Uint8Array([ATYP_NAME, bytes.length, ...bytes, 0, 0]);
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new SyntaxError("Cannot parse SOCKS settings: not valid UTF-8");
  }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/** Buffers a client's handshake bytes, bounded, failing cleanly on EOF. */
class HandshakeReader {
  #conn: HandshakeIo;
  #buffer: Uint8Array;
  #length = 0;
  #max: number;
  #signal: AbortSignal | undefined;

  constructor(conn: HandshakeIo, max: number, signal: AbortSignal | undefined) {
    this.#conn = conn;
    this.#max = max;
    // Start small (most handshakes are a few bytes); grow up to `max`.
    this.#buffer = new Uint8Array(Math.min(512, max));
    this.#signal = signal;
  }

  /** The most bytes the handshake may take. */
  get max(): number {
    return this.#max;
  }

  /** Wait until at least `n` bytes are buffered; returns the buffer view. */
  async need(n: number): Promise<Uint8Array> {
    if (n > this.#max) {
      const error = new SocksReplyError(
        SocksReply.generalFailure,
        `Cannot parse SOCKS handshake: longer than ${this.#max} bytes`,
      );
      TOO_LONG.add(error);
      throw error;
    }
    while (this.#length < n) {
      this.#signal?.throwIfAborted();
      if (this.#length === this.#buffer.length) {
        const next = new Uint8Array(Math.min(this.#max, Math.max(n, this.#buffer.length * 2)));
        next.set(this.#buffer.subarray(0, this.#length));
        this.#buffer = next;
      }
      let count: number | null;
      try {
        count = await this.#conn.read(this.#buffer.subarray(this.#length));
      } catch (error) {
        this.#signal?.throwIfAborted();
        throw new SocksReplyError(
          socksReplyCode(error),
          "Cannot read SOCKS handshake: connection failed",
          { cause: error },
        );
      }
      if (count === null) {
        throw new SocksReplyError(
          SocksReply.generalFailure,
          "Cannot parse SOCKS handshake: connection closed after " +
            `${this.#length} of ${n} bytes`,
        );
      }
      this.#length += count;
    }
    return this.#buffer.subarray(0, this.#length);
  }

  /** Drop the first `n` bytes (a message fully parsed). */
  consume(n: number): void {
    this.#buffer.copyWithin(0, n, this.#length);
    this.#length -= n;
  }

  /** Fail when the client sent more than the message before our reply. */
  noPipelining(what: string): void {
    const early = this.#length + this.#conn.buffered;
    if (early > 0) {
      throw new SocksReplyError(
        SocksReply.generalFailure,
        `Cannot parse SOCKS ${what}: ${early} unexpected bytes before the reply`,
      );
    }
  }

  /** Index of the first NUL at or after `from`, reading on as needed. */
  async findZero(from: number, limit: number, field: string): Promise<number> {
    let i = from;
    for (;;) {
      const b = await this.need(i + 1);
      while (i < b.length) {
        if (b[i] === 0) return i;
        if (++i - from > limit) {
          const error = new SocksReplyError(
            SocksReply.generalFailure,
            `Cannot parse ${field} longer than ${limit} bytes`,
          );
          TOO_LONG.add(error);
          throw error;
        }
      }
    }
  }

  /**
   * Length of the JSON object at the start of the buffer (which starts with
   * `{`), reading on as needed; -1 when longer than `max`.
   */
  async jsonObjectLength(max: number): Promise<number> {
    let depth = 0;
    let inString = false;
    let escaped = false;
    let i = 0;
    for (;;) {
      if (i >= max) return -1;
      const c = (await this.need(i + 1))[i]!;
      i++;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 0x5c) escaped = true;
        else if (c === 0x22) inString = false;
      } else if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (--depth === 0) return i;
      }
    }
  }
}
