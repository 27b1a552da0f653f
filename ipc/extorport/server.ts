// Copyright the ptkit authors. MIT license.

import { listenOn } from "../../net/_listen.ts";
import { readExactly, writeFull } from "../../net/conn_io.ts";
import { type HostPort, parseHostPort } from "../../net/address.ts";
import { closeQuietly, ConnectionLoop } from "../../net/_accept_loop.ts";
import { guardCallback } from "../../net/_accept_error.ts";
import {
  AUTH_LENGTH,
  clientHash,
  constantTimeEqual,
  SAFE_COOKIE,
  serverHash,
  writeCookieFile,
} from "./_safe_cookie.ts";
import {
  CMD_DENY,
  CMD_DONE,
  CMD_OKAY,
  CMD_TRANSPORT,
  CMD_USERADDR,
  encodeCommand,
  readCommand,
} from "./_commands.ts";
import { checkPort, checkTimeout } from "../../net/address.ts";
import { checkFactoryOptions, checkOptionType } from "../../transports/_factory_options.ts";

/** Options for {@linkcode listenExtOrPort}. */
export interface ExtOrPortServerOptions {
  /** The address to listen on. Defaults to `"127.0.0.1"`. */
  readonly hostname?: string;
  /** The port; 0 picks a free one. Defaults to 0. */
  readonly port?: number;
  /**
   * Where to write the cookie file (mode 0600, a fresh random cookie). A
   * symbolic link there or at `<cookieFile>.tmp`, or anything but a regular
   * file of this process's user, is refused (the error names it) and left
   * untouched; the file is written to `<cookieFile>.tmp`, then renamed.
   * Defaults to a file in a new temporary directory, removed on close.
   */
  readonly cookieFile?: string;
  /** Milliseconds a PT has for authentication and its metadata. Defaults to 5000. */
  readonly handshakeTimeout?: number;
  /** Connections waiting for {@linkcode ExtOrPortServer.accept}; more are denied. Defaults to 64. */
  readonly maxPending?: number;
  /**
   * Called when one connection fails (authentication, malformed message,
   * timeout, queue full); the connection is already closed. Messages never
   * hold client addresses. Defaults to ignoring. A callback that throws
   * does not stop the server: its first throw is printed with
   * `console.error`, later ones are ignored (as `listen()`'s `onAcceptError`).
   */
  readonly onError?: (error: Error) => void;
}

const REPLY_OKAY = encodeCommand(CMD_OKAY);
const REPLY_DENY = encodeCommand(CMD_DENY);
const MAX_MESSAGES = 64;

/**
 * One authenticated Extended ORPort connection from a server PT, waiting for
 * the application's decision: {@linkcode ExtOrPortRequest.accept} answers
 * `OKAY` and hands over the connection (it then carries the client's plain
 * bytes), {@linkcode ExtOrPortRequest.deny} answers `DENY` and closes it.
 *
 * @example Accepting a connection from ptkit's own server side
 * ```ts
 * import { listenExtOrPort } from "@ptkit/ptkit/ipc/adapter";
 * import { parseManagedConfig, type PtLine, runServer } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using ext = await listenExtOrPort();
 * const state = await Deno.makeTempDir();
 * const config = parseManagedConfig([
 *   ...["-server", "-transports", "plain", "-state", state, "-authcookie", ext.cookieFile],
 *   ...["-extorport", `127.0.0.1:${ext.addr.port}`],
 * ]);
 * if (config.kind !== "server") throw new Error("not a server");
 * const lines: PtLine[] = [];
 * const pt = await runServer(config, { emit: (line) => lines.push(line) });
 * const method = lines.find((line) => line.type === "SMETHOD");
 * if (method?.type !== "SMETHOD") throw new Error("no SMETHOD");
 * using client = await Deno.connect({ hostname: "127.0.0.1", port: method.address.port });
 * const request = await ext.accept();
 * deepStrictEqual(request.transport, "plain");
 * deepStrictEqual(request.remoteAddr?.hostname, "127.0.0.1"); // USERADDR
 * using conn = await request.accept(); // OKAY: the client's bytes follow
 * await client.write(new Uint8Array([42]));
 * const buffer = new Uint8Array(1);
 * deepStrictEqual(await conn.read(buffer), 1);
 * await pt.close();
 * await Deno.remove(state, { recursive: true });
 * ```
 */
export class ExtOrPortRequest {
  #conn: Deno.Conn;
  #transport: string | undefined;
  #userAddr: string | undefined;
  #decided = false;
  #release: () => void;

