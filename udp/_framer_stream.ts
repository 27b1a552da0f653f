// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { checkMaxDatagram, type Framing } from "./framing.ts";

/** Options for {@linkcode FramerStream}. */
export interface FramerStreamOptions {
  /** The largest datagram allowed, in bytes. Defaults to 65,507. */
  readonly maxDatagram?: number;
  /**
   * Called with the error when a datagram cannot be framed; the datagram is
   * then dropped and the stream goes on. Without it the stream errors.
   */
  readonly onDrop?: (error: RangeError | SyntaxError, datagram: Uint8Array) => void;
}

/**
 * Datagrams in, framed bytes out: turns a packet stream into a byte stream.
 *
 * @example Framing two datagrams
 * ```ts
 * import { lengthFraming } from "@ptkit/ptkit/udp";
 * import { FramerStream } from "./_framer_stream.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const framer = new FramerStream(lengthFraming);
 * const writer = framer.writable.getWriter();
 * writer.write(new Uint8Array([1]));
 * writer.write(new Uint8Array([]));
 * writer.close();
 * const chunks = await Array.fromAsync(framer.readable);
 * deepStrictEqual(chunks, [new Uint8Array([0, 1, 1]), new Uint8Array([0, 0])]);
 * ```
 */
export class FramerStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Make a framer.
   *
   * @param framing The framing to use.
   * @param options The size limit and what to do with datagrams that do not fit.
   * @throws {RangeError} When `maxDatagram` is out of range.
   */
  constructor(framing: Framing, options: FramerStreamOptions = {}) {
    const max = checkMaxDatagram(options.maxDatagram, `make ${framing.name} framer`);
    const onDrop = options.onDrop;
    super({
      transform(datagram, controller) {
        let framed: Uint8Array;
        try {
          framed = framing.frame(datagram, max);
        } catch (error) {
          if (onDrop && (error instanceof RangeError || error instanceof SyntaxError)) {
            onDrop(error, datagram);
            return;
          }
          throw error;
        }
        controller.enqueue(framed);
      },
    });
  }
}
