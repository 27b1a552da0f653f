// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * The cryptographic primitives a runtime offers transports, so that a
 * transport stays browser-compatible and still runs on native code where
 * the runtime can load it.
 *
 * A transport never picks a library itself: it calls
 * `env.crypto()` ({@linkcode TransportEnvironment}) and falls back to
 * {@linkcode loadWasmCrypto} (libsodium compiled to WebAssembly, with
 * `@noble/hashes` and `@noble/curves`) when the runtime offers nothing, as
 * in a browser. ptkit's Deno runtime (`@ptkit/ptkit/net`'s
 * `runtimeCrypto`, used by `listen`, `proxy`, `createConnector` and the
 * managed proxy) offers libsodium through `sodium-native` when `--allow-ffi`
 * is granted, and this WebAssembly backend otherwise. Both load lazily, on
 * first use: importing this module loads no crypto library.
 *
 * @module
 */

import type { TransportEnvironment } from "./transport.ts";
import { restateMissingPackage } from "./_npm_package.ts";

/**
 * Primitives a transport may need, each from a vetted library. Byte arrays
 * are never kept; outputs are fresh arrays unless an argument receives them.
 */
export interface CryptoBackend {
  /** What implements the primitives, for logs (`"sodium-native 5.1.0 (libsodium, Node-API)"`). */
  readonly name: string;
  /**
   * Where a Web Worker can load this same backend: a module URL and the
   * name of its export that loads it (`{ module: ".../native_crypto.ts",
   * load: "loadNativeCrypto" }`), so that costly work (obfs4's spare key
   * pairs) can run off the main thread. Absent: no worker is started.
   */
  readonly worker?: {
    readonly module: string;
    readonly load: string;
    /**
     * Whether a Worker may start now. Absent: always. The Deno runtime's
     * crypto says no while the process has few spare file descriptors (a
     * flood holding them): Deno ends the whole process when a Worker's
     * thread cannot get its own. The work then stays on the main thread.
     */
    readonly mayStart?: () => boolean;
  };
  /**
   * NaCl `crypto_secretbox_easy` (XSalsa20-Poly1305): seal `message` into
   * `box`, the 16-byte tag first. `box.length` must be `message.length + 16`;
   * the two may overlap.
   */
  secretboxSeal(box: Uint8Array, message: Uint8Array, nonce: Uint8Array, key: Uint8Array): void;
  /**
   * NaCl `crypto_secretbox_open_easy`: check and decrypt `box` into
   * `message` (`box.length - 16` bytes; the two may overlap).
   *
   * @returns `false` when the tag is wrong (then `message` holds nothing useful).
   */
  secretboxOpen(
    message: Uint8Array,
    box: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
  ): boolean;
  /**
   * X25519 (RFC 7748): the shared secret of a 32-byte secret key and a
   * 32-byte public key, or `undefined` when it is all zero (a low-order
   * public key).
   */
  x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined;
  /** X25519 with the base point: the public key of a 32-byte secret key. */
  x25519Base(secretKey: Uint8Array): Uint8Array;
  /**
   * Edwards25519 `[scalar]B` with the 32-byte little-endian scalar taken as
   * it is (not clamped; its top bit must be clear), as a compressed point.
   */
  ed25519BaseNoclamp(scalar: Uint8Array): Uint8Array;
  /** Edwards25519 point addition of two compressed points (any order), compressed. */
  ed25519Add(p: Uint8Array, q: Uint8Array): Uint8Array;
  /** SHA-256. */
  sha256(data: Uint8Array): Uint8Array;
  /** SHA-512. */
  sha512(data: Uint8Array): Uint8Array;
  /** HMAC-SHA256 of the concatenation of `parts`. */
  hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array;
  /** HKDF-SHA256 (RFC 5869): `length` bytes of output key material; `info` at most 1024 bytes. */
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /**
   * z^((p - 5) / 8) modulo p = 2^255 - 19, of and to 32 little-endian bytes
   * (`z` below p): the exponentiation in obfs4's Elligator2 map, where the
   * backend has a faster one than JavaScript's bigints. Absent: bigints.
   */
  readonly powP58?: (z: Uint8Array) => Uint8Array;
  /**
   * The AEAD of `algorithm` under `key` (32 bytes; 16 for AES-128-GCM, 24
   * for AES-192-GCM), or `undefined` when this backend lacks the algorithm.
   */
  aead(algorithm: AeadAlgorithm, key: Uint8Array): Aead | undefined;
}

