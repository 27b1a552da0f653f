// Copyright the ptkit authors. MIT license.
// Shadowsocks AEAD in memory: reference vectors (OpenSSL's EVP_BytesToKey,
// streams recorded from ss-local 3.3.5), round trips for each method and
// crypto backend, the 0x3FFF chunk cap, configuration errors, and malformed,
// truncated and oversized input, which a server answers with silence.

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { createShadowsocks, shadowsocks } from "../transports/shadowsocks/mod.ts";
import { METHODS as METHOD_INFO } from "../transports/shadowsocks/_methods.ts";
import { evpBytesToKey, sessionSubkey } from "../transports/shadowsocks/_methods.ts";
import type { HostPort, TransportPair } from "../transports/transport.ts";
import { bytesBeforeTimer, bytesCopiedBy, hashOf, pseudoRandomChunks } from "./_util.ts";
import { SS_LOCAL_RECORDED } from "./portable_checks.ts";
import { libcryptoAead, type NodeCryptoAead, nodeCryptoAead } from "../net/_aead.ts";
import { loadNativeCrypto } from "../net/native_crypto.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { ChunkDecoder, ChunkEncoder } from "../transports/shadowsocks/_framing.ts";
import { concat } from "../transports/_bytes.ts";
import type { TransportEnvironment } from "../transports/transport.ts";
import * as nodeCrypto from "node:crypto";

/** OpenSSL through FFI must load here: else fail naming the package. */
function openssl(): TransportEnvironment {
  if (libcryptoAead() === undefined) {
    throw new Error("libcrypto.so.3 cannot be loaded: install the Debian package 'openssl'");
  }
  return { crypto: loadNativeCrypto };
}

/**
 * The crypto backends: the native one (OpenSSL's AEADs through FFI), the
 * native one's node:crypto fallback, and WebAssembly (as in browsers).
 */
const BACKENDS: Record<string, () => TransportEnvironment> = {
  openssl,
  "node:crypto": () => ({
    crypto: async () => ({
      ...await loadWasmCrypto(),
      aead: (algorithm, key) =>
        nodeCryptoAead(nodeCrypto as unknown as NodeCryptoAead)(algorithm, key) ??
          undefined,
    }),
  }),
  wasm: () => ({ crypto: loadWasmCrypto }),
};

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
const utf8 = (s: string) => new TextEncoder().encode(s);
const ALL = [
  "chacha20-ietf-poly1305",
  "aes-128-gcm",
  "aes-192-gcm",
  "aes-256-gcm",
  "xchacha20-ietf-poly1305",
] as const;

Deno.test("shadowsocks: EVP_BytesToKey equals OpenSSL's `enc -P -md md5 -nosalt` keys", () => {
  // openssl enc -aes-256-cbc -k ptkit-vector -P -md md5 -nosalt
  strictEqual(
    hex(evpBytesToKey(utf8("ptkit-vector"), 32)),
    "05dde4d355ea5c9ee77a142e9a0130a6d388f9a6aa0bf77623d1c8aa414b6001",
  );
  // openssl enc -aes-128-cbc -k "a longer password, with UTF-8: é" -P -md md5 -nosalt
  strictEqual(
    hex(evpBytesToKey(utf8("a longer password, with UTF-8: é"), 16)),
    "c93b0128c8d91be7ca5cd73a48515c6c",
  );
  strictEqual(hex(evpBytesToKey(utf8("password"), 16)), "5f4dcc3b5aa765d61d8327deb882cf99");
});

const RECORDED: Readonly<Record<string, string>> = {
  ...SS_LOCAL_RECORDED,
  // ss-local 3.3.5 -m aes-192-gcm -k ptkit-vector, the same request and data.
  "aes-192-gcm":
    "0ece90f2f30679daf0a01472a5015c0403551a485d4ca9e4107600d516abe35c459aca2d0caad18fd1fea5c4a790cf6f2a8d785890095500f3ad9d37dc6589ad1d97dfb269fe92d7a7691ff76d0498d6f9e6426693cd029a4fd451704c28742ad5476d6796caeef80579a6e4e09ea367b07bd155a6281b467d209469bb",
};

for (const backend of Object.keys(BACKENDS)) {
  for (const [method, recorded] of Object.entries(RECORDED)) {
    Deno.test(`shadowsocks ${method} (${backend}): decodes a stream recorded from ss-local 3.3.5, split anywhere`, async () => {
      const wire = unhex(recorded);
      for (const split of [1, 7, 32, 50, wire.length]) {
        // A new server each time: one server refuses a salt it saw.
        const server = await createShadowsocks({ drainTimeout: 5000 }).server({
          method,
          password: "ptkit-vector",
        }, BACKENDS[backend]!());
        const pair = server.pair();
        const writer = pair.decode.writable.getWriter();
        const reading = pair.decode.readable.pipeThrough(new TextDecoderStream()).getReader();
        for (let at = 0; at < wire.length; at += split) {
          await writer.write(wire.subarray(at, at + split));
        }
        deepStrictEqual(await pair.destination, { hostname: "example.com", port: 80 });
        await pair.ready;
        strictEqual((await reading.read()).value, "GET / HTTP/1.0\r\n\r\n");
        await writer.close();
        strictEqual((await reading.read()).done, true);
      }
    });
  }
}

