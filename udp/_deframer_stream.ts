// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { Deframer } from "./_deframer.ts";
import { checkMaxDatagram, type Framing } from "./framing.ts";

/** Options for {@linkcode DeframerStream}. */
export interface DeframerStreamOptions {
  /** The largest datagram allowed, in bytes. Defaults to 65,507. */
  readonly maxDatagram?: number;
}

/**
 * Framed bytes in, datagrams out: turns a byte stream back into a packet
 * stream. Messages split at any byte boundary are reassembled; at most one
 * partial message (at most `maxDatagram` plus header and padding) is held.
 * A datagram that arrived within one chunk comes out as a view into it.
 *
 * Malformed input errors the stream with a `SyntaxError` (bytes that cannot
 * start a message, a stream that ends inside one) or a `RangeError` (a
 * message larger than `maxDatagram`) naming the problem; nothing is thrown
 * past the stream.
 *
 * @example Reassembling a datagram split across chunks
 * ```ts
 * import { lengthFraming } from "@ptkit/ptkit/udp";
 * import { DeframerStream } from "./_deframer_stream.ts";
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
    const deframer = new Deframer(framing, max);
    super({
      transform(chunk, controller) {
        deframer.push(chunk);
        for (let datagram; (datagram = deframer.next()) !== undefined;) {
          controller.enqueue(datagram);
        }
      },
      flush() {
        deframer.finish();
      },
    });
  }
}
