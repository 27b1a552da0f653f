// Copyright the ptkit authors. MIT license.

// The accept-and-serve loop, written once: every listener in ptkit accepts
// through an Acceptor (per-connection errors never end it) and, unless it
// hands connections to the application, serves them through a
// ConnectionLoop (limits, tracking, drain and close).

import { type Admission, type ConnectionLimits, SourceLimiter } from "./source_limits.ts";
import { type ConnectionMetrics, type ConnectionRecord, UNCOUNTED } from "./_connection_metrics.ts";
import { TransportConn } from "./transport_conn.ts";

export {
  type AcceptErrorHandler,
  acceptErrorKind,
  callbackThrew,
  ErrorDigest,
  guardCallback,
} from "./_accept_error.ts";
import {
  type AcceptErrorHandler,
  acceptErrorKind,
  closedForLimit,
  ErrorDigest,
} from "./_accept_error.ts";

/**
 * How long {@linkcode ConnectionLoop.close} waits for a service after
 * aborting its signal and closing its connection, in ms: one that ignores
 * both (an application's function that never settles) is not waited for
 * past it.
 */
export const CLOSE_GRACE = 1000;

/** Back-off on resource exhaustion: from this many ms, doubling... */
const BACKOFF_MIN = 5;
/** ...up to this many. */
const BACKOFF_MAX = 100;
/** Errors of an unknown kind retried at once before backing off as on exhaustion. */
const UNKNOWN_RETRIES = 100;

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Accepts from a listener so that no per-connection error ever reaches the
 * caller: a connection reset or aborted before it was accepted is skipped
 * and the next one accepted at once; running out of file descriptors,
 * buffers or memory backs off briefly (5 ms doubling to 100 ms) and tries
 * again. Only a closed listener (or {@linkcode Acceptor.stop}) ends it.
 */
export class Acceptor<C> {
  #accept: () => Promise<C>;
  #digest: ErrorDigest | undefined;
  #count: ((kind: "exhausted" | "connection" | "unknown") => void) | undefined;
  #makeRoom: (() => boolean) | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  /** Settles once the accept under way (if any) has. */
  #turn: Promise<unknown> = Promise.resolve();

  /**
   * @param accept The listener's accept.
   * @param digest Where errors are counted and reported.
   * @param count Told the kind of every accept error (for metrics).
   * @param makeRoom Called when the process is out of descriptors: closes
   * a connection of the source holding the most, if any, as at a full
   * listener (`SourceLimiter.makeRoom`), and says whether it did.
   */
  constructor(
    accept: () => Promise<C>,
    digest?: ErrorDigest,
    count?: (kind: "exhausted" | "connection" | "unknown") => void,
    makeRoom?: () => boolean,
  ) {
    this.#accept = accept;
    this.#digest = digest;
    this.#count = count;
    this.#makeRoom = makeRoom;
  }

  /**
   * The next connection. Calls made while one waits queue behind it, each
   * getting its own connection: a `Deno.Listener` takes one accept at a
   * time, and the second of two accept loops met `Busy` ('Another accept
   * task is ongoing'), reported as an accept error and retried in a loop.
   *
   * @returns The connection.
   * @throws {Deno.errors.BadResource} When the listener is closed or the acceptor stopped.
   */
  next(): Promise<C> {
    const turn = this.#turn.then(() => this.#next());
    this.#turn = turn.catch(() => {});
    return turn;
  }

  async #next(): Promise<C> {
    let delay = 0;
    let unknown = 0;
    for (;;) {
      if (this.#stopped) throw new Deno.errors.BadResource("Listener has been closed");
      try {
        return await this.#accept();
      } catch (caught) {
        const kind = acceptErrorKind(caught);
        if (kind === "closed" || this.#stopped) throw caught;
        const error = asError(caught);
        this.#count?.(kind);
        const code = (error as { code?: unknown }).code;
        this.#digest?.add(`accept ${typeof code === "string" ? code : error.name}`, error);
        if (kind === "exhausted" || (kind === "unknown" && ++unknown > UNKNOWN_RETRIES)) {
          // Out of descriptors with one source holding more than others:
          // its oldest connection goes (its descriptors come back within a
          // turn or two), so the connections waiting, from anyone, are
          // accepted in turn rather than locked out while it stays.
          const madeRoom = code === "EMFILE" && this.#makeRoom?.() === true;
          delay = madeRoom ? BACKOFF_MIN : Math.min(Math.max(delay * 2, BACKOFF_MIN), BACKOFF_MAX);
          await this.#sleep(delay);
        }
      }
    }
  }

  /** Stop: a pending back-off ends and {@linkcode Acceptor.next} throws. */
  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }
}

