// Copyright the ptkit authors. MIT license.

import { bytesBeforeTimer, bytesCopiedBy } from "./_util.ts";
import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { createObfs4, obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import type { TransportPair } from "../transports/transport.ts";
import { ClientHandshake } from "../transports/obfs4/_handshake.ts";
import {
  generateServerConfig,
  loadServerConfig,
  parseClientConfig,
} from "../transports/obfs4/_config.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { FrameEncoder } from "../transports/obfs4/_framing.ts";
import { concat } from "../transports/_bytes.ts";
import { packet } from "./obfs4_wire_helpers.ts";
import { SMALL_ONLY_SEED, ZERO_ONLY_SEED } from "./obfs4_live_helpers.ts";

async function collect(readable: ReadableStream<Uint8Array>, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  const reader = readable.getReader();
  while (got < n) {
    const { value, done } = await reader.read();
    if (done) break;
    out.set(value.subarray(0, n - got), got);
    got += value.length;
  }
  reader.releaseLock();
  strictEqual(got, n);
  return out;
}

async function roundTrip(client: TransportPair, server: TransportPair, sizes: number[]) {
  const up = client.encode.readable.pipeTo(server.decode.writable);
  const down = server.encode.readable.pipeTo(client.decode.writable);
  await Promise.all([client.ready, server.ready]);
  const cw = client.encode.writable.getWriter();
  const sw = server.encode.writable.getWriter();
  for (const size of sizes) {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    const [, got] = await Promise.all([cw.write(data), collect(server.decode.readable, size)]);
    deepStrictEqual(got, data);
    const [, back] = await Promise.all([sw.write(data), collect(client.decode.readable, size)]);
    deepStrictEqual(back, data);
  }
  await cw.close();
  await sw.close();
  await Promise.all([up, down]);
}

Deno.test("obfs4 pairs round-trip data in IAT mode 0", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  strictEqual(server.clientOptions["iat-mode"], "0");
  const client = await obfs4.client(server.clientOptions);
  await roundTrip(client.pair({}), server.pair(), [1, 100, 1427, 1428, 4096, 65536, 300_000]);
});

for (const mode of ["1", "2"]) {
  Deno.test(`obfs4 pairs round-trip data in IAT mode ${mode}`, async () => {
    const server = await obfs4.server({ "iat-mode": mode }, { local: new MemoryStore() });
    strictEqual(server.clientOptions["iat-mode"], mode);
    const client = await obfs4.client(server.clientOptions);
    await roundTrip(client.pair({}), server.pair(), [1, 1427, 5000, 20_000]);
  });
}

Deno.test("obfs4 pairs in IAT mode 2 round-trip data with a bridge whose length table holds only lengths too short to pad to", async () => {
  // The bridge's seed gives the table [17] (a hostile or unlucky bridge):
  // obfs4proxy's writer loops on it until its memory runs out; both sides
  // here draw from it once the seed has come, and carry the data.
  const { keys } = await generateServerConfig(2);
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const server = await obfs4.server({
    "node-id": hex(keys.nodeId),
    "private-key": hex(keys.secretKey),
    "drbg-seed": hex(SMALL_ONLY_SEED),
    "iat-mode": "2",
  }, {});
  strictEqual(server.clientOptions["iat-mode"], "2");
  const client = await obfs4.client(server.clientOptions);
  // Every write is one 17-byte packet after its own IAT delay: a few KiB
  // are enough (the loop came at the first burst shorter than 17 bytes).
  await roundTrip(client.pair({}), server.pair(), [1, 18, 1469]);
});

Deno.test("an obfs4 client in IAT mode 2 whose bridge's length table holds only 2 makes each 2-byte write as it sends it: a 512 KiB write holds no view per write", async () => {
  // tests/obfs4_paranoid_heap_main.ts: the JS heap held (after a full
  // collection) at the 1000th of the write's ~270,000 network writes.
  // 40.8 MB before: all of them were made at once, 150 bytes of views each.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./obfs4_paranoid_heap_main.ts", import.meta.url).pathname,
      String(512 * 1024),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  ok(text.includes(`received ${512 * 1024} same: true`), text);
  const held = /^heap (-?\d+)$/m.exec(text)?.[1];
  ok(
    held !== undefined && Number(held) < 4 * 2 ** 20,
    `${held} bytes of JS heap held during the write (${text})`,
  );
});

