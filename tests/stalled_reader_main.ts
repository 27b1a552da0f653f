// Copyright the ptkit authors. MIT license.

// Child of stalled_reader_test.ts (run with --v8-flags=--expose-gc): an
// obfs4 server, or with ARGS[1] "webtunnel" a WebTunnel server (path
// /stalled, no TLS) or "plain" a plain one, relaying to the target at 127.0.0.1:ARGS[0]. Prints its
// port and client options as a JSON line; then, for each byte read on stdin,
// collects garbage and prints the bytes it keeps (heap used and outside the
// heap) as a line, or for "h" the bytes its reads count as held.

import { proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { plain } from "../transports/plain.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { heldNow } from "../net/_chunk_io.ts";

const gc = (globalThis as unknown as { gc: () => void }).gc;
const manager = Deno.args[1] === "webtunnel"
  ? await proxy(webtunnel, { url: "https://example.com/stalled" }, options())
  : Deno.args[1] === "plain"
  ? await proxy(plain, {}, options())
  : await proxy(obfs4, {}, options());
function options() {
  return {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
    target: { hostname: "127.0.0.1", port: Number(Deno.args[0]) },
    onError: () => {},
  };
}
console.log(JSON.stringify({ port: manager.addr.port, cert: manager.clientOptions }));
const byte = new Uint8Array(1);
while ((await Deno.stdin.read(byte)) !== null) {
  // Array buffers are freed after a collection, in later tasks.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const { heapUsed, external } = Deno.memoryUsage();
  // "h": what the read budget counts as held; else what the process keeps.
  console.log(byte[0] === 0x68 ? heldNow() : heapUsed + external);
}
await manager.close();
