// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

// What tests/portable_test.ts runs in Deno, in headless Chromium and in Node
// (the last two on an esbuild bundle of this file, npm dependencies inside).
// It imports only the public transports entry points and uses only Web APIs,
// so a `Deno.*` reference anywhere under transports/ makes it throw outside
// Deno. It checks nothing itself: it reports what it saw, and the test
// compares each runtime's report with the reference vectors and with Deno's.

import {
  defineTransport,
  layerTransports,
  mapChunks,
  MemoryStore,
  plain,
  type Transport,
  type TransportPair,
} from "@ptkit/ptkit/transports";
import { bridgeCloseDelay, createObfs4, obfs4 } from "@ptkit/ptkit/transports/obfs4";
import { webtunnel } from "@ptkit/ptkit/transports/webtunnel";
import { shadowsocks } from "@ptkit/ptkit/transports/shadowsocks";

/** The Shadowsocks methods checked, each with seeds 31 + 2i and 32 + 2i. */
export const SHADOWSOCKS_METHODS: readonly string[] = [
  "chacha20-ietf-poly1305",
  "aes-128-gcm",
  "aes-256-gcm",
  "xchacha20-ietf-poly1305",
];

/**
 * What ss-local 3.3.5 sent (`-k ptkit-vector`) for a SOCKS5 CONNECT to
 * example.com:80 followed by "GET / HTTP/1.0\r\n\r\n", per method.
 */
export const SS_LOCAL_RECORDED: Readonly<Record<string, string>> = {
  "chacha20-ietf-poly1305":
    "a880f1debc5981ec04c518f554f0f8e31cb3b0fddeb97f7704d3f770fcff6c3f5b11f6d822bbc6870f59fe098478fa772836b7bb9d67667ce996d9454ad85cd8b2723fbb0bc9a2bd44ca9a4902e58bfc6b8a77d7329bb0dc988f7df8e210bd479219b8d0be21a08cf86b6d1e46cde29d938d5774bf52fc81978faec639b974f7490f95d9c2",
  "aes-128-gcm":
    "bb186bde90dcefbdb4d7a1d8b96a544ca14ee737e1b2f270650ba0e23ceb1b095dadfbb98f8147a3c545687780d7fc02d10dc9ae9f387a4f6a3dfabda92b39f682ef869cf11764500e30de4ec4829e15780ec3facae48e124180c67f2e71b7efb793bbc407fad72051a86ec927fe1e80c22bb35c1d",
};

/** Bytes sent each way through the fixed-key obfs4 pair. */
export const ROUND_TRIP_BYTES = 1 << 20;
/** Bytes sent each way through the plain, layered and IAT-mode-1 pairs. */
export const SMALL_BYTES = 64 * 1024;

/**
 * The server keys of the reference ntor vector (NODEID 00..13, b = 0x33 x
 * 32) and the reference Hash DRBG seed (00..17).
 */
export const FIXED_SERVER: Readonly<Record<string, string>> = {
  "node-id": "000102030405060708090a0b0c0d0e0f10111213",
  "private-key": "33".repeat(32),
  "drbg-seed": "000102030405060708090a0b0c0d0e0f1011121314151617",
  "iat-mode": "0",
};

/** The clock both fixed-key sides read (its hour goes into the handshake MACs). */
export const FIXED_NOW = 1_700_000_000_000;

/**
 * Drbg seeds whose bridge close delay is known: the reference Hash DRBG
 * seed (its first block, 0x28b572b8... as Go's Int31n(60) draws it, gives
 * 24) and four seeds obfs4proxy 0.0.14 was measured with (7, 12, 33, 41 s).
 */
export const CLOSE_DELAY_SEEDS: readonly string[] = [
  "000102030405060708090a0b0c0d0e0f1011121314151617",
  "34ef457b6c73a2f3802934d9acfa3545a3015857d64bbdcf",
  "55b13952dc98227aeda869d56d69422ac424f3113d77391b",
  "3b45f1f6a3c8f0148edefb34452e6e18c14e9dd61373163a",
  "fd2a221c3ee4970fefd804117e8ad3df9e93d41773bdc97f",
];