/**
 * AEAD algorithms a backend may offer: ChaCha20-Poly1305 (RFC 8439, 12-byte
 * nonce), XChaCha20-Poly1305 (24-byte nonce) and AES-GCM (12-byte nonce);
 * all with 16-byte tags.
 */
export type AeadAlgorithm =
  | "chacha20-poly1305"
  | "xchacha20-poly1305"
  | "aes-128-gcm"
  | "aes-192-gcm"
  | "aes-256-gcm";

/**
 * The key length of an AEAD algorithm in bytes: 16 for AES-128-GCM, 24 for
 * AES-192-GCM, 32 for the others.
 *
 * @example
 * ```ts
 * import { aeadKeyLength } from "./crypto_backend.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(aeadKeyLength("aes-192-gcm"), 24);
 * ```
 *
 * @param algorithm The algorithm.
 * @returns Its key length.
 */
export function aeadKeyLength(algorithm: AeadAlgorithm): number {
  return algorithm === "aes-128-gcm" ? 16 : algorithm === "aes-192-gcm" ? 24 : 32;
}

/** One AEAD key: seals and opens under a caller's nonce, without associated data. */
export interface Aead {
  /**
   * Encrypt `plaintext`, writing the ciphertext then the 16-byte tag into
   * `dest` at `offset`.
   *
   * @returns The bytes written (`plaintext.length + 16`).
   */
  seal(plaintext: Uint8Array, nonce: Uint8Array, dest: Uint8Array, offset: number): number;
  /**
   * Check and decrypt ciphertext-then-tag.
   *
   * @returns The plaintext, or `undefined` when the tag is wrong.
   */
  open(sealed: Uint8Array, nonce: Uint8Array): Uint8Array | undefined;
}

/** libsodium-wrappers' AEAD functions (ChaCha20-Poly1305, XChaCha20-Poly1305). */
interface SodiumAead {
  crypto_aead_chacha20poly1305_ietf_encrypt: SodiumSeal;
  crypto_aead_chacha20poly1305_ietf_decrypt: SodiumOpen;
  crypto_aead_xchacha20poly1305_ietf_encrypt: SodiumSeal;
  crypto_aead_xchacha20poly1305_ietf_decrypt: SodiumOpen;
}
type SodiumSeal = (
  m: Uint8Array,
  ad: null,
  nsec: null,
  nonce: Uint8Array,
  key: Uint8Array,
) => Uint8Array;
type SodiumOpen = (
  nsec: null,
  c: Uint8Array,
  ad: null,
  nonce: Uint8Array,
  key: Uint8Array,
) => Uint8Array;

/** An {@linkcode Aead} from a one-shot seal (ciphertext then tag) and an open that throws on a bad tag. */
function oneShotAead(
  seal: (plaintext: Uint8Array, nonce: Uint8Array) => Uint8Array,
  open: (sealed: Uint8Array, nonce: Uint8Array) => Uint8Array,
): Aead {
  return {
    seal(plaintext, nonce, dest, offset) {
      const out = seal(plaintext, nonce);
      dest.set(out, offset);
      return out.length;
    },
    open(sealed, nonce) {
      if (sealed.length < MAC_LENGTH) return undefined;
      try {
        return open(sealed, nonce);
      } catch {
        return undefined;
      }
    },
  };
}

/** Loads a {@linkcode CryptoBackend}; the same one each call. */
export type CryptoLoader = NonNullable<TransportEnvironment["crypto"]>;

const MAC_LENGTH = 16;
// Room for the largest message sealed or opened at once.
const MAX_MESSAGE = 64 * 1024;

// The raw WebAssembly module under libsodium-wrappers: calling it on
// buffers kept in its heap avoids the wrappers' allocations and copies.
interface RawSodium {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _crypto_secretbox_easy(
    c: number,
    m: number,
    lo: number,
    hi: number,
    n: number,
    k: number,
  ): number;
  _crypto_secretbox_open_easy(
    m: number,
    c: number,
    lo: number,
    hi: number,
    n: number,
    k: number,
  ): number;
  _crypto_scalarmult(q: number, n: number, p: number): number;
  _crypto_scalarmult_base(q: number, n: number): number;
}

