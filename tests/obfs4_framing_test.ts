// Copyright the ptkit authors. MIT license.

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert";
import { FrameDecoder, FrameEncoder } from "../transports/obfs4/_framing.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { CRYPTO_BACKENDS } from "./crypto_backends.ts";
import { MAX_BURST, Session } from "../transports/obfs4/_session.ts";
import { distributionValues, WeightedDist } from "../transports/obfs4/_weighted_dist.ts";
import { ClientHandshake, ServerHandshake } from "../transports/obfs4/_handshake.ts";
import { ReplayFilter } from "../transports/_replay_filter.ts";
import { generateServerConfig } from "../transports/obfs4/_config.ts";
import { HashDrbg } from "../transports/obfs4/_hash_drbg.ts";
import { SMALL_ONLY_SEED, ZERO_ONLY_SEED } from "./obfs4_live_helpers.ts";

const box = await loadWasmCrypto();
const keys = Uint8Array.from({ length: 72 }, (_, i) => i);

Deno.test("FrameDecoder waits for truncated frames and decodes them byte by byte", () => {
  const wire = new FrameEncoder(keys, box).encode(new Uint8Array([1, 2, 3]));
  strictEqual(wire.length, 2 + 16 + 3);
  const decoder = new FrameDecoder(keys, box);
  for (let n = 0; n < wire.length; n++) {
    strictEqual(decoder.decode(wire.subarray(0, n), 0), undefined);
  }
  deepStrictEqual(decoder.decode(wire, 0), { payload: new Uint8Array([1, 2, 3]), consumed: 21 });
});

Deno.test("FrameDecoder fails a length outside [16, 1446] only after a random 16 to 1446 more bytes, and rejects bad tags", () => {
  const mask = new HashDrbg(keys.slice(48, 72)).nextMask();
  const seen = new Set<number>();
  let low = Infinity;
  let high = 0;
  for (const length of [0, 15, 1447, 0xffff]) {
    for (let i = 0; i < 500; i++) {
      const wire = new Uint8Array(2 + 1446);
      wire[0] = (length ^ mask) >> 8;
      wire[1] = (length ^ mask) & 0xff;
      // Feed it byte by byte: it must wait on the length, then fail.
      const decoder = new FrameDecoder(keys, box);
      let n = 2;
      for (; n <= wire.length; n++) {
        try {
          strictEqual(decoder.decode(wire.subarray(0, n), 0), undefined);
        } catch (error) {
          ok(error instanceof SyntaxError && /invalid length/.test(error.message), String(error));
          break;
        }
      }
      const further = n - 2;
      ok(further >= 16 && further <= 1446, `failed after ${further} further bytes`);
      seen.add(further);
      low = Math.min(low, further);
      high = Math.max(high, further);
    }
  }
  // 2000 draws from 1431 values: spread over the whole range.
  ok(low < 16 + 20 && high > 1446 - 20, `further bytes ${low}..${high}`);
  ok(seen.size > 700, `only ${seen.size} distinct lengths`);
  // The stand-in length comes from the injected source, drawn without
  // modulo bias: 0xffffffff is refused, then 0 gives the shortest, 16.
  const draws = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
  const decoder = new FrameDecoder(keys, box, (b) => b.set(draws.splice(0, b.length)));
  const wire = new Uint8Array([(5 ^ mask) >> 8, (5 ^ mask) & 0xff, ...new Uint8Array(16)]);
  strictEqual(decoder.decode(wire.subarray(0, 17), 0), undefined);
  throws(() => decoder.decode(wire, 0), SyntaxError);

  const good = new FrameEncoder(keys, box).encode(new Uint8Array(100));
  good[50]! ^= 1;
  throws(() => new FrameDecoder(keys, box).decode(good, 0), /bad tag/);
  throws(() => new FrameEncoder(keys, box).encode(new Uint8Array(1431)), RangeError);
  throws(() => new FrameEncoder(new Uint8Array(71), box), RangeError);
});