/** What {@linkcode ConnectionLoop} gives the function serving one connection. */
export interface ServeContext {
  /** Aborted when the loop is closed (not when it drains). */
  readonly signal: AbortSignal;
  /** Say the connection finished its handshake (it stops counting against `maxHandshakesPerSource`). */
  readonly handshaken: () => void;
  /**
   * The connection's metrics record: the loop counts it accepted, open and
   * closed; the service says when it is established or how it failed (a
   * rejection of `serve` is a failure too). Counts nothing without metrics.
   */
  readonly record: ConnectionRecord;
}

/** Options for {@linkcode ConnectionLoop}. */
export interface ConnectionLoopOptions<C> {
  /**
   * Serve one connection until it ends. Errors are the function's to
   * report; a rejection is ignored. The connection is closed afterwards.
   * It should end soon once `signal` is aborted: `close()` waits for it
   * only {@linkcode CLOSE_GRACE} more.
   */
  readonly serve: (conn: C, context: ServeContext) => Promise<void>;
  /** Limits to enforce (see `ConnectionLimits`); none when omitted (the listener may enforce its own). */
  readonly limits?: ConnectionLimits;
  /** Where accept errors and refusals are reported. Defaults to ignoring them. */
  readonly onAcceptError?: AcceptErrorHandler;
  /**
   * Whether the connection is closed when `serve` ends. Defaults to true;
   * false when `serve` hands connections over to someone else.
   */
  readonly closeWhenServed?: boolean;
  /**
   * Where connections are counted (accepted, open, closed by outcome,
   * refused, accept errors; a `TransportConn`'s handshake and bytes).
   * Defaults to nowhere.
   */
  readonly metrics?: ConnectionMetrics;
  /**
   * Out of file descriptors (accept fails with `EMFILE`), close the oldest
   * connection of the source holding the most, as at a full listener
   * (`SourceLimiter.makeRoom`, with `limits`), as a `TransportListener`
   * does: for a listener open to many sources, which one source holding
   * every descriptor would otherwise lock out. Defaults to false (back off
   * and retry only: a loop serving one local client, such as the SOCKS
   * front end, would close that client's own connections).
   */
  readonly makeRoomWhenExhausted?: boolean;
}

/** A connection a loop serves. */
export interface LoopConn {
  /** The peer's address (counted against the per-source limits). */
  readonly remoteAddr: Deno.Addr;
  /** Close it. */
  close(): void;
}

/**
 * The accept-and-serve loop: accepts until the listener is closed (through
 * an {@linkcode Acceptor}), refuses connections over the limits, serves
 * each connection concurrently, and closes it when its service ends.
 * `drain()` stops accepting and waits; `close()` also ends every
 * connection, and waits for a service that goes on after that (ignoring
 * its signal) at most {@linkcode CLOSE_GRACE}: then it is abandoned, its
 * connection closed and forgotten (limits, metrics), and `close()` and any
 * `drain()` resolve.
 */
export class ConnectionLoop<C extends LoopConn> {
  #listener: { accept(): Promise<C>; close(): void };
  #options: ConnectionLoopOptions<C>;
  #digest: ErrorDigest | undefined;
  #limiter: SourceLimiter | undefined;
  #acceptor: Acceptor<C>;
  #conns = new Set<C>();
  /** Each service under way, and what ends its bookkeeping (once). */
  #tasks = new Map<Promise<void>, () => void>();
  #abort = new AbortController();
  #loop: Promise<void>;
  #closed = false;
  /** Resolved once close() stops waiting for the services still under way. */
  #abandoned = Promise.withResolvers<void>();
  #closing: Promise<void> | undefined;

