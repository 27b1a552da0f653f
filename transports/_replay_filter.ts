// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { TransportEnvironment } from "./transport.ts";

const TTL_MS = 3 * 60 * 60 * 1000;
const MAX_ENTRIES = 100 * 1024;

/** Bounds of a {@linkcode ReplayFilter}. */
export interface ReplayFilterOptions {
  /** How long a value is remembered, in ms. Defaults to three hours. */
  readonly ttlMs?: number;
  /** How many values are remembered at most (the oldest go first). Defaults to 102,400. */
  readonly maxEntries?: number;
  /**
   * Shares what the filter records with other filters (see
   * `TransportEnvironment.replays`). Defaults to none.
   */
  readonly share?: TransportEnvironment["replays"];
  /** The clock for values shared in, in ms since the epoch. Defaults to `Date.now`. */
  readonly now?: () => number;
}

/**
 * Remembers values seen recently (obfs4's client handshake MACs,
 * Shadowsocks salts) so that a replay is refused: by default for three
 * hours and at most 102,400 of them, the oldest forgotten first, so memory
 * stays bounded whatever arrives.
 *
 * @example Seeing a MAC twice
 * ```ts
 * import { ReplayFilter } from "./_replay_filter.ts";
 * import { strictEqual } from "node:assert";
 *
 * const filter = new ReplayFilter();
 * const mac = new Uint8Array(16).fill(1);
 * strictEqual(filter.testAndSet(0, mac), false);
 * strictEqual(filter.testAndSet(1, mac), true);
 * ```
 */
export class ReplayFilter {
  #seen = new Map<string, number>();
  #ttlMs: number;
  #maxEntries: number;

  /**
   * Make an empty filter.
   *
   * @param options How long and how many values are remembered.
   */
  constructor(options: ReplayFilterOptions = {}) {
    this.#ttlMs = options.ttlMs ?? TTL_MS;
    this.#maxEntries = options.maxEntries ?? MAX_ENTRIES;
    const share = options.share;
    if (share !== undefined) {
      const now = options.now ?? Date.now;
      this.#share = share.recorded;
      this.#unsubscribe = share.subscribe((value) => this.record(now(), value));
    }
  }

  #share: ((value: Uint8Array) => void) | undefined;
  #unsubscribe: (() => void) | undefined;

  /**
   * Stop taking the values other filters share (the server side that owns
   * this one closed); what it recorded stays, and it still shares its own.
   */
  close(): void {
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    unsubscribe?.();
  }

  /** How many values are remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Record `mac` and report whether it was already recorded.
   *
   * @param now The time, in milliseconds since the epoch.
   * @param mac The value (a handshake MAC, a salt).
   * @returns `true` when `mac` was seen within the filter's time to live
   * (three hours by default) and is still remembered.
   */
  testAndSet(now: number, mac: Uint8Array): boolean {
    const key = this.#prune(now, mac);
    const time = this.#seen.get(key);
    if (time !== undefined && now - time < this.#ttlMs) return true;
    this.#seen.delete(key);
    this.#seen.set(key, now);
    this.#share?.(mac);
    return false;
  }

  /**
   * Record `mac` as seen at `now` without testing it (a value another
   * filter recorded) and without sharing it.
   *
   * @param now The time, in milliseconds since the epoch.
   * @param mac The value.
   */
  record(now: number, mac: Uint8Array): void {
    const key = this.#prune(now, mac);
    this.#seen.delete(key);
    this.#seen.set(key, now);
  }

  /**
   * The values remembered at `now`, oldest first.
   *
   * @param now The time, in milliseconds since the epoch.
   * @returns Each value.
   */
  *values(now: number): Generator<Uint8Array> {
    for (const [key, time] of this.#seen) {
      if (now - time < this.#ttlMs) yield Uint8Array.from(key, (c) => c.charCodeAt(0));
    }
  }

  /** Forget what has expired or is over the bound; `mac`'s key. */
  #prune(now: number, mac: Uint8Array): string {
    for (const [key, time] of this.#seen) {
      if (now - time < this.#ttlMs && this.#seen.size < this.#maxEntries) break;
      this.#seen.delete(key);
    }
    return String.fromCharCode.apply(null, mac as unknown as number[]);
  }
}