Deno.test("Session rejects packets shorter than the header or with a bad length", () => {
  const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
  const session = new Session({
    sendKeys: new Uint8Array(72),
    receiveKeys: keys,
    crypto: box,
    iatMode: 0,
    lengthDist: dist,
    iatDist: dist,
    acceptSeed: true,
  });
  throws(() => session.decode(new FrameEncoder(keys, box).encode(new Uint8Array(2))), /too short/);
  const other = new Session({
    sendKeys: new Uint8Array(72),
    receiveKeys: keys,
    crypto: box,
    iatMode: 0,
    lengthDist: dist,
    iatDist: dist,
    acceptSeed: true,
  });
  throws(
    () => other.decode(new FrameEncoder(keys, box).encode(new Uint8Array([0, 0, 9, 1]))),
    /invalid payload length 9/,
  );
});

Deno.test("Session hands on the bytes of the good frames before a bad one, then throws", () => {
  const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
  for (const [bad, why] of [["tag", /bad tag/], ["packet", /invalid payload length/]] as const) {
    const session = new Session({
      sendKeys: new Uint8Array(72),
      receiveKeys: keys,
      crypto: box,
      iatMode: 0,
      lengthDist: dist,
      iatDist: dist,
      acceptSeed: true,
    });
    const encoder = new FrameEncoder(keys, box);
    const frames = [[0, 0, 3, 1, 2, 3], [0, 0, 0, 9], [0, 0, 2, 4, 5]].map((p) =>
      encoder.encode(Uint8Array.from(p))
    );
    const last = bad === "tag"
      ? encoder.encode(Uint8Array.from([0, 0, 1, 6]))
      : encoder.encode(Uint8Array.from([0, 0, 9, 6]));
    if (bad === "tag") last[10]! ^= 1;
    const wire = new Uint8Array([...frames.flatMap((f) => [...f]), ...last]);
    const handed: Uint8Array[] = [];
    throws(() => session.decode(wire, (bytes) => handed.push(bytes)), why);
    deepStrictEqual(handed, [Uint8Array.from([1, 2, 3, 4, 5])], bad);
  }
});

Deno.test("Session pads every burst and writes paranoid bursts in sampled sizes", () => {
  const dist = new WeightedDist(new Uint8Array(24).fill(3), 0, 1448);
  const make = (iatMode: 0 | 1 | 2, send: Uint8Array, receive: Uint8Array) =>
    new Session({
      sendKeys: send,
      receiveKeys: receive,
      crypto: box,
      iatMode,
      lengthDist: dist,
      iatDist: dist,
      acceptSeed: false,
    });
  const b = new Uint8Array(72).fill(7);
  for (const mode of [0, 1, 2] as const) {
    const sender = make(mode, keys, b);
    const receiver = make(0, b, keys);
    for (const size of [1, 1427, 3000]) {
      const data = crypto.getRandomValues(new Uint8Array(size));
      const writes = sender.encode(data);
      const wire = writes.reduce((n, w) => n + w.length, 0);
      ok(wire >= size + 21, `mode ${mode}: ${wire} wire bytes for ${size}`);
      if (mode === 1) ok(writes.every((w) => w.length <= 1448));
      const got = writes.map((w) => receiver.decode(w));
      deepStrictEqual(
        Uint8Array.from(got.flatMap((g) => [...g])),
        data,
      );
    }
  }
});

/**
 * A session in IAT mode 2 and one in mode 0 to decode it, both drawing
 * lengths and delays from `seed`'s tables.
 */
function paranoidPair(seed: Uint8Array): [Session, Session] {
  const dist = new WeightedDist(seed, 0, 1448);
  const session = (iatMode: 0 | 2) =>
    new Session({
      sendKeys: keys,
      receiveKeys: keys,
      crypto: box,
      iatMode,
      lengthDist: dist,
      iatDist: dist,
      acceptSeed: false,
    });
  return [session(2), session(0)];
}

Deno.test("a zero-only length table cannot stall a paranoid (iat-mode 2) session", () => {
  deepStrictEqual(distributionValues(ZERO_ONLY_SEED, 0, 1448), [0]);
  const [sender, receiver] = paranoidPair(ZERO_ONLY_SEED);
  const data = crypto.getRandomValues(new Uint8Array(5000));
  const writes = sender.encode(data);
  ok(writes.every((w) => w.length > 0 && w.length <= 1448));
  deepStrictEqual(Uint8Array.from(writes.flatMap((w) => [...receiver.decode(w)])), data);
});

