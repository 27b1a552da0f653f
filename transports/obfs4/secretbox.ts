// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import sodium from "libsodium-wrappers";

/** NaCl secretbox (XSalsa20-Poly1305): output is the 16-byte tag then the ciphertext. */
export interface Secretbox {
  /** Encrypt and authenticate `message` under a 24-byte nonce and 32-byte key. */
  seal(message: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array;
  /** Check and decrypt `box`, or return `undefined` when the tag is wrong. */
  open(box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | undefined;
  /**
   * Seal `message` straight into `dest` at `offset` (needs `message.length +
   * 16` bytes of room).
   *
   * @returns The sealed length.
   */
  sealInto(
    message: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
    dest: Uint8Array,
    offset: number,
  ): number;
  /**
   * Open `box` straight into `dest` at `offset` (needs `box.length - 16`
   * bytes of room).
   *
   * @returns The message length, or -1 when the tag is wrong.
   */
  openInto(
    box: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
    dest: Uint8Array,
    offset: number,
  ): number;
}

// The raw WebAssembly module under libsodium-wrappers: calling it on one
// buffer kept in its heap avoids the wrappers' four allocations and copies a
// call (about 1.45 times the throughput on 1448-byte frames).
interface RawSodium {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _crypto_secretbox_easy(
    c: number,
    m: number,
    mlenLow: number,
    mlenHigh: number,
    n: number,
    k: number,
  ): number;
  _crypto_secretbox_open_easy(
    m: number,
    c: number,
    clenLow: number,
    clenHigh: number,
    n: number,
    k: number,
  ): number;
}

interface Sodium {
  ready: Promise<void>;
  libsodium: RawSodium;
}

const MAC_LENGTH = 16;
// Room for the largest obfs4 secretbox and then some.
const MAX_MESSAGE = 4096;

function rawSecretbox(lib: RawSodium): Secretbox {
  const base = lib._malloc(32 + 24 + 2 * (MAX_MESSAGE + MAC_LENGTH));
  if (base === 0) throw new RangeError("Cannot allocate libsodium buffer");
  const k = base;
  const n = base + 32;
  const input = n + 24;
  const output = input + MAX_MESSAGE + MAC_LENGTH;
  const load = (src: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array => {
    if (key.length !== 32) throw new RangeError(`Cannot use secretbox key of ${key.length} bytes`);
    if (nonce.length !== 24) {
      throw new RangeError(`Cannot use secretbox nonce of ${nonce.length} bytes`);
    }
    if (src.length > MAX_MESSAGE) {
      throw new RangeError(`Cannot use secretbox input of ${src.length} bytes: too long`);
    }
    // Read HEAPU8 each call: it changes if the heap ever grows.
    const heap = lib.HEAPU8;
    heap.set(key, k);
    heap.set(nonce, n);
    heap.set(src, input);
    return heap;
  };
  const sealInto = (
    message: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
    dest: Uint8Array,
    offset: number,
  ): number => {
    const heap = load(message, nonce, key);
    lib._crypto_secretbox_easy(output, input, message.length, 0, n, k);
    const length = message.length + MAC_LENGTH;
    dest.set(heap.subarray(output, output + length), offset);
    return length;
  };
  const openInto = (
    box: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
    dest: Uint8Array,
    offset: number,
  ): number => {
    if (box.length < MAC_LENGTH) return -1;
    const heap = load(box, nonce, key);
    if (lib._crypto_secretbox_open_easy(output, input, box.length, 0, n, k) !== 0) return -1;
    const length = box.length - MAC_LENGTH;
    dest.set(heap.subarray(output, output + length), offset);
    return length;
  };
  return {
    seal(message, nonce, key) {
      const out = new Uint8Array(message.length + MAC_LENGTH);
      sealInto(message, nonce, key, out, 0);
      return out;
    },
    open(box, nonce, key) {
      const out = new Uint8Array(Math.max(0, box.length - MAC_LENGTH));
      return openInto(box, nonce, key, out, 0) < 0 ? undefined : out;
    },
    sealInto,
    openInto,
  };
}

let loading: Promise<Secretbox> | undefined;

/**
 * Load libsodium's secretbox (WebAssembly; about 3.5 times as fast as a pure
 * JavaScript XSalsa20-Poly1305 on 1448-byte frames).
 *
 * @example Sealing and opening
 * ```ts
 * import { loadSecretbox } from "./secretbox.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const box = await loadSecretbox();
 * const key = new Uint8Array(32);
 * const nonce = new Uint8Array(24);
 * const sealed = box.seal(new Uint8Array([1, 2]), nonce, key);
 * deepStrictEqual(box.open(sealed, nonce, key), new Uint8Array([1, 2]));
 * ```
 *
 * @returns The secretbox functions.
 */
export function loadSecretbox(): Promise<Secretbox> {
  loading ??= (async () => {
    const lib = sodium as unknown as Sodium;
    await lib.ready;
    return rawSecretbox(lib.libsodium);
  })();
  return loading;
}
