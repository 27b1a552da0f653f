// Copyright the ptkit authors. MIT license.

// Child of udp_byte_queue_test.ts and http_head_test.ts (run with
// --v8-flags=--expose-gc): 20,000 bytes arriving one per read, each read a
// view of a 4 KiB buffer (as obfs4 hands them over), given to a parser that
// waits for more; prints how much memory outside the JS heap it holds once
// collected, in bytes. The parser: `deframer` (a UDP deframer inside a
// 65,535-byte datagram) or `head` (an HTTP head of up to 64 KiB).

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
} else {
  throw new TypeError(`Unknown parser ${Deno.args[0]}`);
}
for (let i = 0; i < 20_000; i++) push(new Uint8Array(4096).fill(0x41).subarray(7, 8));
await collect();
console.log(Deno.memoryUsage().external - before);
// The parser stays in use until after the measure (unused, it would have
// been collected with all it held).
push(Uint8Array.of(0x41));
