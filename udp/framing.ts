// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { describe } from "../net/_chunk_io.ts";

/**
 * How datagrams are delimited on a byte stream (PT 2.0 section 3.3.5.4):
 * `length` framing for transparent UDP, `stun` framing for STUN/TURN.
 * Both sides of a tunnel must use the same framing.
 *
 * @example Framing and parsing one datagram by hand
 * ```ts
 * import { lengthFraming } from "@ptkit/ptkit/udp";
 * import { deepStrictEqual } from "node:assert";
 *
 * const framed = lengthFraming.frame(new Uint8Array([7, 8, 9]), 65_507);
 * deepStrictEqual(framed, new Uint8Array([0, 3, 7, 8, 9]));
 * const bounds = lengthFraming.parseHeader(framed.subarray(0, lengthFraming.headerSize), 65_507);
 * deepStrictEqual(bounds, { start: 2, end: 5, total: 5 });
 * ```
 */
export interface Framing {
  /** The framing's name: `"length"` or `"stun"`. */
  readonly name: string;
  /** Bytes of a message needed before {@linkcode Framing.parseHeader} can run. */
  readonly headerSize: number;
  /**
   * Frame one datagram for a byte stream.
   *
   * @param datagram The datagram.
   * @param maxDatagram The largest datagram allowed, in bytes.
   * @returns The bytes to write to the stream (may be `datagram` itself).
   * @throws {RangeError} When the datagram is larger than `maxDatagram`.
   * @throws {SyntaxError} When the framing cannot carry this datagram.
   */
  frame(datagram: Uint8Array, maxDatagram: number): Uint8Array;
  /**
   * The number of bytes {@linkcode Framing.frame} would produce, checking the
   * datagram the same way. With {@linkcode Framing.writeFrame}, it lets a
   * sender frame datagrams straight into a larger chunk (no copy per
   * datagram). Optional: without it, `frame` is used.
   *
   * @param datagram The datagram.
   * @param maxDatagram The largest datagram allowed, in bytes.
   * @returns The framed size in bytes.
   * @throws {RangeError} When the datagram is larger than `maxDatagram`.
   * @throws {SyntaxError} When the framing cannot carry this datagram.
   */
  frameLength?(datagram: Uint8Array, maxDatagram: number): number;
  /**
   * Write a datagram that {@linkcode Framing.frameLength} accepted, framed,
   * into `target` at `offset` (its `frameLength` bytes, padding included).
   *
   * @param datagram The datagram.
   * @param target Where to write.
   * @param offset Where in `target` the frame starts.
   */
  writeFrame?(datagram: Uint8Array, target: Uint8Array, offset: number): void;
  /**
   * Read where the message starting with `header` ends.
   *
   * @param header The first {@linkcode Framing.headerSize} bytes of a message.
   * @param maxDatagram The largest datagram allowed, in bytes.
   * @returns Where the message sits: the datagram is bytes `start` to `end`
   * of the message, and the message takes `total` bytes of the stream
   * (header, padding and all).
   * @throws {RangeError} When the message would be larger than `maxDatagram`.
   * @throws {SyntaxError} When the bytes cannot start a message.
   */
  parseHeader(
    header: Uint8Array,
    maxDatagram: number,
  ): { readonly start: number; readonly end: number; readonly total: number };
  /**
   * Check a complete datagram taken off the stream, when the header alone
   * could not tell.
   *
   * @param datagram The datagram.
   * @throws {SyntaxError} When it is malformed.
   */
  verify?(datagram: Uint8Array): void;
}

/** The largest UDP payload over IPv4 (65,535 - 8 - 20), the default limit. */
export const MAX_DATAGRAM = 65_507;

/** Check a `maxDatagram` option. Internal. */
export function checkMaxDatagram(value: number | undefined, what: string): number {
  const max = value ?? MAX_DATAGRAM;
  if (!Number.isInteger(max) || max < 0 || max > 65_535) {
    throw new RangeError(`Cannot ${what}: maxDatagram must be an integer 0-65535, got ${max}`);
  }
  return max;
}

/**
 * Check that a datagram given to a framing is bytes: a string or an array
 * would be framed as garbage (or fail with JavaScript's own error). Internal.
 */
export function checkDatagram(datagram: unknown): asserts datagram is Uint8Array {
  if (!(datagram instanceof Uint8Array)) {
    throw new TypeError(`Cannot frame datagram: expected a Uint8Array, got ${describe(datagram)}`);
  }
}

/** The bounds {@linkcode Framing.parseHeader} reads (internal shorthand). */
export type FrameBounds = ReturnType<Framing["parseHeader"]>;