Deno.test("obfs4 server reuses the state it stored and takes explicit keys", async () => {
  const store = new MemoryStore();
  const first = await obfs4.server({}, { local: store });
  const second = await obfs4.server({}, { local: store });
  deepStrictEqual(second.clientOptions, first.clientOptions);
  ok((await store.get("obfs4_bridgeline.txt"))!.includes(`cert=${first.clientOptions.cert}`));
  const generated = await obfs4.generateConfig!();
  const server = await obfs4.server(generated.server);
  deepStrictEqual(server.clientOptions, generated.client);
  const client = await obfs4.client(generated.client);
  await roundTrip(client.pair({}), server.pair(), [10]);
});

Deno.test("obfs4 client accepts legacy node-id and public-key", async () => {
  const generated = await obfs4.generateConfig!();
  const server = await obfs4.server(generated.server);
  const { identity } = parseClientConfig(generated.client);
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const client = await obfs4.client({
    "node-id": hex(identity.nodeId),
    "public-key": hex(identity.publicKey),
    "iat-mode": "0",
  });
  await roundTrip(client.pair({}), server.pair(), [3000]);
});

Deno.test("obfs4 rejects bad configurations", async () => {
  await rejects(async () => await obfs4.client({ "iat-mode": "0" }), TypeError);
  await rejects(async () => await obfs4.client({ cert: "A".repeat(70) }), TypeError);
  await rejects(
    async () => await obfs4.client({ cert: "A".repeat(70), "iat-mode": "3" }),
    RangeError,
  );
  await rejects(
    async () => await obfs4.client({ cert: "!".repeat(70), "iat-mode": "0" }),
    TypeError,
  );
  // An unknown key is ignored (obfs4proxy does the same), not refused.
  await obfs4.client({ cert: "A".repeat(70), "iat-mode": "0", x: "1" });
  await rejects(async () => await obfs4.server({ "node-id": "00".repeat(20) }), TypeError);
  const store = new MemoryStore();
  await store.set("obfs4_state.json", "{not json");
  await rejects(async () => await obfs4.server({}, { local: store }), SyntaxError);
});

Deno.test("obfs4 client: a malformed cert is refused with an error saying what is wrong with it (empty, its length, the position of a character that is not base64), never its text", async () => {
  // Each said only "'cert' must be 70 characters of base64": a user whose
  // bridge line lost its end, or who pasted URL-safe base64, could not tell
  // which (lyrebird names the length or the byte).
  const good = "A".repeat(69) + "Q";
  const cases: [string, string][] = [
    ["", "'cert' is empty: expected 70 characters of base64"],
    [good.slice(0, 52), "'cert' has 52 characters: expected 70 of base64"],
    [good + "AB", "'cert' has 72 characters: expected 70 of base64"],
    [
      good.slice(0, 9) + "-" + good.slice(10),
      "'cert' has a character that is not base64 at position 10 of 70 (URL-safe '-' and '_' are not taken: obfs4 writes '+' and '/')",
    ],
    [
      good.slice(0, 40) + " " + good.slice(41),
      "'cert' has a character that is not base64 at position 41 of 70",
    ],
  ];
  for (const [cert, message] of cases) {
    await rejects(
      async () => await obfs4.client({ cert, "iat-mode": "0" }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot configure transport 'obfs4': ${message} (the bridge line's cert=)` &&
        (cert === "" || !e.message.includes(cert.slice(0, 20))),
      JSON.stringify(cert),
    );
  }
  // The padded form obfs4proxy takes still goes, as does the bare one.
  await obfs4.client({ cert: good, "iat-mode": "0" });
  await obfs4.client({ cert: good + "==", "iat-mode": "0" });
});

async function probe(garbage: Uint8Array[], delay: number) {
  const transport = createObfs4({ probeCloseDelay: () => delay });
  const server = (await transport.server({}, { local: new MemoryStore() })).pair();
  const start = Date.now();
  const writer = server.decode.writable.getWriter();
  const reader = server.encode.readable.getReader();
  let emitted = 0;
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      emitted += value.length;
    }
  })();
  for (const chunk of garbage) await writer.write(chunk);
  // The server is still consuming: more writes are accepted.
  await writer.write(new Uint8Array(100));
  await rejects(() => server.ready!);
  await rejects(() => reading);
  strictEqual(emitted, 0);
  return Date.now() - start;
}

