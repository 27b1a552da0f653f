// Copyright the ptkit authors. MIT license.

import { relay, type RelayEnd } from "../net/relay.ts";
import { socksHandshake, type SocksRequest } from "./socks_handshake.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "./socks_reply.ts";

/** Options for {@linkcode SocksServer}. */
export interface SocksServerOptions {
  /**
   * Connect the destination of one request (through a transport, an
   * upstream proxy, or directly). Its error picks the reply code (see
   * {@linkcode socksReplyCode}).
   */
  readonly connect: (request: SocksRequest) => Promise<RelayEnd>;
  /** Time a client has to finish its handshake, in ms. Defaults to 5000. */
  readonly handshakeTimeout?: number;
  /** Largest settings block accepted, in bytes. Defaults to 16384. */
  readonly maxSettingsBytes?: number;
  /**
   * Called when one connection fails (handshake, connect, relay). The error
   * never holds the client's address. Defaults to ignoring.
   */
  readonly onError?: (error: unknown, stage: "handshake" | "connect" | "relay") => void;
}

/**
 * A SOCKS4/4a/5 server that accepts CONNECT requests (with per-connection
 * transport settings, see {@linkcode socksHandshake}), connects each
 * destination with the `connect` callback, replies with the code that
 * names the failure, and relays. One bad client only ends its own
 * connection.
 *
 * @example Serving SOCKS5 that connects directly
 * ```ts
 * import { SocksServer } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * using echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await using server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
 *   connect: (request) => Deno.connect({ hostname: request.hostname, port: request.port }),
 * });
 * using client = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * await client.write(new Uint8Array([5, 1, 0]));
 * const buffer = new Uint8Array(10);
 * await client.read(buffer);
 * const port = echo.addr.port;
 * await client.write(new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]));
 * using backend = await echo.accept();
 * deepStrictEqual(await client.read(buffer), 10);
 * deepStrictEqual(buffer[1], 0);
 * ```
 */
export class SocksServer implements AsyncDisposable {
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #options: SocksServerOptions;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #abort = new AbortController();
  #acceptLoop: Promise<void>;
  #closed = false;

  /**
   * Serve SOCKS on a listener (the server owns and closes it).
   *
   * @param listener A TCP listener.
   * @param options How to connect destinations.
   */
  constructor(listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>, options: SocksServerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#acceptLoop = this.#accept();
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** How many client connections are open. */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Stop accepting; open connections go on until they end.
   *
   * @returns Resolves once every open connection has ended.
   */
  async drain(): Promise<void> {
    this.#stopAccepting();
    await this.#acceptLoop;
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /**
   * Stop accepting and close every connection at once.
   *
   * @returns Resolves once everything is closed.
   */
  async close(): Promise<void> {
    this.#stopAccepting();
    this.#abort.abort(new Error("SOCKS server closed"));
    for (const conn of this.#conns) closeQuietly(conn);
    await this.drain();
  }

  /** Same as {@linkcode SocksServer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #stopAccepting(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof Deno.errors.BadResource) return;
        // Out of file descriptors and the like: go on after a pause.
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      if (this.#closed) {
        closeQuietly(conn);
        return;
      }
      this.#conns.add(conn);
      const task = this.#serve(conn).finally(() => {
        this.#conns.delete(conn);
        closeQuietly(conn);
        this.#tasks.delete(task);
      });
      this.#tasks.add(task);
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const onError = this.#options.onError ?? (() => {});
    const deadline = new AbortController();
    const timer = setTimeout(() => {
      deadline.abort(
        new SocksReplyError(SocksReply.ttlExpired, "SOCKS handshake timed out"),
      );
      closeQuietly(conn);
    }, this.#options.handshakeTimeout ?? 5000);
    let request: SocksRequest;
    try {
      request = await socksHandshake(conn, {
        signal: AbortSignal.any([deadline.signal, this.#abort.signal]),
        ...(this.#options.maxSettingsBytes === undefined
          ? {}
          : { maxSettingsBytes: this.#options.maxSettingsBytes }),
      });
    } catch (error) {
      if (!this.#abort.signal.aborted) onError(error, "handshake");
      return;
    } finally {
      clearTimeout(timer);
    }
    let end: RelayEnd;
    try {
      end = await this.#options.connect(request);
    } catch (error) {
      if (this.#abort.signal.aborted) return;
      onError(error, "connect");
      await request.reply(socksReplyCode(error)).catch(() => {});
      return;
    }
    try {
      if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
      await request.reply(SocksReply.succeeded);
      await relay(conn, end, { signal: this.#abort.signal });
    } catch (error) {
      closeQuietly(end);
      if (!this.#abort.signal.aborted) onError(error, "relay");
    }
  }
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
