// Copyright the ptkit authors. MIT license.

// obfs4's IAT mode 1, checked through the injectable sleep
// (`Obfs4Options.iatSleep`) with no clock at all: every network write is at
// most one 1448-byte segment, each is followed by a sleep whose delay comes
// from the bridge's IAT table (SHA-256 of its drbg seed; the client's once
// the server's seed frame arrived), and the next write waits until that
// sleep has ended. Removing any of these makes a test here fail.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { sha256 } from "@noble/hashes/sha2.js";
import { createObfs4, obfs4 } from "../transports/obfs4/mod.ts";
import { distributionValues } from "../transports/obfs4/_weighted_dist.ts";

/**
 * A bridge drbg seed whose IAT table holds only two delays (6.3 and 9.6 ms):
 * a delay drawn from any other table is almost surely outside it.
 */
const SEED = "00".repeat(23) + "1a";
const SEGMENT = 1448;

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
}

/** The delays, in ms, the bridge's IAT table allows. */
const TABLE: readonly number[] = distributionValues(sha256(hexBytes(SEED)).subarray(0, 24), 0, 100)
  .map((v) => v / 10);

/** Resolves after `n` macrotasks: long enough for any ready write to come out. */
async function tasks(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** Sleeps that end only when the test says so. */
class Gates {
  readonly delays: number[] = [];
  readonly #open: (() => void)[] = [];
  sleep = (ms: number): Promise<void> => {
    this.delays.push(ms);
    return new Promise<void>((resolve) => this.#open.push(resolve));
  };
  /** End the `i`th sleep. */
  release(i: number): void {
    this.#open[i]!();
  }
}

async function bridge(gates: Gates) {
  const generated = await obfs4.generateConfig!();
  const transport = createObfs4({ iatSleep: gates.sleep });
  const server = await transport.server({
    ...generated.server,
    "drbg-seed": SEED,
    "iat-mode": "1",
  });
  strictEqual(server.clientOptions["iat-mode"], "1");
  const client = await transport.client(server.clientOptions);
  return { client: client.pair({}), server: server.pair() };
}

/**
 * Send `data` through `sender.encode`, delivering each network write to
 * `receiver.decode`, and check the writes and sleeps one by one: each write
 * is followed by exactly one sleep, and nothing more is written until that
 * sleep ends.
 */
async function sendGated(
  sender: { encode: TransformStream<Uint8Array, Uint8Array> },
  wire: ReadableStreamDefaultReader<Uint8Array>,
  deliver: WritableStreamDefaultWriter<Uint8Array>,
  received: ReadableStreamDefaultReader<Uint8Array>,
  gates: Gates,
  data: Uint8Array,
): Promise<number[]> {
  const sizes: number[] = [];
  const sleepsBefore = gates.delays.length;
  const writer = sender.encode.writable.getWriter();
  const writing = writer.write(data);
  let got = 0;
  const out = new Uint8Array(data.length);
  const reading = (async () => {
    while (got < data.length) {
      const { value, done } = await received.read();
      if (done) break;
      out.set(value, got);
      got += value.length;
    }
  })();
  let next = wire.read();
  for (let i = 0;; i++) {
    const { value, done } = await next;
    if (done) throw new Error("The wire closed");
    sizes.push(value.length);
    ok(value.length <= SEGMENT, `write ${i} is ${value.length} bytes, over one segment`);
    deliver.write(value).catch(() => {});
    next = wire.read();
    const state = await Promise.race([next.then(() => "written"), tasks().then(() => "waiting")]);
    // Exactly one sleep per write so far, and the next write waits for it.
    strictEqual(gates.delays.length - sleepsBefore, i + 1, `sleeps after write ${i}`);
    strictEqual(
      state,
      "waiting",
      `write ${i + 1} went out before the sleep after write ${i} ended`,
    );
    strictEqual(await settled(writing), false, `the write ended before sleep ${i} did`);
    gates.release(sleepsBefore + i);
    // The write resolves once the sleep after its last network write ended.
    if (await settled(writing)) break;
  }
  await writing;
  await reading;
  deepStrictEqual(out, data);
  writer.releaseLock();
  // Nothing further is pending on the wire.
  const state = await Promise.race([next.then(() => "written"), tasks().then(() => "waiting")]);
  strictEqual(state, "waiting");
  return sizes;
}

async function settled(p: Promise<unknown>): Promise<boolean> {
  return await Promise.race([p.then(() => true, () => true), tasks(1).then(() => false)]);
}

Deno.test("obfs4 iat-mode 1: every write is one segment at most, then a sleep drawn from the bridge's IAT table, and the next write waits for it (server and client)", async () => {
  strictEqual(TABLE.length, 2);
  const gates = new Gates();
  const { client, server } = await bridge(gates);
  // Client to server straight through (the handshake needs no sleep).
  const clientWire = client.encode.readable.getReader();
  const serverIn = server.decode.writable.getWriter();
  const serverWire = server.encode.readable.getReader();
  const clientIn = client.decode.writable.getWriter();
  serverIn.write((await clientWire.read()).value!).catch(() => {});
  // The server's answer and seed frame: no sleep before the session exists.
  clientIn.write((await serverWire.read()).value!).catch(() => {});
  await Promise.all([client.ready, server.ready]);
  strictEqual(gates.delays.length, 0);

  // Server to client, then client to server (the client took the bridge's
  // IAT table from the seed frame): 20 kB in segments, each followed by a sleep.
  const directions = [
    { from: server, wire: serverWire, to: clientIn, received: client.decode.readable },
    { from: client, wire: clientWire, to: serverIn, received: server.decode.readable },
  ];
  let writes = 0;
  for (const { from, wire, to, received } of directions) {
    const data = crypto.getRandomValues(new Uint8Array(20_000));
    const sizes = await sendGated(from, wire, to, received.getReader(), gates, data);
    ok(sizes.length >= Math.ceil(data.length / SEGMENT), `${sizes.length} writes`);
    writes += sizes.length;
  }
  strictEqual(gates.delays.length, writes);
  for (const [i, ms] of gates.delays.entries()) {
    ok(TABLE.includes(ms), `sleep ${i} of ${ms} ms is not in the bridge's table ${TABLE}`);
  }
  await clientIn.close().catch(() => {});
  await serverIn.close().catch(() => {});
  await clientWire.cancel().catch(() => {});
  await serverWire.cancel().catch(() => {});
});

Deno.test("obfs4 iat-mode 0 never sleeps and writes each burst at once", async () => {
  const delays: number[] = [];
  const transport = createObfs4({ iatSleep: (ms) => void delays.push(ms) });
  const server = await transport.server({ ...(await obfs4.generateConfig!()).server });
  const client = (await transport.client(server.clientOptions)).pair({});
  const pair = server.pair();
  client.encode.readable.pipeTo(pair.decode.writable).catch(() => {});
  const wire = pair.encode.readable.getReader();
  const clientIn = client.decode.writable.getWriter();
  clientIn.write((await wire.read()).value!).catch(() => {});
  await Promise.all([client.ready, pair.ready]);
  const writer = pair.encode.writable.getWriter();
  writer.write(new Uint8Array(20_000)).catch(() => {});
  // One burst: the 20,000 bytes in 15 frames and the padding, in one write.
  const { value } = await wire.read();
  ok(value!.length > 20_000, `${value!.length} bytes`);
  deepStrictEqual(delays, []);
  await clientIn.close().catch(() => {});
  await wire.cancel().catch(() => {});
});