Deno.test("obfs4 server answers nothing to garbage and errors only after the delay", async () => {
  const elapsed = await probe([crypto.getRandomValues(new Uint8Array(10_000))], 300);
  ok(elapsed >= 250, `closed after ${elapsed} ms`);
});

Deno.test("obfs4 server answers nothing to a handshake for another bridge", async () => {
  const other = await obfs4.generateConfig!();
  const hs = new ClientHandshake(await loadWasmCrypto(), parseClientConfig(other.client).identity);
  await probe([hs.message], 200);
});

Deno.test("obfs4 server refuses a replayed handshake", async () => {
  const transport = createObfs4({ probeCloseDelay: () => 200 });
  const side = await transport.server({}, { local: new MemoryStore() });
  const hs = new ClientHandshake(
    await loadWasmCrypto(),
    parseClientConfig(side.clientOptions).identity,
  );
  const first = side.pair();
  const w1 = first.decode.writable.getWriter();
  await w1.write(hs.message);
  await first.ready;
  const r1 = first.encode.readable.getReader();
  ok(((await r1.read()).value?.length ?? 0) > 96);
  await w1.close();
  await r1.cancel();
  const second = side.pair();
  const w2 = second.decode.writable.getWriter();
  await w2.write(hs.message);
  await rejects(() => second.ready!);
  await w2.abort().catch(() => {});
});

Deno.test("obfs4 client fails on a corrupted server answer", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const clientSide = await obfs4.client(server.clientOptions);
  const client = clientSide.pair({});
  const pair = server.pair();
  const up = client.encode.readable.pipeTo(pair.decode.writable).catch(() => {});
  const sr = pair.encode.readable.getReader();
  const cw = client.decode.writable.getWriter();
  const { value } = await sr.read();
  const bad = value!.slice();
  bad[40]! ^= 1; // inside AUTH
  cw.write(bad).catch(() => {});
  await rejects(() => client.ready!, /AUTH mismatch|MAC mismatch/);
  await sr.cancel().catch(() => {});
  await up;
});

Deno.test("obfs4 client drops the connection on a tampered frame", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const client = (await obfs4.client(server.clientOptions)).pair({});
  const pair = server.pair();
  const up = client.encode.readable.pipeTo(pair.decode.writable).catch(() => {});
  const sr = pair.encode.readable.getReader();
  const cw = client.decode.writable.getWriter();
  cw.write((await sr.read()).value!).catch(() => {});
  await client.ready;
  const sw = pair.encode.writable.getWriter();
  sw.write(new Uint8Array(50)).catch(() => {});
  const frame = (await sr.read()).value!.slice();
  frame[10]! ^= 0xff;
  const reading = client.decode.readable.getReader().read();
  cw.write(frame).catch(() => {});
  await rejects(() => reading, SyntaxError);
  await sr.cancel().catch(() => {});
  await up;
});