/** What one runtime saw. Byte strings are lowercase hex. */
export interface PortableReport {
  /** `navigator.userAgent`, or the runtime's own name and version. */
  readonly runtime: string;
  /** The fixed-key server's client options (`cert`, `iat-mode`). */
  readonly clientOptions: Readonly<Record<string, string>>;
  /** `bridgeCloseDelay` of each of {@linkcode CLOSE_DELAY_SEEDS}, in seconds. */
  readonly closeDelays: readonly number[];
  /** The fixed-key client's first wire chunk: its handshake message. */
  readonly clientHandshake: string;
  /** The fixed-key server's first wire chunk: its handshake answer and seed frame. */
  readonly serverHandshake: string;
  /** SHA-256 of what the server decoded, and of what the client decoded. */
  readonly upDigest: string;
  readonly downDigest: string;
  /** Both sides saw the end of the stream after the other closed its writable. */
  readonly bothEnded: boolean;
  /** SHA-256 of each small round trip, both directions concatenated. */
  readonly plainDigest: string;
  readonly layeredDigest: string;
  readonly iatDigest: string;
  /** WebTunnel's upgrade exchange, then its raw bytes. */
  readonly webtunnelDigest: string;
  /** WebTunnel's connection plan for a bridge line's placeholder address. */
  readonly webtunnelPlan: string;
  /** The keys the layered transport reported as ignored. */
  readonly ignored: readonly string[];
  /** Per Shadowsocks method: the destination the server read, and the small round trip's SHA-256. */
  readonly shadowsocks: readonly { method: string; destination: string; digest: string }[];
  /** Per method of {@linkcode SS_LOCAL_RECORDED}: `host:port payload` as ptkit's server read it. */
  readonly shadowsocksRecorded: readonly string[];
}

/**
 * A deterministic byte source (splitmix32): the same fills in every runtime.
 *
 * @param seed Picks the sequence.
 * @returns A `random` hook for `createObfs4`.
 */
export function seededRandom(seed: number): (bytes: Uint8Array) => void {
  let state = seed >>> 0;
  return (bytes) => {
    for (let i = 0; i < bytes.length; i++) {
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      bytes[i] = (z ^ (z >>> 16)) & 0xff;
    }
  };
}

/**
 * Deterministic test data.
 *
 * @param seed Picks the data.
 * @param length Its length in bytes.
 * @returns The bytes.
 */
export function payload(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  seededRandom(seed)(out);
  return out;
}

/**
 * Lowercase hex.
 *
 * @param bytes The bytes.
 * @returns Their hex.
 */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/**
 * SHA-256 with WebCrypto.
 *
 * @param bytes The data.
 * @returns Its digest in hex.
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/** Pass chunks through, keeping a copy of the first one. */
function firstChunk(): { tap: TransformStream<Uint8Array, Uint8Array>; first: Promise<string> } {
  let resolve!: (hex: string) => void;
  const first = new Promise<string>((r) => resolve = r);
  let seen = false;
  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (!seen) {
        seen = true;
        resolve(toHex(chunk));
      }
      controller.enqueue(chunk);
    },
  });
  return { tap, first };
}

/** Read exactly `length` bytes, then report whether the stream ended there. */
async function readAll(
  readable: ReadableStream<Uint8Array>,
  length: number,
): Promise<{ data: Uint8Array<ArrayBuffer>; ended: () => Promise<boolean> }> {
  const reader = readable.getReader();
  const data = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const { value, done } = await reader.read();
    if (done) break;
    if (got + value.length > length) throw new RangeError(`Received more than ${length} bytes`);
    data.set(value, got);
    got += value.length;
  }
  if (got !== length) throw new RangeError(`Received ${got} bytes, expected ${length}`);
  return { data, ended: async () => (await reader.read()).done };
}

async function writeAll(writable: WritableStream<Uint8Array>, data: Uint8Array): Promise<void> {
  const writer = writable.getWriter();
  for (let i = 0; i < data.length; i += 65536) await writer.write(data.slice(i, i + 65536));
  await writer.close();
}

interface Exchange {
  readonly up: Uint8Array<ArrayBuffer>;
  readonly down: Uint8Array<ArrayBuffer>;
  readonly bothEnded: boolean;
  readonly clientFirst: string;
  readonly serverFirst: string;
}

/**
 * Wire a client pair to a server pair in memory and send `up` from the
 * client and `down` from the server at the same time, then close both.
 */
async function exchange(
  client: TransportPair,
  server: TransportPair,
  up: Uint8Array,
  down: Uint8Array,
): Promise<Exchange> {
  const clientTap = firstChunk();
  const serverTap = firstChunk();
  const wires = Promise.all([
    client.encode.readable.pipeThrough(clientTap.tap).pipeTo(server.decode.writable),
    server.encode.readable.pipeThrough(serverTap.tap).pipeTo(client.decode.writable),
  ]);
  await Promise.all([client.ready, server.ready]);
  const [, , atServer, atClient] = await Promise.all([
    writeAll(client.encode.writable, up),
    writeAll(server.encode.writable, down),
    readAll(server.decode.readable, up.length),
    readAll(client.decode.readable, down.length),
  ]);
  const bothEnded = (await atServer.ended()) && (await atClient.ended());
  await wires;
  return {
    up: atServer.data,
    down: atClient.data,
    bothEnded,
    clientFirst: await clientTap.first,
    serverFirst: await serverTap.first,
  };
}

