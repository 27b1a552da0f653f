// Copyright the ptkit authors. MIT license.
// Internal: the runtime's listener in front of a server helper (sshd). Not
// part of the public API.

import {
  type AcceptErrorHandler,
  closeQuietly,
  ConnectionLoop,
  ErrorDigest,
  retryWhileExhausted,
} from "./_accept_loop.ts";
import type { HostPort } from "./address.ts";
import { resetConnection } from "./_libc.ts";
import type { NetConn } from "./net_conn.ts";
import { relay } from "./relay.ts";
import {
  type ConnectionLimits,
  DEFAULT_CONNECTION_LIMITS,
  SourceLimiter,
} from "./source_limits.ts";

/**
 * Connections whose client has not authenticated that reach the helper at
 * once, from all sources (each is an sshd process; sshd's own
 * `MaxStartups` is above it, so sshd never refuses what the front let in).
 */
export const HELPER_HANDSHAKES = 192;
/** The same, from one source (an IPv4 address or an IPv6 /64). */
export const HELPER_HANDSHAKES_PER_SOURCE = 4;
/**
 * A connection still open this long (ms) after it reached the helper has
 * authenticated: the helper ends unfinished ones sooner (sshd's
 * `LoginGraceTime` is 30 s). It then stops counting as unfinished even if
 * the helper's word was missed.
 */
const HANDSHAKE_DEADLINE_MS = 45_000;
/** How long (ms) a connection waits for a helper that is not listening (starting or restarting). */
const HELPER_START_PATIENCE_MS = 3_000;

/** Options of {@linkcode HelperFront}. */
export interface HelperFrontOptions {
  /** The listener's limits; `maxConnections` and `maxConnectionsPerSource` apply here too. */
  readonly limits?: ConnectionLimits;
  /** Where refusals and connections closed for a limit are reported. */
  readonly onAcceptError?: AcceptErrorHandler;
}

/**
 * Accepts on the bind address for a server helper that listens on
 * loopback, and relays each connection to it. A helper such as sshd holds a
 * process for each connection until its client authenticates, and refuses
 * new ones past a ceiling (`MaxStartups`): idle connections from a few
 * dozen addresses would lock every client out. The front counts those
 * unfinished connections in all and per source with the runtime's
 * {@linkcode SourceLimiter}, so at the ceiling a newcomer takes the place
 * of the oldest one of the source holding the most, and a source over its
 * share loses its oldest after a short grace. The helper says which
 * connection authenticated by the port it came from
 * ({@linkcode HelperFront.handshaken}).
 */
export class HelperFront {
  #loop: ConnectionLoop<Deno.TcpConn>;
  #target: HostPort;
  #handshakes: SourceLimiter;
  #digest: ErrorDigest | undefined;
  /** The front's connections to the helper not yet authenticated, by local port. */
  #pending = new Map<number, () => void>();
  readonly addr: Deno.NetAddr;

