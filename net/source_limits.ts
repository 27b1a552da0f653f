// Copyright the ptkit authors. MIT license.

/**
 * How many connections a listener holds at once, in all and per source. A
 * source is an IPv4 address or an IPv6 /64 (one subscriber's prefix).
 * Connections over a limit are closed before a byte is read; the others
 * carry on.
 */
export interface ConnectionLimits {
  /**
   * Most connections open at once. Defaults to 4096. At this limit a new
   * connection is refused, unless a source is over its
   * `maxHandshakesPerSource`: then that source's oldest unfinished
   * handshake is closed to make room; with none over it, the oldest
   * unfinished handshake of the source holding the most, when that holds at
   * least two more than the newcomer's source holds (one more than it will
   * with the newcomer), or else one that has
   * waited 2 s from a source holding at least as many (so many sources each
   * holding just under their limit, reconnecting as fast as they are
   * closed, cannot fill the listener nor take a slow client's place). With no
   * handshake to close, the source holding the most connections gives up
   * its oldest past the handshake when it holds at least two more than the
   * newcomer's (so a few authenticated sources cannot lock all others out).
   */
  readonly maxConnections?: number;
  /**
   * Most connections from one source that have not finished their
   * handshake (for a transport: `ready` has not resolved, which includes
   * failed handshakes held open for probe resistance). Defaults to 64.
   * Connections beyond it are closed, oldest first, once they have waited
   * 2 s (so connections that die at once, as in a flood of resets, never
   * crowd out a good client behind the same address), or at once when
   * `maxConnections` is reached.
   */
  readonly maxHandshakesPerSource?: number;
  /**
   * Most connections from one source that finished their handshake; more
   * are refused. Defaults to 1024.
   */
  readonly maxConnectionsPerSource?: number;
}

/**
 * The limits of a transport server when none are given.
 *
 * @example Reading the defaults
 * ```ts
 * import { DEFAULT_CONNECTION_LIMITS } from "@ptkit/ptkit/server";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(DEFAULT_CONNECTION_LIMITS, {
 *   maxConnections: 4096,
 *   maxHandshakesPerSource: 64,
 *   maxConnectionsPerSource: 1024,
 * });
 * ```
 */
export const DEFAULT_CONNECTION_LIMITS: Readonly<Required<ConnectionLimits>> = Object.freeze({
  maxConnections: 4096,
  maxHandshakesPerSource: 64,
  maxConnectionsPerSource: 1024,
});

/** How long a connection over `maxHandshakesPerSource` may wait before it is closed, in ms. */
export const HANDSHAKE_GRACE = 2000;

/** A slot a {@linkcode SourceLimiter} gave one connection. */
export interface Admission {
  /**
   * The connection finished its handshake (idempotent).
   *
   * @param from The client's address a front server reported (WebTunnel's
   * `X-Forwarded-For`), when the connection came through one: from now on
   * the connection counts against that source, not the front's.
   * @returns `undefined`, or the limit that refuses the connection from
   * `from` (`maxConnectionsPerSource`): close it.
   */
  handshaken(from?: Deno.Addr): RangeError | undefined;
  /** The connection closed (idempotent). */
  release(): void;
}

interface Slot {
  readonly close: () => void;
  readonly since: number;
  /** Give the slot back (idempotent). */
  release: () => void;
}

interface Source {
  readonly key: string;
  open: number;
  /** Unfinished handshakes, oldest first. */
  readonly handshaking: Set<Slot>;
  /** Connections past their handshake, in the order they finished it. */
  readonly established: Set<Slot>;
}

