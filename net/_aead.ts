// Copyright the ptkit authors. MIT license.
// Internal: the native AEADs of net/native_crypto.ts. OpenSSL's libcrypto 3
// (Debian's `libssl3`) through Deno's FFI where it loads: measured here on
// 16 KiB chunks, about 2.7 GB/s ChaCha20-Poly1305 and 4 GB/s AES-128-GCM,
// against node:crypto's 0.8 and 0.17 GB/s in Deno 2.9; node:crypto where it
// does not.

import { type Aead, type AeadAlgorithm, aeadKeyLength } from "../transports/crypto_backend.ts";
import { libcryptoPart } from "./_libcrypto.ts";

const TAG = 16;
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;

const SYMBOLS = {
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_CIPHER_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_aes_128_gcm: { parameters: [], result: "pointer" },
  EVP_aes_192_gcm: { parameters: [], result: "pointer" },
  EVP_aes_256_gcm: { parameters: [], result: "pointer" },
  EVP_chacha20_poly1305: { parameters: [], result: "pointer" },
  EVP_CipherInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  EVP_CipherUpdate: { parameters: ["pointer", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  EVP_CipherFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Makes the AEAD of an algorithm and key, or `undefined` without the algorithm. */
export type AeadMaker = (algorithm: AeadAlgorithm, key: Uint8Array) => Aead | undefined;

/**
 * OpenSSL's AEADs through FFI (ChaCha20-Poly1305, AES-128-GCM, AES-192-GCM,
 * AES-256-GCM), or `undefined` when FFI is not allowed or libcrypto 3 is
 * missing.
 */
export const libcryptoAead: () => AeadMaker | undefined = libcryptoPart(SYMBOLS, libcrypto);

function libcrypto(lib: Symbols): AeadMaker {
  const ciphers: Partial<Record<AeadAlgorithm, Deno.PointerValue>> = {
    "chacha20-poly1305": lib.EVP_chacha20_poly1305(),
    "aes-128-gcm": lib.EVP_aes_128_gcm(),
    "aes-192-gcm": lib.EVP_aes_192_gcm(),
    "aes-256-gcm": lib.EVP_aes_256_gcm(),
  };
  // A context is freed when the AEAD that owns it is collected.
  const contexts = new FinalizationRegistry<Deno.PointerObject>((ctx) =>
    lib.EVP_CIPHER_CTX_free(ctx)
  );
  return (algorithm, key) => {
    const cipher = ciphers[algorithm];
    if (cipher === undefined) return undefined;
    checkKey(algorithm, key);
    const length = new Int32Array(1);
    const lengthBytes = new Uint8Array(length.buffer);
    let sealer: Deno.PointerObject | undefined;
    let opener: Deno.PointerObject | undefined;
    const context = (encrypt: number): Deno.PointerObject => {
      const ctx = lib.EVP_CIPHER_CTX_new();
      if (ctx === null) throw new RangeError("Cannot allocate an OpenSSL cipher context");
      contexts.register(aead, ctx);
      if (lib.EVP_CipherInit_ex(ctx, cipher, null, key, null, encrypt) !== 1) {
        throw new TypeError(`Cannot set up OpenSSL's ${algorithm}`);
      }
      return ctx;
    };
    const aead: Aead = {
      seal(plaintext, nonce, dest, offset) {
        const ctx = sealer ??= context(1);
        lib.EVP_CipherInit_ex(ctx, null, null, null, nonce, 1);
        const out = dest.subarray(offset);
        lib.EVP_CipherUpdate(ctx, out, lengthBytes, plaintext, plaintext.length);
        const n = length[0]!;
        lib.EVP_CipherFinal_ex(ctx, out.subarray(n), lengthBytes);
        lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out.subarray(n, n + TAG));
        return n + TAG;
      },
      open(sealed, nonce) {
        if (sealed.length < TAG) return undefined;
        const ctx = opener ??= context(0);
        const end = sealed.length - TAG;
        const out = new Uint8Array(end);
        lib.EVP_CipherInit_ex(ctx, null, null, null, nonce, 0);
        lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, sealed.slice(end));
        lib.EVP_CipherUpdate(ctx, out, lengthBytes, sealed.subarray(0, end), end);
        const n = length[0]!;
        if (lib.EVP_CipherFinal_ex(ctx, out.subarray(n), lengthBytes) !== 1) return undefined;
        return out;
      },
    };
    return aead;
  };
}

function checkKey(algorithm: AeadAlgorithm, key: Uint8Array): void {
  const want = aeadKeyLength(algorithm);
  if (!(key instanceof Uint8Array) || key.length !== want) {
    throw new RangeError(`Cannot use ${algorithm} key of ${key?.length} bytes: want ${want}`);
  }
}

interface NodeCipher {
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
  getAuthTag(): Uint8Array;
  setAuthTag(tag: Uint8Array): void;
}

/** The node:crypto module's AEAD part. */
export interface NodeCryptoAead {
  createCipheriv(alg: string, key: Uint8Array, iv: Uint8Array, o: object): NodeCipher;
  createDecipheriv(alg: string, key: Uint8Array, iv: Uint8Array, o: object): NodeCipher;
}

/**
 * node:crypto's AEADs (ChaCha20-Poly1305, AES-128-GCM, AES-256-GCM; no
 * XChaCha20, and no AES-192-GCM, which Deno's node:crypto lacks).
 */
export function nodeCryptoAead(lib: NodeCryptoAead): AeadMaker {
  const options = { authTagLength: TAG };
  return (algorithm, key) => {
    if (algorithm === "xchacha20-poly1305" || algorithm === "aes-192-gcm") return undefined;
    checkKey(algorithm, key);
    return {
      seal(plaintext, nonce, dest, offset) {
        const cipher = lib.createCipheriv(algorithm, key, nonce, options);
        const body = cipher.update(plaintext);
        cipher.final();
        dest.set(body, offset);
        dest.set(cipher.getAuthTag(), offset + body.length);
        return body.length + TAG;
      },
      open(sealed, nonce) {
        if (sealed.length < TAG) return undefined;
        const end = sealed.length - TAG;
        const decipher = lib.createDecipheriv(algorithm, key, nonce, options);
        decipher.setAuthTag(sealed.subarray(end));
        const body = decipher.update(sealed.subarray(0, end));
        try {
          decipher.final();
        } catch {
          return undefined;
        }
        return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
      },
    };
  };
}
