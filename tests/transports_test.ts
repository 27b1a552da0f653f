// Copyright the ptkit authors. MIT license.
// Unit tests of the transport helpers, on in-memory streams.

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert";
import { layerTransports, mapChunks, MemoryStore } from "../transports/mod.ts";
import { layerPairs } from "../transports/layer.ts";
import { plain } from "../transports/plain.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import { rot } from "./rot_transport.ts";

async function roundTrip(
  encode: TransformStream<Uint8Array, Uint8Array>,
  decode: TransformStream<Uint8Array, Uint8Array>,
  input: Uint8Array[],
): Promise<{ wire: Uint8Array; out: Uint8Array }> {
  const wireChunks: Uint8Array[] = [];
  const tee = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      wireChunks.push(chunk.slice());
      c.enqueue(chunk);
    },
  });
  const writing = (async () => {
    const w = encode.writable.getWriter();
    for (const chunk of input) await w.write(chunk);
    await w.close();
  })();
  const outChunks: Uint8Array[] = [];
  await Promise.all([
    writing,
    encode.readable.pipeThrough(tee).pipeTo(decode.writable),
    (async () => {
      for await (const chunk of decode.readable) outChunks.push(chunk);
    })(),
  ]);
  const join = (cs: Uint8Array[]) => new Uint8Array(cs.flatMap((c) => [...c]));
  return { wire: join(wireChunks), out: join(outChunks) };
}

Deno.test("layerTransports stacks rot over rot: bytes change on the wire and come back", async () => {
  const outer = { ...rot, name: "outer" };
  const stacked = layerTransports("double", [rot, outer]);
  const server = await stacked.server({ "rot_by_N.n": "1", "outer.n": "2" });
  deepStrictEqual(server.clientOptions, { "rot_by_N.n": "1", "outer.n": "2" });
  const client = await stacked.client(server.clientOptions);
  const c = client.pair({});
  const s = server.pair();
  const { wire, out } = await roundTrip(c.encode, s.decode, [new Uint8Array([0, 1, 254])]);
  deepStrictEqual(wire, new Uint8Array([3, 4, 1]));
  deepStrictEqual(out, new Uint8Array([0, 1, 254]));
});

Deno.test("layerPairs combines ready promises and propagates errors", async () => {
  let fail!: (e: unknown) => void;
  const failing = new Promise<void>((_, reject) => fail = reject);
  failing.catch(() => {});
  const pair = layerPairs(
    { encode: new TransformStream(), decode: new TransformStream(), ready: Promise.resolve() },
    { encode: new TransformStream(), decode: new TransformStream(), ready: failing },
  );
  fail(new Error("bad handshake"));
  let message = "";
  await pair.ready!.catch((e: Error) => message = e.message);
  strictEqual(message, "bad handshake");
});

Deno.test("mapChunks drops empty results and plain passes bytes unchanged", async () => {
  const { out } = await roundTrip(
    mapChunks((c) => c.subarray(1)),
    new TransformStream(),
    [new Uint8Array([9]), new Uint8Array([1, 2])],
  );
  deepStrictEqual(out, new Uint8Array([2]));
  const client = (await plain.client({})).pair({});
  const server = (await plain.server({})).pair();
  const result = await roundTrip(client.encode, server.decode, [new Uint8Array([5, 6, 7])]);
  deepStrictEqual(result.wire, new Uint8Array([5, 6, 7]));
});

Deno.test("mapChunks refuses a function that returns no Uint8Array with a TypeError naming the type", async () => {
  for (
    const [result, type] of [
      [undefined, "undefined"],
      [null, "null"],
      ["SECRET", "string"],
      [[1, 2], "Array"],
      [new ArrayBuffer(2), "ArrayBuffer"],
    ] as const
  ) {
    const map = mapChunks(() => result as unknown as Uint8Array);
    const writing = map.writable.getWriter().write(new Uint8Array([1]));
    const error = await map.readable.getReader().read().then(() => undefined, (e: unknown) => e);
    await writing.catch(() => {});
    ok(error instanceof TypeError);
    strictEqual(
      error.message,
      `Cannot map a chunk: the function given to mapChunks must return a Uint8Array, got ${type}`,
    );
  }
});

Deno.test("mapChunks refuses what is not a function at once, with a TypeError naming its type", () => {
  // It was taken, and the first chunk failed its connection with
  // JavaScript's 'fn is not a function'.
  for (const [value, type] of [[undefined, "undefined"], [null, "null"], [3, "number"]] as const) {
    throws(
      () => mapChunks(value as unknown as (chunk: Uint8Array) => Uint8Array),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message === `Cannot make a mapChunks stream: expected a function, got ${type}`,
    );
  }
});

Deno.test("layerTransports refuses layers that are not an array of transports with a TypeError naming the layer", () => {
  // These failed with JavaScript's 'layers.slice is not a function' and
  // 'Cannot read properties of null (reading 'name')'.
  throws(
    () => layerTransports("stack", plain as unknown as []),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot layer transport 'stack': layers must be an array of transports, got object",
  );
  throws(
    () => layerTransports("stack", [plain, null as unknown as typeof plain]),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message.startsWith(
        "Cannot layer transport 'stack' (layer 1): transport must be a Transport",
      ),
  );
  strictEqual(layerTransports("stack", [rot, plain]).name, "stack");
});

