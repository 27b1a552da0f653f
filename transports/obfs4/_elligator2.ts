// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoBackend } from "../crypto_backend.ts";
import type { RandomFill } from "./_random.ts";

// Arithmetic modulo p = 2^255 - 19 on bigints, for the Elligator2 map only:
// the point operations (the costly part) come from the crypto backend.
const P = (1n << 255n) - 19n;
const A = 486662n;
const HALF_P = (P - 1n) / 2n;
// sqrt(-1) mod p.
const SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752n;
// The eight points of Edwards25519's torsion subgroup, compressed (order 1,
// 8, 4, 8, 2, 8, 4, 8): the low-order part of obfs4's "dirty" keys.
const LOW_ORDER: readonly Uint8Array[] = [
  "0100000000000000000000000000000000000000000000000000000000000000",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "0000000000000000000000000000000000000000000000000000000000000000",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
].map((hex) => Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16)));

const mod = (x: bigint): bigint => {
  const r = x % P;
  return r < 0n ? r + P : r;
};

/** x^(2^n), by n squarings. */
function square(x: bigint, n: number): bigint {
  for (let i = 0; i < n; i++) x = (x * x) % P;
  return x;
}

/** The addition chain shared by inversion and square roots: z^(2^250 - 1) and z^11. */
function pow22501(z: bigint): { t250: bigint; z11: bigint } {
  const z2 = (z * z) % P;
  const z9 = (square(z2, 2) * z) % P;
  const z11 = (z9 * z2) % P;
  const t5 = (((z11 * z11) % P) * z9) % P; // z^(2^5 - 1)
  const t10 = (square(t5, 5) * t5) % P;
  const t20 = (square(t10, 10) * t10) % P;
  const t40 = (square(t20, 20) * t20) % P;
  const t50 = (square(t40, 10) * t10) % P;
  const t100 = (square(t50, 50) * t50) % P;
  const t200 = (square(t100, 100) * t100) % P;
  const t250 = (square(t200, 50) * t50) % P;
  return { t250, z11 };
}

/** 1 / z (z nonzero), as z^(p - 2). */
function invert(z: bigint): bigint {
  const { t250, z11 } = pow22501(z);
  return (square(t250, 5) * z11) % P;
}

/**
 * The candidate square root of u / v (v nonzero): x = u v^3 (u v^7)^((p -
 * 5) / 8), for which v x^2 = u q with q a fourth root of unity: +-1 when
 * u / v is a square, +-sqrt(-1) when it is not.
 */
function ratioCandidate(u: bigint, v: bigint, pow?: (z: Uint8Array) => Uint8Array): bigint {
  const v3 = (((v * v) % P) * v) % P;
  const uv7 = (((u * v3) % P) * ((v3 * v) % P)) % P;
  // (u v^7)^((p - 5) / 8) = (u v^7)^(2^252 - 3): the backend's where it has
  // one, else the addition chain on bigints.
  const t = pow === undefined ? (square(pow22501(uv7).t250, 2) * uv7) % P : fromLE(pow(toLE(uv7)));
  return (((u * v3) % P) * t) % P;
}

// 32 little-endian bytes to and from a bigint, 64 bits at a time: eight
// bigints made per conversion where a byte at a time made 64 (two for each
// byte), and a handshake converts five or six times.
function toLE(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt.asUintN(64, n), true);
  view.setBigUint64(8, BigInt.asUintN(64, n >> 64n), true);
  view.setBigUint64(16, BigInt.asUintN(64, n >> 128n), true);
  view.setBigUint64(24, BigInt.asUintN(64, n >> 192n), true);
  return out;
}

/** A 32-byte little-endian number. */
function fromLE(bytes: Uint8Array): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 32);
  return view.getBigUint64(0, true) | (view.getBigUint64(8, true) << 64n) |
    (view.getBigUint64(16, true) << 128n) | (view.getBigUint64(24, true) << 192n);
}

/**
 * Map an obfs4 Elligator2 representative to the Curve25519 public key (the
 * Montgomery u coordinate) it stands for. The top two bits are ignored.
 *
 * @example Decoding
 * ```ts
 * import { representativeToPublicKey } from "./_elligator2.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(representativeToPublicKey(new Uint8Array(32)).length, 32);
 * ```
 *
 * @param representative The 32-byte representative.
 * @param crypto The crypto backend, whose exponentiation modulo 2^255 - 19
 * is used where it has one (`powP58`); bigints otherwise. The result is the same.
 * @returns The 32-byte public key.
 */
