// Copyright the ptkit authors. MIT license.
// Internal: what the accept loop counts for each listener, with the label
// set (transport, side, mode) bound once per listener, and each
// connection's record (outcome, handshake duration, bytes).

import { HandshakeError } from "../transports/_handshake_error.ts";
import type { Counter, Gauge, Histogram, MetricsCore } from "./_metrics.ts";

/** How a connection ended, as `ptkit_connections_total{outcome=...}` counts it. */
export const OUTCOMES = [
  "ok",
  "handshake_failed",
  "probe_delay_closed",
  "replay_refused",
  "target_refused",
  "upstream_proxy_failed",
  "timeout",
  "error",
] as const;

/** One of {@linkcode OUTCOMES}. */
export type Outcome = typeof OUTCOMES[number];

/** The modes of the managed proxy, as the `mode` label holds them. */
export const MODES = ["socks5", "transparent-TCP", "transparent-UDP", "STUN"] as const;

/** One of {@linkcode MODES}. */
export type MetricsMode = typeof MODES[number];

/** The label set of one listener's connections. */
export interface ConnectionLabels {
  /** The transport's name. */
  readonly transport: string;
  /** `client` (the PT's front end) or `server`. */
  readonly side: "client" | "server";
  /** The mode. */
  readonly mode: MetricsMode;
}

/** Kinds of accept errors (see `acceptErrorKind`). */
export const ACCEPT_ERROR_KINDS = ["exhausted", "connection", "unknown"] as const;

/** Upper bounds of the handshake duration buckets, in seconds. */
const HANDSHAKE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The label rules of a listener's families. */
export const CONNECTION_LABEL_RULES = {
  transport: "transport name",
  side: ["client", "server"],
  mode: MODES,
} as const;

/** A byte-counting connection: a `TransportConn`, or anything with its `stats()`. */
export interface CountedConn {
  /** Resolves when the transport handshake completed; rejects when it failed. */
  readonly ready: Promise<void>;
  /** Byte counts so far. */
  stats(): { readonly wireBytesRead: number; readonly wireBytesWritten: number };
}

/** The metrics of one listener's connections, bound to its label set. */
export class ConnectionMetrics {
  readonly #accepted: Counter;
  readonly #open: Gauge;
  readonly #outcomes: readonly Counter[];
  readonly #refused: Counter;
  readonly #acceptErrors: readonly Counter[];
  readonly #handshake: Histogram;
  readonly #received: Counter;
  readonly #sent: Counter;

  /**
   * Register (or find) the families and bind `labels` once.
   *
   * @throws {RangeError} When a label value is outside its closed set.
   */
  constructor(core: MetricsCore, labels: ConnectionLabels) {
    const rules = CONNECTION_LABEL_RULES;
    const bound = { transport: labels.transport, side: labels.side, mode: labels.mode };
    this.#accepted = core.counter(
      "ptkit_connections_accepted_total",
      "Connections accepted.",
      rules,
    ).labels(bound);
    this.#open = core.gauge("ptkit_connections_open", "Connections open now.", rules)
      .labels(bound);
    const outcomes = core.counter(
      "ptkit_connections_total",
      "Connections closed, by outcome: ok, handshake_failed, probe_delay_closed, replay_refused, target_refused, upstream_proxy_failed, timeout or error.",
      { ...rules, outcome: OUTCOMES },
    );
    this.#outcomes = OUTCOMES.map((outcome) => outcomes.labels({ ...bound, outcome }));
    this.#refused = core.counter(
      "ptkit_connections_refused_total",
      "Connections closed when accepted because a connection limit was reached.",
      rules,
    ).labels(bound);
    const errors = core.counter(
      "ptkit_accept_errors_total",
      "Accept errors, by kind: exhausted (out of file descriptors, buffers or memory), connection (one connection failed before it was accepted) or unknown.",
      { ...rules, kind: ACCEPT_ERROR_KINDS },
    );
    this.#acceptErrors = ACCEPT_ERROR_KINDS.map((kind) => errors.labels({ ...bound, kind }));
    this.#handshake = core.histogram(
      "ptkit_handshake_duration_seconds",
      "Time from accepting (server) or dialing (client) a connection to the end of its successful transport handshake, in seconds.",
      rules,
      HANDSHAKE_BUCKETS,
    ).labels(bound);
    const bytes = core.counter(
      "ptkit_bytes_total",
      "Bytes on the network through transport connections, by direction.",
      { ...rules, direction: ["received", "sent"] },
    );
    this.#received = bytes.labels({ ...bound, direction: "received" });
    this.#sent = bytes.labels({ ...bound, direction: "sent" });
  }

  /** Count an accepted connection and return its record. */
  accept(): ConnectionRecord {
    this.#accepted.inc();
    this.#open.inc();
    return new ConnectionRecord(this);
  }

  /** Count a connection refused by a limit. */
  refused(): void {
    this.#refused.inc();
  }

  /** Count an accept error of `kind`. */
  acceptError(kind: typeof ACCEPT_ERROR_KINDS[number]): void {
    this.#acceptErrors[ACCEPT_ERROR_KINDS.indexOf(kind)]?.inc();
  }

  /** @internal Used by the record. */
  handshakeDone(seconds: number): void {
    this.#handshake.observe(seconds);
  }

  /** @internal Used by the record. */
  trackBytes(conn: CountedConn): () => void {
    const a = this.#received.track(() => conn.stats().wireBytesRead);
    const b = this.#sent.track(() => conn.stats().wireBytesWritten);
    return () => {
      a();
      b();
    };
  }

  /** @internal Used by the record. */
  closed(outcome: Outcome): void {
    this.#open.dec();
    this.#outcomes[OUTCOMES.indexOf(outcome)]!.inc();
  }
}

