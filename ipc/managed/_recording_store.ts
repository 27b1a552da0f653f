// Copyright the ptkit authors. MIT license.
// Internal: the state a `-workers` parent read or wrote, for its children.

import type { LocalStore } from "../../transports/transport.ts";

/**
 * A store that remembers every value read or written through it, so that
 * the children get the state the parent read once.
 */
export class RecordingStore implements LocalStore {
  #inner: LocalStore;
  #seen = new Map<string, string>();

  constructor(inner: LocalStore) {
    this.#inner = inner;
  }

  /** What was read or written, by key. */
  get values(): ReadonlyMap<string, string> {
    return this.#seen;
  }

  async get(key: string): Promise<string | undefined> {
    const value = await this.#inner.get(key);
    if (value !== undefined) this.#seen.set(key, value);
    return value;
  }

  async set(key: string, value: string): Promise<void> {
    await this.#inner.set(key, value);
    this.#seen.set(key, value);
  }

  describe(key: string): string {
    return this.#inner.describe?.(key) ?? key;
  }
}