/**
 * Counts the connections a listener holds, in all and per source, and
 * enforces {@linkcode ConnectionLimits}.
 *
 * @example A source over its handshake limit loses its oldest connection
 * ```ts
 * import { SourceLimiter } from "./source_limits.ts";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const limiter = new SourceLimiter({ maxConnections: 2, maxHandshakesPerSource: 1 });
 * const from = (hostname: string) => ({ transport: "tcp", hostname, port: 1 }) as const;
 * const closed: string[] = [];
 * ok(!(limiter.admit(from("192.0.2.1"), () => closed.push("a1")) instanceof RangeError));
 * ok(!(limiter.admit(from("192.0.2.1"), () => closed.push("a2")) instanceof RangeError));
 * // At maxConnections: the source over its handshake limit makes room.
 * ok(!(limiter.admit(from("192.0.2.9"), () => closed.push("b1")) instanceof RangeError));
 * deepStrictEqual(closed, ["a1"]);
 * limiter.close();
 * ```
 */
export class SourceLimiter {
  #limits: Required<ConnectionLimits>;
  #onEvict: ((error: RangeError) => void) | undefined;
  #open = 0;
  #sources = new Map<string, Source>();
  /** Sources with more unfinished handshakes than the limit. */
  #over = new Set<Source>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * @param limits The limits; missing ones take {@linkcode DEFAULT_CONNECTION_LIMITS}.
   * @param options What is limited (for error messages) and where
   * closed-for-a-limit connections are reported.
   * @throws {RangeError} When a limit is not a positive integer or `Infinity`.
   */
  constructor(
    limits: ConnectionLimits = {},
    options: { what?: string; onEvict?: (error: RangeError) => void } = {},
  ) {
    this.#limits = resolveConnectionLimits(limits, options.what ?? "listen");
    this.#onEvict = options.onEvict;
  }

  /** The limits in force. */
  get limits(): Required<ConnectionLimits> {
    return this.#limits;
  }

  /** Connections holding a slot now. */
  get open(): number {
    return this.#open;
  }

  /**
   * Take a slot for a connection from `addr`.
   *
   * @param addr The connection's remote address.
   * @param close Closes the connection, when a limit needs its slot back.
   * @returns The slot, or the limit that refused it (the message names the
   * limit, never the address).
   */
  admit(addr: Deno.Addr, close: () => void): Admission | RangeError {
    const limits = this.#limits;
    const key = sourceKey(addr);
    let source = key === undefined ? undefined : this.#sources.get(key);
    // A source over its own limit is refused before anyone else's handshake
    // is closed to make room for it.
    if (
      source !== undefined &&
      source.open - source.handshaking.size >= limits.maxConnectionsPerSource
    ) {
      return perSourceRefusal(limits);
    }
    if (this.#open >= limits.maxConnections && !this.#evictForRoom(source)) {
      return new RangeError(
        `Connection refused: ${limits.maxConnections} connections open (maxConnections)`,
      );
    }
    if (source === undefined && key !== undefined) {
      source = { key, open: 0, handshaking: new Set(), established: new Set() };
      this.#sources.set(key, source);
    }
    this.#open++;
    let open = true;
    const slot: Slot = {
      close,
      since: performance.now(),
      release: () => {
        if (!open) return;
        open = false;
        this.#open--;
        if (source === undefined) return;
        source.established.delete(slot);
        if (source.handshaking.delete(slot)) this.#checkOver(source);
        if (--source.open === 0) this.#sources.delete(source.key);
      },
    };
    if (source !== undefined) {
      source.open++;
      source.handshaking.add(slot);
      this.#checkOver(source);
    }
    return {
      handshaken: (from) => {
        const moveTo = from === undefined ? undefined : sourceKey(from);
        if (open && moveTo !== undefined && moveTo !== source?.key) {
          let target = this.#sources.get(moveTo);
          if (
            target !== undefined &&
            target.open - target.handshaking.size >= limits.maxConnectionsPerSource
          ) {
            return perSourceRefusal(limits);
          }
          if (source !== undefined) {
            source.established.delete(slot);
            if (source.handshaking.delete(slot)) this.#checkOver(source);
            if (--source.open === 0) this.#sources.delete(source.key);
          }
          if (target === undefined) {
            target = { key: moveTo, open: 0, handshaking: new Set(), established: new Set() };
            this.#sources.set(moveTo, target);
          }
          target.open++;
          target.established.add(slot);
          source = target;
          return undefined;
        }
        if (source === undefined || !open || !source.handshaking.delete(slot)) return undefined;
        source.established.add(slot);
        this.#checkOver(source);
        return undefined;
      },
      release: slot.release,
    };
  }

