// Copyright the ptkit authors. MIT license.
// Internal: the client side's SOCKS front end (the managed proxy's CMETHOD
// port): the one accept loop, the handshake, the connect callback, relay.

import { relay, type RelayEnd } from "../../net/relay.ts";
import { closeQuietly, ConnectionLoop, type ServeContext } from "../../net/_accept_loop.ts";
import { closedForLimit } from "../../net/_accept_error.ts";
import { abortable } from "../../net/_abortable.ts";
import { MIN_READ } from "../../net/_chunk_io.ts";
import type { ConnectionLimits } from "../../net/source_limits.ts";
import { socksHandshake, type SocksRequest } from "./_server_handshake.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "./_reply.ts";
import { metricsCore, type MetricsRegistry } from "../../net/metrics.ts";
import type { Counter } from "../../net/_metrics.ts";
import { ConnectionMetrics } from "../../net/_connection_metrics.ts";
import type { TransportConn } from "../../net/transport_conn.ts";
import type { NetConn } from "../../net/net_conn.ts";
import { checkTimeout } from "../../net/address.ts";

/**
 * How long a connection attempt goes on once its SOCKS client's input has
 * ended, in ms: long enough for a quick answer to a client that only shut
 * its write side, short enough that clients which close at once hold no
 * slot for long.
 */
const HALF_CLOSE_GRACE_MS = 5000;

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
   * client's connection (with `metrics`). `signal` aborts when the attempt
   * is given up (`connectTimeout`, the client closed its connection, the
   * server closes): the callback then closes what it opened and rejects.
   */
  readonly connect: (
    request: SocksRequest,
    follow: (conn: TransportConn) => void,
    signal: AbortSignal,
  ) => Promise<RelayEnd>;
  /** Time a client has to finish its handshake, in ms. Defaults to 5000. */
  readonly handshakeTimeout?: number;
  /**
   * Time `connect` has, in ms (the TCP connection, an upstream proxy's
   * exchange, the transport's handshake): then the client gets reply `06`
   * (TTL expired) and the attempt is given up. Defaults to 60,000. A
   * transport handshake still under way then (of a connection given to
   * `follow`) ends at its own deadline instead, and its error is the one
   * reported (obfs4's names a wrong cert as the likely cause). A client
   * that resets its connection or sends data before the reply gives it up at
   * once (reply `01`); one whose input ends (closed, or only its write side
   * shut) 5 s later.
   */
  readonly connectTimeout?: number;
  /** Largest settings block accepted, in bytes. Defaults to 16384. */
  readonly maxSettingsBytes?: number;
  /**
   * Whether clients' authentication carries per-connection transport
   * settings (tor's PT arguments); `false` ignores it, for an application's
   * proxy whose transport is configured at start (see `settings` in
   * `socksHandshake`'s options). Defaults to `true`.
   */
  readonly settings?: boolean;
  /**
   * Called when one connection fails (handshake, connect, relay). The error
   * never holds the client's address. Not called for a handshake the
   * `limits` closed (that goes to `onAcceptError`). Defaults to ignoring.
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
    checkTimeout(options.handshakeTimeout, "handshakeTimeout", "serve SOCKS");
    checkTimeout(options.connectTimeout, "connectTimeout", "serve SOCKS");
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

  async #serve(conn: Deno.Conn, context: ServeContext): Promise<void> {
    // In two steps: the handshake's and the connect's timers, abort
    // controllers and signals (the first step's locals) are let go of once
    // connected, not kept for the relay's whole life (about 2 KiB an idle
    // connection).
    const connected = await this.#connect(conn, context);
    if (connected !== undefined) await this.#relay(connected, context.signal);
  }

  /** The relay of a connected client: reply, then relay until both ends are done. */
  async #relay(
    { request, client, end }: { request: SocksRequest; client: NetConn; end: RelayEnd },
    signal: AbortSignal,
  ): Promise<void> {
    try {
      if (signal.aborted) throw signal.reason;
      await request.reply(SocksReply.succeeded);
      await relay(client, end, { signal: signal });
    } catch (error) {
      closeQuietly(end);
      if (!signal.aborted) this.#options.onError?.(error, "relay");
    }
  }

  /**
   * The handshake and the connect: the connected destination and the
   * client's connection to relay, or nothing when the attempt ended (its
   * reply sent, the failure reported).
   */
  async #connect(
    conn: Deno.Conn,
    { signal, handshaken, record }: ServeContext,
  ): Promise<{ request: SocksRequest; client: NetConn; end: RelayEnd } | undefined> {
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
        ...(this.#options.settings === undefined ? {} : { settings: this.#options.settings }),
      });
    } catch (error) {
      record.fail(error, deadline.signal.aborted ? "timeout" : "error");
      // One the limits closed was reported there (onAcceptError).
      if (!signal.aborted && !closedForLimit.has(conn)) onError(error, "handshake");
      return;
    } finally {
      clearTimeout(timer);
    }
    handshaken();
    // The client waits for the reply and sends nothing before it (bytes
    // that come early are pipelining, refused as in the handshake): a read
    // that ends meanwhile means it went away, or broke the protocol, and
    // the attempt is given up. What it reads after the reply is the relay's
    // first read, whole: one byte alone made the transport's first record
    // (a 35-byte Shadowsocks chunk on every connection, never ss-local's).
    // Let go of once the relay has what it read (watchedClient): an idle
    // connection keeps only the relay's own read buffer (2 KiB more before).
    const watch = new Uint8Array(MIN_READ);
    const watching: Promise<{ n: number | null; error?: unknown }> = conn.read(watch).then(
      (n) => ({ n }),
      (error: unknown) => ({ n: null, error }),
    );
    const giveUp = new AbortController();
    let watched = false;
    let connecting = true;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    void watching.then(({ n, error }) => {
      if (!connecting) return;
      const stop = () => {
        watched = true;
        giveUp.abort(
          new SocksReplyError(
            SocksReply.generalFailure,
            n === null
              ? "SOCKS client closed its connection before the reply"
              : "Cannot parse SOCKS request: data sent before the reply",
          ),
        );
      };
      // An end of stream may be a client that only shut its write side (it
      // still reads the reply): it gets HALF_CLOSE_GRACE_MS more, a reset
      // or early data nothing.
      if (n === null && error === undefined) graceTimer = setTimeout(stop, HALF_CLOSE_GRACE_MS);
      else stop();
    });
    // The transport connection `connect` follows, and whether its
    // handshake has settled.
    let handshake: Promise<void> | undefined;
    let handshakeSettled = false;
    const connectTimer = setTimeout(() => {
      const timedOut = new SocksReplyError(SocksReply.ttlExpired, "Cannot connect: timed out");
      if (handshake === undefined || handshakeSettled) {
        giveUp.abort(timedOut);
        return;
      }
      // A transport handshake still under way has a deadline of its own,
      // whose error says why it failed (obfs4's 60 s, counted from before
      // the dial, and its "a wrong cert gets no answer"; the connection's
      // handshakeTimeout otherwise): it decides. This deadline, a moment
      // earlier, said only "timed out": a bridge line with a wrong cert
      // read as a blocked bridge.
      handshake.then(
        // Done meanwhile: a connect that returns at once is served; one with
        // a step still to come (free mode's greeting) is given up.
        () =>
          setTimeout(() => {
            if (connecting) giveUp.abort(timedOut);
          }, 0),
        (error: unknown) => giveUp.abort(error),
      );
    }, this.#options.connectTimeout ?? 60_000);
    let end: RelayEnd;
    try {
      const attemptSignal = AbortSignal.any([giveUp.signal, signal]);
      const attempt = this.#options.connect(
        request,
        (dialed) => {
          record.transport(dialed, { established: true });
          handshake = dialed.ready;
          handshake.then(() => handshakeSettled = true, () => handshakeSettled = true);
        },
        attemptSignal,
      );
      // A connection that arrives after the attempt was given up (a
      // callback that does not heed its signal) is closed, never used.
      end = await abortable(attempt, attemptSignal);
    } catch (error) {
      const reason = giveUp.signal.aborted ? giveUp.signal.reason : error;
      // The error tells what failed (the PT server refused, its handshake,
      // the upstream proxy: marked), as in transparent-TCP; a deadline's
      // give-up is a timeout.
      record.fail(reason, giveUp.signal.aborted && !watched ? "timeout" : undefined);
      if (signal.aborted) return;
      onError(reason, "connect");
      // Given up for data sent early or the client's end of stream: the
      // reply says so (a client that only half-closed still reads it).
      await request.reply(socksReplyCode(reason)).catch(() => {});
      return;
    } finally {
      connecting = false;
      clearTimeout(connectTimer);
      clearTimeout(graceTimer);
    }
    return { request, end, client: watchedClient(conn, watching, watch) };
  }
}