/** Wire a client pair to a server pair in memory. */
function link(client: TransportPair, server: TransportPair): void {
  client.encode.readable.pipeTo(server.decode.writable).catch(() => {});
  server.encode.readable.pipeTo(client.decode.writable).catch(() => {});
}

async function roundTrip(
  method: string,
  backend: string,
  destination: HostPort,
  size: number,
): Promise<void> {
  const transport = createShadowsocks({ drainTimeout: 5000 });
  const options = { method, password: "round trip" };
  const env = BACKENDS[backend]!();
  const client = (await transport.client(options, env)).pair({}, destination);
  const server = (await transport.server(options, env)).pair();
  link(client, server);
  const up = Array.from(pseudoRandomChunks(size, 7, 50_000));
  const down = Array.from(pseudoRandomChunks(size, 8, 70_000));
  const write = async (w: WritableStream<Uint8Array>, chunks: Uint8Array[]) => {
    const writer = w.getWriter();
    for (const c of chunks) await writer.write(c);
    await writer.close();
  };
  const read = async (r: ReadableStream<Uint8Array>) => {
    const chunks: Uint8Array[] = [];
    for await (const c of r) chunks.push(c);
    return hashOf(chunks);
  };
  const [, , gotUp, gotDown] = await Promise.all([
    write(client.encode.writable, up),
    server.destination!.then(() => write(server.encode.writable, down)),
    read(server.decode.readable),
    read(client.decode.readable),
  ]);
  deepStrictEqual(await server.destination, destination);
  strictEqual(gotUp, hashOf(up));
  strictEqual(gotDown, hashOf(down));
}

for (const method of ALL) {
  for (const backend of Object.keys(BACKENDS)) {
    Deno.test(`shadowsocks ${method} (${backend}): 1 MiB each way in memory, destination carried`, async () => {
      await roundTrip(method, backend, { hostname: "example.org", port: 8443 }, 1024 * 1024);
      await roundTrip(method, backend, { hostname: "192.0.2.7", port: 80 }, 1000);
      await roundTrip(method, backend, { hostname: "2001:db8::1", port: 22 }, 1);
    });
  }
}

Deno.test("shadowsocks: the crypto backends interoperate, both ways", async () => {
  const names = Object.keys(BACKENDS);
  for (const method of ["chacha20-ietf-poly1305", "aes-128-gcm", "aes-192-gcm", "aes-256-gcm"]) {
    for (const from of names) {
      for (const to of names) {
        if (from === to) continue;
        const options = { method, password: "interop" };
        const client = (await shadowsocks.client(options, BACKENDS[from]!())).pair({}, {
          hostname: "example.com",
          port: 1,
        });
        const server = (await createShadowsocks({ drainTimeout: 5000 })
          .server(options, BACKENDS[to]!())).pair();
        link(client, server);
        await client.encode.writable.getWriter().write(utf8(`${from} to ${to}`));
        const reader = server.decode.readable.getReader();
        deepStrictEqual((await reader.read()).value, utf8(`${from} to ${to}`));
        await server.encode.writable.getWriter().write(utf8("back"));
        deepStrictEqual((await client.decode.readable.getReader().read()).value, utf8("back"));
      }
    }
  }
});

Deno.test("shadowsocks: a large write becomes chunks of at most 0x3FFF bytes", async () => {
  const options = { method: "aes-128-gcm", password: "p" };
  const pair = (await shadowsocks.client(options)).pair({}, { hostname: "a.example", port: 1 });
  const writer = pair.encode.writable.getWriter();
  const data = new Uint8Array(100_000).fill(9);
  writer.write(data);
  writer.close();
  let wire = 0;
  for await (const c of pair.encode.readable) wire += c.length;
  // Salt, the request in a chunk of its own (as ss-local), then the data in
  // ceil(n / 0x3FFF) chunks, each with 34 bytes of overhead.
  const request = 1 + 1 + 9 + 2;
  strictEqual(wire, 16 + request + 34 + data.length + Math.ceil(data.length / 0x3fff) * 34);
});

