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
 * Check a replay filter's bounds: `ttlMs` a positive, finite number of ms
 * and `maxEntries` an integer of at least `minEntries`, where given.
 *
 * @param options The bounds.
 * @param what What is being set up, for the message.
 * @param minEntries The fewest entries the filter works with.
 * @throws {RangeError} When one is out of range.
 */
export function checkReplayFilterBounds(
  options: { readonly ttlMs?: number; readonly maxEntries?: number } | undefined,
  what: string,
  minEntries = 2,
): void {
  const ttlMs: unknown = options?.ttlMs;
  if (ttlMs !== undefined && !(typeof ttlMs === "number" && Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw new RangeError(
      `Cannot ${what}: invalid replay filter ttlMs ${
        typeof ttlMs === "number" ? ttlMs : `a ${typeof ttlMs}`
      }: must be a positive number of ms`,
    );
  }
  const maxEntries: unknown = options?.maxEntries;
  if (
    maxEntries !== undefined &&
    !(Number.isSafeInteger(maxEntries) && (maxEntries as number) >= minEntries)
  ) {
    throw new RangeError(
      `Cannot ${what}: invalid replay filter maxEntries ${
        typeof maxEntries === "number" ? maxEntries : `a ${typeof maxEntries}`
      }: must be an integer of at least ${minEntries}`,
    );
  }
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
    checkReplayFilterBounds(options, "make a replay filter", 1);
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

/** Bytes of a value a {@linkcode GenerationalReplayFilter} keeps (48 bits). */
const KEY_BYTES = 6;

/** This process's secret hash seeds for {@linkcode KeyTable}. */
const SEEDS = crypto.getRandomValues(new Uint32Array(2));

/** An insert-only set of 48-bit keys: open addressing over a `Float64Array`, 0 for empty. */
class KeyTable {
  #slots = new Float64Array(1024);
  #mask = 1023;
  size = 0;

  has(key: number): boolean {
    const slots = this.#slots;
    const stored = key + 1;
    for (let i = this.#hash(key);; i = (i + 1) & this.#mask) {
      const slot = slots[i]!;
      if (slot === stored) return true;
      if (slot === 0) return false;
    }
  }

  add(key: number): void {
    // Grown at half full: probes stay short, 16 bytes a key at most.
    if ((this.size + 1) * 2 > this.#slots.length) this.#grow();
    const slots = this.#slots;
    const stored = key + 1;
    for (let i = this.#hash(key);; i = (i + 1) & this.#mask) {
      const slot = slots[i]!;
      if (slot === stored) return;
      if (slot === 0) {
        slots[i] = stored;
        this.size++;
        return;
      }
    }
  }

  *keys(): Generator<number> {
    for (const slot of this.#slots) if (slot !== 0) yield slot - 1;
  }

  #hash(key: number): number {
    // Seeded per process and mixed (MurmurHash3's finalizer): a password
    // holder chooses salts, and keys that share a slot would make every
    // probe walk the whole run of them.
    let h = Math.imul((key >>> 0) ^ SEEDS[0]!, 0xcc9e2d51) ^
      Math.imul(Math.floor(key / 4294967296) ^ SEEDS[1]!, 0x1b873593);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return (h >>> 0) & this.#mask;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Float64Array(old.length * 2);
    this.#mask = this.#slots.length - 1;
    this.size = 0;
    for (const slot of old) if (slot !== 0) this.add(slot - 1);
  }
}

/**
 * A replay filter for many values in little memory, after
 * shadowsocks-libev's two alternating Bloom filters, but exact: values go
 * into the current generation until it holds half of `maxEntries` or is as
 * old as the time to live; it then becomes the previous generation and the
 * one before is forgotten. So the newest `maxEntries / 2` values and those
 * of the last time to live are always remembered (up to `maxEntries`, and
 * up to twice the time to live). Each value is kept as its bytes folded
 * into 6 (48 bits, byte i the XOR of bytes i, i + 6, ...: values are MACs and
 * salts, random at least after a fixed prefix, and a repeat is always the
 * same bytes), at most 16 bytes of memory a value, in tables that grow with
 * use. The same methods as {@linkcode ReplayFilter}.
 *
 * @example A salt seen twice, and a filter that keeps the newest half
 * ```ts
 * import { GenerationalReplayFilter } from "./_replay_filter.ts";
 * import { strictEqual } from "node:assert";
 *
 * const filter = new GenerationalReplayFilter({ maxEntries: 4 });
 * const salt = (n: number) => new Uint8Array(32).fill(n);
 * strictEqual(filter.testAndSet(0, salt(1)), false);
 * strictEqual(filter.testAndSet(1, salt(1)), true);
 * for (let n = 2; n <= 5; n++) filter.testAndSet(2, salt(n));
 * strictEqual(filter.testAndSet(3, salt(5)), true);
 * ```
 */
export class GenerationalReplayFilter {
  #current = new KeyTable();
  #previous = new KeyTable();
  #started: number | undefined;
  #ttlMs: number;
  #half: number;
  #share: ((value: Uint8Array) => void) | undefined;
  #unsubscribe: (() => void) | undefined;

  /**
   * Make an empty filter.
   *
   * @param options How long and how many values are remembered (defaults:
   * three hours, and 2,000,000 for both generations).
   * @throws {RangeError} When `maxEntries` is below 2.
   */
  constructor(options: ReplayFilterOptions = {}) {
    checkReplayFilterBounds(options, "make a replay filter");
    this.#ttlMs = options.ttlMs ?? TTL_MS;
    const maxEntries = options.maxEntries ?? 2_000_000;
    this.#half = Math.floor(maxEntries / 2);
    const share = options.share;
    if (share !== undefined) {
      const now = options.now ?? Date.now;
      this.#share = share.recorded;
      this.#unsubscribe = share.subscribe((value) => this.record(now(), value));
    }
  }

  /** Stop taking the values other filters share (as {@linkcode ReplayFilter.close}). */
  close(): void {
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    unsubscribe?.();
  }

  /** How many values are remembered. */
  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  /**
   * Record `mac` and report whether it was already recorded.
   *
   * @param now The time, in milliseconds since the epoch.
   * @param mac The value (a handshake MAC, a salt), at least 6 bytes.
   * @returns `true` when `mac` is remembered.
   */
  testAndSet(now: number, mac: Uint8Array): boolean {
    const key = this.#keyOf(now, mac);
    if (this.#current.has(key) || this.#previous.has(key)) return true;
    this.#current.add(key);
    this.#share?.(mac);
    return false;
  }

  /**
   * Record `mac` without testing or sharing it (a value another filter recorded).
   *
   * @param now The time, in milliseconds since the epoch.
   * @param mac The value.
   */
  record(now: number, mac: Uint8Array): void {
    // From another process's filter: one too short to be a salt is no
    // value this filter ever tests, and must not stop the others' delivery.
    if (mac.length < KEY_BYTES) return;
    const key = this.#keyOf(now, mac);
    if (!this.#previous.has(key)) this.#current.add(key);
  }

  /**
   * The values remembered (their 6 folded bytes, which is what this filter
   * compares, and which it takes back as the same value), oldest generation first.
   *
   * @param _now Unused: what has expired is already forgotten.
   * @returns Each value.
   */
  *values(_now: number): Generator<Uint8Array> {
    for (const table of [this.#previous, this.#current]) {
      for (const key of table.keys()) {
        const value = new Uint8Array(KEY_BYTES);
        let rest = key;
        for (let i = KEY_BYTES - 1; i >= 0; i--) {
          value[i] = rest % 256;
          rest = Math.floor(rest / 256);
        }
        yield value;
      }
    }
  }

  /** `mac`'s key, after starting a new generation when the current one is full or old. */
  #keyOf(now: number, mac: Uint8Array): number {
    if (mac.length < KEY_BYTES) {
      throw new RangeError(`Cannot record replay filter value: ${mac.length} bytes, need 6`);
    }
    this.#started ??= now;
    if (this.#current.size >= this.#half || now - this.#started >= this.#ttlMs) {
      // Both generations are older than the time to live: neither is kept.
      this.#previous = now - this.#started >= 2 * this.#ttlMs ? new KeyTable() : this.#current;
      this.#current = new KeyTable();
      this.#started = now;
    }
    // Every byte counts, folded into 6 (byte i is the XOR of bytes i, i + 6,
    // ...): a salt whose first bytes are fixed (Outline's connection prefix,
    // 16 03 01 00 A8 01 01 on every connection) is told apart by its random
    // rest, not taken for a replay of the first. A 6-byte value is its own key.
    let key = 0;
    for (let i = 0; i < KEY_BYTES; i++) {
      let byte = 0;
      for (let j = i; j < mac.length; j += KEY_BYTES) byte ^= mac[j]!;
      key = key * 256 + byte;
    }
    return key;
  }
}
