// Copyright the ptkit authors. MIT license.
// The handshake reader under SOCKS (client and server side): a stream
// connection is read by the byte, then handed back as it is, or with the
// bytes read past the handshake in front.

import { deepStrictEqual, rejects, strictEqual } from "node:assert";
import { HandshakeIo } from "../net/_handshake_io.ts";
import { readExactly } from "../net/mod.ts";
import type { StreamConn } from "../net/relay.ts";

function pipe(): StreamConn & {
  peer: WritableStreamDefaultWriter<Uint8Array>;
  heard: ReadableStream<Uint8Array>;
} {
  const toUs = new TransformStream<Uint8Array, Uint8Array>();
  const fromUs = new TransformStream<Uint8Array, Uint8Array>();
  return {
    readable: toUs.readable,
    writable: fromUs.writable,
    close() {},
    peer: toUs.writable.getWriter(),
    heard: fromUs.readable,
  };
}

Deno.test("HandshakeIo gives a stream connection back as it is when nothing was read past", async () => {
  const conn = pipe();
  const io = new HandshakeIo(conn);
  void conn.peer.write(new Uint8Array([1, 2]));
  deepStrictEqual(await readExactly(io, 2), new Uint8Array([1, 2]));
  strictEqual(io.finish(), conn);
  void conn.peer.write(new Uint8Array([3]));
  deepStrictEqual((await conn.readable.getReader().read()).value, new Uint8Array([3]));
});

Deno.test("HandshakeIo puts the bytes read past the handshake first", async () => {
  const conn = pipe();
  const io = new HandshakeIo(conn);
  void conn.peer.write(new Uint8Array([1, 2, 3, 4]));
  deepStrictEqual(await readExactly(io, 1), new Uint8Array([1]));
  strictEqual(io.buffered, 3);
  const rest = io.finish() as StreamConn;
  const reader = rest.readable.getReader();
  deepStrictEqual((await reader.read()).value, new Uint8Array([2, 3, 4]));
  void conn.peer.write(new Uint8Array([5]));
  deepStrictEqual((await reader.read()).value, new Uint8Array([5]));
  await conn.peer.close();
  strictEqual((await reader.read()).done, true);
});

Deno.test("HandshakeIo writes a stream connection, then releases its writer", async () => {
  const conn = pipe();
  const io = new HandshakeIo(conn);
  const heard = conn.heard.getReader();
  const buffer = new Uint8Array([9, 8]);
  const sent = io.write(buffer);
  buffer[0] = 0; // The chunk was copied.
  deepStrictEqual((await heard.read()).value, new Uint8Array([9, 8]));
  strictEqual(await sent, 2);
  strictEqual(io.finish(), conn);
  const writer = conn.writable.getWriter(); // Unlocked again.
  void writer.write(new Uint8Array([7]));
  deepStrictEqual((await heard.read()).value, new Uint8Array([7]));
});

Deno.test("readExactly refuses a count that is not a non-negative integer, naming it, before reading", async () => {
  // new Uint8Array(n) said 'Invalid typed array length: -1', read one byte
  // for 1.5 and none for NaN.
  let reads = 0;
  const conn = { read: () => Promise.resolve(++reads) };
  for (const n of [-1, 1.5, NaN, Infinity]) {
    await rejects(
      readExactly(conn, n),
      (e: unknown) =>
        e instanceof RangeError &&
        e.message === `Cannot read exactly ${n} bytes: n must be a non-negative integer`,
    );
  }
  await rejects(
    readExactly(conn, "5" as unknown as number),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot read exactly n bytes: n must be a number, got string",
  );
  strictEqual(reads, 0);
  deepStrictEqual(await readExactly(conn, 0), new Uint8Array(0));
});

Deno.test("readExactly refuses a conn without read() (null, a TransportConn, which has streams) with a TypeError naming its type, before reading", async () => {
  // JavaScript's 'Cannot read properties of null (reading 'read')' or
  // 'conn.read is not a function' before.
  const streams = { readable: new ReadableStream(), writable: new WritableStream() };
  for (const [conn, named] of [[null, "null"], [streams, "Object"], [5, "number"]] as const) {
    await rejects(
      readExactly(conn as unknown as Deno.Conn, 1),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot read exactly 1 bytes: conn must have a read() method (a Deno.Conn), got ${named}`,
    );
  }
});
