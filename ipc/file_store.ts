// Copyright the ptkit authors. MIT license.

import type { LocalStore } from "../transports/transport.ts";

const KEY = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/**
 * A {@linkcode LocalStore} that keeps each value in a file of the PT state
 * directory (`TOR_PT_STATE_LOCATION`). Keys are plain file names, so
 * nothing is ever written outside the directory; files are written
 * atomically with mode 0600.
 *
 * @example Storing a value in a directory
 * ```ts
 * import { FileStore } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, rejects } from "node:assert";
 *
 * const dir = await Deno.makeTempDir();
 * const store = new FileStore(dir);
 * await store.set("obfs4_state.json", "{}");
 * deepStrictEqual(await store.get("obfs4_state.json"), "{}");
 * deepStrictEqual(await store.get("missing"), undefined);
 * await rejects(store.set("../escape", "x"), TypeError);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileStore implements LocalStore {
  #dir: string;

  /**
   * Use a directory that exists.
   *
   * @param dir The state directory.
   */
  constructor(dir: string) {
    this.#dir = dir.replace(/\/+$/, "") || "/";
  }

  /**
   * Read a value.
   *
   * @param key A file name.
   * @returns The value, or `undefined` when there is none.
   */
  async get(key: string): Promise<string | undefined> {
    try {
      return await Deno.readTextFile(this.#path(key));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }

  /**
   * Store a value.
   *
   * @param key A file name.
   * @param value The value.
   */
  async set(key: string, value: string): Promise<void> {
    const path = this.#path(key);
    const temp = `${path}.tmp`;
    await Deno.writeTextFile(temp, value, { mode: 0o600 });
    await Deno.rename(temp, path);
  }

  #path(key: string): string {
    if (typeof key !== "string" || !KEY.test(key) || key.endsWith(".tmp")) {
      throw new TypeError(`Invalid state key ${JSON.stringify(key)}: must be a plain file name`);
    }
    return `${this.#dir}/${key}`;
  }
}
