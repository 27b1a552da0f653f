// Copyright the ptkit authors. MIT license.

import {
  checkSecretbox,
  type CryptoBackend,
  loadWasmCrypto,
} from "../transports/crypto_backend.ts";
import { libcryptoAead, type NodeCryptoAead, nodeCryptoAead } from "./_aead.ts";
import { libcryptoHmac } from "./_hmac.ts";
import { libcryptoPowP58 } from "./_field_pow.ts";
import { restateMissingPackage } from "../transports/_npm_package.ts";
import { processFds } from "./_process_fds.ts";
export { runtimeCrypto, withRuntimeCrypto } from "./_runtime_crypto.ts";

// sodium-native's Node-API binding, called directly: its index.js checks
// every argument in JavaScript (about half the throughput on 1430-byte
// frames); the checks that matter are made here before each call, since
// the addon aborts the process on a size it does not expect.
interface SodiumBinding {
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): number;
  crypto_secretbox_open_easy(
    m: Uint8Array,
    c: Uint8Array,
    n: Uint8Array,
    k: Uint8Array,
  ): boolean;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): number;
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): number;
  crypto_scalarmult_ed25519_base_noclamp(q: Uint8Array, n: Uint8Array): number;
  crypto_core_ed25519_add(r: Uint8Array, p: Uint8Array, q: Uint8Array): number;
  crypto_hash_sha256(out: Uint8Array, data: Uint8Array): number;
  crypto_hash_sha512(out: Uint8Array, data: Uint8Array): number;
}

function check(what: string, bytes: Uint8Array, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new RangeError(`Cannot use ${what} of ${bytes?.length} bytes: want ${length}`);
  }
}

let native: Promise<CryptoBackend> | undefined;

/**
 * The native backend: libsodium through `sodium-native` 5.1.0 (a Node-API
 * addon whose prebuilt binaries ship inside the npm package; in Deno it
 * needs `--allow-ffi`) for secretbox, X25519, Edwards25519 and SHA-2;
 * HMAC-SHA256 from OpenSSL's libcrypto 3 through FFI, with HKDF from
 * `@noble/hashes` on top, else both from `node:crypto`; for AEADs (Shadowsocks)
 * OpenSSL's libcrypto 3 through FFI (about 2.7 GB/s ChaCha20-Poly1305 and
 * 4 GB/s AES-GCM on 16 KiB chunks here), else `node:crypto` (0.8 and 0.17
 * GB/s; XChaCha20 then comes from the WebAssembly backend). Loaded on the
 * first call; rejects
 * when the addon cannot load (no FFI permission, no binary for this
 * platform).
 *
 * @example Sealing a box natively (run with `--allow-ffi`)
 * ```ts ignore
 * import { loadNativeCrypto } from "./native_crypto.ts";
 * import { ok } from "node:assert";
 *
 * const backend = await loadNativeCrypto();
 * const box = new Uint8Array(16 + 3);
 * backend.secretboxSeal(box, new Uint8Array(3), new Uint8Array(24), new Uint8Array(32));
 * ok(box.some((b) => b !== 0));
 * ```
 *
 * @returns The backend (the same one each call).
 */
