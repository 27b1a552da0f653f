// Copyright the ptkit authors. MIT license.

// Child of obfs4_pair_test.ts (run with --v8-flags=--expose-gc): an obfs4
// client in IAT mode 2 whose bridge's seed gives the length table [2]
// (TINY_ONLY_SEED) writes `size` bytes at once (one application write),
// and the server reads them back. Prints the JS heap held, after a full
// collection, above what it was before the write, at the 1000th network
// write of it (`heap <bytes>`, which may be below 0), then
// `received <bytes> same: <true|false>`.

import { createObfs4 } from "../transports/obfs4/mod.ts";
import { TINY_ONLY_SEED } from "./obfs4_live_helpers.ts";
import { generateServerConfig } from "../transports/obfs4/_config.ts";
import { setImmediate } from "node:timers";

const size = Number(Deno.args[0] ?? 512 * 1024);
const gc = (globalThis as unknown as { gc: () => void }).gc;
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const { keys } = await generateServerConfig(2);
let writes = 0;
let baseline = -1;
let held: number | undefined;
const transport = createObfs4({
  // Each network write is followed by one turn of the event loop, in
  // which the writes so far reach the server: no clock.
  iatSleep: () => {
    if (baseline >= 0 && ++writes === 1000) {
      gc();
      held = Deno.memoryUsage().heapUsed - baseline;
    }
    return new Promise<void>((resolve) => setImmediate(resolve));
  },
});
const server = await transport.server({
  "node-id": hex(keys.nodeId),
  "private-key": hex(keys.secretKey),
  "drbg-seed": hex(TINY_ONLY_SEED),
  "iat-mode": "2",
}, {});
const client = await transport.client(server.clientOptions);
const c = client.pair({});
const s = server.pair();
const up = c.encode.readable.pipeTo(s.decode.writable);
const down = s.encode.readable.pipeTo(c.decode.writable);
await Promise.all([c.ready, s.ready]);
const cw = c.encode.writable.getWriter();
const sw = s.encode.writable.getWriter();
const cr = c.decode.readable.getReader();
const sr = s.decode.readable.getReader();
// A byte from the server first: the client takes the bridge's length
// table at its first read after the handshake.
await sw.write(new Uint8Array([1]));
await cr.read();
const data = new Uint8Array(size);
for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
gc();
baseline = Deno.memoryUsage().heapUsed;
const writing = cw.write(data);
const got = new Uint8Array(size);
let received = 0;
while (received < size) {
  const { value, done } = await sr.read();
  if (done) break;
  got.set(value.subarray(0, size - received), received);
  received += value.length;
}
await writing;
console.log(`heap ${held ?? "not measured"}`);
console.log(
  `received ${received} same: ${received === size && got.every((b, i) => b === data[i])}`,
);
await Promise.all([cw.close(), sw.close()]);
cr.releaseLock();
sr.releaseLock();
await Promise.all([up, down, c.decode.readable.cancel(), s.decode.readable.cancel()]).catch(
  () => {},
);
