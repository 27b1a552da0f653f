// Copyright the ptkit authors. MIT license.

/**
 * How many connections a listener holds at once, in all and per source. A
 * source is an IPv4 address or an IPv6 /64 (one subscriber's prefix); a
 * connection over a limit is closed as soon as it is accepted, before a
 * byte is read, and the others carry on.
 */
export interface ConnectionLimits {
  /** Most connections open at once. Defaults to 4096. */
  readonly maxConnections?: number;
  /**
   * Most connections from one source that have not finished their
   * handshake (for a transport: `ready` has not resolved; this includes
   * failed handshakes held open for probe resistance). Defaults to 64.
   */
  readonly maxHandshakesPerSource?: number;
  /** Most connections open from one source. Defaults to 1024. */
  readonly maxConnectionsPerSource?: number;
}

/** The limits of a transport server when none are given. */
export const DEFAULT_CONNECTION_LIMITS: Required<ConnectionLimits> = {
  maxConnections: 4096,
  maxHandshakesPerSource: 64,
  maxConnectionsPerSource: 1024,
};

/** A slot a {@linkcode SourceLimiter} gave one connection. */
export interface Admission {
  /** The connection finished its handshake (idempotent). */
  handshaken(): void;
  /** The connection closed (idempotent). */
  release(): void;
}

/**
 * Counts the connections a listener holds, in all and per source, and
 * refuses those over a limit.
 *
 * @example Refusing a source's 3rd unfinished handshake
 * ```ts
 * import { SourceLimiter } from "./source_limits.ts";
 * import { ok } from "node:assert";
 *
 * const limiter = new SourceLimiter({ maxHandshakesPerSource: 2 });
 * const from = { transport: "tcp", hostname: "192.0.2.1", port: 1 } as const;
 * const first = limiter.admit(from);
 * ok(!(first instanceof RangeError));
 * ok(!(limiter.admit(from) instanceof RangeError));
 * ok(limiter.admit(from) instanceof RangeError);
 * first.handshaken();
 * ok(!(limiter.admit(from) instanceof RangeError));
 * ```
 */
export class SourceLimiter {
  #limits: Required<ConnectionLimits>;
  #open = 0;
  #sources = new Map<string, { open: number; handshaking: number }>();

  /**
   * @param limits The limits; missing ones take {@linkcode DEFAULT_CONNECTION_LIMITS}.
   * @param what What is limited, for error messages.
   * @throws {RangeError} When a limit is not a positive integer or `Infinity`.
   */
  constructor(limits: ConnectionLimits = {}, what = "listen") {
    if (typeof limits !== "object" || limits === null) {
      throw new TypeError(`Cannot ${what}: limits must be an object, got ${typeof limits}`);
    }
    const resolved = { ...DEFAULT_CONNECTION_LIMITS };
    for (const key of Object.keys(DEFAULT_CONNECTION_LIMITS) as (keyof ConnectionLimits)[]) {
      const value = limits[key];
      if (value === undefined) continue;
      if (!(value === Infinity || (Number.isSafeInteger(value) && value > 0))) {
        throw new RangeError(
          `Cannot ${what}: invalid ${key} ${value}: must be a positive integer or Infinity`,
        );
      }
      resolved[key] = value;
    }
    this.#limits = resolved;
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
   * @returns The slot, or the limit that refused it (the message names the
   * limit, never the address).
   */
  admit(addr: Deno.Addr): Admission | RangeError {
    const limits = this.#limits;
    if (this.#open >= limits.maxConnections) {
      return new RangeError(
        `Connection refused: ${limits.maxConnections} connections open (maxConnections)`,
      );
    }
    const key = sourceKey(addr);
    let source = key === undefined ? undefined : this.#sources.get(key);
    if (source !== undefined) {
      if (source.open >= limits.maxConnectionsPerSource) {
        return new RangeError(
          `Connection refused: ${limits.maxConnectionsPerSource} connections open from one source (maxConnectionsPerSource)`,
        );
      }
      if (source.handshaking >= limits.maxHandshakesPerSource) {
        return new RangeError(
          `Connection refused: ${limits.maxHandshakesPerSource} handshakes in progress from one source (maxHandshakesPerSource)`,
        );
      }
    } else if (key !== undefined) {
      source = { open: 0, handshaking: 0 };
      this.#sources.set(key, source);
    }
    this.#open++;
    if (source !== undefined) {
      source.open++;
      source.handshaking++;
    }
    let handshaking = true;
    let open = true;
    return {
      handshaken: () => {
        if (!handshaking) return;
        handshaking = false;
        if (source !== undefined) source.handshaking--;
      },
      release: () => {
        if (!open) return;
        open = false;
        this.#open--;
        if (source === undefined) return;
        if (handshaking) source.handshaking--;
        handshaking = false;
        if (--source.open === 0) this.#sources.delete(key!);
      },
    };
  }
}

/**
 * The source a remote address counts against: an IPv4 address (an
 * IPv4-mapped IPv6 address counts as its IPv4 address), an IPv6 /64, or
 * none (Unix sockets).
 */
function sourceKey(addr: Deno.Addr): string | undefined {
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