export function loadNativeCrypto(): Promise<CryptoBackend> {
  native ??= (async () => {
    // node:crypto only for what libcrypto does not give here: each of
    // node:crypto and sodium-native's own loader (require-addon: Node's
    // module loader, path and stream modules) keeps 2-5 MiB resident in
    // every process (issue 12: memory with idle connections).
    const hmac = libcryptoHmac();
    const libAead = libcryptoAead();
    const [sodium, nodeCrypto, nobleHkdf, nobleSha2] = await Promise.all([
      sodiumBinding(),
      hmac === undefined || libAead === undefined ? import("node:crypto") : undefined,
      // HKDF once per handshake: @noble/hashes' where node:crypto is not loaded.
      hmac === undefined ? undefined : import("@noble/hashes/hkdf.js"),
      hmac === undefined ? undefined : import("@noble/hashes/sha2.js"),
    ]).catch((error) => {
      throw restateMissingPackage(error, "the native crypto backend");
    });
    // Elligator2's exponentiation in libcrypto where it loads (net/_field_pow.ts).
    const powP58 = libcryptoPowP58();
    const hashOut = (length: number, f: (out: Uint8Array) => void): Uint8Array => {
      const out = new Uint8Array(length);
      f(out);
      return out;
    };
    return {
      name: `sodium-native 5.1.0 (libsodium, Node-API) with ${
        nodeCrypto === undefined ? "libcrypto 3" : "node:crypto"
      }`,
      worker: { module: import.meta.url, load: "loadNativeCrypto" },
      secretboxSeal(box, message, nonce, key) {
        checkSecretbox(box, message, nonce, key);
        sodium.crypto_secretbox_easy(box, message, nonce, key);
      },
      secretboxOpen(message, box, nonce, key) {
        if (box.length < 16) return false;
        checkSecretbox(box, message, nonce, key);
        return sodium.crypto_secretbox_open_easy(message, box, nonce, key);
      },
      x25519(secretKey, publicKey) {
        check("X25519 secret key", secretKey, 32);
        check("X25519 public key", publicKey, 32);
        const out = new Uint8Array(32);
        return sodium.crypto_scalarmult(out, secretKey, publicKey) === 0 ? out : undefined;
      },
      x25519Base(secretKey) {
        check("X25519 secret key", secretKey, 32);
        return hashOut(32, (out) => sodium.crypto_scalarmult_base(out, secretKey));
      },
      ed25519BaseNoclamp(scalar) {
        check("Edwards25519 scalar", scalar, 32);
        if (scalar[31]! > 127) throw new RangeError("Cannot multiply by scalar: top bit set");
        const out = new Uint8Array(32);
        if (sodium.crypto_scalarmult_ed25519_base_noclamp(out, scalar) !== 0) {
          throw new RangeError("Cannot multiply by scalar: zero modulo the group order");
        }
        return out;
      },
      ed25519Add(p, q) {
        check("Edwards25519 point", p, 32);
        check("Edwards25519 point", q, 32);
        const out = new Uint8Array(32);
        if (sodium.crypto_core_ed25519_add(out, p, q) !== 0) {
          throw new RangeError("Cannot add Edwards25519 points: not on the curve");
        }
        return out;
      },
      sha256: (data) => hashOut(32, (out) => sodium.crypto_hash_sha256(out, data)),
      sha512: (data) => hashOut(64, (out) => sodium.crypto_hash_sha512(out, data)),
      // OpenSSL through FFI where libcrypto 3 loads, else node:crypto.
      hmacSha256: hmac ?? ((key, ...parts) => {
        const h = nodeCrypto!.createHmac("sha256", key);
        for (const part of parts) h.update(part);
        const digest = h.digest();
        return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
      }),
      hkdfSha256: nobleHkdf === undefined || nobleSha2 === undefined
        ? (ikm, salt, info, length) =>
          new Uint8Array(nodeCrypto!.hkdfSync("sha256", ikm, salt, info, length))
        : (ikm, salt, info, length) => nobleHkdf.hkdf(nobleSha2.sha256, ikm, salt, info, length),
      // OpenSSL through FFI where libcrypto 3 loads, else node:crypto.
      aead: libAead ?? nodeCryptoAead(nodeCrypto as unknown as NodeCryptoAead),
      ...(powP58 === undefined ? {} : { powP58 }),
    } satisfies CryptoBackend;
  })();
  native.catch(() => native = undefined);
  return native;
}

/**
 * sodium-native's Node-API addon, opened directly from the package's
 * prebuilt binary for this platform; where that fails (another layout, a
 * platform the package names otherwise, a compiled executable), through the
 * package's own loader. The same addon either way.
 */