Deno.test("shadowsocks: configuration errors name the value; unknown keys are ignored", async () => {
  // A method close to a supported one is named, with the hint; another is
  // not (it may be a password joined to it by a separator).
  await rejects(
    async () => await shadowsocks.client({ method: "aes-256-gmc", password: "x" }),
    /unsupported method "aes-256-gmc" \(did you mean aes-256-gcm\?\): expected one of /,
  );
  // Another Shadowsocks program's method is named, with why it is refused.
  for (
    const [method, why] of [
      ["aes-256-cfb", "a stream cipher, insecure and not supported"],
      ["RC4-MD5", "a stream cipher, insecure and not supported"],
      ["2022-blake3-aes-256-gcm", "Shadowsocks 2022, not supported"],
      ["none", "no encryption"],
    ]
  ) {
    await rejects(
      async () => await shadowsocks.client({ method: method!, password: "x" }),
      (error: Error) =>
        error.message.includes(`unsupported method "${method!.toLowerCase()}" (${why})`),
    );
  }
  // Another program's name for a method ptkit has is named, with ss-libev's.
  for (
    const [method, ours] of [
      ["chacha20-poly1305", "chacha20-ietf-poly1305"],
      ["AEAD_CHACHA20_POLY1305", "chacha20-ietf-poly1305"],
      ["AEAD_AES_256_GCM", "aes-256-gcm"],
      ["xchacha20-poly1305", "xchacha20-ietf-poly1305"],
    ]
  ) {
    await rejects(
      async () => await shadowsocks.client({ method: method!, password: "x" }),
      (error: Error) =>
        error.message.includes(
          `unsupported method "${method}" (another program's name for ${ours}: write that)`,
        ),
    );
  }
  for (
    const method of [
      "rc4-md5x",
      "aes-256-gcm;password=Secret9Mark",
      "aes-256-gcm,password=Secret9Mark",
    ]
  ) {
    await rejects(
      async () => await shadowsocks.client({ method, password: "x" }),
      (error: Error) =>
        /unsupported method \(not shown\): expected one of /.test(error.message) &&
        !error.message.includes("Secret9Mark"),
    );
  }
  await rejects(async () => await shadowsocks.server({ method: "aes-128-gcm" }), TypeError);
  await rejects(async () => await shadowsocks.server({ password: "x" }), /missing option 'method'/);
  // Both missing are named at once, as obfs4 names its own (one run, not two).
  const both = {
    name: "TypeError",
    message:
      "Cannot configure shadowsocks: missing option 'method' and option 'password' (or 'key')",
  };
  await rejects(async () => await shadowsocks.server({}), both);
  await rejects(
    async () => await shadowsocks.server({ method: "aes-128-gcm", key: btoa("short") }),
    RangeError,
  );
  // ss-libev's aes-192-gcm: a 24-byte key.
  await rejects(
    async () => await shadowsocks.server({ method: "aes-192-gcm", key: btoa("k".repeat(16)) }),
    /option 'key' must be base64 of 24 bytes for aes-192-gcm/,
  );
  deepStrictEqual(
    (await shadowsocks.server({ method: "aes-192-gcm", key: btoa("k".repeat(24)) })).clientOptions,
    { method: "aes-192-gcm" },
  );
  await rejects(
    async () =>
      await shadowsocks.server({ method: "aes-128-gcm", key: btoa("k".repeat(16)), password: "x" }),
    /not both/,
  );
  await rejects(
    async () => await shadowsocks.server({ method: "aes-128-gcm", password: "" }),
    /empty/,
  );
  const ignored: string[] = [];
  const server = await shadowsocks.server(
    { method: "AES-128-GCM", password: "x", plugin: "obfs-local" },
    { onIgnoredOption: (i) => ignored.push(i.key) },
  );
  deepStrictEqual(ignored, ["plugin"]);
  deepStrictEqual(server.clientOptions, { method: "aes-128-gcm" });
  const client = await shadowsocks.client({ method: "aes-128-gcm", password: "x" });
  throws(() => client.pair({}), /needs a destination/);
  throws(() => client.pair({}, { hostname: "x", port: 0 }), RangeError);
  // A client without options takes them from each connection's settings.
  const bare = await shadowsocks.client({});
  throws(() => bare.pair({}, { hostname: "x", port: 1 }), both);
  ok(bare.pair({ method: "aes-128-gcm", password: "x" }, { hostname: "x", port: 1 }).encode);
  const generated = await shadowsocks.generateConfig!();
  deepStrictEqual(generated.client, generated.server);
  await shadowsocks.server(generated.server);
});

/** A server pair fed `wire`, then (unless `keepOpen`) end of stream. */
async function feedServer(
  wire: Uint8Array[],
  options: {
    drainTimeout?: number;
    keepOpen?: boolean;
    password?: string;
    env?: TransportEnvironment;
  } = {},
) {
  const transport = createShadowsocks({ drainTimeout: options.drainTimeout ?? 5000 });
  const server = (await transport.server({
    method: "chacha20-ietf-poly1305",
    password: options.password ?? "pw",
  }, options.env)).pair();
  let destination: HostPort | undefined;
  server.destination!.then((d) => destination = d, () => {});
  const out: Uint8Array[] = [];
  const reading = (async () => {
    for await (const c of server.decode.readable) out.push(c);
  })();
  reading.catch(() => {});
  const writer = server.decode.writable.getWriter();
  let writeError: unknown;
  try {
    for (const w of wire) await writer.write(w);
    if (!options.keepOpen) await writer.close();
  } catch (error) {
    writeError = error;
  }
  return { server, out, reading, writer, writeError, destination: () => destination };
}

async function clientWire(destination: HostPort, data: Uint8Array, password = "pw") {
  const pair = (await shadowsocks.client({ method: "chacha20-ietf-poly1305", password })).pair(
    {},
    destination,
  );
  const writer = pair.encode.writable.getWriter();
  writer.write(data);
  writer.close();
  const chunks: Uint8Array[] = [];
  for await (const c of pair.encode.readable) chunks.push(c);
  const wire = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) wire.set(c, (at += c.length) - c.length);
  return wire;
}