async function smallDigest(transport: Transport, server: Record<string, string>, seed: number) {
  const local = new MemoryStore();
  const serverSide = await transport.server(server, { local });
  const clientSide = await transport.client(serverSide.clientOptions);
  const result = await exchange(
    clientSide.pair({}),
    serverSide.pair(),
    payload(seed, SMALL_BYTES),
    payload(seed + 1, SMALL_BYTES),
  );
  const both = new Uint8Array(2 * SMALL_BYTES);
  both.set(result.up);
  both.set(result.down, SMALL_BYTES);
  return sha256Hex(both);
}

function runtimeName(): string {
  const g = globalThis as {
    navigator?: { userAgent?: string };
    process?: { versions?: { node?: string } };
  };
  const node = g.process?.versions?.node;
  return g.navigator?.userAgent ?? (node === undefined ? "unknown" : `Node.js/${node}`);
}

/**
 * Run every check and report what was seen. The fixed-key obfs4 pair uses
 * {@linkcode seededRandom} (client seed 2, server seed 1) and
 * {@linkcode FIXED_NOW}, so its handshake bytes are the same in every
 * runtime; the other pairs use the real clock and randomness.
 *
 * @returns The report.
 */
export async function runPortableChecks(): Promise<PortableReport> {
  const now = () => FIXED_NOW;
  const serverTransport = createObfs4({ random: seededRandom(1), now });
  const clientTransport = createObfs4({ random: seededRandom(2), now });
  const server = await serverTransport.server(FIXED_SERVER);
  const client = await clientTransport.client(server.clientOptions);
  const fixed = await exchange(
    client.pair({}),
    server.pair(),
    payload(11, ROUND_TRIP_BYTES),
    payload(12, ROUND_TRIP_BYTES),
  );

  // The contract helpers: a transport defined in a few lines, layered under
  // obfs4 (real randomness, state kept in a MemoryStore).
  const shift = (n: number) => mapChunks((chunk) => chunk.map((b) => (b + n) & 0xff));
  const rot = defineTransport({
    name: "rot",
    optionKeys: { client: ["n"], server: ["n"] },
    parseConfig: (config) => Number(config.n ?? "13"),
    clientOptions: (n) => ({ n: String(n) }),
    pair: (n) => ({ encode: shift(n), decode: shift(-n) }),
  });
  const layered = layerTransports("rot_obfs4", [rot, obfs4]);
  const ignored: string[] = [];
  await layered.client({ "rot.n": "7", "obfs4.iatMode": "1" }, {
    onIgnoredOption: ({ key, suggestion }) => ignored.push(`${key}->${suggestion ?? ""}`),
  });

  const ss: { method: string; destination: string; digest: string }[] = [];
  for (const [i, method] of SHADOWSOCKS_METHODS.entries()) {
    const options = { method, password: "portable" };
    const server = (await shadowsocks.server(options)).pair();
    const client = (await shadowsocks.client(options)).pair({}, {
      hostname: "example.com",
      port: 443,
    });
    const result = await exchange(
      client,
      server,
      payload(31 + 2 * i, SMALL_BYTES),
      payload(32 + 2 * i, SMALL_BYTES),
    );
    const both = new Uint8Array(2 * SMALL_BYTES);
    both.set(result.up);
    both.set(result.down, SMALL_BYTES);
    const { hostname, port } = await server.destination!;
    ss.push({ method, destination: `${hostname}:${port}`, digest: await sha256Hex(both) });
  }
  const recorded: string[] = [];
  for (const [method, hex] of Object.entries(SS_LOCAL_RECORDED)) {
    const server = (await shadowsocks.server({ method, password: "ptkit-vector" })).pair();
    const writer = server.decode.writable.getWriter();
    writer.write(fromHex(hex));
    writer.close();
    const { hostname, port } = await server.destination!;
    const { data } = await readAll(server.decode.readable, 18);
    recorded.push(`${hostname}:${port} ${new TextDecoder().decode(data)}`);
  }

  return {
    runtime: runtimeName(),
    clientOptions: server.clientOptions,
    closeDelays: CLOSE_DELAY_SEEDS.map((seed) => bridgeCloseDelay(fromHex(seed))),
    clientHandshake: fixed.clientFirst,
    serverHandshake: fixed.serverFirst,
    upDigest: await sha256Hex(fixed.up),
    downDigest: await sha256Hex(fixed.down),
    bothEnded: fixed.bothEnded,
    plainDigest: await smallDigest(plain, {}, 21),
    layeredDigest: await smallDigest(layered, { "rot.n": "200" }, 23),
    iatDigest: await smallDigest(obfs4, { "iat-mode": "1" }, 25),
    webtunnelDigest: await smallDigest(webtunnel, { url: "https://example.com/s3cret" }, 27),
    webtunnelPlan: JSON.stringify(
      (await webtunnel.client({ url: "https://example.com:8443/s3cret" })).connection?.(
        { hostname: "2001:db8::1", port: 443 },
        {},
      ),
    ),
    ignored,
    shadowsocks: ss,
    shadowsocksRecorded: recorded,
  };
}
