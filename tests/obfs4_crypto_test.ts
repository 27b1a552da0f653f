// Copyright the ptkit authors. MIT license.

import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual, throws } from "node:assert";
import {
  _map_to_curve_elligator2_curve25519 as rfc9380Map,
  x25519,
} from "@noble/curves/ed25519.js";
import { SipHash, sipHash24 } from "../transports/obfs4/_siphash.ts";
import { HashDrbg } from "../transports/obfs4/_hash_drbg.ts";
import { GoRand } from "../transports/obfs4/_go_rand.ts";
import {
  distributionValues,
  freshDistributionValues,
  WeightedDist,
} from "../transports/obfs4/_weighted_dist.ts";
import { bridgeCloseDelay } from "../transports/obfs4/mod.ts";
import { ntorClient, ntorKdf, ntorServer } from "../transports/obfs4/_ntor.ts";
import {
  generateRepresentableKeyPair,
  representativeToPublicKey,
} from "../transports/obfs4/_elligator2.ts";
import { KeyPairReserve } from "../transports/obfs4/_keypair_reserve.ts";
import { eachBackend } from "./crypto_backends.ts";
import { libcryptoHmac } from "../net/_hmac.ts";
import { loadNativeCrypto } from "../net/native_crypto.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const iota = (n: number) => Uint8Array.from({ length: n }, (_, i) => i);

// The official SipHash-2-4 vectors (the reference implementation's 64
// outputs): key 00..0f, message 00 01 .. (n-1) for n = 0..63, each output as
// 8 bytes little-endian. Generated with OpenSSL 3.0's SIPHASH MAC (`openssl
// mac -macopt hexkey:000102030405060708090a0b0c0d0e0f -macopt size:8 -in
// <file> SIPHASH`); they agree with the 17 vectors known beforehand.
const SIPHASH_VECTORS: readonly string[] = [
  "310e0edd47db6f72",
  "fd67dc93c539f874",
  "5a4fa9d909806c0d",
  "2d7efbd796666785",
  "b7877127e09427cf",
  "8da699cd64557618",
  "cee3fe586e46c9cb",
  "37d1018bf50002ab",
  "6224939a79f5f593",
  "b0e4a90bdf82009e",
  "f3b9dd94c5bb5d7a",
  "a7ad6b22462fb3f4",
  "fbe50e86bc8f1e75",
  "903d84c02756ea14",
  "eef27a8e90ca23f7",
  "e545be4961ca29a1",
  "db9bc2577fcc2a3f",
  "9447be2cf5e99a69",
  "9cd38d96f0b3c14b",
  "bd6179a71dc96dbb",
  "98eea21af25cd6be",
  "c7673b2eb0cbf2d0",
  "883ea3e395675393",
  "c8ce5ccd8c030ca8",
  "94af49f6c650adb8",
  "eab8858ade92e1bc",
  "f315bb5bb835d817",
  "adcf6b0763612e2f",
  "a5c91da7acaa4dde",
  "716595876650a2a6",
  "28ef495c53a387ad",
  "42c341d8fa92d832",
  "ce7cf2722f512771",
  "e37859f94623f3a7",
  "381205bb1ab0e012",
  "ae97a10fd434e015",
  "b4a31508beff4d31",
  "81396229f0907902",
  "4d0cf49ee5d4dcca",
  "5c73336a76d8bf9a",
  "d0a704536ba93e0e",
  "925958fcd6420cad",
  "a915c29bc8067318",
  "952b79f3bc0aa6d4",
  "f21df2e41d4535f9",
  "87577519048f53a9",
  "10a56cf5dfcd9adb",
  "eb75095ccd986cd0",
  "51a9cb9ecba312e6",
  "96afadfc2ce666c7",
  "72fe52975a4364ee",
  "5a1645b276d592a1",
  "b274cb8ebf87870a",
  "6f9bb4203de7b381",
  "eaecb2a30b22a87f",
  "9924a43cc1315724",
  "bd838d3aafbf8db7",
  "0b1a2a3265d51aea",
  "135079a3231ce660",
  "932b2846e4d70666",
  "e1915f5cb1eca46c",
  "f325965ca16d629f",
  "575ff28e60381be5",
  "724506eb4c328a95",
];

Deno.test("sipHash24 matches the 64 official vectors", () => {
  strictEqual(SIPHASH_VECTORS.length, 64);
  SIPHASH_VECTORS.forEach((want, n) => {
    strictEqual(hex(sipHash24(iota(16), iota(n))), want, `message length ${n}`);
  });
});

