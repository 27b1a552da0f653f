// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

const TTL_MS = 3 * 60 * 60 * 1000;
const MAX_ENTRIES = 100 * 1024;

/**
 * Remembers client handshake MACs for three hours (at most 102,400 of them)
 * so that a replayed handshake is refused.
 *
 * @example Seeing a MAC twice
 * ```ts
 * import { ReplayFilter } from "./replay_filter.ts";
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

  /** How many MACs are remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Record `mac` and report whether it was already recorded.
   *
   * @param now The time, in milliseconds since the epoch.
   * @param mac The handshake MAC.
   * @returns `true` when `mac` was seen within the last three hours.
   */
  testAndSet(now: number, mac: Uint8Array): boolean {
    for (const [key, time] of this.#seen) {
      if (now - time < TTL_MS && this.#seen.size < MAX_ENTRIES) break;
      this.#seen.delete(key);
    }
    const key = Array.from(mac, (b) => String.fromCharCode(b)).join("");
    const time = this.#seen.get(key);
    if (time !== undefined && now - time < TTL_MS) return true;
    this.#seen.delete(key);
    this.#seen.set(key, now);
    return false;
  }
}
