// Copyright the ptkit authors. MIT license.

import type { NetConn } from "./net_conn.ts";
import { describe } from "./_chunk_io.ts";

/**
 * Write all of `bytes` to a connection (`write` may take only part).
 *
 * @param conn The connection.
 * @param bytes What to write.
 *
 * @example Writing a handshake
 * ```ts
 * import { readExactly, writeFull } from "./conn_io.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * using peer = await listener.accept();
 * await writeFull(conn, new Uint8Array([5, 1, 0]));
 * deepStrictEqual(await readExactly(peer, 3), new Uint8Array([5, 1, 0]));
 * ```
 */
export async function writeFull(conn: Pick<NetConn, "write">, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/**
 * Read exactly `n` bytes from a connection.
 *
 * @param conn The connection.
 * @param n How many bytes.
 * @param onEnd Makes the error thrown when the peer closes first, given the
 * count read so far. Defaults to an `Error` saying so.
 * @returns The bytes.
 * @throws {TypeError} When `n` is not a number, or `conn` has no `read`
 * method (a `TransportConn` has streams: read its `readable`).
 * @throws {RangeError} When `n` is not a non-negative integer.
 *
 * @example Reading a fixed-size reply
 * ```ts
 * import { readExactly } from "@ptkit/ptkit/net";
 * import { rejects } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const peer = await listener.accept();
 * await peer.write(new Uint8Array([1]));
 * peer.close();
 * await rejects(readExactly(conn, 2), /closed after 1 of 2 bytes/);
 * ```
 */
export async function readExactly(
  conn: Pick<NetConn, "read">,
  n: number,
  onEnd: (got: number) => Error = (got) =>
    new Error(`Connection closed after ${got} of ${n} bytes`),
): Promise<Uint8Array> {
  // new Uint8Array(n) said 'Invalid typed array length: -1', and made 1.5
  // one byte, NaN none and "5" five.
  if (typeof n !== "number") {
    throw new TypeError(`Cannot read exactly n bytes: n must be a number, got ${typeof n}`);
  }
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Cannot read exactly ${n} bytes: n must be a non-negative integer`);
  }
  // null failed with JavaScript's 'Cannot read properties of null', a
  // TransportConn (streams, no read()) with 'conn.read is not a function'.
  if (typeof (conn as { read?: unknown } | null)?.read !== "function") {
    throw new TypeError(
      `Cannot read exactly ${n} bytes: conn must have a read() method (a Deno.Conn), got ${
        describe(conn)
      }`,
    );
  }
  const buffer = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    const count = await conn.read(buffer.subarray(offset));
    if (count === null) throw onEnd(offset);
    offset += count;
  }
  return buffer;
}