Deno.test("SipHash digest is the same however the input is split", () => {
  const whole = sipHash24(iota(16), iota(63));
  for (const split of [1, 3, 7, 8, 9, 20]) {
    const h = new SipHash(iota(16));
    for (let i = 0; i < 63; i += split) h.update(iota(63).subarray(i, Math.min(63, i + split)));
    deepStrictEqual(h.digest(), whole);
  }
  throws(() => new SipHash(new Uint8Array(15)), RangeError);
});

Deno.test("HashDrbg produces the reference running-hash blocks and masks", () => {
  const drbg = new HashDrbg(iota(24));
  deepStrictEqual(
    [1, 2, 3, 4].map(() => hex(drbg.nextBlock())),
    ["28b572b88c1ab776", "a8de197d8e7de4b3", "4d3a58549e36707c", "9c0614afb5a7a147"],
  );
  const masks = new HashDrbg(iota(24));
  deepStrictEqual([1, 2, 3, 4].map(() => masks.nextMask()), [0x28b5, 0xa8de, 0x4d3a, 0x9c06]);
  strictEqual(new HashDrbg(iota(24)).int63(), 0x28b572b88c1ab776n);
  throws(() => new HashDrbg(iota(23)), RangeError);
});

Deno.test("GoRand draws in range and WeightedDist samples in range", () => {
  const rng = new GoRand(new HashDrbg(iota(24)));
  deepStrictEqual(rng.perm(50).toSorted((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  for (let i = 0; i < 1000; i++) {
    const v = rng.intn(7);
    ok(v >= 0 && v < 7);
    const f = rng.float64();
    ok(f >= 0 && f < 1);
  }
  const dist = new WeightedDist(iota(24), 0, 1448);
  const seen = new Set<number>();
  for (let i = 0; i < 5000; i++) {
    const v = dist.sample();
    ok(Number.isInteger(v) && v >= 0 && v <= 1448);
    seen.add(v);
  }
  ok(seen.size <= 100);
  const other = new WeightedDist(new Uint8Array(24).fill(9), 0, 1448);
  const seenOther = new Set<number>();
  for (let i = 0; i < 5000; i++) seenOther.add(other.sample());
  notDeepStrictEqual([...seen].sort(), [...seenOther].sort());
});

Deno.test("WeightedDist.fresh draws a client's own table from its random source, 1 to 100 distinct values as a random seed's", () => {
  // A counter as the random source: the same table twice, drawn at the first sample only.
  const counter = () => {
    let n = 0;
    let calls = 0;
    return {
      fill: (b: Uint8Array) => {
        calls++;
        for (let i = 0; i < b.length; i++) b[i] = (n++ * 131) & 0xff;
      },
      calls: () => calls,
    };
  };
  const a = counter();
  const dist = WeightedDist.fresh(a.fill, 0, 1448);
  strictEqual(a.calls(), 0, "nothing is drawn before the first sample");
  const table = new Set(freshDistributionValues(counter().fill, 0, 1448));
  ok(table.size >= 1 && table.size <= 100);
  for (let i = 0; i < 500; i++) ok(table.has(dist.sample()));
  ok(a.calls() > 0);
  const seedValues = new Set(distributionValues(new Uint8Array(24).fill(9), 0, 1448));
  ok([...table].some((v) => !seedValues.has(v)), "not a fixed seed's table");
  // Real randomness: every sample in range, and the tables' sizes spread
  // over 1 to 100 values (a seeded table's law).
  let few = 0;
  let many = 0;
  for (let t = 0; t < 300; t++) {
    const dist = WeightedDist.fresh((bytes) => crypto.getRandomValues(bytes), 10, 20);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const v = dist.sample();
      ok(Number.isInteger(v) && v >= 10 && v <= 20, `${v}`);
      seen.add(v);
    }
    if (seen.size <= 3) few++;
    if (seen.size >= 9) many++;
  }
  ok(few > 0 && many > 0, `${few} tables with at most 3 values, ${many} with at least 9`);
  // reset() replaces it with a seed's table.
  const seeded = new WeightedDist(new Uint8Array(24).fill(9), 0, 1448);
  const replaced = WeightedDist.fresh((bytes) => crypto.getRandomValues(bytes), 0, 1448);
  replaced.reset(new Uint8Array(24).fill(9));
  const values = new Set(Array.from({ length: 2000 }, () => seeded.sample()));
  for (let i = 0; i < 2000; i++) ok(values.has(replaced.sample()));
});

Deno.test("ntorClient and ntorServer match the reference vectors", async (t) => {
  await eachBackend(t, (c) => {
    const x = new Uint8Array(32).fill(0x11);
    const y = new Uint8Array(32).fill(0x22);
    const b = new Uint8Array(32).fill(0x33);
    const id = iota(20);
    const X = x25519.getPublicKey(x);
    const Y = x25519.getPublicKey(y);
    const B = x25519.getPublicKey(b);
    strictEqual(hex(X), "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13");
    strictEqual(hex(Y), "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20");
    strictEqual(hex(B), "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14");
    deepStrictEqual([c.x25519Base(x), c.x25519Base(y), c.x25519Base(b)], [X, Y, B]);
    const client = ntorClient(c, x, X, Y, B, id)!;
    const server = ntorServer(c, y, Y, b, X, B, id)!;
    strictEqual(
      hex(client.keySeed),
      "9ccae7408eecb21d7d5784e7cdb9eb1fa2b4d35d6d92e98b638333c28d7fc8a5",
    );
    strictEqual(
      hex(client.auth),
      "c6f257e895f51e587f9d0937ff9dea62c6e384fad57348cdb4e8c6bb06a31599",
    );
    deepStrictEqual(server, client);
    const okm = ntorKdf(c, client.keySeed);
    strictEqual(okm.length, 144);
    strictEqual(hex(okm.subarray(0, 8)), "9980ec754169c355");
    strictEqual(hex(okm.subarray(72, 80)), "91b9d9e9a2b42779");
  });
});

Deno.test("ntorClient rejects a low-order server key", async (t) => {
  await eachBackend(t, (c) => {
    const x = new Uint8Array(32).fill(0x11);
    const zero = new Uint8Array(32);
    strictEqual(ntorClient(c, x, x25519.getPublicKey(x), zero, zero, iota(20)), undefined);
  });
});

Deno.test("representativeToPublicKey inverts generateRepresentableKeyPair and X25519 agrees", async (t) => {
  await eachBackend(t, (c) => {
    const peer = crypto.getRandomValues(new Uint8Array(32));
    const peerPublic = x25519.getPublicKey(peer);
    const topBits = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const pair = generateRepresentableKeyPair(c);
      topBits.add(pair.representative[31]! & 0xc0);
      // Below the two random top bits, the non-negative root, as
      // obfs4proxy sends (r and -r stand for the same key).
      const low = pair.representative.slice();
      low[31]! &= 0x3f;
      const r = low.reduceRight((n, byte) => (n << 8n) | BigInt(byte), 0n);
      ok(r <= ((1n << 255n) - 20n) / 2n, `representative ${r} is the non-negative root`);
      const decoded = representativeToPublicKey(pair.representative);
      deepStrictEqual(decoded, pair.publicKey);
      // With the backend's exponentiation (native: libcrypto's), the same key.
      deepStrictEqual(representativeToPublicKey(pair.representative, c), pair.publicKey);
      deepStrictEqual(
        x25519.getSharedSecret(peer, decoded),
        x25519.getSharedSecret(pair.secretKey, peerPublic),
      );
    }
    ok(topBits.size > 1, "top bits of representatives are random");
    throws(() => representativeToPublicKey(new Uint8Array(31)), RangeError);
  });
});

Deno.test("representativeToPublicKey is RFC 9380's Elligator2 map (Z = 2) on any representative, with bigints and with the native backend's exponentiation", async () => {
  const native = await loadNativeCrypto();
  ok(native.powP58 !== undefined, "libcrypto 3's exponentiation loads (Debian package libssl3)");
  // An independent implementation of the same map: noble-curves' RFC 9380
  // map_to_curve_elligator2_curve25519 returns u as a fraction xMn / xMd.
  const P = (1n << 255n) - 19n;
  const pow = (b: bigint, e: bigint) => {
    let r = 1n;
    for (b %= P; e > 0n; e >>= 1n, b = (b * b) % P) if (e & 1n) r = (r * b) % P;
    return r;
  };
  const toInt = (bytes: Uint8Array) => bytes.reduceRight((n, b) => (n << 8n) | BigInt(b), 0n);
  const expected = (representative: Uint8Array) => {
    const masked = representative.slice();
    masked[31]! &= 0x3f;
    const { xMn, xMd } = rfc9380Map(toInt(masked) % P);
    return (xMn * pow(xMd, P - 2n)) % P;
  };
  const cases = [
    new Uint8Array(32), // r = 0
    Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0)), // r = 1
    Uint8Array.from({ length: 32 }, () => 0xff), // 2^254 - 1 after the mask
    Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xec : i === 31 ? 0x7f : 0xff)), // p
  ];
  for (let i = 0; i < 2000; i++) cases.push(crypto.getRandomValues(new Uint8Array(32)));
  let square = 0;
  for (const representative of cases) {
    const u = toInt(representativeToPublicKey(representative));
    strictEqual(u, expected(representative), `representative ${hex(representative)}`);
    strictEqual(
      toInt(representativeToPublicKey(representative, native)),
      u,
      `representative ${hex(representative)}, native exponentiation`,
    );
    // Both branches of the map are taken (w itself, or -w - A).
    const r = toInt(representative.slice().map((b, i) => (i === 31 ? b & 0x3f : b)));
    const d = (1n + 2n * r * r) % P;
    if (u === (P - ((486662n * pow(d, P - 2n)) % P)) % P) square++;
  }
  ok(square > 800 && square < 1300, `${square} of ${cases.length} took the first branch`);
});

