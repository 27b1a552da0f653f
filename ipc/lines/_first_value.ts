// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the one rule for a key that a `k=v` list repeats (SOCKS
// arguments, TOR_PT_SERVER_TRANSPORT_OPTIONS, SMETHOD ARGS, bridge lines,
// LOG/STATUS fields): the first value wins and the key is reported once.

/**
 * Collects `key=value` pairs into a plain object. The first value of a key
 * is kept (goptlib keeps every value and its `Args.Get`, which transports
 * use, reads the first); a repeated key is passed to `onRepeated` once,
 * without its value, so that the caller can log it.
 */
export class FirstValuePairs {
  /** The pairs so far (own properties only, even for `__proto__`). */
  readonly values: Record<string, string> = {};
  #repeated = new Set<string>();
  #onRepeated: ((key: string) => void) | undefined;

  /**
   * Start an empty collection.
   *
   * @param onRepeated Called once per repeated key.
   */
  constructor(onRepeated?: (key: string) => void) {
    this.#onRepeated = onRepeated;
  }

  /**
   * Add a pair unless the key is already there.
   *
   * @param key The key.
   * @param value Its value.
   */
  add(key: string, value: string): void {
    if (Object.hasOwn(this.values, key)) {
      if (!this.#repeated.has(key)) {
        this.#repeated.add(key);
        this.#onRepeated?.(key);
      }
      return;
    }
    Object.defineProperty(this.values, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
}

/**
 * Logs each repeated key once (per place it was seen, at most 64 in all,
 * so that a client repeating keys on every connection cannot flood the
 * log). The message names the key, never a value.
 */
export class RepeatedKeyLog {
  #seen = new Set<string>();
  #log: (message: string) => void;

  /**
   * Make a log.
   *
   * @param log Receives each message.
   */
  constructor(log: (message: string) => void) {
    this.#log = log;
  }

  /**
   * Log that `where` repeats `key`, unless that was logged already.
   *
   * @param where What repeats it (plural: "SOCKS arguments", "options").
   * @param key The key.
   */
  report(where: string, key: string): void {
    const id = JSON.stringify([where, key]);
    if (this.#seen.has(id) || this.#seen.size >= 64) return;
    this.#seen.add(id);
    this.#log(
      `${where} give ${JSON.stringify(key.slice(0, 64))} more than once; using its first value`,
    );
  }
}