Deno.test("MemoryStore keeps values per key", async () => {
  const store = new MemoryStore();
  await store.set("a", "1");
  await store.set("a", "2");
  strictEqual(await store.get("a"), "2");
  strictEqual(await store.get("b"), undefined);
});

Deno.test("layerTransports: a free first layer makes a free stack; a free outer layer is refused", async () => {
  const { shadowsocks } = await import("../transports/shadowsocks/mod.ts");
  const stacked = layerTransports("ss_over_plain", [shadowsocks, plain]);
  deepStrictEqual(stacked.free, true);
  deepStrictEqual(layerTransports("plain_only", [plain]).free, undefined);
  throws(() => layerTransports("bad", [plain, shadowsocks]), /only the first \(innermost\) layer/);
  // The client pair hands the destination to the Shadowsocks layer: without
  // one, it refuses (a free transport needs its destination).
  const side = await stacked.client({
    "shadowsocks.method": "aes-128-gcm",
    "shadowsocks.password": "x",
  });
  throws(() => side.pair({}), TypeError);
  const pair = side.pair({}, { hostname: "example.com", port: 80 });
  ok(pair.encode.writable instanceof WritableStream);
});

Deno.test("A stack's server keeps the TCP keepalive of its wire layer (obfs4's 15 s), and none when that layer has none", async () => {
  const generated = await obfs4.generateConfig!();
  const server = Object.fromEntries(
    Object.entries(generated.server).map(([key, value]) => [`obfs4.${key}`, value]),
  );
  const env = { local: new MemoryStore() };
  const alone = await obfs4.server(generated.server, env);
  strictEqual(alone.keepAlive, 15);
  alone.close?.();
  const outer = await layerTransports("plainobfs4", [plain, obfs4]).server(server, env);
  strictEqual(outer.keepAlive, 15);
  const inner = await layerTransports("obfs4plain", [obfs4, plain]).server(server, env);
  strictEqual(inner.keepAlive, undefined);
  for (const side of [outer, inner]) side.close?.();
});

Deno.test("A stack's server pair holds probes when the layer probes meet holds them (Shadowsocks under a wire layer without a handshake), and not under obfs4", async () => {
  const generated = await obfs4.generateConfig!();
  const env = { local: new MemoryStore() };
  const credentials = { method: "chacha20-ietf-poly1305", password: "stack-probe" };
  const config = (first: string, second: string) => ({
    ...Object.fromEntries(
      Object.entries(credentials).map(([key, value]) => [`shadowsocks.${key}`, value]),
    ),
    ...(first === "obfs4" || second === "obfs4"
      ? Object.fromEntries(
        Object.entries(generated.server).map(([key, value]) => [`obfs4.${key}`, value]),
      )
      : {}),
  });
  const alone = await shadowsocks.server(credentials, env);
  strictEqual(alone.pair().holdsProbes, true);
  alone.close?.();
  const cases = [
    [shadowsocks, plain, true],
    [shadowsocks, obfs4, undefined],
  ] as const;
  for (const [first, second, expected] of cases) {
    const name = `${first.name}_${second.name}`;
    const side = await layerTransports(name, [first, second]).server(
      config(first.name, second.name),
      env,
    );
    strictEqual(side.pair().holdsProbes, expected, name);
    side.close?.();
  }
});

Deno.test("layerTransports: a layer's refusal of its options names the stack and the layer (its keys' prefix), and keeps its class and cause", async () => {
  const stacked = layerTransports("ss_obfs4", [shadowsocks, obfs4]);
  const generated = await stacked.generateConfig!();
  // A client given the server's clientOptions alone: the password is
  // missing, and the user wrote (or forgot) 'shadowsocks.password', not
  // 'password'.
  const client = { ...generated.client };
  delete client["shadowsocks.key"];
  let refused: unknown;
  try {
    await stacked.client(client);
  } catch (error) {
    refused = error;
  }
  ok(refused instanceof TypeError, String(refused));
  strictEqual(
    refused.message,
    "Cannot configure transport 'ss_obfs4': its layer 'shadowsocks' refused its options: " +
      "Cannot configure shadowsocks: missing option 'password' (or 'key')",
  );
  ok(refused.cause instanceof TypeError);
  // The server side, and a RangeError stays a RangeError.
  let rangeRefused: unknown;
  try {
    await stacked.server({ ...generated.server, "obfs4.iat-mode": "3" });
  } catch (error) {
    rangeRefused = error;
  }
  ok(rangeRefused instanceof RangeError, String(rangeRefused));
  ok(
    rangeRefused.message.startsWith(
      "Cannot configure transport 'ss_obfs4': its layer 'obfs4' refused its options: ",
    ),
    rangeRefused.message,
  );
  ok(rangeRefused.message.includes("iat-mode"), rangeRefused.message);
});
