// Copyright the ptkit authors. MIT license.

import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual, throws } from "node:assert";
import { x25519 } from "@noble/curves/ed25519.js";
import { SipHash, sipHash24 } from "../transports/obfs4/siphash.ts";
import { HashDrbg } from "../transports/obfs4/hash_drbg.ts";
import { GoRand } from "../transports/obfs4/go_rand.ts";
import { WeightedDist } from "../transports/obfs4/weighted_dist.ts";
import { bridgeCloseDelay } from "../transports/obfs4/mod.ts";
import { ntorClient, ntorKdf, ntorServer } from "../transports/obfs4/ntor.ts";
import {
  generateRepresentableKeyPair,
  representativeToPublicKey,
} from "../transports/obfs4/elligator2.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const iota = (n: number) => Uint8Array.from({ length: n }, (_, i) => i);

// Official SipHash-2-4 vectors: key 00..0f, message 00..(n-1).
const SIPHASH_VECTORS: Record<number, string> = {
  0: "310e0edd47db6f72",
  1: "fd67dc93c539f874",
  2: "5a4fa9d909806c0d",
  3: "2d7efbd796666785",
  4: "b7877127e09427cf",
  5: "8da699cd64557618",
  6: "cee3fe586e46c9cb",
  7: "37d1018bf50002ab",
  8: "6224939a79f5f593",
  9: "b0e4a90bdf82009e",
  10: "f3b9dd94c5bb5d7a",
  11: "a7ad6b22462fb3f4",
  12: "fbe50e86bc8f1e75",
  13: "903d84c02756ea14",
  14: "eef27a8e90ca23f7",
  15: "e545be4961ca29a1",
  63: "724506eb4c328a95",
};

Deno.test("sipHash24 matches the official vectors", () => {
  for (const [n, want] of Object.entries(SIPHASH_VECTORS)) {
    strictEqual(hex(sipHash24(iota(16), iota(Number(n)))), want, `message length ${n}`);
  }
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

Deno.test("ntorClient and ntorServer match the reference vectors", () => {
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
  const client = ntorClient(x, X, Y, B, id)!;
  const server = ntorServer(y, Y, b, X, B, id)!;
  strictEqual(
    hex(client.keySeed),
    "9ccae7408eecb21d7d5784e7cdb9eb1fa2b4d35d6d92e98b638333c28d7fc8a5",
  );
  strictEqual(hex(client.auth), "c6f257e895f51e587f9d0937ff9dea62c6e384fad57348cdb4e8c6bb06a31599");
  deepStrictEqual(server, client);
  const okm = ntorKdf(client.keySeed);
  strictEqual(okm.length, 144);
  strictEqual(hex(okm.subarray(0, 8)), "9980ec754169c355");
  strictEqual(hex(okm.subarray(72, 80)), "91b9d9e9a2b42779");
});

Deno.test("ntorClient rejects a low-order server key", () => {
  const x = new Uint8Array(32).fill(0x11);
  const zero = new Uint8Array(32);
  strictEqual(ntorClient(x, x25519.getPublicKey(x), zero, zero, iota(20)), undefined);
});

Deno.test("representativeToPublicKey inverts generateRepresentableKeyPair and X25519 agrees", () => {
  const peer = crypto.getRandomValues(new Uint8Array(32));
  const peerPublic = x25519.getPublicKey(peer);
  const topBits = new Set<number>();
  for (let i = 0; i < 40; i++) {
    const pair = generateRepresentableKeyPair();
    topBits.add(pair.representative[31]! & 0xc0);
    const decoded = representativeToPublicKey(pair.representative);
    deepStrictEqual(decoded, pair.publicKey);
    deepStrictEqual(
      x25519.getSharedSecret(peer, decoded),
      x25519.getSharedSecret(pair.secretKey, peerPublic),
    );
  }
  ok(topBits.size > 1, "top bits of representatives are random");
  throws(() => representativeToPublicKey(new Uint8Array(31)), RangeError);
});

Deno.test("generateRepresentableKeyPair dirty keys differ from clean keys in low order", () => {
  let dirty = 0;
  for (let i = 0; i < 16; i++) {
    const pair = generateRepresentableKeyPair();
    if (hex(pair.publicKey) !== hex(x25519.getPublicKey(pair.secretKey))) dirty++;
  }
  ok(dirty > 8, `expected most keys dirty, got ${dirty}/16`);
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