Deno.test("a length table of lengths too short to pad to (a hostile bridge's seed) cannot loop a paranoid (iat-mode 2) session", () => {
  // Padding to 21 bytes or less takes two packets and overshoots by a
  // segment, which lengths of 17 then take away again: obfs4proxy loops so
  // until its memory runs out; a session pads a burst past its target at
  // most twice, then writes the rest as it is.
  deepStrictEqual(distributionValues(SMALL_ONLY_SEED, 0, 1448), [17]);
  const [sender, receiver] = paranoidPair(SMALL_ONLY_SEED);
  for (const size of [0, 1, 100, 777, 5000, 40_000]) {
    const data = crypto.getRandomValues(new Uint8Array(size));
    const writes = sender.encode(data);
    ok(writes.every((w) => w.length > 0 && w.length <= 17), `size ${size}`);
    const bursts = Math.max(1, Math.ceil(size / MAX_BURST));
    const wire = writes.reduce((n, w) => n + w.length, 0);
    ok(wire <= size + bursts * (3 * 1490 + 30 * 21), `size ${size}: ${wire} wire bytes`);
    deepStrictEqual(Uint8Array.from(writes.flatMap((w) => [...receiver.decode(w)])), data);
  }
});

Deno.test("generated bridge seeds never put the length 0 in the table clients draw from", async () => {
  // About 3.4% of seeds do; 400 draws without the screen would meet ~14.
  for (let i = 0; i < 400; i++) {
    const { drbgSeed } = await generateServerConfig(2);
    ok(!distributionValues(drbgSeed, 0, 1448).includes(0), `seed ${i}`);
  }
  // A source that can only give such a seed keeps it rather than spin.
  const config = await generateServerConfig(0, (bytes) => {
    bytes.fill(0);
    if (bytes.length === 24) bytes.set([0x42, 0x05]);
  });
  deepStrictEqual(config.drbgSeed, ZERO_ONLY_SEED);
});

Deno.test("ServerHandshake accepts a client clock one hour off, not two", async () => {
  const config = await generateServerConfig(0);
  const hour = 3_600_000;
  const now = 1_700_000_000_000;
  for (
    const [skew, accepted] of [[0, true], [hour, true], [-hour, true], [2 * hour, false]] as const
  ) {
    const client = new ClientHandshake(box, config.keys, { now: now + skew });
    const server = new ServerHandshake(box, config.keys, new ReplayFilter(), { now: () => now });
    if (accepted) {
      const step = server.parse(client.message);
      ok(step.done);
      const result = client.parse(step.response);
      deepStrictEqual(result?.keys, step.keys);
    } else {
      throws(() => server.parse(client.message), /MAC mismatch/);
    }
  }
});

Deno.test("ServerHandshake waits for a split handshake and refuses trailing bytes", async () => {
  const config = await generateServerConfig(0);
  const client = new ClientHandshake(box, config.keys, { padding: 77 });
  strictEqual(client.message.length, 32 + 77 + 32);
  const server = new ServerHandshake(box, config.keys, new ReplayFilter());
  for (let n = 0; n < client.message.length; n += 20) {
    strictEqual(server.parse(client.message.subarray(0, n)).done, false);
  }
  ok(server.parse(client.message).done);
  const padded = new ClientHandshake(box, config.keys, { padding: 8128 });
  strictEqual(padded.message.length, 8192);
  ok(new ServerHandshake(box, config.keys, new ReplayFilter()).parse(padded.message).done);
  const extra = new Uint8Array(8200);
  extra.set(padded.message);
  throws(() => new ServerHandshake(box, config.keys, new ReplayFilter()).parse(extra), SyntaxError);
});