  /**
   * Made by {@linkcode ExtOrPortServer}.
   *
   * @param conn The connection.
   * @param transport The `TRANSPORT` the PT sent.
   * @param userAddr The `USERADDR` the PT sent.
   * @param release Called once decided.
   */
  constructor(
    conn: Deno.Conn,
    transport: string | undefined,
    userAddr: string | undefined,
    release: () => void,
  ) {
    this.#conn = conn;
    this.#transport = transport;
    this.#userAddr = userAddr;
    this.#release = release;
  }

  /** The transport the client used (`TRANSPORT`), when the PT said. */
  get transport(): string | undefined {
    return this.#transport;
  }

  /** The client's address as the PT sent it (`USERADDR`, `ip:port`). */
  get userAddr(): string | undefined {
    return this.#userAddr;
  }

  /** {@linkcode ExtOrPortRequest.userAddr} parsed, when it parses. */
  get remoteAddr(): HostPort | undefined {
    if (this.#userAddr === undefined) return undefined;
    try {
      return parseHostPort(this.#userAddr, "USERADDR");
    } catch {
      return undefined;
    }
  }

  /**
   * Answer `OKAY` and take the connection.
   *
   * @returns The connection to the PT, carrying the client's bytes.
   * @throws {Error} When already decided.
   */
  async accept(): Promise<Deno.Conn> {
    this.#decide();
    try {
      await writeFull(this.#conn, REPLY_OKAY);
    } catch (error) {
      closeQuietly(this.#conn);
      throw error;
    }
    return this.#conn;
  }

  /**
   * Answer `DENY` and close the connection.
   *
   * @returns Resolves once closed.
   */
  async deny(): Promise<void> {
    this.#decide();
    try {
      await writeFull(this.#conn, REPLY_DENY);
    } catch {
      // The PT went away first.
    } finally {
      closeQuietly(this.#conn);
    }
  }

  /** @internal Close without an answer (server closing). */
  abandon(): void {
    if (this.#decided) return;
    this.#decided = true;
    this.#release();
    closeQuietly(this.#conn);
  }

  #decide(): void {
    if (this.#decided) throw new Error("ExtORPort request was already accepted or denied");
    this.#decided = true;
    this.#release();
  }
}

/**
 * An Extended ORPort server for applications (what tor is to a bridge's
 * PT): a server PT launched with `extorport` connects here for every
 * client, proves it knows the cookie (SAFE_COOKIE), names the transport
 * and the client's address, and the application accepts or denies each
 * connection. Made by {@linkcode listenExtOrPort}; pass it as
 * `extorport` to {@linkcode launchServer}.
 *
 * @example Accepting connections from obfs4proxy
 * ```ts
 * import { launchServer, listenExtOrPort } from "@ptkit/ptkit/ipc/adapter";
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using ext = await listenExtOrPort();
 * await using pt = await launchServer({ path: "obfs4proxy", transports: ["obfs4"], extorport: ext });
 * // A client of the bridge: ptkit's own obfs4.
 * const { address, clientOptions } = pt.transports.get("obfs4")!;
 * await using connector = await createConnector(obfs4, clientOptions);
 * await using conn = await connector.dial(address);
 * await conn.writable.getWriter().write(new TextEncoder().encode("hi"));
 * for await (const request of ext) {
 *   deepStrictEqual(request.transport, "obfs4");
 *   using client = await request.accept(); // the client's bytes, decoded by obfs4proxy
 *   const buffer = new Uint8Array(2);
 *   deepStrictEqual(await client.read(buffer), 2);
 *   break;
 * }
 * ```
 */
export class ExtOrPortServer implements AsyncDisposable {
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #cookie: Uint8Array;
  #cookieFile: string;
  #tempDir: string | undefined;
  #options: ExtOrPortServerOptions;
  #pending: ExtOrPortRequest[] = [];
  #waiters: { resolve: (r: ExtOrPortRequest) => void; reject: (e: Error) => void }[] = [];
  #handshakes = new Set<Deno.Conn>();
  #undecided = new Set<ExtOrPortRequest>();
  #loop: ConnectionLoop<Deno.TcpConn>;
  #closing: Promise<void> | undefined;
  #authFailures = 0;
  #onError: ((error: Error) => void) | undefined;

  /**
   * Use {@linkcode listenExtOrPort}.
   *
   * @param listener The TCP listener.
   * @param cookie The cookie.
   * @param cookieFile Its file.
   * @param tempDir A directory to remove on close.
   * @param options The options.
   */
  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    cookie: Uint8Array,
    cookieFile: string,
    tempDir: string | undefined,
    options: ExtOrPortServerOptions,
  ) {
    this.#listener = listener;
    this.#cookie = cookie;
    this.#cookieFile = cookieFile;
    this.#tempDir = tempDir;
    this.#options = options;
    // A throw is the application's bug: reported once, and the server goes
    // on (before, the connection's task swallowed it without a word).
    const onError = guardCallback(options.onError, "listenExtOrPort() onError");
    this.#onError = onError;
    this.#loop = new ConnectionLoop(listener, {
      serve: (conn) => this.#serve(conn),
      // Authenticated connections are handed over to the application.
      closeWhenServed: false,
      ...(onError === undefined ? {} : { onAcceptError: (error: Error) => onError(error) }),
    });
  }

  /** The address PTs connect to (`TOR_PT_EXTENDED_SERVER_PORT`). */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** The cookie file (`TOR_PT_AUTH_COOKIE_FILE`). */
  get cookieFile(): string {
    return this.#cookieFile;
  }

  /**
   * How many connections failed authentication so far: a wrong client
   * hash, or a PT that hung up after checking the server hash.
   */
  get authFailures(): number {
    return this.#authFailures;
  }

  /**
   * The next authenticated connection.
   *
   * @returns The request; accept or deny it.
   * @throws {Error} When the server is closed.
   */
  accept(): Promise<ExtOrPortRequest> {
    const next = this.#pending.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.#closing !== undefined) return Promise.reject(new Error("ExtORPort server is closed"));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Authenticated connections, until the server closes. */
  async *[Symbol.asyncIterator](): AsyncIterator<ExtOrPortRequest> {
    for (;;) {
      try {
        yield await this.accept();
      } catch {
        return;
      }
    }
  }

  /**
   * Stop listening, close connections not yet handed over, remove a
   * temporary cookie file. Calling it again returns the same promise.
   *
   * @returns Resolves once everything is closed.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      closeQuietly(this.#listener);
      for (const waiter of this.#waiters.splice(0)) {
        waiter.reject(new Error("ExtORPort server is closed"));
      }
      for (const conn of this.#handshakes) closeQuietly(conn);
      for (const request of [...this.#undecided]) request.abandon();
      this.#pending = [];
      await this.#loop.close(new Error("ExtORPort server is closed"));
      if (this.#tempDir !== undefined) {
        await Deno.remove(this.#tempDir, { recursive: true }).catch(() => {});
      }
    })();
    return this.#closing;
  }

  /** Stop the server. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    this.#handshakes.add(conn);
    const timeout = this.#options.handshakeTimeout ?? 5000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, timeout);
    let result: { transport: string | undefined; userAddr: string | undefined };
    try {
      result = await this.#handshake(conn);
    } catch (error) {
      closeQuietly(conn);
      if (this.#closing === undefined) {
        this.#onError?.(
          timedOut
            ? new Error(`ExtORPort handshake timed out after ${timeout} ms`, { cause: error })
            : error as Error,
        );
      }
      return;
    } finally {
      clearTimeout(timer);
      this.#handshakes.delete(conn);
    }
    if (this.#closing !== undefined) {
      closeQuietly(conn);
      return;
    }
    const request = new ExtOrPortRequest(
      conn,
      result.transport,
      result.userAddr,
      () => this.#undecided.delete(request),
    );
    this.#undecided.add(request);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve(request);
    } else if (this.#pending.length >= (this.#options.maxPending ?? 64)) {
      await request.deny();
      this.#onError?.(new Error("ExtORPort connection denied: too many waiting"));
    } else {
      this.#pending.push(request);
    }
  }

  async #handshake(
    conn: Deno.Conn,
  ): Promise<{ transport: string | undefined; userAddr: string | undefined }> {
    const read = (n: number) => readExactly(conn, n, closed(n));
    await writeFull(conn, new Uint8Array([SAFE_COOKIE, 0]));
    const [authType] = await read(1);
    if (authType !== SAFE_COOKIE) {
      throw new SyntaxError(
        `Cannot authenticate ExtORPort client: unsupported auth type 0x${authType!.toString(16)}`,
      );
    }
    const clientNonce = await read(AUTH_LENGTH);
    const serverNonce = crypto.getRandomValues(new Uint8Array(AUTH_LENGTH));
    const hello = new Uint8Array(2 * AUTH_LENGTH);
    hello.set(serverHash(this.#cookie, clientNonce, serverNonce));
    hello.set(serverNonce, AUTH_LENGTH);
    await writeFull(conn, hello);
    let theirs: Uint8Array;
    try {
      theirs = await read(AUTH_LENGTH);
    } catch (error) {
      // A PT whose cookie differs rejects our hash and hangs up.
      this.#authFailures++;
      throw new Error(
        "Cannot authenticate ExtORPort client: it hung up after the server hash (cookie mismatch?)",
        { cause: error },
      );
    }
    if (!constantTimeEqual(theirs, clientHash(this.#cookie, clientNonce, serverNonce))) {
      this.#authFailures++;
      await writeFull(conn, new Uint8Array([0])).catch(() => {});
      throw new Error("Cannot authenticate ExtORPort client: wrong client hash (cookie mismatch)");
    }
    await writeFull(conn, new Uint8Array([1]));
    let transport: string | undefined;
    let userAddr: string | undefined;
    for (let i = 0; i < MAX_MESSAGES; i++) {
      const { command, body } = await readCommand(conn, closed(4));
      if (command === CMD_DONE) return { transport, userAddr };
      if (command === CMD_USERADDR || command === CMD_TRANSPORT) {
        const text = new TextDecoder().decode(body);
        if (!/^[\x21-\x7e]+$/.test(text)) {
          throw new SyntaxError(
            `Cannot parse ExtORPort ${
              command === CMD_USERADDR ? "USERADDR" : "TRANSPORT"
            }: not printable ASCII (${body.length} bytes)`,
          );
        }
        if (command === CMD_USERADDR) userAddr = text;
        else transport = text;
      }
      // Unknown commands are ignored, as the spec says.
    }
    throw new SyntaxError(
      `Cannot parse ExtORPort messages: no DONE within ${MAX_MESSAGES} messages`,
    );
  }
}

/**
 * Start an Extended ORPort server: write a fresh cookie file (the 32-byte
 * header, then 32 random bytes) and listen.
 *
 * @param options Where to listen, the cookie file, the limits.
 * @returns The server.
 * @throws {TypeError} When `options` is not an object, or an option is of
 * the wrong type (a `port` or `maxPending` that is not a number, a
 * `cookieFile` that is not a string, an `onError` that is not a function).
 * @throws {RangeError} When a limit or the port is out of range.
 *
 * @example Listening with a temporary cookie file
 * ```ts
 * import { listenExtOrPort } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using server = await listenExtOrPort();
 * deepStrictEqual((await Deno.readFile(server.cookieFile)).length, 64);
 * ```
 */
export async function listenExtOrPort(
  options: ExtOrPortServerOptions = {},
): Promise<ExtOrPortServer> {
  const what = "listen for ExtORPort";
  checkFactoryOptions(options, what, ["onError"]);
  const { handshakeTimeout, maxPending } = options;
  checkTimeout(handshakeTimeout, "handshakeTimeout", what);
  checkOptionType(options.cookieFile, "string", "cookieFile", what);
  const port = checkPort(options.port ?? 0, what);
  if (maxPending !== undefined && typeof maxPending !== "number") {
    throw new TypeError(`Cannot ${what}: maxPending must be a number, got ${typeof maxPending}`);
  }
  if (maxPending !== undefined && !(Number.isInteger(maxPending) && maxPending >= 0)) {
    throw new RangeError(
      `Cannot listen for ExtORPort: maxPending must be a non-negative integer, got ${maxPending}`,
    );
  }
  let tempDir: string | undefined;
  let cookieFile = options.cookieFile;
  if (cookieFile === undefined) {
    tempDir = await Deno.makeTempDir({ prefix: "ptkit_extorport_" });
    cookieFile = `${tempDir}/extended_orport_auth_cookie`;
  }
  const cookie = await writeCookieFile(cookieFile);
  let listener;
  try {
    const at = { hostname: options.hostname ?? "127.0.0.1", port };
    listener = listenOn(at, () => Deno.listen({ ...at, transport: "tcp" }));
  } catch (error) {
    if (tempDir !== undefined) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    throw error;
  }
  return new ExtOrPortServer(listener, cookie, cookieFile, tempDir, options);
}

function closed(n: number): (got: number) => Error {
  return (got) => new Error(`ExtORPort client closed the connection (${got} of ${n} bytes read)`);
}
