// Copyright the ptkit authors. MIT license.
// Internal: HMAC-SHA256 of net/native_crypto.ts through OpenSSL's libcrypto 3
// (FFI) where it loads. Measured here: about 5 us a call, where node:crypto's
// createHmac takes 10-25 us in Deno 2.9 whatever the length; an obfs4
// handshake makes about seven.

import { libcryptoPart } from "./_libcrypto.ts";

const SYMBOLS = {
  EVP_sha256: { parameters: [], result: "pointer" },
  HMAC_CTX_new: { parameters: [], result: "pointer" },
  HMAC_Init_ex: { parameters: ["pointer", "buffer", "i32", "pointer", "pointer"], result: "i32" },
  HMAC_Update: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  HMAC_Final: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
} as const;

/** HMAC-SHA256 of the parts, concatenated, under `key`: 32 bytes. */
export type HmacSha256 = (key: Uint8Array, ...parts: Uint8Array[]) => Uint8Array;

/**
 * OpenSSL's HMAC-SHA256 through FFI, or `undefined` when FFI is not
 * allowed or libcrypto 3 is missing.
 */
export const libcryptoHmac: () => HmacSha256 | undefined = libcryptoPart(SYMBOLS, hmacOf);

function hmacOf(lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]): HmacSha256 | null {
  const md = lib.EVP_sha256();
  // One context, set up again for each call: calls never interleave (they
  // are synchronous), and the process keeps it for its life.
  const ctx = lib.HMAC_CTX_new();
  if (md === null || ctx === null) return null;
  const outLength = new Uint8Array(4);
  return (key, ...parts) => {
    const out = new Uint8Array(32);
    let ok = lib.HMAC_Init_ex(ctx, key, key.length, md, null) === 1;
    for (const part of parts) {
      if (part.length > 0) ok = lib.HMAC_Update(ctx, part, BigInt(part.length)) === 1 && ok;
    }
    ok = lib.HMAC_Final(ctx, out, outLength) === 1 && ok;
    if (!ok) throw new Error("Cannot compute HMAC-SHA256: OpenSSL failed");
    return out;
  };
}
