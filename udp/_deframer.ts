// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the synchronous parser behind DeframerStream and the UDP flows.
// Not part of the public API.

import { ByteQueue } from "./_byte_queue.ts";
import type { Framing } from "./framing.ts";

/**
 * Framed bytes in, datagrams out, without a promise per datagram: push a
 * chunk, then call `next()` until it returns `undefined`. A datagram that
 * lies within one chunk comes out as a view into it (no copy).
 */
export class Deframer {
  #framing: Framing;
  #max: number;
  #queue = new ByteQueue();
  /** The header of the next message, copied out of the queue (no view made per datagram). */
  #header: Uint8Array;
  // Where the datagram lies in the message whose header was read while its
  // bytes had not all come (`#total` -1: none): numbers, not the bounds
  // object, which is then made and dropped within `next` once per message.
  #start = 0;
  #end = 0;
  #total = -1;

  constructor(framing: Framing, maxDatagram: number) {
    this.#framing = framing;
    this.#max = maxDatagram;
    this.#header = new Uint8Array(framing.headerSize);
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
    let start = this.#start;
    let end = this.#end;
    let total = this.#total;
    if (total < 0) {
      if (queue.length < framing.headerSize) return undefined;
      queue.peekInto(this.#header);
      const bounds = framing.parseHeader(this.#header, this.#max);
      start = bounds.start;
      end = bounds.end;
      total = bounds.total;
      if (queue.length < total) {
        this.#start = start;
        this.#end = end;
        this.#total = total;
        return undefined;
      }
    } else if (queue.length < total) {
      return undefined;
    } else {
      this.#total = -1;
    }
    // The datagram alone: one view, whatever the header and padding.
    const datagram = queue.takeView(total, start, end);
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