Deno.test("obfs4 server rejects malformed, truncated and inconsistent state", async () => {
  const good = JSON.parse(
    await (async () => {
      const store = new MemoryStore();
      await obfs4.server({}, { local: store });
      return (await store.get("obfs4_state.json"))!;
    })(),
  );
  const cases: [Record<string, unknown> | string, ErrorConstructor][] = [
    ["", SyntaxError],
    ["[]", TypeError],
    ["null", SyntaxError],
    [JSON.stringify(good).slice(0, 40), SyntaxError],
    [{ ...good, "node-id": good["node-id"].slice(2) }, TypeError],
    [{ ...good, "private-key": "zz" + good["private-key"].slice(2) }, TypeError],
    [{ ...good, "drbg-seed": good["drbg-seed"] + "00" }, TypeError],
    [{ ...good, "public-key": "00".repeat(32) }, SyntaxError],
    [{ ...good, "iat-mode": 7 }, RangeError],
    [{ ...good, "node-id": 5 }, TypeError],
  ];
  for (const [state, type] of cases) {
    const store = new MemoryStore();
    await store.set("obfs4_state.json", typeof state === "string" ? state : JSON.stringify(state));
    await rejects(
      async () => await obfs4.server({}, { local: store }),
      type,
      JSON.stringify(state),
    );
  }
  await rejects(
    async () =>
      await obfs4.server({
        "node-id": "00".repeat(20),
        "private-key": "11".repeat(32),
        "drbg-seed": "22",
      }),
    TypeError,
  );
  const store = new MemoryStore();
  await store.set("obfs4_state.json", JSON.stringify(good));
  const side = await obfs4.server({ "iat-mode": "2" }, { local: store });
  strictEqual(side.clientOptions["iat-mode"], "2");
});

