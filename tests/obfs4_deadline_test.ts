// Copyright the ptkit authors. MIT license.

// obfs4's handshake deadlines on in-memory pairs, with the injectable
// timeouts: the client gives up on a silent server, the server does not
// answer a handshake completed after its deadline, and a connection without
// a good handshake is closed after the probe delay. (The real 30 s and 60 s
// are checked over TCP in obfs4_probe_test.ts.) A generous guard turns a
// missing deadline into a failure instead of a hang; nothing asserts how
// long anything took.

import { rejects, strictEqual } from "node:assert";
import { createObfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { parseClientConfig } from "../transports/obfs4/_config.ts";
import { ClientHandshake } from "../transports/obfs4/_handshake.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { guarded } from "./_util.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("obfs4 client gives up on a server that never answers, after clientHandshakeTimeout", async () => {
  const transport = createObfs4({ clientHandshakeTimeout: 50 });
  const server = await transport.server({}, { local: new MemoryStore() });
  const client = (await transport.client(server.clientOptions)).pair({});
  // The client sends its handshake (unless the deadline comes first); nothing answers.
  await guarded(
    rejects(
      () => client.ready!,
      /Cannot complete obfs4 handshake: timed out \(an obfs4 server never answers a handshake made with a wrong cert: check the bridge line's cert/,
    ),
    "the client's handshake deadline",
  );
  await rejects(() => client.decode.readable.getReader().read(), /timed out/);
});

Deno.test("obfs4 server leaves a handshake completed after serverHandshakeTimeout unanswered, then closes after probeCloseDelay", async () => {
  const transport = createObfs4({ serverHandshakeTimeout: 50, probeCloseDelay: () => 300 });
  const side = await transport.server({}, { local: new MemoryStore() });
  const pair = side.pair();
  const identity = parseClientConfig(side.clientOptions).identity;
  const input = pair.decode.writable.getWriter();
  const output = pair.encode.readable.getReader();
  let answered = 0;
  const reading = (async () => {
    for (;;) {
      const { value, done } = await output.read();
      if (done) return;
      answered += value.length;
    }
  })();
  // The deadline's timer (50 ms, set first) fires before this one.
  await sleep(100);
  await input.write(new ClientHandshake(await loadWasmCrypto(), identity).message);
  // The server still reads (and drops) what comes.
  await input.write(new Uint8Array(100));
  await guarded(rejects(() => pair.ready!), "the server to fail the late handshake");
  await guarded(rejects(() => reading), "the server to close");
  strictEqual(answered, 0, "the server answered a late handshake");
});

Deno.test("obfs4 server closes a connection without a good handshake after probeCloseDelay, reading until then", async () => {
  const transport = createObfs4({ probeCloseDelay: () => 200 });
  const side = await transport.server({}, { local: new MemoryStore() });
  const pair = side.pair();
  const input = pair.decode.writable.getWriter();
  const output = pair.encode.readable.getReader();
  await input.write(crypto.getRandomValues(new Uint8Array(10_000)));
  await input.write(crypto.getRandomValues(new Uint8Array(100)));
  await guarded(
    rejects(() => output.read(), /invalid or timed out/),
    "the server to close the probe",
  );
  await rejects(() => pair.ready!);
});