/**
 * One connection's record: when its handshake completed, whether it was
 * established, how it failed; counted once when it ends.
 */
export class ConnectionRecord {
  readonly #metrics: ConnectionMetrics | undefined;
  #start = performance.now();
  #handshaken = false;
  #established = false;
  #outcome: Outcome | undefined;
  #release: (() => void) | undefined;
  #tracked = false;
  #ended = false;

  /** @param metrics Where it is counted; none for a record that counts nothing. */
  constructor(metrics?: ConnectionMetrics) {
    this.#metrics = metrics;
  }

  /**
   * Follow a transport connection: its bytes, and its handshake (from now
   * to `ready`). With `established`, a completed handshake also makes the
   * connection established (the client side).
   */
  transport(conn: CountedConn, options: { readonly established?: boolean } = {}): void {
    if (this.#metrics === undefined || this.#ended) return;
    this.#tracked = true;
    this.#release?.();
    this.#release = this.#metrics.trackBytes(conn);
    const start = performance.now();
    conn.ready.then(() => {
      this.#start = start;
      this.handshaken();
      if (options.established) this.established();
    }, (error) => this.fail(error));
  }

  /** The transport handshake completed: observe its duration (once). */
  handshaken(): void {
    if (this.#handshaken) return;
    this.#handshaken = true;
    if (!this.#ended) this.#metrics?.handshakeDone((performance.now() - this.#start) / 1000);
  }

  /** The connection is established (relaying): later errors do not change its outcome. */
  established(): void {
    if (this.#outcome === undefined) this.#established = true;
  }

  /**
   * The connection failed before it was established (the first failure
   * counts).
   *
   * @param error The error.
   * @param outcome The outcome, when the caller knows it better than the error says.
   */
  fail(error: unknown, outcome?: Outcome): void {
    if (this.#established || this.#outcome !== undefined) return;
    const marked = typeof error === "object" && error !== null
      ? OUTCOME_MARKS.get(error)
      : undefined;
    this.#outcome = outcome ?? marked ?? classifyOutcome(error, this.#handshaken);
  }

  /** The connection ended: count it (once). */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#release?.();
    this.#metrics?.closed(
      this.#outcome ??
        (this.#established || this.#handshaken || !this.#tracked ? "ok" : "handshake_failed"),
    );
  }
}

/** A record that counts nothing (no registry). */
export const UNCOUNTED: ConnectionRecord = new ConnectionRecord();

const REFUSED_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
]);

/**
 * SOCKS5 replies (RFC 1928) that mean the destination was refused or could
 * not be reached: not allowed by the destination policy (`02`), network or
 * host unreachable (`03`, `04`, also an unresolvable name), refused (`05`).
 */
const REFUSED_REPLIES = new Set([0x02, 0x03, 0x04, 0x05]);

/**
 * The outcome an error means: a `HandshakeError` by its reason; a timeout;
 * a target that refused or could not be reached (also a SOCKS reply error
 * saying so, as free mode and free transports raise: `02` to `05`, `06` a
 * timeout, others by their cause); before the handshake
 * completed, a failed handshake; else `error`.
 *
 * @param error The error.
 * @param handshaken Whether the transport handshake had completed.
 * @returns The outcome.
 */
export function classifyOutcome(error: unknown, handshaken: boolean): Outcome {
  if (error instanceof HandshakeError) {
    switch (error.reason) {
      case "replay":
        return "replay_refused";
      case "probe-delay":
        return "probe_delay_closed";
      case "timeout":
        return "timeout";
      default:
        return "handshake_failed";
    }
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && error.name === "SocksReplyError" && typeof code === "number") {
    // A SOCKS reply (ipc/socks's SocksReplyError, from every destination a
    // server dials: free mode's SOCKS target, a free transport's own
    // destination) names what the destination did; else its cause does.
    if (REFUSED_REPLIES.has(code)) return "target_refused";
    if (code === 0x06) return "timeout";
    if (error.cause !== undefined) return classifyOutcome(error.cause, handshaken);
  }
  if (
    error instanceof Deno.errors.TimedOut || code === "ETIMEDOUT" ||
    (error instanceof DOMException && error.name === "TimeoutError")
  ) {
    return "timeout";
  }
  if (
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.NetworkUnreachable ||
    (typeof code === "string" && REFUSED_CODES.has(code)) ||
    (handshaken && (error instanceof Deno.errors.ConnectionReset || code === "ECONNRESET"))
  ) {
    return "target_refused";
  }
  return handshaken ? "error" : "handshake_failed";
}

/**
 * The metrics of a listener that enforces its own limits (a
 * `TransportListener` under `proxy()`): set by whoever serves it, read on
 * refusals and accept errors. Not part of any public type.
 */
export const LISTENER_METRICS: WeakMap<object, ConnectionMetrics> = new WeakMap();

/**
 * Outcomes that code far from the accept loop knows better than the error
 * says (a dial through the upstream proxy failed): `record.fail` reads them.
 */
export const OUTCOME_MARKS: WeakMap<object, Outcome> = new WeakMap();

/** Mark `error` with the outcome it means (ignored for non-objects). */
export function markOutcome(error: unknown, outcome: Outcome): void {
  if (typeof error === "object" && error !== null) OUTCOME_MARKS.set(error, outcome);
}