export function representativeToPublicKey(
  representative: Uint8Array,
  crypto?: CryptoBackend,
): Uint8Array {
  if (!(representative instanceof Uint8Array) || representative.length !== 32) {
    throw new RangeError(
      `Cannot decode representative: must be 32 bytes, got ${representative?.length}`,
    );
  }
  const bytes = representative.slice();
  bytes[31]! &= 0x3f;
  const r = mod(fromLE(bytes));
  // w = -A / d with d = 1 + 2 r^2 (never 0: -1/2 is not a square mod p);
  // u = w when f(w) = w^3 + A w^2 + w is a square, else -w - A.
  // f(w) = -A (A^2 - A^2 d + d^2) / d^3, so f(w) is a square exactly when
  // s = -A d (A^2 - A^2 d + d^2) is one (they differ by the square d^4).
  // One exponentiation gives both 1 / d and that answer: the candidate x
  // for sqrt(1 / (s d^2)) has (s d^2) x^2 = q, a fourth root of unity that
  // is +-1 exactly when s d^2 is a square, and 1 / d = x^2 s d / q (1 / q =
  // q for +-1, -q for +-sqrt(-1)). Half the work of an inversion plus a
  // square test.
  const d = mod(1n + 2n * ((r * r) % P));
  const d2 = (d * d) % P;
  const A2 = A * A;
  const s = mod(-A * ((d * mod(A2 - ((A2 * d) % P) + d2)) % P));
  if (s === 0n) return toLE(mod(-A * invert(d))); // f(w) = 0, a square.
  const v = (s * d2) % P;
  const x = ratioCandidate(1n, v, crypto?.powP58);
  const x2 = (x * x) % P;
  const q = (v * x2) % P;
  const square = q === 1n || q === P - 1n;
  const inverseQ = square ? q : P - q;
  const inverseD = (((((x2 * s) % P) * d) % P) * inverseQ) % P;
  const w = mod(-A * inverseD);
  return toLE(square ? w : mod(-w - A));
}

/** A key pair whose public key has an Elligator2 representative. */
export interface RepresentableKeyPair {
  /** The X25519 secret key (use it with X25519 as usual). */
  readonly secretKey: Uint8Array;
  /** The "dirty" public key: [sk]B plus a low-order point, as Montgomery u. */
  readonly publicKey: Uint8Array;
  /** The 32-byte representative to send on the wire. */
  readonly representative: Uint8Array;
}

/**
 * Generate a key pair with an Elligator2 representative, as obfs4 0.0.14
 * does: the public key carries a random low-order component and the
 * representative's two top bits are random. The scalar multiplication is
 * the backend's; about half the candidates have no representative and are
 * drawn again.
 *
 * @example Round trip
 * ```ts
 * import { generateRepresentableKeyPair, representativeToPublicKey } from "./_elligator2.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const pair = generateRepresentableKeyPair(await loadWasmCrypto());
 * deepStrictEqual(representativeToPublicKey(pair.representative), pair.publicKey);
 * ```
 *
 * @param crypto The crypto backend.
 * @param random Fills an array with random bytes. Defaults to `crypto.getRandomValues`.
 * @returns The key pair.
 */
export function generateRepresentableKeyPair(
  crypto: CryptoBackend,
  random: RandomFill = (b) => globalThis.crypto.getRandomValues(b),
): RepresentableKeyPair {
  const seed = new Uint8Array(32);
  for (;;) {
    random(seed);
    const digest = crypto.sha512(seed);
    const secretKey = digest.slice(0, 32);
    const result = representable(crypto, secretKey, digest[63]!);
    if (result !== undefined) return { secretKey, ...result };
  }
}

function representable(
  crypto: CryptoBackend,
  secretKey: Uint8Array,
  tweak: number,
): { publicKey: Uint8Array; representative: Uint8Array } | undefined {
  const clamped = secretKey.slice();
  clamped[0]! &= 248;
  clamped[31]! &= 127;
  clamped[31]! |= 64;
  const point = crypto.ed25519Add(
    crypto.ed25519BaseNoclamp(clamped),
    LOW_ORDER[secretKey[0]! & 7]!,
  );
  const yBytes = point.slice();
  yBytes[31]! &= 0x7f;
  const y = fromLE(yBytes);
  // u = (1 + y) / (1 - y) = n / d, kept as a fraction until it is needed.
  const n = mod(1n + y);
  const d = mod(1n - y);
  if (n === 0n || d === 0n) return undefined;
  const uPlusA = mod(n + A * d); // (u + A) d
  if (uPlusA === 0n) return undefined;
  // r = sqrt(a / b): -u / (2 (u + A)) for tweak bit 0, -(u + A) / (2 u)
  // for 1 (the d's cancel). As in the decoding, one exponentiation gives
  // both r and the 1 / d of the public key: the candidate x for sqrt(1 /
  // (a b d^2)) has (a b d^2) x^2 = q, a fourth root of unity that is +-1
  // exactly when a b (so a / b) is a square; then x' = x (times sqrt(-1)
  // for q = -1) has (x' d)^2 = 1 / (a b), so a x' d is a square root of
  // a / b, and 1 / d = d x^2 a b / q.
  const [a, b] = (tweak & 1) === 0 ? [mod(-n), mod(2n * uPlusA)] : [mod(-uPlusA), mod(2n * n)];
  const ab = (a * b) % P;
  const v = (ab * ((d * d) % P)) % P;
  const x = ratioCandidate(1n, v, crypto.powP58);
  const x2 = (x * x) % P;
  const q = (v * x2) % P;
  if (q !== 1n && q !== P - 1n) return undefined;
  const root = (((a * (q === 1n ? x : (x * SQRT_M1) % P)) % P) * d) % P;
  const r = root > HALF_P ? P - root : root;
  const inverseD = (((((d * x2) % P) * ab) % P) * q) % P;
  const representative = toLE(r);
  representative[31]! |= tweak & 0xc0;
  return { publicKey: toLE((n * inverseD) % P), representative };
}
