// Copyright the ptkit authors. MIT license.

import { DeframerStream } from "../_deframer_stream.ts";
import { MAX_DATAGRAM } from "../framing.ts";
import { stunFraming } from "../stun/framing.ts";
import type { StunAddress } from "../stun/_message.ts";
import type { TurnServer } from "./_turn_server.ts";

/** Options of {@linkcode serveTurnStream}. */
export interface ServeTurnStreamOptions {
  /** The client's address as far as it is known, echoed in XOR-MAPPED-ADDRESS. */
  readonly remoteAddress?: StunAddress;
  /** The source the client counts against when a quota is full (see `TurnClient.source`). */
  readonly source?: string;
  /** Bytes queued toward the client before further datagrams are dropped (default 1 MiB). */
  readonly maxQueuedBytes?: number;
  /**
   * The largest STUN message or ChannelData (unpadded) sent to the client, in
   * bytes: the `maxDatagram` of the deframer at the other end. Larger ones are
   * dropped and counted (`oversize`). Default 65,507.
   */
  readonly maxPacket?: number;
  /** Abort to end the connection. */
  readonly signal?: AbortSignal;
}

let nextStreamId = 0;

/**
 * End a byte-stream connection in a {@linkcode TurnServer}: the stream carries STUN messages
 * and ChannelData back to back (PT 2.0 "STUN-aware" framing), and the connection is one TURN
 * client. Resolves when the stream ends or carries a bad frame; the client's allocation is then
 * deleted and the writable closed. Toward a slow client, datagrams beyond `maxQueuedBytes` are
 * dropped, as on UDP. The server's expiry sweep is the caller's: call `server.sweep()` every
 * second or so when no `serveTurnUdp` runs it (expired state is also dropped lazily).
 *
 * @param server The TURN server logic.
 * @param conn The byte stream (e.g. a transport connection's readable and writable).
 * @param options Client address, queue limit and abort signal.
 * @returns Resolves when the connection is over.
 *
 * @example A Binding request over an in-memory stream
 * ```ts
 * import { serveTurnStream } from "./_stream_server.ts";
 * import { TurnServer } from "./_turn_server.ts";
 * import { encodeStunMessage, parseStunMessage } from "../stun/_message.ts";
 * import { strictEqual } from "node:assert";
 *
 * const server = new TurnServer({
 *   realm: "r",
 *   users: {},
 *   relay: { families: [4], open: () => Promise.reject(new Error("unused")) },
 * });
 * const request = encodeStunMessage({
 *   method: 1, class: 0, transactionId: new Uint8Array(12), attributes: [],
 * });
 * const out: Uint8Array[] = [];
 * await serveTurnStream(server, {
 *   readable: ReadableStream.from([request]),
 *   writable: new WritableStream({ write: (c) => void out.push(c) }),
 * });
 * strictEqual(parseStunMessage(out[0]!).class, 2);
 * server.close();
 * ```
 */
export async function serveTurnStream(
  server: TurnServer,
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  options: ServeTurnStreamOptions = {},
): Promise<void> {
  const key = `stream:${nextStreamId++}`;
  const limit = options.maxQueuedBytes ?? 1 << 20;
  const writer = conn.writable.getWriter();
  let queued = 0;
  let broken = false;
  const client = {
    key,
    address: options.remoteAddress ?? { family: 4, address: "0.0.0.0", port: 0 } as const,
    ...(options.source === undefined ? {} : { source: options.source }),
    stream: true,
    maxPacket: options.maxPacket ?? MAX_DATAGRAM,
    send(view: Uint8Array): boolean {
      if (broken || queued + view.length > limit) return false;
      const packet = view.slice(); // The view may sit in a relay's receive buffer.
      queued += packet.length;
      writer.write(packet).then(
        () => queued -= packet.length,
        () => broken = true,
      );
      return true;
    },
  };
  const frames = conn.readable.pipeThrough(new DeframerStream(stunFraming), {
    ...(options.signal ? { signal: options.signal } : {}),
  });
  try {
    for await (const frame of frames) {
      if (broken) break;
      server.handle(client, frame);
    }
  } catch {
    // A bad frame or an aborted stream ends only this connection.
  } finally {
    server.disconnect(key);
    broken = true;
    await writer.close().catch(() => {});
  }
}
