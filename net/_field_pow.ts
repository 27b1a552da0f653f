// Copyright the ptkit authors. MIT license.
// Internal: z^((p - 5) / 8) modulo p = 2^255 - 19, the exponentiation of
// obfs4's Elligator2 map (transports/obfs4/_elligator2.ts), through OpenSSL's
// libcrypto 3 (FFI, BN_mod_exp_mont) where it loads. The map's own bigint
// exponentiation is 254 squarings of 255-bit bigints, each allocating two
// (a product and a remainder): measured here, one in libcrypto took 54 us
// where a representative's decoding on bigints took 131 us (load average
// 10-12 on two cores; the ratio is what counts), and it makes no garbage.
// The operands are public (a public key, a representative), so a
// variable-time exponentiation reveals nothing (the bigint one is not
// constant-time either).

import { libcryptoPart } from "./_libcrypto.ts";

const SYMBOLS = {
  BN_new: { parameters: [], result: "pointer" },
  BN_CTX_new: { parameters: [], result: "pointer" },
  BN_MONT_CTX_new: { parameters: [], result: "pointer" },
  BN_MONT_CTX_set: { parameters: ["pointer", "pointer", "pointer"], result: "i32" },
  BN_lebin2bn: { parameters: ["buffer", "i32", "pointer"], result: "pointer" },
  BN_bn2lebinpad: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BN_mod_exp_mont: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
} as const;

/** z^((p - 5) / 8) mod 2^255 - 19, of and to 32 little-endian bytes. */
export type PowP58 = (z: Uint8Array) => Uint8Array;

/**
 * libcrypto's exponentiation, made once per process (each Web Worker has
 * its own), or `undefined` where libcrypto 3 cannot be loaded.
 */
export const libcryptoPowP58: () => PowP58 | undefined = libcryptoPart(SYMBOLS, powOf);

function littleEndian(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

function powOf(lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]): PowP58 | null {
  const P = (1n << 255n) - 19n;
  const ctx = lib.BN_CTX_new();
  const mont = lib.BN_MONT_CTX_new();
  const base = lib.BN_new();
  const result = lib.BN_new();
  // The modulus, the exponent and the Montgomery context, for the process's life.
  const modulus = lib.BN_lebin2bn(littleEndian(P), 32, null);
  const exponent = lib.BN_lebin2bn(littleEndian((P - 5n) / 8n), 32, null);
  if (
    ctx === null || mont === null || base === null || result === null || modulus === null ||
    exponent === null || lib.BN_MONT_CTX_set(mont, modulus, ctx) !== 1
  ) {
    return null;
  }
  // Calls never interleave (they are synchronous): one set of numbers.
  return (z) => {
    if (!(z instanceof Uint8Array) || z.length !== 32) {
      throw new RangeError(`Cannot exponentiate: want 32 bytes, got ${z?.length}`);
    }
    const out = new Uint8Array(32);
    const ok = lib.BN_lebin2bn(z, 32, base) !== null &&
      lib.BN_mod_exp_mont(result, base, exponent, modulus, ctx, mont) === 1 &&
      lib.BN_bn2lebinpad(result, out, 32) === 32;
    if (!ok) throw new Error("Cannot exponentiate modulo 2^255 - 19: OpenSSL failed");
    return out;
  };
}
