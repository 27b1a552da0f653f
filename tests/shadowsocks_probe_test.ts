// Copyright the ptkit authors. MIT license.
// Probe resistance of ptkit's Shadowsocks server over real TCP: a replayed
// client stream and 1000 random-garbage connections get no byte back, never
// reach the target, and leave memory bounded; a good client still works.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { createConnector } from "../client.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import { ptkitServer, startSsLibev } from "./shadowsocks_util.ts";
import { tcpServer } from "./_util.ts";
import { ChunkEncoder } from "../transports/shadowsocks/_framing.ts";
import { evpBytesToKey, METHODS as METHOD_INFO } from "../transports/shadowsocks/_methods.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { concat } from "../transports/_bytes.ts";

const OPTIONS = { method: "chacha20-ietf-poly1305", password: "probe-test" };
const utf8 = (s: string) => new TextEncoder().encode(s);

/** Send `wire`, half-close (or not), and read until the server closes: the bytes we got. */
async function probe(port: number, wire: Uint8Array, halfClose = true): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(wire).catch(() => 0);
    if (halfClose) await conn.closeWrite().catch(() => {});
    let got = 0;
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return got;
      got += n;
    }
  } finally {
    conn.close();
  }
}

/** A target that answers "pong" and counts connections and bytes. */
function pongTarget() {
  let received = 0;
  const server = tcpServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    const n = await conn.read(buffer);
    received += n ?? 0;
    await conn.write(utf8("pong"));
  });
  return { ...server, received: () => received };
}

/** What a ptkit client sends for `data` to `port` (recorded from the wire). */
async function recordClient(port: number, data: Uint8Array): Promise<Uint8Array> {
  const recorder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(shadowsocks, OPTIONS);
  const conn = await connector.dial({
    port: recorder.addr.port,
    destination: { hostname: "127.0.0.1", port },
  });
  const writer = conn.writable.getWriter();
  await writer.write(data);
  const peer = await recorder.accept();
  const chunks: number[] = [];
  const buffer = new Uint8Array(4096);
  // The request and data arrive together, in two chunks: wait for their bytes.
  while (chunks.length < 32 + (18 + 7 + 16) + (18 + data.length + 16)) {
    const n = await peer.read(buffer);
    if (n === null) break;
    chunks.push(...buffer.subarray(0, n));
  }
  peer.close();
  conn.close();
  recorder.close();
  return Uint8Array.from(chunks);
}

Deno.test("shadowsocks server over TCP: a replayed client stream gets no byte and never reaches the target", async () => {
  const target = pongTarget();
  await using server = await ptkitServer(OPTIONS, { drainTimeout: 2000 });
  const wire = await recordClient(target.port, utf8("ping"));
  // The recording is a valid client: the first time it reaches the target.
  const first = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await first.write(wire);
  const answer = new Uint8Array(1024);
  ok((await first.read(answer) ?? 0) > 32, "the recorded stream works once");
  first.close();
  strictEqual(target.accepted(), 1);
  // Replayed: silence until we close, and the target sees nothing more.
  strictEqual(await probe(server.addr.port, wire), 0);
  // Replayed without closing: silence until the server's drain deadline.
  strictEqual(await probe(server.addr.port, wire, false), 0);
  strictEqual(target.accepted(), 1);
  strictEqual(target.received(), 4);
  await target.close();
});

Deno.test("shadowsocks server over TCP: 1000 random-garbage connections get no byte back, memory stays bounded, a client still works", async () => {
  const target = pongTarget();
  await using server = await ptkitServer(OPTIONS, { drainTimeout: 3000 });
  const before = Deno.memoryUsage().heapUsed;
  let bytesBack = 0;
  const BATCH = 25;
  for (let i = 0; i < 1000; i += BATCH) {
    const results = await Promise.all(
      Array.from({ length: BATCH }, (_, j) => {
        // Sizes around the salt and first chunk: 1 byte to 2 KiB, and some 20 KiB.
        const size = (i + j) % 10 === 0 ? 20_000 : 1 + ((i * 7 + j * 131) % 2048);
        return probe(server.addr.port, crypto.getRandomValues(new Uint8Array(size)));
      }),
    );
    bytesBack += results.reduce((a, b) => a + b, 0);
  }
  strictEqual(bytesBack, 0);
  strictEqual(target.accepted(), 0);
  const grown = Deno.memoryUsage().heapUsed - before;
  ok(grown < 64 * 1024 * 1024, `heap grew by ${grown} bytes`);
  // A real client is still served.
  const connector = await createConnector(shadowsocks, OPTIONS);
  const conn = await connector.dial({
    port: server.addr.port,
    destination: { hostname: "127.0.0.1", port: target.port },
  });
  const writer = conn.writable.getWriter();
  await writer.write(utf8("ping"));
  const { value } = await conn.readable.getReader().read();
  deepStrictEqual(new TextDecoder().decode(value), "pong");
  conn.close();
  await conn.closed;
  deepStrictEqual(server.stats().connectionsFailed >= 1000, true);
  await target.close();
});