Deno.test("obfs4 state errors name obfs4_state.json and the key, missing or invalid, never the value", async () => {
  const store = new MemoryStore();
  await obfs4.server({}, { local: store });
  const good = JSON.parse((await store.get("obfs4_state.json"))!);
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      {},
      /^Cannot parse obfs4_state\.json: 'node-id', 'private-key' and 'drbg-seed' are missing; it is not replaced \(/,
    ],
    [
      { ...good, "drbg-seed": undefined },
      /^Cannot parse obfs4_state\.json: 'drbg-seed' is missing; it is not replaced \(/,
    ],
    [
      { ...good, "private-key": good["private-key"].slice(2) },
      /^Cannot parse obfs4_state\.json: 'private-key' must be 32 bytes of hex; it is not replaced \(/,
    ],
    [
      { ...good, "node-id": 5 },
      /^Cannot parse obfs4_state\.json: 'node-id' must be 20 bytes of hex; it is not replaced \(/,
    ],
    [
      { ...good, "drbg-seed": good["drbg-seed"] + "zz" },
      /^Cannot parse obfs4_state\.json: 'drbg-seed' must be 24 bytes of hex; it is not replaced \(/,
    ],
    [
      { ...good, "public-key": "0" + good["public-key"] },
      /^Cannot parse obfs4_state\.json: 'public-key' must be 32 bytes of hex; it is not replaced \(/,
    ],
    [{ ...good, "iat-mode": 7 }, /^Cannot parse obfs4_state\.json: invalid iat-mode "7"/],
  ];
  for (const [state, message] of cases) {
    const store = new MemoryStore();
    await store.set("obfs4_state.json", JSON.stringify(state));
    await rejects(
      async () => await obfs4.server({}, { local: store }),
      (error: Error) => {
        ok(message.test(error.message), `${error.message} for ${JSON.stringify(state)}`);
        for (const key of ["private-key", "drbg-seed"]) {
          ok(!error.message.includes(good[key].slice(4, 40)), error.message);
        }
        return true;
      },
    );
  }
});

Deno.test("obfs4 client reads iat-mode as obfs4proxy does (Go's strconv.Atoi): a sign and leading zeros are allowed, 0-2 only", async () => {
  // Before, 'iat-mode=01' and '+1', which obfs4proxy takes, were refused.
  const { clientOptions } = await obfs4.server({}, { local: new MemoryStore() });
  const cert = clientOptions.cert!;
  for (const [text, mode] of [["01", 1], ["+1", 1], ["-0", 0], ["0002", 2], ["2", 2]] as const) {
    strictEqual(parseClientConfig({ cert, "iat-mode": text }).iatMode, mode, text);
  }
  for (const text of ["3", "+3", "-1", "1.0", " 1", "1 ", "0x1", "", "++1", "1e0"]) {
    throws(() => parseClientConfig({ cert, "iat-mode": text }), RangeError, JSON.stringify(text));
  }
});

/** A MemoryStore that records each key written. */
class CountingStore extends MemoryStore {
  written: string[] = [];
  override set(key: string, value: string): Promise<void> {
    this.written.push(key);
    return super.set(key, value);
  }
}

Deno.test("obfs4 server: an iat-mode option is saved into obfs4_state.json (keys untouched, the change told) and the bridge line follows", async () => {
  const store = new CountingStore();
  const first = await obfs4.server({}, { local: store });
  const stored = (await store.get("obfs4_state.json"))!;
  store.written = [];
  const notices: string[] = [];
  const config = await loadServerConfig(
    { "iat-mode": "2" },
    store,
    undefined,
    undefined,
    (message) => notices.push(message),
  );
  strictEqual(config.iatMode, 2);
  deepStrictEqual(store.written.sort(), ["obfs4_bridgeline.txt", "obfs4_state.json"]);
  // Only iat-mode changed: every other member is as it was, byte for byte.
  deepStrictEqual(
    JSON.parse((await store.get("obfs4_state.json"))!),
    { ...JSON.parse(stored), "iat-mode": 2 },
  );
  ok(
    (await store.get("obfs4_bridgeline.txt"))!.includes(
      `cert=${first.clientOptions.cert} iat-mode=2\n`,
    ),
  );
  deepStrictEqual(notices, [
    "obfs4_state.json: iat-mode changed from 0 to 2 (given in the server transport options); the keys are unchanged",
  ]);
  // The next start without the option keeps iat-mode 2 and writes nothing.
  store.written = [];
  const again = await obfs4.server({}, { local: store });
  strictEqual(again.clientOptions["iat-mode"], "2");
  strictEqual(again.clientOptions.cert, first.clientOptions.cert);
  deepStrictEqual(store.written, []);
  // The same iat-mode given again changes nothing either.
  await loadServerConfig({ "iat-mode": "2" }, store, undefined, undefined, (m) => notices.push(m));
  deepStrictEqual(store.written, []);
  strictEqual(notices.length, 1);
});

Deno.test("obfs4 server writes a missing or stale obfs4_bridgeline.txt on every start, not only the first", async () => {
  const store = new CountingStore();
  const first = await obfs4.server({}, { local: store });
  const line = (await store.get("obfs4_bridgeline.txt"))!;
  // Only the state file, as when obfs4proxy's obfs4_state.json is restored from a backup.
  const restored = new CountingStore();
  await restored.set("obfs4_state.json", (await store.get("obfs4_state.json"))!);
  restored.written = [];
  deepStrictEqual((await obfs4.server({}, { local: restored })).clientOptions, first.clientOptions);
  strictEqual(await restored.get("obfs4_bridgeline.txt"), line);
  deepStrictEqual(restored.written, ["obfs4_bridgeline.txt"]);
  // A stale or edited one is put right.
  await restored.set("obfs4_bridgeline.txt", "edited");
  restored.written = [];
  await obfs4.server({}, { local: restored });
  strictEqual(await restored.get("obfs4_bridgeline.txt"), line);
  deepStrictEqual(restored.written, ["obfs4_bridgeline.txt"]);
});

Deno.test("obfs4 client rejects an oversized server answer without a mark", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const client = (await obfs4.client(server.clientOptions)).pair({});
  const w = client.decode.writable.getWriter();
  w.write(crypto.getRandomValues(new Uint8Array(5000))).catch(() => {});
  w.write(crypto.getRandomValues(new Uint8Array(5000))).catch(() => {});
  await rejects(() => client.ready!, /mark not found/);
  await client.encode.readable.cancel().catch(() => {});
});

Deno.test("obfs4 client reports a server that closes during the handshake", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const client = (await obfs4.client(server.clientOptions)).pair({});
  const w = client.decode.writable.getWriter();
  await w.write(new Uint8Array(50));
  w.close().catch(() => {});
  await rejects(() => client.ready!, /closed the connection/);
  await client.encode.readable.cancel().catch(() => {});
});

Deno.test("obfs4 client takes the bridge from per-connection settings", async () => {
  const serverStore = new MemoryStore();
  const server = await obfs4.server({}, { local: serverStore });
  const client = await obfs4.client({});
  throws(() => client.pair({}), TypeError);
  throws(() => client.pair({ cert: server.clientOptions.cert! }), TypeError);
  await roundTrip(client.pair(server.clientOptions), server.pair(), [2000]);
  const other = await obfs4.server({}, { local: new MemoryStore() });
  const fixed = await obfs4.client(other.clientOptions);
  await roundTrip(fixed.pair(server.clientOptions), server.pair(), [10]);
  // Legacy arguments with a connection name its bridge over the options' cert.
  const state = JSON.parse((await serverStore.get("obfs4_state.json"))!);
  const legacy = {
    "node-id": state["node-id"],
    "public-key": state["public-key"],
    "iat-mode": "0",
  };
  await roundTrip(fixed.pair(legacy), server.pair(), [10]);
});

Deno.test("obfs4 server decodes a chunk of many small frames a slice at a time, giving the event loop turns", async () => {
  // A client that knows the bridge line chooses its frame sizes: 12,000
  // frames of one byte are 264,000 bytes, one read, and were all decoded
  // at once (a 256 KiB read kept every other connection waiting for over
  // half a second). Now 32 KiB at a time while frames are that small.
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const pair = server.pair();
  const crypto = await loadWasmCrypto();
  const hs = new ClientHandshake(crypto, parseClientConfig(server.clientOptions).identity);
  const toServer = pair.decode.writable.getWriter();
  const fromServer = pair.encode.readable.getReader();
  const decoded = pair.decode.readable.getReader();
  void toServer.write(hs.message);
  let received: Uint8Array = new Uint8Array(0);
  let result;
  while ((result = hs.parse(received)) === undefined) {
    const { value, done } = await fromServer.read();
    ok(!done, "the server answers the handshake");
    received = concat(received, value);
  }
  await pair.ready;
  const encoder = new FrameEncoder(result.keys.subarray(0, 72), crypto);
  const frames = 12_000;
  const wire = concat(
    ...Array.from({ length: frames }, () => encoder.encode(packet(new Uint8Array(1)))),
  );
  const { got, atTimer } = await bytesBeforeTimer(() => toServer.write(wire), decoded, frames);
  strictEqual(got, frames);
  // Before: all 12,000 were decoded (and read) before a timer due at once
  // ran; now one slice's 1,489.
  const seen = atTimer < 0 ? "all" : String(atTimer);
  ok(atTimer >= 0 && atTimer < frames / 2, `${seen} of ${frames} bytes decoded before a timer ran`);
  await toServer.close();
  fromServer.releaseLock();
  await pair.encode.readable.cancel().catch(() => {});
  await pair.encode.writable.close().catch(() => {});
});

Deno.test("obfs4 client takes the bridge's length table at its first read after the handshake, as obfs4proxy's: its first writes draw from its own", async () => {
  // A bridge whose table holds the length 0 alone: every burst a client
  // pads with it ends on a 1448-byte boundary.
  const { keys } = await generateServerConfig(0);
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const server = await obfs4.server({
    "node-id": hex(keys.nodeId),
    "private-key": hex(keys.secretKey),
    "drbg-seed": hex(ZERO_ONLY_SEED),
  }, {});
  const client = await obfs4.client(server.clientOptions);
  let firstOnBoundary = 0;
  const CONNECTIONS = 8;
  for (let i = 0; i < CONNECTIONS; i++) {
    const c = client.pair({});
    const s = server.pair();
    const wire: number[] = [];
    const up = c.encode.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform: (chunk, controller) => {
          wire.push(chunk.length);
          controller.enqueue(chunk);
        },
      }),
    ).pipeTo(s.decode.writable);
    const down = s.encode.readable.pipeTo(c.decode.writable);
    await Promise.all([c.ready, s.ready]);
    const cw = c.encode.writable.getWriter();
    const sw = s.encode.writable.getWriter();
    // Before anything more came from the server (the seed came with its handshake).
    await Promise.all([cw.write(new Uint8Array(100)), collect(s.decode.readable, 100)]);
    if (wire[1]! % 1448 === 0) firstOnBoundary++;
    await Promise.all([sw.write(new Uint8Array(10)), collect(c.decode.readable, 10)]);
    // After a read: the bridge's table.
    await Promise.all([cw.write(new Uint8Array(100)), collect(s.decode.readable, 100)]);
    strictEqual(wire.length, 3);
    strictEqual(wire[2]! % 1448, 0, "after the first read the client pads with the bridge's table");
    await cw.close();
    await sw.close();
    await Promise.all([up, down]);
  }
  ok(
    firstOnBoundary < CONNECTIONS,
    "every first write was padded with the bridge's table, before the client's first read",
  );
});