  /**
   * The process is out of file descriptors (accept failed with `EMFILE`):
   * close one connection as at `maxConnections` for a newcomer from a
   * source holding none. Below `maxConnections` the descriptors may run out
   * first (a low `ulimit -n`), and without this one source holding them all
   * locked every other out until it left.
   *
   * @returns Whether a connection was closed.
   */
  makeRoom(): boolean {
    const before = this.#open;
    this.#evictForRoom(
      undefined,
      "Connection closed: the process ran out of file descriptors, most of them held by its source; a newcomer took its place",
    );
    return this.#open < before;
  }

  /** Stop the timer that enforces `maxHandshakesPerSource` (the listener closed). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#over.clear();
  }

  #checkOver(source: Source): void {
    if (source.handshaking.size <= this.#limits.maxHandshakesPerSource) {
      this.#over.delete(source);
      return;
    }
    this.#over.add(source);
    if (this.#timer === undefined && !this.#closed) {
      const timer = setTimeout(() => this.#sweep(), HANDSHAKE_GRACE / 4);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Close what has waited over the handshake limit for the grace period. */
  #sweep(): void {
    this.#timer = undefined;
    const due = performance.now() - HANDSHAKE_GRACE;
    for (const source of [...this.#over]) {
      while (source.handshaking.size > this.#limits.maxHandshakesPerSource) {
        const oldest: Slot = source.handshaking.values().next().value!;
        if (oldest.since > due) break;
        this.#evict(source, oldest);
      }
      this.#checkOver(source);
    }
  }

  /**
   * At `maxConnections`: close the oldest handshake of a source over its
   * limit; with none over it (many sources, each just under), the oldest of
   * the source with the most handshakes that has waited the grace period
   * (a real handshake takes milliseconds: a full listener serves a new
   * client rather than keep a stalled one).
   */
  #evictForRoom(from: Source | undefined, why?: string): boolean {
    let worst: Source | undefined;
    for (const source of this.#over) {
      if (worst === undefined || source.handshaking.size > worst.handshaking.size) worst = source;
    }
    // No source over its limit: the source holding the most unfinished
    // handshakes gives up its oldest, when it holds at least one more than
    // the newcomer's will (two more than it holds now); failing that, a
    // handshake that waited 2 s, from a
    // source holding at least as many. So sources that keep reopening every
    // connection closed (theirs all young) can neither refuse a client from
    // another address nor take the place of its handshake while a busy
    // server takes 2 s to finish it, and addresses each holding one idle
    // connection cannot fill the listener for good.
    const newcomer = (from?.handshaking.size ?? 0) + 1;
    const due = performance.now() - HANDSHAKE_GRACE;
    for (const waited of [false, true]) {
      if (worst !== undefined) break;
      for (const source of this.#sources.values()) {
        const oldest: Slot | undefined = source.handshaking.values().next().value;
        if (oldest === undefined || source === from) continue;
        if (waited && oldest.since > due) continue;
        if (source.handshaking.size < (waited ? newcomer : newcomer + 1)) continue;
        if (worst === undefined || source.handshaking.size > worst.handshaking.size) worst = source;
      }
    }
    if (worst === undefined) return this.#evictEstablished(from, why);
    this.#evict(worst, worst.handshaking.values().next().value!, why);
    this.#checkOver(worst);
    return this.#open < this.#limits.maxConnections;
  }

  /**
   * At `maxConnections` with no handshake to close: the source holding the
   * most connections gives up its oldest past its handshake, when it holds
   * at least two more than the newcomer's source does. So
   * a few sources that authenticated (anyone with the bridge line, the
   * password or the URL) and hold every slot cannot lock all others out; a
   * fair share each stays.
   */
  #evictEstablished(from: Source | undefined, why?: string): boolean {
    const holds = from?.open ?? 0;
    let worst: Source | undefined;
    for (const source of this.#sources.values()) {
      if (source === from || source.established.size === 0) continue;
      if (source.open < holds + 2) continue;
      if (worst === undefined || source.open > worst.open) worst = source;
    }
    if (worst === undefined) return false;
    this.#evict(
      worst,
      worst.established.values().next().value!,
      why ??
        `Connection closed: ${this.#limits.maxConnections} connections open (maxConnections), most of them from its source; a newcomer from another took its place`,
    );
    return this.#open < this.#limits.maxConnections;
  }

  /** Close `slot` of `source` to make room, saying why (never naming an address). */
  #evict(
    source: Source,
    slot: Slot,
    why =
      `Connection closed: its source had more than ${this.#limits.maxHandshakesPerSource} connections that did not finish their handshake (maxHandshakesPerSource)`,
  ): void {
    // Its slot is free at once; the connection's own release comes later.
    source.handshaking.delete(slot);
    source.established.delete(slot);
    slot.release();
    try {
      slot.close();
    } catch {
      // Closing is the connection's business.
    }
    this.#onEvict?.(new RangeError(why));
  }
}

