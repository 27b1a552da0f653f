// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { ed25519, ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";

const Fp = ed25519.Point.Fp;
const P = Fp.ORDER;
const A = 486662n;
const HALF_P = (P - 1n) / 2n;
const L = ed25519.Point.Fn.ORDER;
const LOW_ORDER = ED25519_TORSION_SUBGROUP.map((hex) => ed25519.Point.fromHex(hex));

function toLE(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function fromLE(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}

function isSquare(n: bigint): boolean {
  return Fp.pow(n, HALF_P) !== Fp.neg(1n);
}

/**
 * Map an obfs4 Elligator2 representative to the Curve25519 public key (the
 * Montgomery u coordinate) it stands for. The top two bits are ignored.
 *
 * @example Decoding
 * ```ts
 * import { representativeToPublicKey } from "./elligator2.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(representativeToPublicKey(new Uint8Array(32)).length, 32);
 * ```
 *
 * @param representative The 32-byte representative.
 * @returns The 32-byte public key.
 */
export function representativeToPublicKey(representative: Uint8Array): Uint8Array {
  if (!(representative instanceof Uint8Array) || representative.length !== 32) {
    throw new RangeError(
      `Cannot decode representative: must be 32 bytes, got ${representative?.length}`,
    );
  }
  const bytes = representative.slice();
  bytes[31]! &= 0x3f;
  const r = fromLE(bytes);
  const w = Fp.neg(Fp.div(A, Fp.add(1n, Fp.mul(2n, Fp.sqr(r)))));
  const fw = Fp.add(Fp.mul(Fp.sqr(w), Fp.add(w, A)), w);
  const u = isSquare(fw) ? w : Fp.sub(Fp.neg(w), A);
  return toLE(u);
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
 * representative's two top bits are random.
 *
 * @example Round trip
 * ```ts
 * import { generateRepresentableKeyPair, representativeToPublicKey } from "./elligator2.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const pair = generateRepresentableKeyPair();
 * deepStrictEqual(representativeToPublicKey(pair.representative), pair.publicKey);
 * ```
 *
 * @param random Fills an array with random bytes. Defaults to `crypto.getRandomValues`.
 * @returns The key pair.
 */
export function generateRepresentableKeyPair(
  random: (bytes: Uint8Array) => void = (b) => crypto.getRandomValues(b),
): RepresentableKeyPair {
  for (;;) {
    const seed = new Uint8Array(32);
    random(seed);
    const digest = sha512(seed);
    const secretKey = digest.slice(0, 32);
    const tweak = digest[63]!;
    const result = representable(secretKey, tweak);
    if (result !== undefined) return { secretKey, ...result };
  }
}

function representable(
  secretKey: Uint8Array,
  tweak: number,
): { publicKey: Uint8Array; representative: Uint8Array } | undefined {
  const clamped = secretKey.slice();
  clamped[0]! &= 248;
  clamped[31]! &= 127;
  clamped[31]! |= 64;
  const scalar = fromLE(clamped) % L;
  if (scalar === 0n) return undefined;
  const point = ed25519.Point.BASE.multiply(scalar).add(LOW_ORDER[secretKey[0]! & 7]!);
  const { y } = point.toAffine();
  if (y === 1n) return undefined;
  const u = Fp.div(Fp.add(1n, y), Fp.sub(1n, y));
  const uPlusA = Fp.add(u, A);
  if (u === 0n || uPlusA === 0n) return undefined;
  if (!isSquare(Fp.mul(Fp.neg(2n), Fp.mul(u, uPlusA)))) return undefined;
  const [num, den] = (tweak & 1) === 0 ? [u, uPlusA] : [uPlusA, u];
  let r = Fp.sqrt(Fp.neg(Fp.div(num, Fp.mul(2n, den))));
  if (r > HALF_P) r = Fp.neg(r);
  const representative = toLE(r);
  representative[31]! |= tweak & 0xc0;
  return { publicKey: toLE(u), representative };
}

/**
 * One representable key pair made ahead of need, so that a server's
 * ephemeral key is ready when a connection is accepted instead of being
 * made (about 0.4 ms in JavaScript, rejection sampling included) while its
 * client waits. {@linkcode KeyPairReserve.take} hands out the spare, or a
 * new pair when a burst of connections used it up;
 * {@linkcode KeyPairReserve.refill} makes the next spare at a moment when no
 * client is waiting.
 *
 * @example Taking and refilling
 * ```ts
 * import { KeyPairReserve, representativeToPublicKey } from "./elligator2.ts";
 * import { deepStrictEqual, notDeepStrictEqual } from "node:assert";
 *
 * const reserve = new KeyPairReserve();
 * const a = reserve.take();
 * reserve.refill();
 * const b = reserve.take();
 * notDeepStrictEqual(a.secretKey, b.secretKey);
 * deepStrictEqual(representativeToPublicKey(b.representative), b.publicKey);
 * ```
 */
export class KeyPairReserve {
  #random: (bytes: Uint8Array) => void;
  #spare: RepresentableKeyPair | undefined;

  /**
   * Make the first spare.
   *
   * @param random Fills an array with random bytes. Defaults to `crypto.getRandomValues`.
   */
  constructor(random: (bytes: Uint8Array) => void = (b) => crypto.getRandomValues(b)) {
    this.#random = random;
    this.#spare = generateRepresentableKeyPair(random);
  }

  /**
   * Hand out a key pair; each is handed out once.
   *
   * @returns The spare, or a pair made now if there is none.
   */
  take(): RepresentableKeyPair {
    const pair = this.#spare ?? generateRepresentableKeyPair(this.#random);
    this.#spare = undefined;
    return pair;
  }

  /** Make the next spare if there is none. */
  refill(): void {
    this.#spare ??= generateRepresentableKeyPair(this.#random);
  }
}
