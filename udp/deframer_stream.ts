// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { ByteQueue } from "./byte_queue.ts";
import { checkMaxDatagram, type FrameBounds, type Framing } from "./framing.ts";

/** Options for {@linkcode DeframerStream}. */
export interface DeframerStreamOptions {
  /** The largest datagram allowed, in bytes. Defaults to 65,507. */
  readonly maxDatagram?: number;
}

/**
 * Framed bytes in, datagrams out: turns a byte stream back into a packet
 * stream. Messages split at any byte boundary are reassembled; at most one
 * partial message (at most `maxDatagram` plus header and padding) is held.
 *
 * Malformed input errors the stream with a `SyntaxError` (bytes that cannot
 * start a message, a stream that ends inside one) or a `RangeError` (a
 * message larger than `maxDatagram`) naming the problem; nothing is thrown
 * past the stream.
 *
 * @example Reassembling a datagram split across chunks
 * ```ts
 * import { DeframerStream, lengthFraming } from "@ptkit/ptkit/udp";
 * import { deepStrictEqual } from "node:assert";
 *
 * const deframer = new DeframerStream(lengthFraming);
 * const writer = deframer.writable.getWriter();
 * writer.write(new Uint8Array([0]));
 * writer.write(new Uint8Array([2, 5]));
 * writer.write(new Uint8Array([6, 0, 0]));
 * writer.close();
 * const datagrams = await Array.fromAsync(deframer.readable);
 * deepStrictEqual(datagrams, [new Uint8Array([5, 6]), new Uint8Array([])]);
 * ```
 */
export class DeframerStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Make a deframer.
   *
   * @param framing The framing the stream uses.
   * @param options The size limit.
   * @throws {RangeError} When `maxDatagram` is out of range.
   */
  constructor(framing: Framing, options: DeframerStreamOptions = {}) {
    const max = checkMaxDatagram(options.maxDatagram, `make ${framing.name} deframer`);
    const queue = new ByteQueue();
    let bounds: FrameBounds | undefined;
    super({
      transform(chunk, controller) {
        queue.push(chunk);
        while (true) {
          if (bounds === undefined) {
            if (queue.length < framing.headerSize) return;
            bounds = framing.parseHeader(queue.peek(framing.headerSize), max);
          }
          if (queue.length < bounds.total) return;
          const message = queue.take(bounds.total);
          const datagram = bounds.start === 0 && bounds.end === bounds.total
            ? message
            : message.subarray(bounds.start, bounds.end);
          bounds = undefined;
          framing.verify?.(datagram);
          controller.enqueue(datagram);
        }
      },
      flush() {
        if (queue.length > 0) {
          throw new SyntaxError(
            `Cannot deframe ${framing.name}-framed stream: it ended inside a message (${queue.length} bytes pending)`,
          );
        }
      },
    });
  }
}
