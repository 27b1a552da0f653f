// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the one check of what a transport's pair() returned, made by
// defineTransport and by the runtime for transports written by hand.

import type { TransportPair } from "./transport.ts";
import { DIRECT_PAIR } from "./_direct_pair.ts";

/**
 * What a transport's `pair()` returned, checked: the runtime would fail on
 * it later with a bare "Cannot read properties of undefined".
 *
 * @param name The transport's name, for the message.
 * @param pair What `pair()` returned.
 * @returns The pair.
 * @throws {TypeError} When it is not `{ encode, decode }` of streams, or
 * its `ready`, `destination` or `clientAddress` is given and not a promise
 * (the runtime failed on it at the first write with JavaScript's own
 * "ready.then is not a function").
 */
export function checkTransportPair(name: string, pair: unknown): TransportPair {
  const what = `Cannot make a '${name}' connection: pair() must return { encode, decode }`;
  if (typeof pair !== "object" || pair === null) {
    throw new TypeError(`${what}, got ${pair === null ? "null" : typeof pair}`);
  }
  if (typeof (pair as { then?: unknown }).then === "function") {
    throw new TypeError(`${what}, got a promise (pair() must not be async)`);
  }
  // The runtime's own transports (obfs4) make their streams when first
  // asked for: they are not made here.
  const direct = DIRECT_PAIR in pair;
  for (const key of direct ? [] : ["encode", "decode"] as const) {
    const stream = (pair as Partial<TransportPair>)[key];
    if (stream === undefined) throw new TypeError(`${what}, got no '${key}'`);
    if (!isTransformStream(stream)) {
      throw new TypeError(`${what}, got a '${key}' that is not a TransformStream`);
    }
  }
  for (const key of ["ready", "destination", "clientAddress"] as const) {
    const value: unknown = (pair as Partial<TransportPair>)[key];
    if (value === undefined) continue;
    if (
      (typeof value !== "object" && typeof value !== "function") || value === null ||
      typeof (value as { then?: unknown }).then !== "function"
    ) {
      throw new TypeError(
        `Cannot make a '${name}' connection: pair()'s '${key}' must be a promise, got ${
          value === null ? "null" : typeof value
        }`,
      );
    }
  }
  return pair as TransportPair;
}

/** Whether `value` has a readable and a writable side, as a `TransformStream` has. */
function isTransformStream(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const { readable, writable } = value as {
    readable?: { getReader?: unknown } | null;
    writable?: { getWriter?: unknown } | null;
  };
  return typeof readable?.getReader === "function" && typeof writable?.getWriter === "function";
}