  /**
   * Start serving (the loop owns the listener and closes it).
   *
   * @param listener The listener.
   * @param options How to serve each connection, limits, error reports.
   * @throws {RangeError} When a limit is not a positive integer or `Infinity`
   * (the listener is closed).
   */
  constructor(
    listener: { accept(): Promise<C>; close(): void },
    options: ConnectionLoopOptions<C>,
  ) {
    this.#listener = listener;
    this.#options = options;
    this.#digest = options.onAcceptError === undefined
      ? undefined
      : new ErrorDigest(options.onAcceptError);
    if (options.limits !== undefined) {
      try {
        this.#limiter = new SourceLimiter(options.limits, {
          what: "serve",
          onEvict: (error) => this.#digest?.add("evicted", error),
        });
      } catch (error) {
        closeQuietly(listener);
        throw error;
      }
    }
    const metrics = options.metrics;
    const limiter = options.makeRoomWhenExhausted ? this.#limiter : undefined;
    this.#acceptor = new Acceptor(
      () => listener.accept(),
      this.#digest,
      metrics === undefined ? undefined : (kind) => metrics.acceptError(kind),
      limiter === undefined ? undefined : () => limiter.makeRoom(),
    );
    this.#loop = this.#run();
  }

  /** The connections being served. */
  get connections(): ReadonlySet<C> {
    return this.#conns;
  }

  /** Aborted once {@linkcode ConnectionLoop.close} was called. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * Stop accepting; connections being served go on until they end.
   *
   * @returns Resolves once every connection has ended.
   */
  async drain(): Promise<void> {
    this.#stopAccepting();
    await this.#loop;
    while (this.#tasks.size > 0) {
      await Promise.race([Promise.allSettled(this.#tasks.keys()), this.#abandoned.promise]);
    }
    this.#digest?.stop();
  }

  /**
   * Stop accepting and close every connection.
   *
   * @param reason Why (the abort reason services see).
   * @returns Resolves once everything has ended.
   */
  close(reason: unknown = new Error("Server closed")): Promise<void> {
    this.#stopAccepting();
    if (!this.#abort.signal.aborted) this.#abort.abort(reason);
    for (const conn of this.#conns) closeQuietly(conn);
    return this.#closing ??= (async () => {
      // A service that ignores its signal would hold close() for ever.
      const timer = setTimeout(() => {
        for (const end of [...this.#tasks.values()]) end();
        this.#abandoned.resolve();
      }, CLOSE_GRACE);
      try {
        await this.drain();
      } finally {
        clearTimeout(timer);
      }
    })();
  }

  #stopAccepting(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#acceptor.stop();
    this.#limiter?.close();
    closeQuietly(this.#listener);
  }

  async #run(): Promise<void> {
    for (;;) {
      let conn: C;
      try {
        conn = await this.#acceptor.next();
      } catch {
        return; // The listener is closed.
      }
      if (this.#closed) {
        closeQuietly(conn);
        return;
      }
      let admission: Admission | undefined;
      const limiter = this.#limiter;
      if (limiter !== undefined) {
        const admitted = limiter.admit(conn.remoteAddr, () => {
          closedForLimit.add(conn as object);
          closeQuietly(conn);
        });
        if (admitted instanceof RangeError) {
          closeQuietly(conn);
          this.#options.metrics?.refused();
          this.#digest?.add(admitted.message, admitted);
          continue;
        }
        admission = admitted;
      }
      this.#conns.add(conn);
      const record = this.#options.metrics?.accept() ?? UNCOUNTED;
      if (conn instanceof TransportConn) record.transport(conn);
      const context: ServeContext = {
        signal: this.#abort.signal,
        handshaken: () => admission?.handshaken(),
        record,
      };
      let task: Promise<void>;
      try {
        task = this.#options.serve(conn, context);
      } catch (error) {
        task = Promise.reject(error);
      }
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        record.end();
        admission?.release();
        if (this.#options.closeWhenServed ?? true) closeQuietly(conn);
        this.#conns.delete(conn);
        this.#tasks.delete(tracked);
      };
      const tracked: Promise<void> = task.catch((error) => {
        if (!ended) record.fail(error);
      }).finally(end);
      this.#tasks.set(tracked, end);
    }
  }
}

/**
 * Run `open` (a dial, a socket to open) and, while it fails because the
 * process or the system is out of file descriptors, buffers or memory, try
 * again after a pause (10 ms doubling to 200 ms, for at most `patience` ms):
 * right after a flood the descriptors come back within moments, and the
 * connection being served should not be dropped meanwhile. Other errors,
 * and the abort of `signal`, end it at once.
 *
 * @param open What to do.
 * @param signal Stops the retries.
 * @param patience How long to keep trying, in ms. Defaults to 3000.
 * @returns What `open` returned.
 */
export async function retryWhileExhausted<T>(
  open: () => Promise<T>,
  signal?: AbortSignal,
  patience = 3000,
): Promise<T> {
  const deadline = Date.now() + patience;
  let delay = 10;
  for (;;) {
    try {
      return await open();
    } catch (error) {
      if (
        acceptErrorKind(error) !== "exhausted" || signal?.aborted || Date.now() + delay > deadline
      ) {
        throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 200);
  }
}

// What closeQuietly closed (or tried to): a second call does nothing. A
// connection has several owners that each close it when they are done (a
// relay, then the accept loop that served it); Deno's close of a socket
// closed already throws BadResource, and making that error (its stack
// captured) cost every relayed connection about as much CPU as its close.
const closedQuietly = new WeakSet<object>();

/**
 * Close a connection or listener that may be closed already. Anything else
 * (what a dialer returned instead of a connection: `undefined`, a number) is
 * let be, as before closes were remembered: a WeakSet takes no such value.
 */
export function closeQuietly(resource: { close(): void }): void {
  const kind = typeof resource;
  if (resource === null || (kind !== "object" && kind !== "function")) return;
  if (closedQuietly.has(resource)) return;
  closedQuietly.add(resource);
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
