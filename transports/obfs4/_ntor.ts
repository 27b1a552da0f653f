// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoBackend } from "../crypto_backend.ts";
import { concat } from "../_bytes.ts";

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

function finish(
  crypto: CryptoBackend,
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
  const keySeed = crypto.hmacSha256(T_KEY, exp1, exp2, suffix);
  const verify = crypto.hmacSha256(T_VERIFY, exp1, exp2, suffix);
  const auth = crypto.hmacSha256(T_MAC, verify, suffix, SERVER);
  return { keySeed, auth };
}

/**
 * The client side of obfs4's ntor handshake.
 *
 * @example Both sides agree
 * ```ts
 * import { ntorClient, ntorServer } from "./_ntor.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const c = await loadWasmCrypto();
 * const x = new Uint8Array(32).fill(1);
 * const y = new Uint8Array(32).fill(2);
 * const b = new Uint8Array(32).fill(3);
 * const [X, Y, B] = [x, y, b].map((k) => c.x25519Base(k)) as [Uint8Array, Uint8Array, Uint8Array];
 * const id = new Uint8Array(20);
 * deepStrictEqual(ntorClient(c, x, X, Y, B, id), ntorServer(c, y, Y, b, X, B, id));
 * ```
 *
 * @param crypto The crypto backend.
 * @param x The client's ephemeral secret key.
 * @param X The client's ephemeral public key as sent (possibly dirty).
 * @param Y The server's ephemeral public key as received.
 * @param B The server's identity public key.
 * @param nodeId The server's 20-byte node ID.
 * @returns KEY_SEED and AUTH, or `undefined` when a shared secret is zero.
 */
export function ntorClient(
  crypto: CryptoBackend,
  x: Uint8Array,
  X: Uint8Array,
  Y: Uint8Array,
  B: Uint8Array,
  nodeId: Uint8Array,
): NtorResult | undefined {
  return finish(crypto, crypto.x25519(x, Y), crypto.x25519(x, B), nodeId, B, X, Y);
}

/**
 * The server side of obfs4's ntor handshake.
 *
 * @example Deriving a server result
 * ```ts
 * import { ntorServer } from "./_ntor.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { strictEqual } from "node:assert";
 *
 * const c = await loadWasmCrypto();
 * const x = new Uint8Array(32).fill(1);
 * const y = new Uint8Array(32).fill(2);
 * const b = new Uint8Array(32).fill(3);
 * const [X, Y, B] = [x, y, b].map((k) => c.x25519Base(k)) as [Uint8Array, Uint8Array, Uint8Array];
 * strictEqual(ntorServer(c, y, Y, b, X, B, new Uint8Array(20))?.auth.length, 32);
 * ```
 *
 * @param crypto The crypto backend.
 * @param y The server's ephemeral secret key.
 * @param Y The server's ephemeral public key as sent (possibly dirty).
 * @param b The server's identity secret key.
 * @param X The client's ephemeral public key as received.
 * @param B The server's identity public key.
 * @param nodeId The server's 20-byte node ID.
 * @returns KEY_SEED and AUTH, or `undefined` when a shared secret is zero.
 */
export function ntorServer(
  crypto: CryptoBackend,
  y: Uint8Array,
  Y: Uint8Array,
  b: Uint8Array,
  X: Uint8Array,
  B: Uint8Array,
  nodeId: Uint8Array,
): NtorResult | undefined {
  return finish(crypto, crypto.x25519(y, X), crypto.x25519(b, X), nodeId, B, X, Y);
}

/**
 * Expand KEY_SEED into obfs4's 144 bytes of session keys.
 *
 * @example Expanding
 * ```ts
 * import { ntorKdf } from "./_ntor.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(ntorKdf(await loadWasmCrypto(), new Uint8Array(32)).length, 144);
 * ```
 *
 * @param crypto The crypto backend.
 * @param keySeed KEY_SEED from the handshake.
 * @returns The 144-byte OKM.
 */
export function ntorKdf(crypto: CryptoBackend, keySeed: Uint8Array): Uint8Array {
  return crypto.hkdfSha256(keySeed, T_KEY, M_EXPAND, NTOR_OKM_LENGTH);
}
