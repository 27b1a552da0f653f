// Copyright the ptkit authors. MIT license.

// Child of byte_retention_test.ts (run with --v8-flags=--expose-gc): bytes
// given to a parser that waits for more; prints how much memory outside the
// JS heap it holds once collected, in bytes. `deframer` (a UDP deframer
// inside a 65,535-byte datagram) and `head` (an HTTP head of up to 64 KiB):
// 20,000 bytes one per read, each read a view of a 4 KiB buffer (as obfs4
// hands them over). `straddle`: a deframer given 1000 reads of 64 KiB of
// 1001-byte frames, drained after each (a frame always waits across reads).

import { Deframer } from "../udp/_deframer.ts";
import { lengthFraming } from "../udp/mod.ts";
import { HeadBuffer } from "../transports/_http_head.ts";

const gc = (globalThis as unknown as { gc: () => void }).gc;
const collect = async () => {
  // Array buffers are freed after a collection, in later tasks.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};
await collect();
const before = Deno.memoryUsage().external;
let push: (byte: Uint8Array) => void;
if (Deno.args[0] === "deframer") {
  const deframer = new Deframer(lengthFraming, 65535);
  deframer.push(Uint8Array.of(0xff, 0xff)); // A 65,535-byte datagram's header.
  push = (byte) => {
    deframer.push(byte);
    if (deframer.next() !== undefined) throw new Error("The datagram cannot be complete");
  };
} else if (Deno.args[0] === "head") {
  const head = new HeadBuffer(65536);
  push = (byte) => {
    if (head.add(byte) !== undefined) throw new Error("The head cannot be complete");
  };
} else if (Deno.args[0] === "straddle") {
  const deframer = new Deframer(lengthFraming, 65535);
  let position = 0;
  push = (chunk) => {
    deframer.push(chunk);
    while (deframer.next() !== undefined);
  };
  for (let i = 0; i < 1000; i++) {
    const read = new Uint8Array(65536);
    for (let j = 0; j < read.length; j++, position++) {
      const k = position % 1001;
      read[j] = k === 0 ? 0x03 : k === 1 ? 0xe7 : 0x41; // 0x03e7: 999 bytes follow.
    }
    push(read);
  }
} else {
  throw new TypeError(`Unknown parser ${Deno.args[0]}`);
}
if (Deno.args[0] !== "straddle") {
  for (let i = 0; i < 20_000; i++) push(new Uint8Array(4096).fill(0x41).subarray(7, 8));
}
await collect();
console.log(Deno.memoryUsage().external - before);
// The parser stays in use until after the measure (unused, it would have
// been collected with all it held).
push(Uint8Array.of(0x41));