Deno.test("generateRepresentableKeyPair dirty keys differ from clean keys in low order", async (t) => {
  await eachBackend(t, (c) => {
    let dirty = 0;
    for (let i = 0; i < 16; i++) {
      const pair = generateRepresentableKeyPair(c);
      if (hex(pair.publicKey) !== hex(x25519.getPublicKey(pair.secretKey))) dirty++;
    }
    ok(dirty > 8, `expected most keys dirty, got ${dirty}/16`);
  });
});

Deno.test("both backends make the same key pairs from the same randomness, every low-order part", async () => {
  // A counter as the random source: the same seeds on both sides. Seeds
  // 0..63 reach all eight low-order points (the low 3 bits of the key).
  const [wasm, native] = await Promise.all([
    import("../transports/crypto_backend.ts").then((m) => m.loadWasmCrypto()),
    import("../net/native_crypto.ts").then((m) => m.loadNativeCrypto()),
  ]);
  const lowOrder = new Set<number>();
  for (let seed = 0; seed < 64; seed++) {
    const counter = (start: number) => {
      let n = start;
      return (bytes: Uint8Array) => {
        bytes.fill(0);
        new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, n++, true);
      };
    };
    const a = generateRepresentableKeyPair(wasm, counter(seed * 1000));
    const b = generateRepresentableKeyPair(native, counter(seed * 1000));
    deepStrictEqual(b, a);
    lowOrder.add(a.secretKey[0]! & 7);
  }
  strictEqual(lowOrder.size, 8);
});

