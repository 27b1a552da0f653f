// Copyright the ptkit authors. MIT license.

// Each check of the obfs4 handshake on its own: a forged answer that passes
// every other check must still be refused by the one under test.

import { ok, rejects, strictEqual, throws } from "node:assert";
import { x25519 } from "@noble/curves/ed25519.js";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { parseClientConfig } from "../transports/obfs4/_config.ts";
import { ClientHandshake, ServerHandshake } from "../transports/obfs4/_handshake.ts";
import { ReplayFilter } from "../transports/_replay_filter.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import type { TransportPair } from "../transports/transport.ts";

const box = await loadWasmCrypto();

/** The server's PRNG-seed frame that follows its handshake answer: 2 + 16 + 3 + 24 bytes. */
const SEED_FRAME = 45;

/** A client pair for `clientOptions`, its first write (the handshake) and a writer to its decoder. */
async function client(clientOptions: Record<string, string>) {
  const pair: TransportPair = (await obfs4.client(clientOptions)).pair({});
  const wire = pair.encode.readable.getReader();
  const hello = (await wire.read()).value!;
  const answer = pair.decode.writable.getWriter();
  return { pair, wire, hello, answer };
}

Deno.test("obfs4 client refuses an impostor server with the bridge's node ID and public key but not its secret key (ntor AUTH)", async () => {
  const bridge = await obfs4.generateConfig!();
  const { identity } = parseClientConfig(bridge.client);
  // The impostor is ptkit's own server handshake, given what the bridge
  // line publishes (node ID, public key B) and a secret key of its own: it
  // can find the client's mark and check its MAC, and its answer carries a
  // valid mark and MAC; only AUTH, which needs B's secret key, is wrong.
  const impostor = new ServerHandshake(
    box,
    { ...identity, secretKey: crypto.getRandomValues(new Uint8Array(32)) },
    new ReplayFilter(),
  );
  const c = await client(bridge.client);
  const step = impostor.parse(c.hello);
  ok(step.done, "the impostor accepts the client's handshake");
  c.answer.write(step.response).catch(() => {});
  await rejects(() => c.pair.ready!, /ntor AUTH mismatch/);
  await c.wire.cancel().catch(() => {});

  // The same exchange with the bridge's secret key succeeds.
  const real = new ServerHandshake(
    box,
    { ...identity, secretKey: hexBytes(bridge.server["private-key"]!) },
    new ReplayFilter(),
  );
  const d = await client(bridge.client);
  const good = real.parse(d.hello);
  ok(good.done);
  d.answer.write(good.response).catch(() => {});
  await d.pair.ready;
  await d.answer.close().catch(() => {});
  await d.wire.cancel().catch(() => {});
});

Deno.test("obfs4 client refuses a server answer whose MAC is wrong although its mark and AUTH are right", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const c = await client(server.clientOptions);
  const pair = server.pair();
  const serverIn = pair.decode.writable.getWriter();
  serverIn.write(c.hello).catch(() => {});
  const serverWire = pair.encode.readable.getReader();
  const answer = (await serverWire.read()).value!.slice();
  // The last byte of the server's MAC, just before the seed frame.
  answer[answer.length - SEED_FRAME - 1]! ^= 1;
  c.answer.write(answer).catch(() => {});
  await rejects(() => c.pair.ready!, /server MAC mismatch/);
  await c.wire.cancel().catch(() => {});
  await serverWire.cancel().catch(() => {});
  await serverIn.abort().catch(() => {});
});

Deno.test("obfs4 server refuses a client handshake whose MAC is wrong although its mark is right", () => {
  const bridge = keysOf(crypto.getRandomValues(new Uint8Array(32)));
  const hs = new ClientHandshake(box, bridge);
  const bad = hs.message.slice();
  bad[bad.length - 1]! ^= 1;
  throws(() => new ServerHandshake(box, bridge, new ReplayFilter()).parse(bad), /MAC mismatch/);
  // Unchanged, it is accepted.
  ok(new ServerHandshake(box, bridge, new ReplayFilter()).parse(hs.message).done);
});

Deno.test("obfs4 server checks the MAC only where its mark is: a handshake arriving in pieces waits", () => {
  const bridge = keysOf(crypto.getRandomValues(new Uint8Array(32)));
  const hs = new ClientHandshake(box, bridge, { padding: 1000 });
  const server = new ServerHandshake(box, bridge, new ReplayFilter());
  // Every prefix long enough to hold a handshake, but without the mark at its end.
  for (let n = 32 + 77 + 32; n < hs.message.length; n += 97) {
    strictEqual(server.parse(hs.message.subarray(0, n)).done, false, `${n} bytes`);
  }
  ok(server.parse(hs.message).done);
});

Deno.test("obfs4 server gives up on 8192 bytes without its mark instead of buffering more", () => {
  const bridge = keysOf(crypto.getRandomValues(new Uint8Array(32)));
  const server = new ServerHandshake(box, bridge, new ReplayFilter());
  // Short of 8192 bytes without the mark: wait for more.
  strictEqual(server.parse(crypto.getRandomValues(new Uint8Array(8191))).done, false);
  throws(
    () => server.parse(crypto.getRandomValues(new Uint8Array(8192))),
    /Cannot accept obfs4 handshake: mark not found/,
  );
  // A valid handshake after 8192 bytes of junk is too late.
  const hs = new ClientHandshake(box, bridge);
  const late = new Uint8Array(8192 + hs.message.length);
  late.set(hs.message, 8192);
  throws(() => new ServerHandshake(box, bridge, new ReplayFilter()).parse(late), SyntaxError);
});

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
}

/** Bridge keys (a random node ID) for an X25519 secret key. */
function keysOf(secretKey: Uint8Array) {
  return {
    nodeId: crypto.getRandomValues(new Uint8Array(20)),
    publicKey: x25519.getPublicKey(secretKey),
    secretKey,
  };
}
