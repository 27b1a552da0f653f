// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a promise with its resolve and reject, for pairs whose handshake
// settles later.

/** A promise and the functions that settle it. */
export interface Deferred<T> {
  /** The promise; an unhandled rejection of it is not reported. */
  readonly promise: Promise<T>;
  /** Fulfil it. */
  readonly resolve: (value: T) => void;
  /** Reject it. */
  readonly reject: (reason: unknown) => void;
}

/**
 * A promise settled from outside. Its rejection is marked handled, so a
 * handshake nobody awaits does not crash the process when it fails.
 *
 * @returns The promise and its settlers.
 */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