Deno.test("Session decodes the same bytes however the wire is split, on both backends", async () => {
  for (const backend of CRYPTO_BACKENDS) {
    const box = await backend.load();
    const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
    const a = new Uint8Array(72).fill(1);
    const b = new Uint8Array(72).fill(2);
    const common = { crypto: box, iatMode: 0 as const, lengthDist: dist, iatDist: dist };
    const data = crypto.getRandomValues(new Uint8Array(50_000));
    const wire = new Session({ ...common, sendKeys: a, receiveKeys: b, acceptSeed: true })
      .encode(data)[0]!;
    for (const sizes of [[1], [7, 3000], [1447, 1], [1448], [1449, 2], [5000, 1], [100_000]]) {
      const server = new Session({ ...common, sendKeys: b, receiveKeys: a, acceptSeed: false });
      const got: Uint8Array[] = [];
      let i = 0;
      for (let off = 0; off < wire.length; i++) {
        const n = sizes[i % sizes.length]!;
        got.push(server.decode(wire.slice(off, off + n)));
        off += n;
      }
      const joined = new Uint8Array(got.reduce((n, g) => n + g.length, 0));
      let o = 0;
      for (const g of got) {
        joined.set(g, o);
        o += g.length;
      }
      deepStrictEqual(joined, data, `${backend.name}: split ${sizes}`);
    }
  }
});

Deno.test("ClientHandshake finds the server's mark however the answer is split, and the same keys", async () => {
  const config = await generateServerConfig(0);
  for (const sizes of [[1], [7], [16, 1], [1000], [3, 500, 31]]) {
    for (let round = 0; round < 4; round++) {
      const client = new ClientHandshake(box, config.keys);
      const server = new ServerHandshake(box, config.keys, new ReplayFilter());
      const step = server.parse(client.message);
      ok(step.done);
      // The answer, then the start of the first frame (which must be left).
      const wire = new Uint8Array(step.response.length + 45);
      wire.set(step.response);
      wire.fill(0xaa, step.response.length);
      let got;
      let i = 0;
      for (let n = 0; got === undefined && n < wire.length;) {
        n = Math.min(wire.length, n + sizes[i++ % sizes.length]!);
        got = client.parse(wire.subarray(0, n));
      }
      ok(got !== undefined, `answer of ${step.response.length} bytes in pieces of ${sizes}`);
      strictEqual(got.consumed, step.response.length);
      deepStrictEqual(got.keys, step.keys);
    }
  }
});

Deno.test("Session decodes into buffers given back with recycleDecoded: each lent to one chunk at a time, never one still held", () => {
  const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
  const common = { crypto: box, iatMode: 0 as const, lengthDist: dist, iatDist: dist };
  const sender = new Session({
    ...common,
    sendKeys: keys,
    receiveKeys: new Uint8Array(72),
    acceptSeed: false,
  });
  const receiver = new Session({
    ...common,
    sendKeys: new Uint8Array(72),
    receiveKeys: keys,
    acceptSeed: true,
  });
  // 40 KiB writes: their frames are decoded into spare buffers (16 KiB and up).
  const data = Array.from({ length: 8 }, () => crypto.getRandomValues(new Uint8Array(40 * 1024)));
  const decode = (i: number) => {
    const out = receiver.decode(sender.encode(data[i]!)[0]!);
    deepStrictEqual(out, data[i]);
    return out;
  };
  // Until a chunk is given back, each is its own.
  const first = decode(0);
  receiver.recycleDecoded(first);
  const a = decode(1);
  // Given back twice (a caller's mistake): kept once.
  receiver.recycleDecoded(a);
  receiver.recycleDecoded(a);
  const b = decode(2);
  const c = decode(3);
  strictEqual(b.buffer, a.buffer, "a chunk given back carries the next");
  ok(c.buffer !== b.buffer, "a buffer given back twice was lent to two chunks");
  // A chunk that was not decoded here (its holder's) is not taken.
  const foreign = new Uint8Array(new ArrayBuffer(64 * 1024), 0, 40 * 1024);
  receiver.recycleDecoded(foreign);
  const d = decode(4);
  ok(d.buffer !== foreign.buffer);
  // The chunks still held kept their bytes through later decodes.
  deepStrictEqual(b, data[2]);
  deepStrictEqual(c, data[3]);
  deepStrictEqual(d, data[4]);
});
