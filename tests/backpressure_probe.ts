// Copyright the ptkit authors. MIT license.
// Backpressure probe, run by runtime_behaviour_test.ts in a fresh process: a
// reader stalls for 2 s while the writer pushes 256 MiB through `rot_by_N`;
// prints the resident-memory growth over a warmed-up baseline as JSON.

import { createConnector } from "../client.ts";
import { listen } from "../server.ts";
import { rot } from "./rot_transport.ts";
import { hashOf, hashReadable, pseudoRandomChunks } from "./_util.ts";

const TOTAL = 256 * 1024 * 1024;
const CHUNK = 64 * 1024;
// One immutable chunk written again and again: the writer itself makes no
// garbage, so what is measured is the pipeline's buffering.
const [chunk] = [...pseudoRandomChunks(CHUNK, 5)];
const repeated = function* (total: number) {
  for (let sent = 0; sent < total; sent += CHUNK) yield chunk!;
};
await using listener = await listen(rot, { n: "3" }, { hostname: "127.0.0.1", port: 0 });
const connector = await createConnector(rot, listener.clientOptions);
await using conn = await connector.dial({ port: listener.addr.port });
await using accepted = await listener.accept();
const writer = conn.writable.getWriter();
const reader = accepted.readable.getReader();
// Warm up (JIT, allocator) with 32 MiB, then take the baseline.
let warm = 0;
await Promise.all([
  (async () => {
    for (const c of repeated(32 * 1024 * 1024)) await writer.write(c);
  })(),
  (async () => {
    while (warm < 32 * 1024 * 1024) warm += (await reader.read()).value!.byteLength;
  })(),
]);
const result = { received: 0, digestOk: false, growthMiB: 0 };
const baseline = Deno.memoryUsage().rss;
let peak = baseline;
const sampler = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 10);
try {
  const writing = (async () => {
    for (const c of repeated(TOTAL)) await writer.write(c);
    await writer.close();
  })();
  await new Promise((resolve) => setTimeout(resolve, 2000)); // the reader stalls
  reader.releaseLock();
  const received = await hashReadable(accepted.readable);
  await writing;
  result.received = received.bytes;
  result.digestOk = received.digest() === hashOf(repeated(TOTAL));
} finally {
  clearInterval(sampler);
}
result.growthMiB = (peak - baseline) / 1024 / 1024;
console.log(JSON.stringify(result));