Deno.test("shadowsocks server: garbage, a wrong key or a truncated salt gives nothing and closes when the peer does", async () => {
  const cases: [string, Uint8Array[]][] = [
    ["garbage", [crypto.getRandomValues(new Uint8Array(3000))]],
    ["wrong key", [await clientWire({ hostname: "a.example", port: 1 }, utf8("x"), "other")]],
    ["truncated salt", [new Uint8Array(10)]],
    ["salt and a partial length", [new Uint8Array(40)]],
    ["empty", []],
  ];
  for (const [name, wire] of cases) {
    const fed = await feedServer(wire);
    await rejects(fed.reading, /closed before a valid request/, name);
    await rejects(fed.server.ready!, name);
    deepStrictEqual(fed.out, [], name);
    strictEqual(fed.destination(), undefined, name);
  }
});

Deno.test("shadowsocks server: garbage is drained until the deadline, then the connection errors", async () => {
  const fed = await feedServer([crypto.getRandomValues(new Uint8Array(100))], {
    keepOpen: true,
    drainTimeout: 200,
  });
  // More garbage is read and dropped (the writes do not fail or block).
  for (let i = 0; i < 100; i++) await fed.writer.write(new Uint8Array(65536));
  await rejects(
    fed.server.ready!,
    /no valid request \(a client with another password or method, or a probe\)/,
  );
  await rejects(fed.reading);
  deepStrictEqual(fed.out, []);
});

