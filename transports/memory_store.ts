// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { LocalStore } from "./transport.ts";
import { checkOptionType } from "./_factory_options.ts";

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
   * @throws {TypeError} (a rejection) When `key` is not a string.
   */
  get(key: string): Promise<string | undefined> {
    try {
      checkOptionType(key, "string", "key", "read a stored value", true);
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve(this.#values.get(key));
  }

  /**
   * Store a value.
   *
   * @param key The name of the value.
   * @param value The value.
   * @throws {TypeError} (a rejection) When `key` or `value` is not a string
   * (a number was stored and read back as one, where a store holds text).
   *
   * @example Refusing a value that is not a string
   * ```ts
   * import { MemoryStore } from "@ptkit/ptkit/transports";
   * import { rejects } from "node:assert";
   *
   * await rejects(new MemoryStore().set("count", 5 as unknown as string), TypeError);
   * ```
   */
  set(key: string, value: string): Promise<void> {
    try {
      checkOptionType(key, "string", "key", "store a value", true);
      checkOptionType(value, "string", "value", "store a value", true);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#values.set(key, value);
    return Promise.resolve();
  }
}
