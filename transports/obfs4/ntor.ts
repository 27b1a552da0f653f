// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const PROTOID = text("ntor-curve25519-sha256-1");
const T_MAC = text("ntor-curve25519-sha256-1:mac");
const T_KEY = text("ntor-curve25519-sha256-1:key_extract");
const T_VERIFY = text("ntor-curve25519-sha256-1:key_verify");
const M_EXPAND = text("ntor-curve25519-sha256-1:key_expand");
const SERVER = text("Server");

/** The length of the key material {@linkcode ntorKdf} derives. */
export const NTOR_OKM_LENGTH = 144;

/** What an ntor handshake yields on both sides. */
export interface NtorResult {
  /** KEY_SEED, the input of {@linkcode ntorKdf}. */
  readonly keySeed: Uint8Array;
  /** AUTH, which the server sends and the client checks. */
  readonly auth: Uint8Array;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function shared(secret: Uint8Array, pub: Uint8Array): Uint8Array | undefined {
  let out: Uint8Array;
  try {
    out = x25519.getSharedSecret(secret, pub);
  } catch {
    return undefined;
  }
  return out.some((b) => b !== 0) ? out : undefined;
}

const PKCS8_X25519_PREFIX = Uint8Array.of(
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
);
// undefined: not tried yet; false: WebCrypto has no X25519 here.
let webCryptoX25519: boolean | undefined;
// Imported keys by the array that holds them: a bridge's identity key is
// imported once, and a public key used twice in one handshake once.
const privateKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();
const publicKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

function importPrivate(secret: Uint8Array): Promise<CryptoKey> {
  let key = privateKeys.get(secret);
  if (key === undefined) {
    const pkcs8 = new Uint8Array(48);
    pkcs8.set(PKCS8_X25519_PREFIX);
    pkcs8.set(secret, 16);
    key = crypto.subtle.importKey("pkcs8", pkcs8, "X25519", false, ["deriveBits"]);
    privateKeys.set(secret, key);
  }
  return key;
}

function importPublic(pub: Uint8Array): Promise<CryptoKey> {
  let key = publicKeys.get(pub);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", pub.slice(), "X25519", false, []);
    publicKeys.set(pub, key);
  }
  return key;
}

async function sharedAsync(secret: Uint8Array, pub: Uint8Array): Promise<Uint8Array | undefined> {
  if (webCryptoX25519 !== false && globalThis.crypto?.subtle !== undefined) {
    let privateKey: CryptoKey;
    let publicKey: CryptoKey;
    try {
      [privateKey, publicKey] = await Promise.all([importPrivate(secret), importPublic(pub)]);
      webCryptoX25519 = true;
    } catch {
      privateKeys.delete(secret);
      publicKeys.delete(pub);
      if (webCryptoX25519 === undefined) webCryptoX25519 = false;
      return webCryptoX25519 ? undefined : shared(secret, pub);
    }
    try {
      const bits = await crypto.subtle.deriveBits(
        { name: "X25519", public: publicKey },
        privateKey,
        256,
      );
      const out = new Uint8Array(bits);
      return out.some((b) => b !== 0) ? out : undefined;
    } catch {
      // An all-zero result (low-order public key).
      return undefined;
    }
  }
  return shared(secret, pub);
}

function finish(
  exp1: Uint8Array | undefined,
  exp2: Uint8Array | undefined,
  nodeId: Uint8Array,
  B: Uint8Array,
  X: Uint8Array,
  Y: Uint8Array,
): NtorResult | undefined {
  if (exp1 === undefined || exp2 === undefined) return undefined;
  // obfs4's transcript: B || B || X || Y || PROTOID || NODEID.
  const suffix = concat(B, B, X, Y, PROTOID, nodeId);
  const secretInput = concat(exp1, exp2, suffix);
  const keySeed = hmac(sha256, T_KEY, secretInput);
  const verify = hmac(sha256, T_VERIFY, secretInput);
  const auth = hmac(sha256, T_MAC, concat(verify, suffix, SERVER));
  return { keySeed, auth };
}

/**
 * The client side of obfs4's ntor handshake.
 *
 * @example Both sides agree
 * ```ts
 * import { ntorClient, ntorServer } from "./ntor.ts";
 * import { x25519 } from "@noble/curves/ed25519.js";
 * import { deepStrictEqual } from "node:assert";
 *
 * const x = new Uint8Array(32).fill(1);
 * const y = new Uint8Array(32).fill(2);
 * const b = new Uint8Array(32).fill(3);
 * const X = x25519.getPublicKey(x);
 * const Y = x25519.getPublicKey(y);
 * const B = x25519.getPublicKey(b);
 * const id = new Uint8Array(20);
 * deepStrictEqual(ntorClient(x, X, Y, B, id), ntorServer(y, Y, b, X, B, id));
 * ```
 *
 * @param x The client's ephemeral secret key.
 * @param X The client's ephemeral public key as sent.
 * @param Y The server's ephemeral public key as received.
 * @param B The server's identity public key.
 * @param nodeId The server's 20-byte node ID.
 * @returns The result, or `undefined` when a shared secret is zero.
 */
export function ntorClient(
  x: Uint8Array,
  X: Uint8Array,
  Y: Uint8Array,
  B: Uint8Array,
  nodeId: Uint8Array,
): NtorResult | undefined {
  return finish(shared(x, Y), shared(x, B), nodeId, B, X, Y);
}