  /**
   * Start serving (the front owns `listener` and closes it).
   *
   * @param listener The listener on the bind address.
   * @param target Where the helper listens (loopback).
   * @param options Limits and error reports.
   */
  constructor(listener: Deno.TcpListener, target: HostPort, options: HelperFrontOptions = {}) {
    this.addr = listener.addr;
    this.#target = target;
    this.#digest = options.onAcceptError === undefined
      ? undefined
      : new ErrorDigest(options.onAcceptError);
    this.#handshakes = new SourceLimiter({
      maxConnections: HELPER_HANDSHAKES,
      maxHandshakesPerSource: HELPER_HANDSHAKES_PER_SOURCE,
      maxConnectionsPerSource: Infinity,
    }, {
      what: "serve",
      onEvict: (error) => this.#digest?.add("evicted", error),
    });
    const limits = options.limits ?? {};
    this.#loop = new ConnectionLoop(listener, {
      serve: (conn, context) => this.#serve(conn, context.signal, context.handshaken),
      limits: {
        maxConnections: limits.maxConnections ?? DEFAULT_CONNECTION_LIMITS.maxConnections,
        maxConnectionsPerSource: limits.maxConnectionsPerSource ??
          DEFAULT_CONNECTION_LIMITS.maxConnectionsPerSource,
        // Unfinished ones are counted above.
        maxHandshakesPerSource: Infinity,
      },
      // Open to every source: one holding every descriptor must not lock
      // the others out (h42attack: a client waited 10 s for sshd's banner).
      makeRoomWhenExhausted: true,
      ...(options.onAcceptError === undefined ? {} : { onAcceptError: options.onAcceptError }),
    });
  }

  /**
   * The helper's client on the connection from `port` (the front's side of
   * it, on loopback) authenticated: it no longer counts as unfinished.
   */
  handshaken(port: number): void {
    this.#pending.get(port)?.();
  }

  /** Stop accepting and close every connection. */
  async close(): Promise<void> {
    this.#handshakes.close();
    await this.#loop.close();
    this.#digest?.stop();
  }

  async #serve(conn: Deno.TcpConn, signal: AbortSignal, handshaken: () => void): Promise<void> {
    const admitted = this.#handshakes.admit(conn.remoteAddr, () => closeQuietly(conn));
    if (admitted instanceof RangeError) {
      this.#digest?.add(admitted.message, admitted);
      return;
    }
    let helper: Deno.TcpConn;
    try {
      helper = await this.#connect(signal);
    } catch {
      admitted.release();
      return;
    }
    const port = helper.localAddr.port;
    const finish = () => {
      this.#pending.delete(port);
      clearTimeout(timer);
      admitted.release();
      handshaken();
    };
    const timer = setTimeout(finish, HANDSHAKE_DEADLINE_MS);
    this.#pending.set(port, finish);
    // The helper ending a connection whose client never authenticated (a
    // failed login, LoginGraceTime) ends it here too: passed on as a
    // half-close, the client could keep its side open, past the deadline
    // above, as if it had logged in.
    const helperEnded = new AbortController();
    const helperEnd = {
      read: async (p: Uint8Array) => {
        let n: number | null;
        try {
          n = await helper.read(p);
        } catch (error) {
          // The helper reset the connection (sshd closing with a probe's
          // bytes unread: "Invalid SSH identification string" before the
          // rest of an HTTP request): the client gets a reset too, as from
          // sshd itself, not a FIN.
          if (error instanceof Deno.errors.ConnectionReset) {
            resetConnection(conn.localAddr, conn.remoteAddr);
          }
          throw error;
        }
        if (n === null && this.#pending.get(port) === finish) {
          helperEnded.abort(new Error("The helper ended an unauthenticated connection"));
        }
        return n;
      },
      write: (p: Uint8Array) => helper.write(p),
      closeWrite: () => helper.closeWrite(),
      close: () => helper.close(),
      setNoDelay: (noDelay?: boolean) => helper.setNoDelay(noDelay),
      localAddr: helper.localAddr,
      remoteAddr: helper.remoteAddr,
    } satisfies NetConn & Pick<Deno.TcpConn, "setNoDelay">;
    try {
      await relay(conn, helperEnd, { signal: AbortSignal.any([signal, helperEnded.signal]) });
    } catch {
      // A reset ends this connection only.
    } finally {
      if (this.#pending.get(port) === finish) this.#pending.delete(port);
      clearTimeout(timer);
      admitted.release();
      closeQuietly(helper);
    }
  }

  /** Connect to the helper, waiting a little while it (re)starts. */
  async #connect(signal: AbortSignal): Promise<Deno.TcpConn> {
    const until = performance.now() + HELPER_START_PATIENCE_MS;
    for (;;) {
      try {
        return await retryWhileExhausted(
          () => Deno.connect({ ...this.#target, transport: "tcp" }),
          signal,
        );
      } catch (error) {
        if (
          !(error instanceof Deno.errors.ConnectionRefused) || signal.aborted ||
          performance.now() > until
        ) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}
