// Copyright the ptkit authors. MIT license.
// Internal: a NetConn view of a stream connection (a TransportConn), so
// the SOCKS code that reads and writes sockets can run inside a transport.

import type { NetConn } from "../net/net_conn.ts";
import type { StreamConn } from "../net/relay.ts";

/** A stream connection with addresses, as a `TransportConn` is. */
export interface AddressedStreamConn extends StreamConn {
  /** The local address. */
  readonly localAddr: Deno.Addr;
  /** The remote address. */
  readonly remoteAddr: Deno.Addr;
}

/**
 * Read and write a stream connection as a {@linkcode NetConn}. The view
 * locks the streams; bytes of a chunk that did not fit a read are kept for
 * the next read. Use the view, not the streams, from then on.
 *
 * @example Reading a TransformStream through the view
 * ```ts
 * import { streamNetConn } from "./stream_net_conn.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * const addr = { transport: "tcp", hostname: "127.0.0.1", port: 1 } as const;
 * const conn = streamNetConn({ readable, writable, close() {}, localAddr: addr, remoteAddr: addr });
 * const write = conn.write(new Uint8Array([1, 2, 3]));
 * const buffer = new Uint8Array(2);
 * deepStrictEqual(await conn.read(buffer), 2);
 * deepStrictEqual(await conn.read(buffer), 1);
 * deepStrictEqual(await write, 3);
 * ```
 *
 * @param conn The stream connection.
 * @returns The view.
 */
export function streamNetConn(conn: AddressedStreamConn): NetConn {
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  let rest: Uint8Array | undefined;
  return {
    async read(p: Uint8Array): Promise<number | null> {
      if (rest === undefined || rest.length === 0) {
        const { value, done } = await reader.read();
        if (done) return null;
        rest = value;
      }
      const n = Math.min(p.length, rest.length);
      p.set(rest.subarray(0, n));
      rest = rest.subarray(n);
      return n;
    },
    async write(p: Uint8Array): Promise<number> {
      await writer.write(p.slice());
      return p.length;
    },
    async closeWrite(): Promise<void> {
      await writer.close();
    },
    close(): void {
      reader.cancel().catch(() => {});
      writer.abort().catch(() => {});
      conn.close();
    },
    get localAddr() {
      return conn.localAddr;
    },
    get remoteAddr() {
      return conn.remoteAddr;
    },
  };
}