/**
 * Check `limits` and fill in the defaults ({@linkcode DEFAULT_CONNECTION_LIMITS}).
 *
 * @param limits What the caller gave (`undefined`: the defaults).
 * @param what The call, for the message (`listen`).
 * @returns The limits in force.
 * @throws {TypeError} When `limits` is not an object, or a limit not a number.
 * @throws {RangeError} When a limit is not a positive integer or `Infinity`.
 *
 * @example Refusing a limit of 0
 * ```ts
 * import { resolveConnectionLimits } from "./source_limits.ts";
 * import { throws } from "node:assert";
 *
 * throws(() => resolveConnectionLimits({ maxConnections: 0 }, "listen"), RangeError);
 * ```
 */
export function resolveConnectionLimits(
  limits: ConnectionLimits | undefined,
  what: string,
): Required<ConnectionLimits> {
  if (limits === undefined) return { ...DEFAULT_CONNECTION_LIMITS };
  if (typeof limits !== "object" || limits === null) {
    throw new TypeError(
      `Cannot ${what}: limits must be an object, got ${limits === null ? "null" : typeof limits}`,
    );
  }
  const resolved = { ...DEFAULT_CONNECTION_LIMITS };
  for (const key of Object.keys(DEFAULT_CONNECTION_LIMITS) as (keyof ConnectionLimits)[]) {
    const value = limits[key];
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Cannot ${what}: ${key} must be a number, got ${typeof value}`);
    }
    if (!(value === Infinity || (Number.isSafeInteger(value) && value > 0))) {
      throw new RangeError(
        `Cannot ${what}: invalid ${key} ${value}: must be a positive integer or Infinity`,
      );
    }
    resolved[key] = value;
  }
  return resolved;
}

/**
 * The source a remote address counts against: an IPv4 address (an
 * IPv4-mapped IPv6 address counts as its IPv4 address), an IPv6 /64, or
 * none (Unix sockets).
 */
export function sourceKey(addr: Deno.Addr): string | undefined {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return undefined;
  const host = addr.hostname.toLowerCase();
  if (!host.includes(":")) return host;
  const mapped = /^::ffff:([0-9.]+)$/.exec(host);
  if (mapped) return mapped[1];
  // Deno prints addresses in their canonical form; the first four groups are the /64.
  const [left = "", right] = host.split("::");
  const head = left === "" ? [] : left.split(":");
  const tail = right === undefined || right === "" ? [] : right.split(":");
  const groups = right === undefined
    ? head
    : [...head, ...Array(Math.max(0, 8 - head.length - tail.length)).fill("0"), ...tail];
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}

/** The refusal of a connection from a source at `maxConnectionsPerSource` (names no address). */
function perSourceRefusal(limits: Required<ConnectionLimits>): RangeError {
  return new RangeError(
    `Connection refused: ${limits.maxConnectionsPerSource} connections past their handshake open from one source (maxConnectionsPerSource)`,
  );
}