Deno.test("both backends agree on every primitive", async () => {
  const { loadWasmCrypto } = await import("../transports/crypto_backend.ts");
  const { loadNativeCrypto } = await import("../net/native_crypto.ts");
  const [w, n] = await Promise.all([loadWasmCrypto(), loadNativeCrypto()]);
  for (let i = 0; i < 20; i++) {
    const data = crypto.getRandomValues(new Uint8Array(i * 97));
    const key = crypto.getRandomValues(new Uint8Array(32));
    const nonce = crypto.getRandomValues(new Uint8Array(24));
    const boxes = [w, n].map((c) => {
      const box = new Uint8Array(data.length + 16);
      c.secretboxSeal(box, data, nonce, key);
      return box;
    });
    deepStrictEqual(boxes[1], boxes[0]);
    for (const c of [w, n]) {
      const out = new Uint8Array(data.length);
      ok(c.secretboxOpen(out, boxes[0]!, nonce, key));
      deepStrictEqual(out, data);
      const bad = boxes[0]!.slice();
      bad[i % bad.length]! ^= 1;
      strictEqual(c.secretboxOpen(out, bad, nonce, key), false);
    }
    // In place, as the framing does: box and message overlapping.
    const shared = new Uint8Array(data.length + 16);
    shared.set(data, 16);
    n.secretboxSeal(shared, shared.subarray(16), nonce, key);
    deepStrictEqual(shared, boxes[0]);
    deepStrictEqual(n.sha256(data), w.sha256(data));
    deepStrictEqual(n.sha512(data), w.sha512(data));
    deepStrictEqual(n.hmacSha256(key, data, nonce), w.hmacSha256(key, data, nonce));
    const info = data.subarray(0, 100);
    deepStrictEqual(n.hkdfSha256(key, nonce, info, 144), w.hkdfSha256(key, nonce, info, 144));
    deepStrictEqual(n.x25519Base(key), w.x25519Base(key));
    const pub = w.x25519Base(crypto.getRandomValues(new Uint8Array(32)));
    deepStrictEqual(n.x25519(key, pub), w.x25519(key, pub));
  }
  strictEqual(n.x25519(new Uint8Array(32).fill(1), new Uint8Array(32)), undefined);
  strictEqual(w.x25519(new Uint8Array(32).fill(1), new Uint8Array(32)), undefined);
  throws(
    () =>
      n.secretboxSeal(
        new Uint8Array(17),
        new Uint8Array(2),
        new Uint8Array(24),
        new Uint8Array(32),
      ),
    RangeError,
  );
  throws(
    () =>
      w.secretboxSeal(
        new Uint8Array(18),
        new Uint8Array(2),
        new Uint8Array(23),
        new Uint8Array(32),
      ),
    RangeError,
  );
});

