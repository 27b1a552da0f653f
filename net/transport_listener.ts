// Copyright the ptkit authors. MIT license.

import { checkTransportPair } from "../transports/_pair.ts";
import type { HostPort, ServerTransport, TransportOptions } from "../transports/transport.ts";
import { Acceptor, closeQuietly, ErrorDigest } from "./_accept_loop.ts";
import { closedForLimit, TransportPairError } from "./_accept_error.ts";
import { type ConnectionLimits, SourceLimiter } from "./source_limits.ts";
import { type ServerStats, StatsCollector } from "./server_stats.ts";
import { checkConnOptions, TransportConn, type TransportConnOptions } from "./transport_conn.ts";
import { checkFactoryOptions } from "../transports/_factory_options.ts";
import { checkTransportName, checkTransportSide } from "../transports/_transport_name.ts";
import { LISTENER_METRICS } from "./_connection_metrics.ts";
import { acceptedSource, relaySources, reportedSource } from "./_client_source.ts";

/**
 * A listening transport server, like `Deno.Listener`: accepts network
 * connections and yields them as {@linkcode TransportConn}s (decoded bytes),
 * plus the Server Manager's {@linkcode stats}. Async-iterable; `close()`
 * ends a `for await` loop quietly. `using` and `await using` close it.
 *
 * A connection's transport handshake runs (and its deadline,
 * `handshakeTimeout`, starts) once the application accepts it (`accept()`
 * or the `for await` loop), as with a TLS listener: until then its client
 * waits, and one that waits for the handshake before going on (obfs4proxy
 * answers its SOCKS request only then) waits for the application to accept.
 * Accept in a loop, or before awaiting such a dial.
 *
 * No connection can end the listener: one reset or aborted before it was
 * accepted is skipped (the next is accepted at once), running out of file
 * descriptors backs off briefly (at most 100 ms) and tries again, first
 * closing a connection as a full listener does (for a newcomer from a
 * source holding none: one source cannot hold every descriptor), and
 * connections over the {@linkcode ConnectionLimits} are closed. These are
 * reported to `onAcceptError`, digested.
 *
 * @example Accepting connections in a loop
 * ```ts
 * import { listen } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports";
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
export class TransportListener
  implements AsyncIterable<TransportConn>, Disposable, AsyncDisposable {
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #side: ServerTransport;
  #connOptions: TransportConnOptions;
  #stats = new StatsCollector();
  #limiter: SourceLimiter;
  #digest: ErrorDigest | undefined;
  #acceptor: Acceptor<Deno.TcpConn>;
  #closed = false;
  #helper: { readonly addr: Deno.NetAddr; close(): Promise<void> } | undefined;
  #helperClosed: Promise<void> = Promise.resolve();

  /**
   * Use `listen` from `@ptkit/ptkit/server`, which configures the transport.
   *
   * @param listener The network listener.
   * @param side The configured server side of the transport.
   * @param name The transport's name.
   * @param connOptions Options for every accepted connection (the handshake timeout).
   * @param options Options beyond the connections' own: connection limits,
   * where accept errors go, a helper listening in the listener's place.
   * @throws {TypeError} When `listener` is not a listener, `side` not a
   * configured server side, `name` not a transport name, `connOptions` or
   * `options` not an object, or one of their members not of its type.
   * @throws {RangeError} When a limit is not a positive integer or
   * `Infinity`, or the handshake timeout is out of range.
   */
  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    side: ServerTransport,
    name: string,
    connOptions: TransportConnOptions = {},
    options: {
      /** Connection limits, in all and per source. Defaults to `DEFAULT_CONNECTION_LIMITS`. */
      readonly limits?: ConnectionLimits;
      /** Where accept errors and refused connections are reported (digested). Defaults to ignoring. */
      readonly onAcceptError?: (error: Error, count: number) => void;
      /**
       * A transport helper that listens in the listener's place (the `ssh`
       * server's own sshd) and forwards to it: `addr` is then the helper's
       * address, and closing the listener stops the helper. Defaults to none.
       */
      readonly helper?: { readonly addr: Deno.NetAddr; close(): Promise<void> };
    } = {},
  ) {
    // Checked here, not at each connection: a handshakeTimeout of -1 failed
    // every accepted connection whose pair has a handshake, an
    // onAcceptError of another type the first accept error, and null
    // options with 'Cannot read properties of null'.
    const what = "make a transport listener";
    // A listener, side or name of another type was taken, and failed at the
    // first connection with JavaScript's own error.
    const l = listener as Partial<Deno.Listener> | null;
    if (
      typeof l !== "object" || l === null || typeof l.accept !== "function" ||
      typeof l.close !== "function" || typeof l.addr !== "object"
    ) {
      throw new TypeError(
        `Cannot ${what}: listener must be a Deno.Listener (accept, close, addr), got ${
          l === null ? "null" : typeof l
        }`,
      );
    }
    checkTransportSide(side, "server", what);
    checkTransportName(name, what);
    checkConnOptions(connOptions, what);
    checkFactoryOptions(options, what, ["onAcceptError"]);
    this.#listener = listener;
    this.#side = side;
    this.#connOptions = { ...connOptions, name };
    this.#limiter = new SourceLimiter(options.limits, {
      what,
      onEvict: (error) => this.#digest?.add("evicted", error),
    });
    this.#digest = options.onAcceptError === undefined
      ? undefined
      : new ErrorDigest(options.onAcceptError);
    this.#acceptor = new Acceptor(
      () => listener.accept(),
      this.#digest,
      (kind) => LISTENER_METRICS.get(this)?.acceptError(kind),
      () => this.#limiter.makeRoom(),
    );
    this.#helper = options.helper;
  }

  /**
   * The address the server listens on (its helper's, when a helper listens
   * in its place).
   */
  get addr(): Deno.NetAddr {
    return this.#helper?.addr ?? this.#listener.addr;
  }

  /**
   * The address bridge lines for this server carry, when the transport gives
   * one that is not where it listens (WebTunnel's placeholder).
   */
  get bridgeAddress(): HostPort | undefined {
    return this.#side.bridgeAddress;
  }

  /** What a client needs to reach this server (its bridge line arguments). */
  get clientOptions(): TransportOptions {
    return this.#side.clientOptions;
  }

  /**
   * Wait for the next connection. Connections that fail before they are
   * accepted, are over a limit, or whose transport pair cannot be made are
   * skipped (and reported to `onAcceptError`).
   *
   * @returns The accepted connection, wrapped in the transport.
   * @throws {Deno.errors.BadResource} When the listener is closed.
   */
  async accept(): Promise<TransportConn> {
    for (;;) {
      const tcp = await this.#acceptor.next();
      let conn: TransportConn | undefined;
      const admission = this.#limiter.admit(acceptedSource(tcp), () => {
        if (conn === undefined) closeQuietly(tcp);
        else {
          closedForLimit.add(conn);
          conn.close();
        }
      });
      if (admission instanceof RangeError) {
        closeQuietly(tcp);
        LISTENER_METRICS.get(this)?.refused();
        this.#digest?.add(admission.message, admission);
        continue;
      }
      try {
        const name = this.#connOptions.name ?? "transport";
        let pair;
        try {
          pair = checkTransportPair(name, this.#side.pair());
        } catch (caught) {
          throw new TransportPairError(name, caught);
        }
        conn = new TransportConn(tcp, pair, this.#connOptions);
      } catch (caught) {
        closeQuietly(tcp);
        admission.release();
        const error = caught instanceof Error ? caught : new Error(String(caught));
        this.#digest?.add(`pair ${error.message}`, error);
        continue;
      }
      const accepted = conn;
      const relayed = relaySources.get(tcp);
      if (relayed !== undefined) relaySources.set(accepted, relayed);
      accepted.ready.then(() => {
        // Behind a front server on this host (WebTunnel behind nginx), the
        // client is the one it reported, not the front's loopback address,
        // which every client shares: the per-source limits count the client.
        const refused = admission.handshaken(reportedSource(accepted));
        if (refused === undefined) return;
        LISTENER_METRICS.get(this)?.refused();
        this.#digest?.add(refused.message, refused);
        closedForLimit.add(accepted);
        accepted.close();
      }, () => {});
      accepted.closed.then(() => admission.release());
      this.#stats.add(accepted);
      return accepted;
    }
  }

  /** Stop accepting. Connections already accepted stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#acceptor.stop();
    this.#limiter.close();
    this.#digest?.stop();
    closeQuietly(this.#listener);
    if (this.#helper !== undefined) this.#helperClosed = this.#helper.close().catch(() => {});
    // Last, so that a hook that throws leaves nothing else open; its error
    // is the caller's.
    this.#side.close?.();
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
      let conn: TransportConn;
      try {
        conn = await this.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        throw error;
      }
      yield conn;
    }
  }

  /**
   * Stop accepting, for `using` (as a `Deno.Listener` takes): the same as
   * {@linkcode TransportListener.close}. A helper, if any, is being stopped
   * when it returns; `await using` waits until it is.
   */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Stop accepting (and stop the helper, if any). */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return this.#helperClosed;
  }
}
