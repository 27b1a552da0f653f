// Copyright the ptkit authors. MIT license.

// Child of udp_byte_queue_test.ts (run with --v8-flags=--expose-gc): a
// 20,000-byte frame arriving one byte per read, each read a view of a 4 KiB
// buffer (as obfs4 hands them over), queued in a deframer; prints how much
// memory outside the JS heap it holds once collected, in bytes.

import { Deframer } from "../udp/_deframer.ts";
import { lengthFraming } from "../udp/mod.ts";

const gc = (globalThis as unknown as { gc: () => void }).gc;
gc();
const before = Deno.memoryUsage().external;
const deframer = new Deframer(lengthFraming, 65535);
deframer.push(Uint8Array.of(0xff, 0xff)); // A 65,535-byte datagram's header.
for (let i = 0; i < 20_000; i++) deframer.push(new Uint8Array(4096).subarray(7, 8));
// Array buffers are freed after a collection, in later tasks.
for (let i = 0; i < 3; i++) {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 20));
}
console.log(Deno.memoryUsage().external - before);
if (deframer.next() !== undefined) throw new Error("The datagram cannot be complete");
