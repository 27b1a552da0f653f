// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { LocalStore } from "./transport.ts";

/**
 * A {@linkcode LocalStore} kept in memory: for tests, and for applications
 * that persist state their own way.
 *
 * @example Storing and reading a value
 * ```ts
 * import { MemoryStore } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const store = new MemoryStore();
 * await store.set("key", "value");
 * deepStrictEqual(await store.get("key"), "value");
 * deepStrictEqual(await store.get("other"), undefined);
 * ```
 */
export class MemoryStore implements LocalStore {
  #values = new Map<string, string>();

  /**
   * Read a value.
   *
   * @param key The name of the value.
   * @returns The value, or `undefined` when none is stored.
   */
  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.#values.get(key));
  }

  /**
   * Store a value.
   *
   * @param key The name of the value.
   * @param value The value.
   */
  set(key: string, value: string): Promise<void> {
    this.#values.set(key, value);
    return Promise.resolve();
  }
}
