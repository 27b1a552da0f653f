// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the synchronous parser behind DeframerStream and the UDP flows.
// Not part of the public API.

import { ByteQueue } from "./_byte_queue.ts";
import type { FrameBounds, Framing } from "./framing.ts";

/**
 * Framed bytes in, datagrams out, without a promise per datagram: push a
 * chunk, then call `next()` until it returns `undefined`. A datagram that
 * lies within one chunk comes out as a view into it (no copy).
 */
export class Deframer {
  #framing: Framing;
  #max: number;
  #queue = new ByteQueue();
  #bounds: FrameBounds | undefined;

  constructor(framing: Framing, maxDatagram: number) {
    this.#framing = framing;
    this.#max = maxDatagram;
  }

  /** Add bytes from the stream (large chunks kept by reference, small ones copied). */
  push(chunk: Uint8Array): void {
    this.#queue.push(chunk);
  }

  /**
   * The next complete datagram, or `undefined` until more bytes come.
   *
   * @throws {SyntaxError} When the bytes cannot start a message.
   * @throws {RangeError} When a message is larger than the maximum.
   */
  next(): Uint8Array | undefined {
    const framing = this.#framing;
    const queue = this.#queue;
    if (this.#bounds === undefined) {
      if (queue.length < framing.headerSize) return undefined;
      this.#bounds = framing.parseHeader(queue.peek(framing.headerSize), this.#max);
    }
    const bounds = this.#bounds;
    if (queue.length < bounds.total) return undefined;
    const message = queue.takeView(bounds.total);
    this.#bounds = undefined;
    const datagram = bounds.start === 0 && bounds.end === bounds.total
      ? message
      : message.subarray(bounds.start, bounds.end);
    framing.verify?.(datagram);
    return datagram;
  }

  /**
   * The stream ended.
   *
   * @throws {SyntaxError} When it ended inside a message.
   */
  finish(): void {
    if (this.#queue.length > 0) {
      throw new SyntaxError(
        `Cannot deframe ${this.#framing.name}-framed stream: it ended inside a message (${this.#queue.length} bytes pending)`,
      );
    }
  }
}
