// Copyright the ptkit authors. MIT license.
// Internal: the client side's SOCKS front end (the managed proxy's CMETHOD
// port): the one accept loop, the handshake, the connect callback, relay.

import { relay, type RelayEnd } from "../../net/relay.ts";
import { closeQuietly, ConnectionLoop, type ServeContext } from "../../net/_accept_loop.ts";
import type { ConnectionLimits } from "../../net/source_limits.ts";
import { socksHandshake, type SocksRequest } from "./_server_handshake.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "./_reply.ts";
import { metricsCore, type MetricsRegistry } from "../../net/metrics.ts";
import type { Counter } from "../../net/_metrics.ts";
import { ConnectionMetrics } from "../../net/_connection_metrics.ts";
import type { TransportConn } from "../../net/transport_conn.ts";

/** The codes `ptkit_socks_replies_total` labels, as `0x..`; anything else is `other`. */
const REPLY_CODES: readonly string[] = [
  ...new Set(Object.values(SocksReply).map(replyLabel)),
  "other",
];

function replyLabel(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")}`;
}

/** Options for {@linkcode SocksServer}. */
export interface SocksServerOptions {
  /**
   * Connect the destination of one request (through a transport, an
   * upstream proxy, or directly). Its error picks the reply code (see
   * {@linkcode socksReplyCode}). `follow` is given the transport
   * connection it dials, whose handshake and bytes are counted with the
   * client's connection (with `metrics`).
   */
  readonly connect: (
    request: SocksRequest,
    follow: (conn: TransportConn) => void,
  ) => Promise<RelayEnd>;
  /** Time a client has to finish its handshake, in ms. Defaults to 5000. */
  readonly handshakeTimeout?: number;
  /** Largest settings block accepted, in bytes. Defaults to 16384. */
  readonly maxSettingsBytes?: number;
  /**
   * Called when one connection fails (handshake, connect, relay). The error
   * never holds the client's address. Defaults to ignoring.
   */
  readonly onError?: (error: unknown, stage: "handshake" | "connect" | "relay") => void;
  /**
   * Connection limits. Defaults to at most 4096 connections and, per
   * source, 64 that have not finished their SOCKS handshake (no limit on
   * the total per source: applications behind one address open many).
   */
  readonly limits?: ConnectionLimits;
  /**
   * Called when accepting fails or a connection is refused by a limit, at
   * most once every 10 s per kind with a count; accepting always goes on.
   * Defaults to ignoring.
   */
  readonly onAcceptError?: (error: Error, count: number) => void;
  /**
   * Where connections (`side="client",mode="socks5"`, labelled with
   * `transport`) and replies by SOCKS5 code (`ptkit_socks_replies_total`)
   * are counted. Defaults to nowhere.
   */
  readonly metrics?: { readonly registry: MetricsRegistry; readonly transport: string };
}

/**
 * A SOCKS4/4a/5 server that accepts CONNECT requests (with per-connection
 * transport settings, see {@linkcode socksHandshake}), connects each
 * destination with the `connect` callback, replies with the code that
 * names the failure, and relays. One bad client only ends its own
 * connection, and no accept error ends the server.
 */
export class SocksServer implements AsyncDisposable {
  #addr: Deno.NetAddr;
  #options: SocksServerOptions;
  #loop: ConnectionLoop<Deno.TcpConn>;
  #replies: readonly Counter[] | undefined;

  /**
   * Serve SOCKS on a listener (the server owns and closes it).
   *
   * @param listener A TCP listener.
   * @param options How to connect destinations.
   * @throws {RangeError} When a limit is not a positive integer or `Infinity`.
   */
  constructor(listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>, options: SocksServerOptions) {
    this.#addr = listener.addr;
    this.#options = options;
    let metrics: ConnectionMetrics | undefined;
    if (options.metrics !== undefined) {
      const core = metricsCore(options.metrics.registry);
      const { transport } = options.metrics;
      metrics = new ConnectionMetrics(core, { transport, side: "client", mode: "socks5" });
      const replies = core.counter(
        "ptkit_socks_replies_total",
        "SOCKS replies the client's front end sent, by SOCKS5 code (0x00 succeeded; RFC 1928 and PT 2.0).",
        { transport: "transport name", code: REPLY_CODES },
      );
      this.#replies = REPLY_CODES.map((code) => replies.labels({ transport, code }));
    }
    this.#loop = new ConnectionLoop(listener, {
      ...(metrics === undefined ? {} : { metrics }),
      limits: { maxConnectionsPerSource: Infinity, ...options.limits },
      serve: (conn, context) => this.#serve(conn, context),
      ...(options.onAcceptError === undefined ? {} : { onAcceptError: options.onAcceptError }),
    });
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  /** How many client connections are open. */
  get connections(): number {
    return this.#loop.connections.size;
  }

  /**
   * Stop accepting; open connections go on until they end.
   *
   * @returns Resolves once every open connection has ended.
   */
  drain(): Promise<void> {
    return this.#loop.drain();
  }

  /**
   * Stop accepting and close every connection at once.
   *
   * @returns Resolves once everything is closed.
   */
  close(): Promise<void> {
    return this.#loop.close(new Error("SOCKS server closed"));
  }

  /** Same as {@linkcode SocksServer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #countReply(code: number): void {
    const replies = this.#replies;
    if (replies === undefined) return;
    const i = REPLY_CODES.indexOf(replyLabel(code));
    replies[i < 0 ? replies.length - 1 : i]!.inc();
  }

  async #serve(conn: Deno.Conn, { signal, handshaken, record }: ServeContext): Promise<void> {
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
        signal: AbortSignal.any([deadline.signal, signal]),
        ...(this.#options.maxSettingsBytes === undefined
          ? {}
          : { maxSettingsBytes: this.#options.maxSettingsBytes }),
        ...(this.#replies === undefined ? {} : { onReply: (code) => this.#countReply(code) }),
      });
    } catch (error) {
      record.fail(error, deadline.signal.aborted ? "timeout" : "error");
      if (!signal.aborted) onError(error, "handshake");
      return;
    } finally {
      clearTimeout(timer);
    }
    handshaken();
    let end: RelayEnd;
    try {
      end = await this.#options.connect(
        request,
        (dialed) => record.transport(dialed, { established: true }),
      );
    } catch (error) {
      record.fail(error);
      if (signal.aborted) return;
      onError(error, "connect");
      await request.reply(socksReplyCode(error)).catch(() => {});
      return;
    }
    try {
      if (signal.aborted) throw signal.reason;
      await request.reply(SocksReply.succeeded);
      await relay(conn, end, { signal: signal });
    } catch (error) {
      closeQuietly(end);
      if (!signal.aborted) onError(error, "relay");
    }
  }
}