/**
 * The server side of obfs4's ntor handshake.
 *
 * @example Deriving a server result
 * ```ts
 * import { ntorServer } from "./ntor.ts";
 * import { x25519 } from "@noble/curves/ed25519.js";
 * import { strictEqual } from "node:assert";
 *
 * const x = new Uint8Array(32).fill(1);
 * const y = new Uint8Array(32).fill(2);
 * const b = new Uint8Array(32).fill(3);
 * const X = x25519.getPublicKey(x);
 * const Y = x25519.getPublicKey(y);
 * const B = x25519.getPublicKey(b);
 * strictEqual(ntorServer(y, Y, b, X, B, new Uint8Array(20))?.auth.length, 32);
 * ```
 *
 * @param y The server's ephemeral secret key.
 * @param Y The server's ephemeral public key as sent.
 * @param b The server's identity secret key.
 * @param X The client's ephemeral public key as received.
 * @param B The server's identity public key.
 * @param nodeId The server's 20-byte node ID.
 * @returns The result, or `undefined` when a shared secret is zero.
 */
export function ntorServer(
  y: Uint8Array,
  Y: Uint8Array,
  b: Uint8Array,
  X: Uint8Array,
  B: Uint8Array,
  nodeId: Uint8Array,
): NtorResult | undefined {
  return finish(shared(y, X), shared(b, X), nodeId, B, X, Y);
}

/**
 * {@linkcode ntorClient} with the X25519 operations done by WebCrypto where
 * it has X25519 (about 4 times as fast), else as {@linkcode ntorClient}.
 *
 * @example Same result as the synchronous version
 * ```ts
 * import { ntorClient, ntorClientAsync } from "./ntor.ts";
 * import { x25519 } from "@noble/curves/ed25519.js";
 * import { deepStrictEqual } from "node:assert";
 *
 * const x = new Uint8Array(32).fill(1);
 * const y = new Uint8Array(32).fill(2);
 * const b = new Uint8Array(32).fill(3);
 * const [X, Y, B] = [x, y, b].map((k) => x25519.getPublicKey(k));
 * const id = new Uint8Array(20);
 * deepStrictEqual(await ntorClientAsync(x, X!, Y!, B!, id), ntorClient(x, X!, Y!, B!, id));
 * ```
 *
 * @param x The client's ephemeral secret key.
 * @param X The client's ephemeral public key (as sent, possibly dirty).
 * @param Y The server's ephemeral public key.
 * @param B The bridge's public key.
 * @param nodeId The bridge's node ID.
 * @returns KEY_SEED and AUTH, or `undefined` if a shared secret is zero.
 */
export async function ntorClientAsync(
  x: Uint8Array,
  X: Uint8Array,
  Y: Uint8Array,
  B: Uint8Array,
  nodeId: Uint8Array,
): Promise<NtorResult | undefined> {
  const [a, b] = await Promise.all([sharedAsync(x, Y), sharedAsync(x, B)]);
  return finish(a, b, nodeId, B, X, Y);
}

/**
 * {@linkcode ntorServer} with the X25519 operations done by WebCrypto where
 * it has X25519, else as {@linkcode ntorServer}.
 *
 * @example Same result as the synchronous version
 * ```ts
 * import { ntorServer, ntorServerAsync } from "./ntor.ts";
 * import { x25519 } from "@noble/curves/ed25519.js";
 * import { deepStrictEqual } from "node:assert";
 *
 * const x = new Uint8Array(32).fill(1);
 * const y = new Uint8Array(32).fill(2);
 * const b = new Uint8Array(32).fill(3);
 * const [X, Y, B] = [x, y, b].map((k) => x25519.getPublicKey(k));
 * const id = new Uint8Array(20);
 * deepStrictEqual(await ntorServerAsync(y, Y!, b, X!, B!, id), ntorServer(y, Y!, b, X!, B!, id));
 * ```
 *
 * @param y The server's ephemeral secret key.
 * @param Y The server's ephemeral public key (as sent, possibly dirty).
 * @param b The bridge's secret key.
 * @param X The client's ephemeral public key.
 * @param B The bridge's public key.
 * @param nodeId The bridge's node ID.
 * @returns KEY_SEED and AUTH, or `undefined` if a shared secret is zero.
 */
export async function ntorServerAsync(
  y: Uint8Array,
  Y: Uint8Array,
  b: Uint8Array,
  X: Uint8Array,
  B: Uint8Array,
  nodeId: Uint8Array,
): Promise<NtorResult | undefined> {
  const [s1, s2] = await Promise.all([sharedAsync(y, X), sharedAsync(b, X)]);
  return finish(s1, s2, nodeId, B, X, Y);
}

/**
 * Expand KEY_SEED into obfs4's 144 bytes of session keys.
 *
 * @example Expanding
 * ```ts
 * import { ntorKdf } from "./ntor.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(ntorKdf(new Uint8Array(32)).length, 144);
 * ```
 *
 * @param keySeed KEY_SEED from the handshake.
 * @returns The 144-byte OKM.
 */
export function ntorKdf(keySeed: Uint8Array): Uint8Array {
  return hkdf(sha256, keySeed, T_KEY, M_EXPAND, NTOR_OKM_LENGTH);
}