/**
 * Open a connection, send `wire`, and watch it for `ms`: whether it was
 * closed meanwhile ("FIN", "RST") or is still open and reading ("open").
 * Then half-close it: how it ends after that, and the bytes it returned.
 */
async function holdProbe(port: number, wire: Uint8Array, ms: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(wire);
    let got = 0;
    const buffer = new Uint8Array(4096);
    const ended = (async () => {
      for (;;) {
        const n = await conn.read(buffer).catch(() => undefined);
        if (n === undefined) return "RST";
        if (n === null) return "FIN";
        got += n;
      }
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const during = await Promise.race([
      ended,
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("open"), ms)),
    ]);
    clearTimeout(timer);
    // Still open: it must still be reading, then end when we end.
    const more = during === "open" ? await conn.write(new Uint8Array(10)).catch(() => 0) : 0;
    if (during === "open") await conn.closeWrite();
    return { during, more, after: await ended, got };
  } finally {
    conn.close();
  }
}

Deno.test("shadowsocks server over TCP holds a connection that does not authenticate as long as its peer does, as ss-server (shadowsocks-libev) does", async () => {
  // This password's key gave the old keyed delay 30.013 s: ptkit closed
  // garbage then, while ss-server never closes it of its own accord.
  const options = { method: "chacha20-ietf-poly1305", password: "probe-1059" };
  await using ours = await ptkitServer(options);
  await using theirs = await startSsLibev("ss-server", options);
  const wires = [
    crypto.getRandomValues(new Uint8Array(100)),
    crypto.getRandomValues(new Uint8Array(16384)),
    // A salt and a chunk length's worth: the length's tag fails.
    crypto.getRandomValues(new Uint8Array(32 + 18)),
  ];
  const results = await Promise.all(
    [theirs.port, ours.addr.port].flatMap((port) =>
      wires.map((wire) => holdProbe(port, wire, 33_000))
    ),
  );
  const expected = { during: "open", more: 10, after: "FIN", got: 0 };
  results.forEach((r, i) => {
    const who = i < wires.length ? "ss-server" : "ptkit";
    deepStrictEqual(r, expected, `${who}, ${wires[i % wires.length]!.length} bytes`);
  });
});

Deno.test("shadowsocks server over TCP: a drain (SIGINT) closes a held probe and waits for the authenticated connection", async () => {
  const target = pongTarget();
  // No drainTimeout: probes are held as long as their peer holds them.
  await using server = await ptkitServer(OPTIONS);
  const connector = await createConnector(shadowsocks, OPTIONS);
  const client = await connector.dial({
    port: server.addr.port,
    destination: { hostname: "127.0.0.1", port: target.port },
  });
  const writer = client.writable.getWriter();
  await writer.write(utf8("ping"));
  const reader = client.readable.getReader();
  deepStrictEqual(new TextDecoder().decode((await reader.read()).value), "pong");
  const before = server.stats().wireBytesRead;
  const probe = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await probe.write(crypto.getRandomValues(new Uint8Array(100)));
  // The server reads (and drops) the probe's bytes: it is being served.
  while (server.stats().wireBytesRead < before + 100) {
    await new Promise((r) => setTimeout(r, 50));
  }
  let drained = false;
  const draining = server.drain().then(() => drained = true);
  // The probe is closed (before: held until its peer closed, and the drain with it).
  let guard: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    probe.read(new Uint8Array(16)).then((n) => n === null ? "FIN" : "data", () => "RST"),
    new Promise<string>((resolve) => guard = setTimeout(() => resolve("held"), 60_000)),
  ]);
  clearTimeout(guard);
  probe.close();
  ok(ended === "FIN" || ended === "RST", `the probe was ${ended} during the drain`);
  // The authenticated connection is not: the drain waits for it.
  strictEqual(drained, false);
  await writer.write(utf8("more"));
  client.close();
  await draining;
  strictEqual(drained, true);
  await target.close();
});