/**
 * Copy what `readable` gives into `writable` through one buffer, `step`
 * bytes a write, the buffer overwritten once each write resolved: as a
 * transport connection reads its socket into one buffer again and again.
 */
async function pipeReusing(
  readable: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  step: number,
): Promise<void> {
  const buffer = new Uint8Array(step);
  const writer = writable.getWriter();
  for await (const chunk of readable) {
    for (let at = 0; at < chunk.length; at += step) {
      const piece = chunk.subarray(at, at + step);
      buffer.set(piece);
      await writer.write(buffer.subarray(0, piece.length));
      buffer.fill(0xee);
    }
  }
  await writer.close();
}

Deno.test("obfs4 decoders keep nothing of a chunk once its write resolved: the writer may read into it again", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const client = await obfs4.client(server.clientOptions);
  const [c, s] = [client.pair({}), server.pair()];
  // Pieces shorter than a frame and than a handshake: each decoder waits
  // on bytes it was given in an earlier write.
  const up = pipeReusing(c.encode.readable, s.decode.writable, 97);
  const down = pipeReusing(s.encode.readable, c.decode.writable, 61);
  await Promise.all([c.ready, s.ready]);
  const cw = c.encode.writable.getWriter();
  const sw = s.encode.writable.getWriter();
  for (const size of [1, 1427, 5000, 65536]) {
    const data = crypto.getRandomValues(new Uint8Array(size));
    const [, got] = await Promise.all([cw.write(data), collect(s.decode.readable, size)]);
    deepStrictEqual(got, data);
    const [, back] = await Promise.all([sw.write(data), collect(c.decode.readable, size)]);
    deepStrictEqual(back, data);
  }
  await cw.close();
  await sw.close();
  await Promise.all([up, down]);
});

Deno.test("an obfs4 handshake sent one byte per read is copied about once on either side, not each byte again with every byte after it", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const client = await obfs4.client(server.clientOptions);
  const junk = crypto.getRandomValues(new Uint8Array(8000));
  for (const pair of [server.pair(), client.pair({})]) {
    const encoded = pair.encode.readable.getReader();
    const writer = pair.decode.writable.getWriter();
    void pair.decode.readable.pipeTo(new WritableStream()).catch(() => {});
    // The client's handshake (the server sends nothing) is taken off.
    void encoded.read().catch(() => {});
    // Bytes copied by Uint8Array#set while the handshake bytes come in.
    const { copied } = await bytesCopiedBy(async () => {
      for (let i = 0; i < junk.length; i++) await writer.write(junk.subarray(i, i + 1));
    });
    // 32 million before: each read was joined with all the bytes before it.
    ok(copied < 4 * junk.length, `${copied} bytes copied for ${junk.length} bytes one at a time`);
    await writer.abort(new Error("done")).catch(() => {});
    await encoded.cancel().catch(() => {});
    await pair.ready?.catch(() => {});
  }
});