function check(what: string, bytes: Uint8Array, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new RangeError(`Cannot use ${what} of ${bytes?.length} bytes: want ${length}`);
  }
}

/**
 * Check the arguments of a secretbox call: key and nonce sizes, the box
 * exactly 16 bytes longer than the message, and a size the backends take.
 *
 * @example A box one byte short
 * ```ts
 * import { checkSecretbox } from "./crypto_backend.ts";
 * import { throws } from "node:assert";
 *
 * const [key, nonce] = [new Uint8Array(32), new Uint8Array(24)];
 * checkSecretbox(new Uint8Array(18), new Uint8Array(2), nonce, key);
 * throws(() => checkSecretbox(new Uint8Array(17), new Uint8Array(2), nonce, key), RangeError);
 * ```
 *
 * @param box The box.
 * @param message The message.
 * @param nonce The nonce.
 * @param key The key.
 * @throws {RangeError} When a size is wrong.
 */
export function checkSecretbox(
  box: Uint8Array,
  message: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): void {
  check("secretbox key", key, 32);
  check("secretbox nonce", nonce, 24);
  if (message.length > MAX_MESSAGE) {
    throw new RangeError(`Cannot use secretbox message of ${message.length} bytes: too long`);
  }
  check("secretbox box", box, message.length + MAC_LENGTH);
}

let wasm: Promise<CryptoBackend> | undefined;

/**
 * The portable backend: libsodium-wrappers 0.7.13 (libsodium compiled to
 * WebAssembly; its raw functions on one buffer kept in the WebAssembly
 * heap) for secretbox and X25519, `@noble/hashes` for SHA-2, HMAC and
 * HKDF, and `@noble/curves` for Edwards25519 points. Runs wherever
 * WebAssembly does, without any permission. Loaded on the first call.
 *
 * @example Sealing and opening a box
 * ```ts
 * import { loadWasmCrypto } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const backend = await loadWasmCrypto();
 * const key = new Uint8Array(32);
 * const nonce = new Uint8Array(24);
 * const box = new Uint8Array(2 + 16);
 * backend.secretboxSeal(box, new Uint8Array([1, 2]), nonce, key);
 * const message = new Uint8Array(2);
 * ok(backend.secretboxOpen(message, box, nonce, key));
 * deepStrictEqual(message, new Uint8Array([1, 2]));
 * ```
 *
 * @returns The backend (the same one each call).
 */
