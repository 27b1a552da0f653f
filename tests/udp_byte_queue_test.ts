// Copyright the ptkit authors. MIT license.

// ByteQueue, under the UDP deframers (transparent-UDP, STUN framing, TURN
// over a stream): what it holds stays near the bytes queued, whatever the
// chunks' sizes, and it gives back exactly the bytes pushed.

import { deepStrictEqual, strictEqual } from "node:assert";
import { ByteQueue } from "../udp/_byte_queue.ts";
import { Deframer } from "../udp/_deframer.ts";
import { lengthFraming } from "../udp/mod.ts";

Deno.test("ByteQueue copies small chunks and views of larger buffers, keeping none of them", () => {
  const queue = new ByteQueue();
  // One byte per segment: a view of a frame-sized buffer (obfs4) and a
  // one-byte array (a plain socket read).
  const frame = new Uint8Array(65536).fill(7);
  queue.push(frame.subarray(100, 101));
  const single = Uint8Array.of(9);
  queue.push(single);
  frame.fill(0);
  single[0] = 0;
  deepStrictEqual(queue.peek(2), Uint8Array.of(7, 9));
  // A large chunk that fills its buffer is kept as it is (no copy).
  const big = new Uint8Array(4096).fill(1);
  queue.push(big);
  big[0] = 2;
  deepStrictEqual(queue.take(3), Uint8Array.of(7, 9, 2));
  strictEqual(queue.length, 4095);
});

Deno.test("ByteQueue gives back exactly the bytes pushed, however they are pushed and read (10,000 random steps)", () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const queue = new ByteQueue();
  const model: number[] = [];
  let next = 0;
  for (let step = 0; step < 10_000; step++) {
    const what = rand(10);
    if (what < 5) {
      // A chunk: small, large, or a view of a larger buffer.
      const size = [1, 3, 100, 2047, 2048, 5000, 9000][rand(7)]!;
      const buffer = new Uint8Array(size + (rand(2) === 0 ? 0 : rand(20000)));
      const start = rand(buffer.length - size + 1);
      const chunk = buffer.subarray(start, start + size);
      for (let i = 0; i < size; i++) {
        chunk[i] = next & 0xff;
        model.push(next & 0xff);
        next++;
      }
      queue.push(chunk);
      // A small chunk's buffer may be reused by its owner afterwards (a
      // large one is handed over: kept by reference).
      if (size <= 100 && rand(2) === 0) buffer.fill(0xee);
    } else if (model.length > 0) {
      const n = 1 + rand(Math.min(model.length, 12000));
      const expected = Uint8Array.from(model.slice(0, n));
      const got = what < 7 ? queue.take(n) : what < 9 ? queue.takeView(n) : queue.peek(n);
      deepStrictEqual(got, expected, `step ${step}`);
      if (what < 9) model.splice(0, n);
    }
    strictEqual(queue.length, model.length);
  }
});

Deno.test("Deframer: length-framed datagrams split one byte per chunk come out whole", () => {
  const deframer = new Deframer(lengthFraming, 65535);
  const datagram = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
  const framed = new Uint8Array(2 + datagram.length);
  new DataView(framed.buffer).setUint16(0, datagram.length);
  framed.set(datagram, 2);
  const out: Uint8Array[] = [];
  for (let i = 0; i < framed.length; i++) {
    deframer.push(new Uint8Array(4096).subarray(i % 4096, i % 4096 + 1).fill(framed[i]!));
    for (let d; (d = deframer.next()) !== undefined;) out.push(d.slice());
  }
  deepStrictEqual(out, [datagram]);
});