/**
 * The client's connection as the relay reads it: the read that watched it
 * while the destination was connected comes first, whole, then the socket.
 * Its own function: the relay keeps this alone, not the connect's scope.
 */
function watchedClient(
  conn: Deno.Conn,
  watching: Promise<{ n: number | null; error?: unknown }>,
  watchBuffer: Uint8Array,
): NetConn {
  // The read that watched goes on: what it takes comes first in the relay.
  let watch: Uint8Array | undefined = watchBuffer;
  let first: Promise<{ n: number | null; error?: unknown }> | undefined = watching;
  let held: Uint8Array | undefined;
  return {
    read: async (p) => {
      if (first !== undefined) {
        const { n, error } = await first;
        const read = watch!;
        first = undefined;
        watch = undefined;
        if (error !== undefined) throw error;
        if (n === null || n === 0) return n;
        held = read.subarray(0, n);
      }
      if (held === undefined) return await conn.read(p);
      const n = Math.min(held.length, p.length);
      p.set(held.subarray(0, n));
      held = n === held.length ? undefined : held.subarray(n);
      return n;
    },
    write: (p) => conn.write(p),
    closeWrite: () => conn.closeWrite(),
    // Quietly, and once: the accept loop closes the socket too when it is done.
    close: () => closeQuietly(conn),
    // The relay turns Nagle off on the client's socket too.
    ...("setNoDelay" in conn
      ? { setNoDelay: (on?: boolean) => (conn as Deno.TcpConn).setNoDelay(on) }
      : {}),
    get localAddr() {
      return conn.localAddr;
    },
    get remoteAddr() {
      return conn.remoteAddr;
    },
  };
}