Deno.test("KeyPairReserve hands out each pair once and refills to its size", async (t) => {
  await eachBackend(t, (c) => {
    const reserve = new KeyPairReserve(c, { size: 2 });
    strictEqual(reserve.spares, 1);
    reserve.refill();
    reserve.refill();
    strictEqual(reserve.spares, 2);
    const a = reserve.take();
    const b = reserve.take();
    const fresh = reserve.take();
    strictEqual(reserve.spares, 0);
    notDeepStrictEqual(a.secretKey, b.secretKey);
    notDeepStrictEqual(b.secretKey, fresh.secretKey);
    deepStrictEqual(representativeToPublicKey(fresh.representative), fresh.publicKey);
  });
});

Deno.test("bridgeCloseDelay matches obfs4proxy's measured close delays", () => {
  // Seeds given to obfs4proxy 0.0.14 in obfs4_state.json; it closed garbage
  // connections after 37, 42, 63 and 71 s (30 s + delay).
  const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (x) => parseInt(x, 16));
  const measured: [string, number][] = [
    ["34ef457b6c73a2f3802934d9acfa3545a3015857d64bbdcf", 7],
    ["55b13952dc98227aeda869d56d69422ac424f3113d77391b", 12],
    ["3b45f1f6a3c8f0148edefb34452e6e18c14e9dd61373163a", 33],
    ["fd2a221c3ee4970fefd804117e8ad3df9e93d41773bdc97f", 41],
  ];
  for (const [seed, delay] of measured) strictEqual(bridgeCloseDelay(unhex(seed)), delay);
});

Deno.test("bridgeCloseDelay refuses a seed that is no Uint8Array with a TypeError naming its type, and one of another length with a RangeError naming the length", () => {
  // bridgeCloseDelay(5) said 'seed must be 24 bytes, got undefined' (a
  // RangeError), and a 24-character string was taken as 24 bytes of garbage.
  const cases: [unknown, string][] = [
    [5, "number"],
    [null, "null"],
    ["x".repeat(24), "string"],
    [Array.from({ length: 24 }, () => 0), "an array"],
  ];
  for (const [seed, type] of cases) {
    throws(
      () => bridgeCloseDelay(seed as Uint8Array),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `Cannot seed hash DRBG: seed must be a Uint8Array, got ${type}`,
      String(type),
    );
  }
  throws(
    () => bridgeCloseDelay(new Uint8Array(23)),
    (e: Error) =>
      e instanceof RangeError &&
      e.message === "Cannot seed hash DRBG: seed must be 24 bytes, got 23",
  );
});

Deno.test("HashDrbg number draws equal its bigint draws", () => {
  for (let s = 0; s < 20; s++) {
    const seed = Uint8Array.from({ length: 24 }, (_, i) => (i * 37 + s * 101) & 0xff);
    const a = new HashDrbg(seed);
    const b = new HashDrbg(seed);
    const c = new HashDrbg(seed);
    for (let i = 0; i < 200; i++) {
      const big = a.int63();
      strictEqual(b.int63Number(), Number(big));
      strictEqual(c.int63Top31(), Number(big >> 32n));
    }
  }
});

Deno.test("GoRand gives the same draws with and without the number fast path", () => {
  const seed = iota(24);
  const slow = new HashDrbg(seed);
  const fast = new GoRand(new HashDrbg(seed));
  const plain = new GoRand({ int63: () => slow.int63() });
  deepStrictEqual(fast.perm(1449), plain.perm(1449));
  for (let i = 0; i < 500; i++) {
    strictEqual(fast.intn(100), plain.intn(100));
    strictEqual(fast.float64(), plain.float64());
  }
});