/** Seal chunks by hand: the salt, then each [length, payload] as given. */
async function craft(
  pieces: { length: number; payload: Uint8Array; badTag?: boolean }[],
  password = "pw",
): Promise<Uint8Array> {
  const info = METHOD_INFO["chacha20-ietf-poly1305"];
  const wasm = await loadWasmCrypto();
  const factory = (subkey: Uint8Array) => wasm.aead(info.algorithm, subkey)!;
  const key = evpBytesToKey(utf8(password), 32);
  const salt = crypto.getRandomValues(new Uint8Array(32));
  const aead = factory(sessionSubkey(key, salt));
  const nonce = new Uint8Array(12);
  const parts: Uint8Array[] = [salt];
  for (const { length, payload, badTag } of pieces) {
    const l = new Uint8Array(18);
    aead.seal(Uint8Array.from([length >> 8, length & 0xff]), nonce, l, 0);
    nonce[0]!++;
    const p = new Uint8Array(payload.length + 16);
    aead.seal(payload, nonce, p, 0);
    nonce[0]!++;
    if (badTag) p[p.length - 1]! ^= 1;
    parts.push(l, p);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

const REQUEST = Uint8Array.from([3, 9, ...utf8("a.example"), 0, 80]);

/**
 * `wire` as two reads: the salt and the request's chunk, then the rest (a
 * read's chunks open or fail together, as in shadowsocks-libev).
 */
const afterRequest = (wire: Uint8Array) => {
  const end = 32 + 18 + REQUEST.length + 16;
  return [wire.subarray(0, end), wire.subarray(end)];
};

Deno.test("shadowsocks server: oversized or zero lengths and bad tags before the request are drained silently", async () => {
  for (
    const [name, pieces] of [
      ["length 0x4000", [{ length: 0x4000, payload: new Uint8Array(0x4000) }]],
      ["length 0xFFFF", [{ length: 0xffff, payload: new Uint8Array(10) }]],
      ["length 0", [{ length: 0, payload: new Uint8Array(0) }]],
      ["bad payload tag", [{ length: REQUEST.length, payload: REQUEST, badTag: true }]],
      ["unknown address type", [{ length: 7, payload: Uint8Array.from([9, 1, 2, 3, 4, 0, 1]) }]],
      ["empty name", [{ length: 4, payload: Uint8Array.from([3, 0, 0, 1]) }]],
      ["name that is no host name", [{ length: 5, payload: Uint8Array.from([3, 1, 10, 0, 80]) }]],
      [
        "request cut short",
        [{ length: 250, payload: Uint8Array.from([3, 255, ...new Uint8Array(248).fill(97)]) }],
      ],
    ] as const
  ) {
    const fed = await feedServer([await craft([...pieces])]);
    await rejects(fed.reading, /closed before a valid request/, name);
    strictEqual(fed.destination(), undefined, name);
    deepStrictEqual(fed.out, [], name);
  }
  // The request may span chunks.
  const fed = await feedServer([
    await craft([
      { length: 3, payload: REQUEST.subarray(0, 3) },
      { length: REQUEST.length - 3 + 2, payload: Uint8Array.from([...REQUEST.subarray(3), 7, 8]) },
    ]),
  ]);
  await fed.reading;
  deepStrictEqual(fed.destination(), { hostname: "a.example", port: 80 });
  deepStrictEqual(fed.out, [Uint8Array.from([7, 8])]);
});

Deno.test("shadowsocks server: a request split across two reads is drained silently, as ss-server reads it from one read's chunks", async () => {
  // Measured against ss-server 3.3.5 (shadowsocks-libev): the request's
  // first 3 bytes in one chunk and read, the rest in the next chunk and
  // read, is refused ('invalid host name length') and the connection held
  // silently until the peer closes; both chunks in one read are served.
  const wire = await craft([
    { length: 3, payload: REQUEST.subarray(0, 3) },
    { length: REQUEST.length - 3 + 2, payload: Uint8Array.from([...REQUEST.subarray(3), 7, 8]) },
  ]);
  const split = 32 + 18 + 3 + 16;
  const fed = await feedServer([wire.subarray(0, split), wire.subarray(split)]);
  await rejects(fed.reading, /closed before a valid request/);
  strictEqual(fed.destination(), undefined);
  deepStrictEqual(fed.out, []);
  // The same flight in one read is served.
  const whole = await feedServer([wire]);
  await whole.reading;
  deepStrictEqual(whole.destination(), { hostname: "a.example", port: 80 });
});

Deno.test("shadowsocks server takes the names ss-server takes, and holds the rest silently as it does", async () => {
  // Measured against ss-server 3.3.5 (shadowsocks-libev): "lookup" names it
  // looked up, "held" ones it refused ('invalid host name') and held as a
  // probe's; a name that is an IP literal it connects as that address.
  const table: [string, "lookup" | "held"][] = [
    ["a_b.invalid", "lookup"],
    ["_x.invalid", "lookup"],
    ["a.invalid.", "lookup"],
    ["A-1.INVALID", "lookup"],
    ["a", "lookup"],
    ["1.2.3", "lookup"],
    ["xn--bcher-kva.invalid", "lookup"],
    [`${"x".repeat(63)}.invalid`, "lookup"],
    [`${"x".repeat(64)}.invalid`, "held"],
    ["-a.invalid", "held"],
    ["a-.invalid", "held"],
    ["a.-b.invalid", "held"],
    ["a.b-.invalid", "held"],
    ["a..invalid", "held"],
    [".a.invalid", "held"],
    ["[::1]", "held"],
    ["a b.invalid", "held"],
    ["a*b.invalid", "held"],
  ];
  for (const [name, expected] of table) {
    const bytes = utf8(name);
    const request = Uint8Array.from([3, bytes.length, ...bytes, 0, 80]);
    const fed = await feedServer([await craft([{ length: request.length, payload: request }])]);
    await fed.reading.catch(() => {});
    const got = fed.destination() === undefined ? "held" : "lookup";
    deepStrictEqual([name, got], [name, expected]);
    if (got === "lookup") deepStrictEqual(fed.destination(), { hostname: name, port: 80 });
  }
  // A name that is an IPv6 literal is that address.
  const request = Uint8Array.from([3, 3, ...utf8("::1"), 0, 80]);
  const fed = await feedServer([await craft([{ length: request.length, payload: request }])]);
  await fed.reading;
  deepStrictEqual(fed.destination(), { hostname: "::1", port: 80 });
});

Deno.test("shadowsocks server reads a chunk's length by its low 14 bits, as ss-server does", async () => {
  // Measured against ss-server 3.3.5 (shadowsocks-libev): a request chunk
  // whose length field is 0x4000 | n or 0xC000 | n is served as n bytes.
  for (const high of [0x4000, 0x8000, 0xc000]) {
    const fed = await feedServer([
      await craft([{ length: high | REQUEST.length, payload: REQUEST }, {
        length: high | 2,
        payload: Uint8Array.from([7, 8]),
      }]),
    ]);
    await fed.reading;
    deepStrictEqual(
      fed.destination(),
      { hostname: "a.example", port: 80 },
      `0x${high.toString(16)}`,
    );
    deepStrictEqual(fed.out, [Uint8Array.from([7, 8])]);
  }
});

Deno.test("shadowsocks server: a random hook that repeats itself fails the connection that cannot get a fresh salt, never hangs", async () => {
  const server = await createShadowsocks({ random: (bytes) => bytes.fill(7) })
    .server({ method: "aes-128-gcm", password: "p" });
  const write = (pair: TransportPair) => {
    pair.encode.readable.pipeTo(new WritableStream()).catch(() => {});
    return pair.encode.writable.getWriter().write(utf8("x"));
  };
  await write(server.pair());
  // The same salt again: refused by the replay filter, 16 times.
  await rejects(
    write(server.pair()),
    /^Error: Cannot make a shadowsocks salt: the random source gave 16 salts already used$/,
  );
});

Deno.test("shadowsocks client: a reply that does not authenticate says what that means, not only 'bad length tag'", async () => {
  // What an SSH server (or anything but a Shadowsocks server with this
  // method and password) sends back.
  const banner = utf8("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".repeat(3));
  const pair = (await shadowsocks.client({ method: "aes-128-gcm", password: "p" })).pair({}, {
    hostname: "a.example",
    port: 80,
  });
  const writer = pair.decode.writable.getWriter();
  writer.write(banner).catch(() => {});
  await rejects(
    pair.decode.readable.getReader().read(),
    (error: Error) =>
      error.message ===
        "Cannot read the server's shadowsocks stream: its first chunk does not authenticate " +
          "(a server with another method or password, or not a Shadowsocks server)",
  );
});

Deno.test("shadowsocks client: a server's good first chunk then a broken one in the same read says which chunk failed", async () => {
  const pair = (await shadowsocks.client({ method: "chacha20-ietf-poly1305", password: "pw" }))
    .pair({}, { hostname: "a.example", port: 80 });
  const wire = await craft([{ length: 2, payload: utf8("hi") }, { length: 1, payload: utf8("x") }]);
  // The second chunk's sealed length (after the salt and the first chunk).
  wire[32 + 18 + 2 + 16]! ^= 1;
  pair.decode.writable.getWriter().write(wire).catch(() => {});
  await rejects(
    pair.decode.readable.getReader().read(),
    (error: Error) => error.message === "Cannot open shadowsocks chunk: bad length tag",
  );
});

Deno.test("shadowsocks server: after the request, a bad tag, an oversized length or a truncated chunk ends the connection", async () => {
  const good = { length: REQUEST.length, payload: REQUEST };
  for (
    const [name, wire] of [
      ["bad tag", await craft([good, { length: 1, payload: utf8("x"), badTag: true }])],
      ["length 0x4000", await craft([good, { length: 0x4000, payload: new Uint8Array(0x4000) }])],
      ["truncated", (await craft([good, { length: 5, payload: utf8("hello") }])).slice(0, -3)],
    ] as const
  ) {
    const fed = await feedServer(afterRequest(wire));
    await rejects(fed.reading, /Cannot (open|read) shadowsocks/, name);
    deepStrictEqual(fed.destination(), { hostname: "a.example", port: 80 }, name);
  }
});

for (const backend of Object.keys(BACKENDS)) {
  Deno.test(`shadowsocks server (${backend}): a chunk whose tag is wrong is never taken, before or after the request`, async () => {
    const env = BACKENDS[backend]!();
    const good = { length: REQUEST.length, payload: REQUEST };
    // A request whose payload tag is wrong: no destination, drained.
    const before = await feedServer([await craft([{ ...good, badTag: true }])], { env });
    await rejects(before.reading, /closed before a valid request/);
    strictEqual(before.destination(), undefined);
    deepStrictEqual(before.out, []);
    // A good request, then a chunk whose tag is wrong: its bytes never come out.
    const after = await feedServer(
      afterRequest(await craft([good, { length: 5, payload: utf8("hello"), badTag: true }])),
      { env },
    );
    await rejects(after.reading, /Cannot (open|read) shadowsocks/);
    deepStrictEqual(after.destination(), { hostname: "a.example", port: 80 });
    deepStrictEqual(after.out, []);
  });
}

Deno.test("shadowsocks server: a replayed stream is refused and drained", async () => {
  const transport = createShadowsocks({ drainTimeout: 5000 });
  const side = await transport.server({ method: "chacha20-ietf-poly1305", password: "pw" });
  const wire = await clientWire({ hostname: "b.example", port: 443 }, utf8("once"));
  const first = side.pair();
  const w1 = first.decode.writable.getWriter();
  await w1.write(wire);
  deepStrictEqual(await first.destination, { hostname: "b.example", port: 443 });
  const second = side.pair();
  const w2 = second.decode.writable.getWriter();
  await w2.write(wire);
  await w2.close().catch(() => {});
  await rejects(second.ready!, /closed before a valid request/);
  await rejects(second.destination!);
  // The server's own stream reflected back is refused too.
  const writer = first.encode.writable.getWriter();
  writer.write(utf8("reply"));
  const reflected = (await first.encode.readable.getReader().read()).value!;
  const third = side.pair();
  const w3 = third.decode.writable.getWriter();
  await w3.write(reflected);
  await w3.close().catch(() => {});
  await rejects(third.ready!);
  await w1.close();
});

Deno.test("shadowsocks server: a salt is still refused after a password holder's flood of 500,000 connections (two salts each), as with ss-libev", async () => {
  let add: ((value: Uint8Array) => void) | undefined;
  const transport = createShadowsocks({ drainTimeout: 5000 });
  const side = await transport.server({ method: "chacha20-ietf-poly1305", password: "pw" }, {
    // The flood's salts arrive as another worker's would: the same filter.
    replays: { recorded: () => {}, subscribe: (f) => (add = f, () => {}) },
  });
  const wire = await clientWire({ hostname: "b.example", port: 443 }, utf8("once"));
  const first = side.pair();
  const w1 = first.decode.writable.getWriter();
  await w1.write(wire);
  deepStrictEqual(await first.destination, { hostname: "b.example", port: 443 });
  const salt = new Uint8Array(32);
  const view = new DataView(salt.buffer);
  for (let i = 0; i < 999_998; i++) {
    crypto.getRandomValues(salt.subarray(0, 8));
    view.setUint32(8, i);
    add!(salt);
  }
  const replayed = side.pair();
  const w2 = replayed.decode.writable.getWriter();
  await w2.write(wire);
  await w2.close().catch(() => {});
  await rejects(replayed.ready!, /closed before a valid request/);
  await w1.close();
  side.close?.();
});

Deno.test("shadowsocks server decodes a read of many small chunks a slice at a time, giving the event loop turns", async () => {
  // A client that knows the password chooses its chunk sizes: 12,000
  // chunks of one byte are 420,000 bytes, and a read of them was decoded
  // at once (250,000 kept a server's process from everything else for
  // 2.3 s). Now 32 KiB at a time while chunks are that small.
  const config = { method: "chacha20-ietf-poly1305", password: "pw" };
  const env = { crypto: () => loadWasmCrypto() } as unknown as TransportEnvironment;
  const client = (await shadowsocks.client(config, env)).pair({}, {
    hostname: "example.com",
    port: 80,
  });
  const frames = 12_000;
  const wireParts: Uint8Array[] = [];
  const encoded = (async () => {
    for await (const part of client.encode.readable) wireParts.push(part);
  })();
  const writer = client.encode.writable.getWriter();
  await Promise.all(Array.from({ length: frames }, () => writer.write(new Uint8Array(1))));
  await writer.close();
  await encoded;
  const wire = new Uint8Array(wireParts.reduce((n, p) => n + p.length, 0));
  wireParts.reduce((at, p) => (wire.set(p, at), at + p.length), 0);

  const server = await createShadowsocks({ drainTimeout: 5000 }).server(config, env);
  const pair = server.pair();
  const toServer = pair.decode.writable.getWriter();
  const decoded = pair.decode.readable.getReader();
  const { got, atTimer } = await bytesBeforeTimer(() => toServer.write(wire), decoded, frames);
  strictEqual(got, frames);
  deepStrictEqual(await pair.destination, { hostname: "example.com", port: 80 });
  // Before: all 12,000 were decoded (and read) before a timer due at once
  // ran; now one slice's 934.
  const seen = atTimer < 0 ? "all" : String(atTimer);
  ok(atTimer >= 0 && atTimer < frames / 2, `${seen} of ${frames} bytes decoded before a timer ran`);
  await toServer.close();
});

Deno.test("shadowsocks server: salts that share their first bytes (an Outline client's connection prefix) are told apart by the rest, not refused as replays", async () => {
  // Outline's clients start every salt with the access key's prefix (here
  // 16 03 01 00 A8 01 01, a TLS record's start) and fill the rest at random.
  const outline = createShadowsocks({
    random: (bytes) => {
      crypto.getRandomValues(bytes);
      if (bytes.length === 32) bytes.set([0x16, 3, 1, 0, 0xa8, 1, 1]);
    },
  });
  const options = { method: "chacha20-ietf-poly1305", password: "pw" };
  const client = await outline.client(options);
  const server = await createShadowsocks({ drainTimeout: 5000 }).server(options);
  for (let n = 0; n < 20; n++) {
    const pair = client.pair({}, { hostname: "a.example", port: 443 });
    pair.encode.writable.getWriter().write(utf8("hi")).catch(() => {});
    const { value: wire } = await pair.encode.readable.getReader().read();
    deepStrictEqual([...wire!.subarray(0, 7)], [0x16, 3, 1, 0, 0xa8, 1, 1]);
    const side = server.pair();
    const writer = side.decode.writable.getWriter();
    writer.write(wire!).catch(() => {});
    deepStrictEqual(
      await side.destination,
      { hostname: "a.example", port: 443 },
      `connection ${n}`,
    );
    // The same stream again is still a replay.
    const again = server.pair();
    const replay = again.decode.writable.getWriter();
    replay.write(wire!).catch(() => {});
    replay.close().catch(() => {});
    await rejects(again.ready!, /closed before a valid request/);
    writer.close().catch(() => {});
  }
});

Deno.test("shadowsocks client: prefix= (Outline's connection prefix) starts the salt, in the client's options or a connection's settings; the server reads it as any salt", async () => {
  const options = { method: "chacha20-ietf-poly1305", password: "pw" };
  const destination = { hostname: "a.example", port: 80 };
  const server = await shadowsocks.server(options);
  for (
    const [client, settings] of [
      [await shadowsocks.client({ ...options, prefix: "POST+%2F" }), {}],
      [await shadowsocks.client({}), { ...options, prefix: "POST+%2F" }],
    ] as const
  ) {
    const pair = client.pair(settings, destination);
    const serverPair = server.pair();
    const wire = pair.encode.readable.getReader();
    const writer = pair.encode.writable.getWriter();
    writer.write(utf8("hello")).catch(() => {});
    const { value } = await wire.read();
    deepStrictEqual(value!.subarray(0, 6), utf8("POST /"));
    const serverWriter = serverPair.decode.writable.getWriter();
    serverWriter.write(value!).catch(() => {});
    deepStrictEqual(await serverPair.destination, destination);
    const { value: data } = await serverPair.decode.readable.getReader().read();
    deepStrictEqual(data, utf8("hello"));
  }
  // Each connection's salt is random after the prefix.
  const client = await shadowsocks.client({ ...options, prefix: "%16%03%01%00%C2%A8%01%01" });
  const salts = await Promise.all([0, 1].map(async () => {
    const pair = client.pair({}, destination);
    pair.encode.writable.getWriter().write(utf8("x")).catch(() => {});
    return (await pair.encode.readable.getReader().read()).value!.subarray(0, 32);
  }));
  for (const salt of salts) deepStrictEqual([...salt.subarray(0, 7)], [22, 3, 1, 0, 0xa8, 1, 1]);
  ok(hex(salts[0]!) !== hex(salts[1]!));
  // A server takes no prefix: it is ignored there, as other unknown keys.
  const ignored: string[] = [];
  await shadowsocks.server({ ...options, prefix: "%16" }, {
    onIgnoredOption: ({ key }) => ignored.push(key),
  });
  deepStrictEqual(ignored, ["prefix"]);
  // What Outline's clients refuse, and a prefix that leaves no salt random.
  for (
    const [prefix, message] of [
      ["%E2%82%AC", /'prefix' must be percent-encoded as in an Outline access key/],
      ["%A8", /'prefix' must be percent-encoded/],
      ["%zz", /'prefix' must be percent-encoded/],
      ["A".repeat(32), /'prefix' is 32 bytes, but chacha20-ietf-poly1305's salt is 32/],
    ] as const
  ) {
    await rejects(async () => await shadowsocks.client({ ...options, prefix }), (error: Error) => {
      ok(error instanceof RangeError && message.test(error.message), String(error));
      return true;
    });
  }
});

Deno.test("shadowsocks client: the request waits for the application's first data from when the connection is made (its first read), not from the pair's making: a connection slower than 50 ms still sends both in one write, as ss-local does", async () => {
  const client = await shadowsocks.client({ method: "aes-128-gcm", password: "pw" });
  // Salt 16, the request (1 + 4 + 2 bytes for an IPv4 address) 2 + 16 + 7 + 16.
  const requestAlone = 16 + 2 + 16 + 7 + 16;
  const destination = { hostname: "192.0.2.1", port: 443 };
  const pair = client.pair({}, destination);
  // The TCP connection takes longer than the 50 ms wait (a path with a
  // 100 ms round trip): TransportConn reads the encoder only once it is made.
  await new Promise((resolve) => setTimeout(resolve, 120));
  const wire = pair.encode.readable.getReader();
  const first = wire.read();
  // The application speaks once the SOCKS reply (sent when the connection
  // is made) reached it.
  await new Promise((resolve) => setTimeout(resolve, 5));
  const writer = pair.encode.writable.getWriter();
  writer.write(utf8("GET / HTTP/1.1\r\n\r\n")).catch(() => {});
  const { value } = await first;
  deepStrictEqual(value!.length, requestAlone + 2 + 16 + 18 + 16, "the request went alone");
  // An application that waits for the server gets its request sent alone,
  // once the connection is made and the wait is over.
  const silent = client.pair({}, destination).encode.readable.getReader();
  deepStrictEqual((await silent.read()).value!.length, requestAlone);
  await silent.cancel();
  await wire.cancel();
  // Cancelled by its reader (the connection gone), the encoder takes no more.
  await rejects(writer.write(utf8("late")));
});

Deno.test("shadowsocks client refuses a server stream whose salt it has seen (a recorded answer replayed, or its own stream sent back), as ss-local does", async () => {
  const options = { method: "chacha20-ietf-poly1305", password: "pw" };
  const client = await shadowsocks.client(options);
  const server = await shadowsocks.server(options);
  const destination = { hostname: "a.example", port: 80 };
  // One connection, and the server's answer to it as recorded on the wire.
  const first = client.pair({}, destination);
  first.encode.writable.getWriter().write(utf8("GET /")).catch(() => {});
  const request = (await first.encode.readable.getReader().read()).value!;
  const side = server.pair();
  side.decode.writable.getWriter().write(request).catch(() => {});
  await side.destination;
  side.encode.writable.getWriter().write(utf8("200 OK")).catch(() => {});
  const answer = (await side.encode.readable.getReader().read()).value!;
  const firstIn = first.decode.writable.getWriter();
  firstIn.write(answer).catch(() => {});
  deepStrictEqual((await first.decode.readable.getReader().read()).value, utf8("200 OK"));
  for (
    const [what, wire] of [["a replayed answer", answer], ["its own stream", request]] as const
  ) {
    const later = client.pair({}, destination);
    later.decode.writable.getWriter().write(wire).catch(() => {});
    await rejects(
      later.decode.readable.getReader().read(),
      (error: Error) => {
        strictEqual(
          error.message,
          "Cannot read the server's shadowsocks stream: its salt was seen before " +
            "(a recorded stream replayed, or this client's own sent back)",
          what,
        );
        return true;
      },
    );
  }
});

Deno.test("a shadowsocks stream sent one byte per read is copied about once, not each byte again with every byte after it", async () => {
  const info = METHOD_INFO["chacha20-ietf-poly1305"];
  const wasm = await loadWasmCrypto();
  const factory = (subkey: Uint8Array) => wasm.aead(info.algorithm, subkey)!;
  const key = evpBytesToKey(utf8("pw"), 32);
  const plain = crypto.getRandomValues(new Uint8Array(0x3fff * 2));
  const salt = crypto.getRandomValues(new Uint8Array(32));
  const wire = new ChunkEncoder(info, factory, key, salt).encode(plain);
  const decoder = new ChunkDecoder(info, factory, key);
  const out: Uint8Array[] = [];
  // Bytes copied by Uint8Array#set while decoding (where the decoder joins
  // what it holds and what came).
  const { copied } = await bytesCopiedBy(() => {
    for (let i = 0; i < wire.length; i++) {
      decoder.decode(wire.subarray(i, i + 1), (p) => out.push(p));
    }
  });
  deepStrictEqual(concat(...out), plain);
  // A few times each (kept, joined to the read that completes its chunk,
  // opened): 131,731 for these 32,866. 269 million before (each read
  // copied all the chunk's bytes before it).
  ok(copied < 8 * wire.length, `${copied} bytes copied for ${wire.length} bytes one at a time`);
});
