// Copyright the ptkit authors. MIT license.

import type { ServerTransport, TransportOptions } from "../transports/transport.ts";
import { type ServerStats, StatsCollector } from "./server_stats.ts";
import { TransportConn, type TransportConnOptions } from "./transport_conn.ts";

/**
 * A listening transport server, like `Deno.Listener`: accepts network
 * connections and yields them as {@linkcode TransportConn}s (decoded bytes),
 * plus the Server Manager's {@linkcode stats}. Async-iterable; `close()`
 * ends a `for await` loop quietly.
 *
 * @example Accepting connections in a loop
 * ```ts
 * import { listen } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports/plain";
 * import { deepStrictEqual } from "node:assert";
 *
 * const listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
 * const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * for await (const conn of listener) {
 *   deepStrictEqual(conn.remoteAddr.transport, "tcp");
 *   conn.close();
 *   listener.close();
 * }
 * tcp.close();
 * deepStrictEqual(listener.stats().connectionsAccepted, 1);
 * ```
 */
export class TransportListener implements AsyncIterable<TransportConn>, AsyncDisposable {
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #side: ServerTransport;
  #connOptions: TransportConnOptions;
  #stats = new StatsCollector();
  #closed = false;

  /**
   * Use `listen` from `@ptkit/ptkit/server`, which configures the transport.
   *
   * @param listener The network listener.
   * @param side The configured server side of the transport.
   * @param name The transport's name.
   * @param connOptions Options for every accepted connection (the handshake timeout).
   */
  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    side: ServerTransport,
    name: string,
    connOptions: TransportConnOptions = {},
  ) {
    this.#listener = listener;
    this.#side = side;
    this.#connOptions = { ...connOptions, name };
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** What a client needs to reach this server (its bridge line arguments). */
  get clientOptions(): TransportOptions {
    return this.#side.clientOptions;
  }

  /**
   * Wait for the next connection.
   *
   * @returns The accepted connection, wrapped in the transport.
   * @throws {Deno.errors.BadResource} When the listener is closed.
   */
  async accept(): Promise<TransportConn> {
    const tcp = await this.#listener.accept();
    let pair;
    try {
      pair = this.#side.pair();
    } catch (error) {
      tcp.close();
      throw error;
    }
    const conn = new TransportConn(tcp, pair, this.#connOptions);
    this.#stats.add(conn);
    return conn;
  }

  /** Stop accepting. Connections already accepted stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
  }

  /**
   * Statistics over every connection accepted so far.
   *
   * @returns A snapshot of the counters.
   */
  stats(): ServerStats {
    return this.#stats.snapshot();
  }

  /** The connections accepted and still open. */
  get connections(): ReadonlySet<TransportConn> {
    return this.#stats.open;
  }

  /**
   * Iterate over accepted connections until the listener is closed.
   *
   * @returns An async iterator of connections.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<TransportConn> {
    while (!this.#closed) {
      try {
        yield await this.accept();
      } catch (error) {
        if (this.#closed) return;
        throw error;
      }
    }
  }

  /** Stop accepting. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