Deno.test("hmacSha256 matches RFC 4231 (cases 2 and 6) in both backends, across parts and empty parts", async (t) => {
  const text = (s: string) => new TextEncoder().encode(s);
  await eachBackend(t, (crypto) => {
    const jefe = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    strictEqual(hex(crypto.hmacSha256(text("Jefe"), text("what do ya want for nothing?"))), jefe);
    strictEqual(
      hex(
        crypto.hmacSha256(
          text("Jefe"),
          text("what do ya "),
          new Uint8Array(0),
          text("want for nothing?"),
        ),
      ),
      jefe,
    );
    strictEqual(
      hex(
        crypto.hmacSha256(
          new Uint8Array(131).fill(0xaa),
          text("Test Using Larger Than Block-Size Key - Hash Key First"),
        ),
      ),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    );
  });
});

Deno.test("hkdfSha256 matches RFC 5869 (cases 1 to 3) in both backends, and node:crypto's at every length", async (t) => {
  const seq = (from: number, to: number) =>
    Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
  const { hkdfSync } = await import("node:crypto");
  await eachBackend(t, (crypto) => {
    const ikm = new Uint8Array(22).fill(0x0b);
    strictEqual(
      hex(crypto.hkdfSha256(ikm, seq(0x00, 0x0c), seq(0xf0, 0xf9), 42)),
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    );
    strictEqual(
      hex(crypto.hkdfSha256(seq(0x00, 0x4f), seq(0x60, 0xaf), seq(0xb0, 0xff), 82)),
      "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c" +
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71" +
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    );
    // No salt (HashLen zeros) and no info.
    const empty = new Uint8Array(0);
    strictEqual(
      hex(crypto.hkdfSha256(ikm, empty, empty, 42)),
      "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    );
    for (const length of [0, 1, 31, 32, 33, 144, 255 * 32]) {
      const [key, salt, info] = [22, length % 70, 9].map((n) =>
        globalThis.crypto.getRandomValues(new Uint8Array(n))
      ) as [Uint8Array, Uint8Array, Uint8Array];
      deepStrictEqual(
        crypto.hkdfSha256(key, salt, info, length),
        new Uint8Array(hkdfSync("sha256", key, salt, info, length)),
        `length ${length}`,
      );
    }
  });
});

Deno.test("OpenSSL's HMAC-SHA256 loads through FFI here and is the native backend's", async () => {
  const hmac = libcryptoHmac();
  ok(hmac !== undefined, "libcrypto 3 did not load (Debian package libssl3)");
  const native = await loadNativeCrypto();
  strictEqual(native.hmacSha256, hmac);
  const key = crypto.getRandomValues(new Uint8Array(52));
  const data = crypto.getRandomValues(new Uint8Array(5000));
  deepStrictEqual(hmac(key, data), (await loadWasmCrypto()).hmacSha256(key, data));
});

Deno.test("obfs4 ServerHandshake takes its ephemeral key pair only once a valid client handshake arrived", async () => {
  const { ClientHandshake, ServerHandshake } = await import("../transports/obfs4/_handshake.ts");
  const { generateRepresentableKeyPair } = await import("../transports/obfs4/_elligator2.ts");
  const { ReplayFilter } = await import("../transports/_replay_filter.ts");
  const crypto = await loadNativeCrypto();
  const secretKey = globalThis.crypto.getRandomValues(new Uint8Array(32));
  const keys = {
    nodeId: globalThis.crypto.getRandomValues(new Uint8Array(20)),
    publicKey: crypto.x25519Base(secretKey),
    secretKey,
  };
  const random = (b: Uint8Array) => globalThis.crypto.getRandomValues(b);
  let taken = 0;
  const keyPair = () => {
    taken++;
    return generateRepresentableKeyPair(crypto, random);
  };
  // Garbage, short or long, takes none.
  const garbage = new ServerHandshake(crypto, keys, new ReplayFilter(), { keyPair });
  strictEqual(garbage.parse(random(new Uint8Array(100))).done, false);
  throws(() => garbage.parse(random(new Uint8Array(8192))), SyntaxError);
  strictEqual(taken, 0);
  // A valid handshake takes one.
  const server = new ServerHandshake(crypto, keys, new ReplayFilter(), { keyPair });
  const step = server.parse(new ClientHandshake(crypto, keys).message);
  strictEqual(step.done, true);
  strictEqual(taken, 1);
});
