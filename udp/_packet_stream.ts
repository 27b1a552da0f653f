// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { DeframerStream } from "./_deframer_stream.ts";
import { FramerStream, type FramerStreamOptions } from "./_framer_stream.ts";
import type { Framing } from "./framing.ts";

/**
 * A packet stream (PT 2.0 draft 1's datagram abstraction): every chunk is one
 * whole datagram, in either direction. A byte stream such as a transport
 * connection becomes one with {@linkcode toPacketStream}.
 */
export interface PacketStream {
  /** Datagrams from the peer, one per chunk. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Datagrams to the peer, one per chunk. */
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * View a byte stream (a transport connection, a `Deno.Conn`'s streams) as a
 * {@linkcode PacketStream} with the given framing. Framing errors on either
 * side error the packet stream's side with a `SyntaxError` or `RangeError`.
 *
 * @param bytes The byte stream.
 * @param framing The framing both ends use.
 * @param options The size limit; `onDrop` drops datagrams that cannot be framed instead of failing.
 * @returns The packet stream.
 *
 * @example Datagrams through a byte pipe
 * ```ts
 * import { lengthFraming } from "@ptkit/ptkit/udp";
 * import { toPacketStream } from "./_packet_stream.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const pipe = new TransformStream<Uint8Array, Uint8Array>();
 * const packets = toPacketStream(pipe, lengthFraming);
 * const writer = packets.writable.getWriter();
 * writer.write(new Uint8Array([1, 2, 3]));
 * writer.close();
 * deepStrictEqual(await Array.fromAsync(packets.readable), [new Uint8Array([1, 2, 3])]);
 * ```
 */
export function toPacketStream(
  bytes: {
    readonly readable: ReadableStream<Uint8Array>;
    readonly writable: WritableStream<Uint8Array>;
  },
  framing: Framing,
  options: FramerStreamOptions = {},
): PacketStream {
  const framer = new FramerStream(framing, options);
  const maxDatagram = options.maxDatagram;
  const deframer = new DeframerStream(framing, maxDatagram === undefined ? {} : { maxDatagram });
  framer.readable.pipeTo(bytes.writable).catch(() => {});
  return { readable: bytes.readable.pipeThrough(deframer), writable: framer.writable };
}