export function loadWasmCrypto(): Promise<CryptoBackend> {
  wasm ??= (async () => {
    // The packages' module, loaded only now: see _wasm_crypto.ts.
    const [{ default: sodium }, { sha256, sha512 }, { hmac }, { hkdf }, { ed25519 }, { gcm }] =
      await import("./_wasm_crypto.ts").then(({ wasmCryptoPackages }) => wasmCryptoPackages())
        .catch((error) => {
          throw restateMissingPackage(error, "the WebAssembly crypto backend");
        });
    const wrappers = sodium as unknown as { ready: Promise<void>; libsodium: RawSodium };
    await wrappers.ready;
    const lib = wrappers.libsodium;
    const base = lib._malloc(32 + 24 + 2 * (MAX_MESSAGE + MAC_LENGTH) + 3 * 32);
    if (base === 0) throw new RangeError("Cannot allocate libsodium buffer");
    const k = base;
    const n = base + 32;
    const input = n + 24;
    const output = input + MAX_MESSAGE + MAC_LENGTH;
    const q = output + MAX_MESSAGE + MAC_LENGTH;
    const s = q + 32;
    const p = s + 32;
    const Point = ed25519.Point;
    const L = Point.Fn.ORDER;
    const fromLE = (bytes: Uint8Array): bigint => {
      let x = 0n;
      for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i]!);
      return x;
    };
    // Read HEAPU8 on each call: it changes if the heap ever grows.
    const load = (src: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array => {
      const heap = lib.HEAPU8;
      heap.set(key, k);
      heap.set(nonce, n);
      heap.set(src, input);
      return heap;
    };
    const backend: CryptoBackend = {
      name:
        "libsodium-wrappers 0.7.13 (libsodium in WebAssembly) with @noble/hashes and @noble/curves",
      worker: { module: import.meta.url, load: "loadWasmCrypto" },
      secretboxSeal(box, message, nonce, key) {
        checkSecretbox(box, message, nonce, key);
        const heap = load(message, nonce, key);
        lib._crypto_secretbox_easy(output, input, message.length, 0, n, k);
        box.set(heap.subarray(output, output + box.length));
      },
      secretboxOpen(message, box, nonce, key) {
        if (box.length < MAC_LENGTH) return false;
        checkSecretbox(box, message, nonce, key);
        const heap = load(box, nonce, key);
        if (lib._crypto_secretbox_open_easy(output, input, box.length, 0, n, k) !== 0) {
          return false;
        }
        message.set(heap.subarray(output, output + message.length));
        return true;
      },
      x25519(secretKey, publicKey) {
        check("X25519 secret key", secretKey, 32);
        check("X25519 public key", publicKey, 32);
        const heap = lib.HEAPU8;
        heap.set(secretKey, s);
        heap.set(publicKey, p);
        if (lib._crypto_scalarmult(q, s, p) !== 0) return undefined;
        return lib.HEAPU8.slice(q, q + 32);
      },
      x25519Base(secretKey) {
        check("X25519 secret key", secretKey, 32);
        lib.HEAPU8.set(secretKey, s);
        lib._crypto_scalarmult_base(q, s);
        return lib.HEAPU8.slice(q, q + 32);
      },
      ed25519BaseNoclamp(scalar) {
        check("Edwards25519 scalar", scalar, 32);
        const e = fromLE(scalar) % L;
        if (e === 0n) {
          throw new RangeError("Cannot multiply by scalar: zero modulo the group order");
        }
        return Point.BASE.multiply(e).toBytes();
      },
      ed25519Add(a, b) {
        return Point.fromBytes(a).add(Point.fromBytes(b)).toBytes();
      },
      sha256: (data) => sha256(data),
      sha512: (data) => sha512(data),
      hmacSha256(key, ...parts) {
        const h = hmac.create(sha256, key);
        for (const part of parts) h.update(part);
        return h.digest();
      },
      hkdfSha256: (ikm, salt, info, length) => hkdf(sha256, ikm, salt, info, length),
      aead(algorithm, key) {
        const aeads = sodium as unknown as SodiumAead;
        if (algorithm.startsWith("aes-")) {
          check("AES-GCM key", key, aeadKeyLength(algorithm));
          return oneShotAead(
            (m, nonce) => gcm(key, nonce).encrypt(m),
            (c, nonce) => gcm(key, nonce).decrypt(c),
          );
        }
        check(`${algorithm} key`, key, 32);
        const [seal, open] = algorithm === "xchacha20-poly1305"
          ? [
            aeads.crypto_aead_xchacha20poly1305_ietf_encrypt,
            aeads.crypto_aead_xchacha20poly1305_ietf_decrypt,
          ]
          : [
            aeads.crypto_aead_chacha20poly1305_ietf_encrypt,
            aeads.crypto_aead_chacha20poly1305_ietf_decrypt,
          ];
        return oneShotAead(
          (m, nonce) => seal(m, null, null, nonce, key),
          (c, nonce) => open(null, c, null, nonce, key),
        );
      },
    };
    return backend;
  })();
  wasm.catch(() => wasm = undefined);
  return wasm;
}

/**
 * The crypto loader a transport uses: the runtime's (`env.crypto`) when it
 * offers one, else {@linkcode loadWasmCrypto}.
 *
 * @example Without a runtime
 * ```ts
 * import { cryptoLoader } from "./crypto_backend.ts";
 * import { ok } from "node:assert";
 *
 * ok((await cryptoLoader({})()).name.includes("WebAssembly"));
 * ```
 *
 * @param env The transport's environment.
 * @returns The loader.
 */
export function cryptoLoader(env: TransportEnvironment | undefined): CryptoLoader {
  return env?.crypto ?? loadWasmCrypto;
}