async function sodiumBinding(): Promise<SodiumBinding> {
  try {
    const { default: process } = await import("node:process");
    const file = new URL(
      `prebuilds/${process.platform}-${process.arch}/sodium-native.node`,
      import.meta.resolve("sodium-native/package.json"),
    );
    if (file.protocol !== "file:") throw new TypeError("Not a file");
    const addon = { exports: {} as SodiumBinding };
    process.dlopen(addon, decodeURIComponent(file.pathname));
    if (typeof addon.exports.crypto_secretbox_easy !== "function") throw new TypeError("No API");
    return addon.exports;
  } catch {
    const { default: binding } = await import("sodium-native/binding.js") as {
      default: SodiumBinding;
    };
    return binding;
  }
}

/** The backend the runtime chose, and why. */
export interface CryptoChoice {
  /** The backend. */
  readonly backend: CryptoBackend;
  /** Why it was chosen, for the log (`"--allow-ffi is not granted"`). */
  readonly reason: string;
}

let choice: Promise<CryptoChoice> | undefined;

/**
 * Spare file descriptors a Worker needs before it starts: its thread's
 * event loop takes a few, and Deno ends the whole process (a panic) when it
 * gets none. A server out of them is under a flood; its work stays on the
 * main thread until they are back.
 */
const WORKER_SPARE_FDS = 64;

/**
 * `backend` as the runtime may use it: with no worker where the process may
 * not read the worker's modules (a Worker that cannot load them printed
 * Deno's "Uncaught (in worker) Requires read access" on stderr however it
 * was handled; the work stays on the main thread), and one that starts only
 * with spare descriptors where FFI can count them.
 */
function withWorkerCheck(backend: CryptoBackend): CryptoBackend {
  const worker = backend.worker;
  if (worker === undefined) return backend;
  if (!mayRead(worker.module)) {
    const { worker: _, ...withoutWorker } = backend;
    return withoutWorker;
  }
  const fds = processFds();
  if (fds === undefined) return backend;
  const mayStart = () => fds.max() - fds.open() >= WORKER_SPARE_FDS;
  return { ...backend, worker: { ...worker, mayStart } };
}

function ffiGranted(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

/** Whether a module at `url` may be read without a prompt (only `file:` needs read access). */
function mayRead(url: string): boolean {
  if (!url.startsWith("file:")) return true;
  try {
    const path = decodeURIComponent(new URL(url).pathname);
    return Deno.permissions.querySync({ name: "read", path }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Choose this process's crypto backend, once: native libsodium
 * ({@linkcode loadNativeCrypto}) when FFI is granted (`--allow-ffi`) and
 * the addon loads, else libsodium in WebAssembly (`loadWasmCrypto`). FFI
 * permission is only queried, never requested: no prompt appears. Every
 * call returns the same choice; nothing loads before the first call.
 *
 * @example Which backend, and why
 * ```ts
 * import { chooseRuntimeCrypto } from "./native_crypto.ts";
 * import { ok } from "node:assert";
 *
 * const { backend, reason } = await chooseRuntimeCrypto();
 * ok(backend.name.length > 0 && reason.length > 0);
 * ```
 *
 * @returns The backend and the reason for the choice.
 */
export function chooseRuntimeCrypto(): Promise<CryptoChoice> {
  choice ??= (async () => {
    if (!ffiGranted()) {
      return {
        backend: withWorkerCheck(await loadWasmCrypto()),
        reason: "--allow-ffi is not granted",
      };
    }
    try {
      return {
        backend: withWorkerCheck(await loadNativeCrypto()),
        reason: "--allow-ffi is granted",
      };
    } catch (error) {
      return {
        backend: withWorkerCheck(await loadWasmCrypto()),
        reason: `the native addon did not load (${
          error instanceof Error ? error.message.split("\n")[0] : String(error)
        })`,
      };
    }
  })();
  // A failed load (no descriptor to open a module, say) is tried again.
  choice.catch(() => choice = undefined);
  return choice;
}