/** A client's first flight for `password`, sealed by hand from `salt`: each payload its own chunk. */
async function sealed(password: string, salt: Uint8Array, payloads: Uint8Array[]) {
  const method = METHOD_INFO["chacha20-ietf-poly1305"];
  const wasm = await loadWasmCrypto();
  const encoder = new ChunkEncoder(
    method,
    (subkey) => wasm.aead(method.algorithm, subkey)!,
    evpBytesToKey(utf8(password), method.keyLength),
    salt,
  );
  return payloads.map((payload) => encoder.encode(payload));
}

/** Send `wire` on a held connection: the first bytes the server answers (a guard fails a silent one). */
async function firstAnswer(port: number, wire: Uint8Array): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let guard: ReturnType<typeof setTimeout> | undefined;
  try {
    await conn.write(wire);
    return await Promise.race([
      conn.read(new Uint8Array(4096)).then((n) => n ?? 0, () => 0),
      new Promise<number>((resolve) => guard = setTimeout(() => resolve(-1), 10_000)),
    ]);
  } finally {
    clearTimeout(guard);
    conn.close();
  }
}

Deno.test("shadowsocks server over TCP records a salt only once a read's chunks all opened, as ss-server (shadowsocks-libev) does", async () => {
  const target = pongTarget();
  await using ours = await ptkitServer(OPTIONS);
  await using theirs = await startSsLibev("ss-server", OPTIONS);
  const request = Uint8Array.from([1, 127, 0, 0, 1, target.port >> 8, target.port & 0xff]);
  const flip = (bytes: Uint8Array) => bytes.map((b, i) => i === bytes.length - 1 ? b ^ 1 : b);
  // Each probe sends what a prober could make of a flight the server has not
  // seen yet: its salt and first length only, the flight with its payload's
  // tag broken, or the flight with a broken chunk after it in the same read.
  const probes: Record<string, (flight: Uint8Array, next: Uint8Array) => Uint8Array> = {
    "salt and length": (flight) => flight.subarray(0, 32 + 18),
    "bad payload tag": (flight) => flip(flight),
    "bad chunk after it": (flight, next) => concat(flight, flip(next)),
  };
  const results: Record<string, unknown> = {};
  for (const [server, port] of [["ss-server", theirs.port], ["ptkit", ours.addr.port]] as const) {
    for (const [name, make] of Object.entries(probes)) {
      const salt = crypto.getRandomValues(new Uint8Array(32));
      const [flight, next] = await sealed(OPTIONS.password, salt, [
        concat(request, utf8("ping")),
        utf8("more"),
      ]);
      const silent = await probe(port, make(flight!, next!));
      // The genuine flight afterwards: the server never took its salt, so it is served.
      results[`${server}, ${name}`] = { silent, served: await firstAnswer(port, flight!) > 0 };
    }
  }
  const expected = Object.fromEntries(
    Object.keys(results).map((key) => [key, { silent: 0, served: true }]),
  );
  deepStrictEqual(results, expected);
  await target.close();
});

Deno.test("shadowsocks server over TCP reads a request's address type by its low four bits, as ss-server (shadowsocks-libev) does", async () => {
  const target = pongTarget();
  await using ours = await ptkitServer(OPTIONS);
  await using theirs = await startSsLibev("ss-server", OPTIONS);
  const port = [target.port >> 8, target.port & 0xff];
  // ss-libev masks the type with 0x0F (its high bits once flagged one-time auth).
  const requests: Record<string, number[]> = {
    "0x11 (IPv4)": [0x11, 127, 0, 0, 1, ...port],
    "0xF1 (IPv4)": [0xf1, 127, 0, 0, 1, ...port],
    "0x13 (name)": [0x13, 9, ...utf8("127.0.0.1"), ...port],
  };
  const results: Record<string, boolean> = {};
  for (const [server, at] of [["ss-server", theirs.port], ["ptkit", ours.addr.port]] as const) {
    for (const [name, request] of Object.entries(requests)) {
      const salt = crypto.getRandomValues(new Uint8Array(32));
      const [flight] = await sealed(OPTIONS.password, salt, [
        concat(Uint8Array.from(request), utf8("ping")),
      ]);
      results[`${server}, ${name}`] = await firstAnswer(at, flight!) > 0;
    }
  }
  deepStrictEqual(results, Object.fromEntries(Object.keys(results).map((key) => [key, true])));
  await target.close();
});
