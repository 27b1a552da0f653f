// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { Aead } from "../crypto_backend.ts";
import { type MethodInfo, sessionSubkey, TAG_LENGTH } from "./_methods.ts";

/** Makes the {@linkcode Aead} of a session subkey, for one method. */
export type AeadFactory = (key: Uint8Array) => Aead;

/** The largest payload of one chunk (SIP004: the length's top two bits are zero). */
export const MAX_PAYLOAD = 0x3fff;

/** One chunk's overhead on the wire: the sealed length (2 + 16) and the payload's tag. */
export const CHUNK_OVERHEAD = 2 + TAG_LENGTH + TAG_LENGTH;

/** Why a stream could not be read; `stage` says whether the peer had authenticated yet. */
export class ChunkError extends Error {
  /** `salt`: before any chunk opened; `stream`: after. */
  readonly stage: "salt" | "stream";

  /**
   * @param message What was wrong.
   * @param stage Before or after the first chunk opened.
   */
  constructor(message: string, stage: "salt" | "stream") {
    super(`Cannot open shadowsocks chunk: ${message}`);
    this.name = "ChunkError";
    this.stage = stage;
  }
}

/** Add one to a little-endian counter in place (SIP004's nonce). */
function increment(nonce: Uint8Array): void {
  for (let i = 0; i < nonce.length; i++) {
    nonce[i] = (nonce[i]! + 1) & 0xff;
    if (nonce[i] !== 0) return;
  }
}

/**
 * Seals one direction of a TCP stream: the salt first, then chunks of
 * `[sealed u16 BE length][sealed payload]`, at most 0x3FFF payload bytes
 * each, the nonce a little-endian counter from zero bumped after every seal.
 */
export class ChunkEncoder {
  #aead: Aead;
  #nonce: Uint8Array;
  #salt: Uint8Array | undefined;
  #length = new Uint8Array(2);

  /**
   * @param method The method.
   * @param factory Its AEAD.
   * @param key The master key.
   * @param salt This direction's random salt (as long as the key).
   */
  constructor(method: MethodInfo, factory: AeadFactory, key: Uint8Array, salt: Uint8Array) {
    this.#aead = factory(sessionSubkey(key, salt));
    this.#nonce = new Uint8Array(method.nonceLength);
    this.#salt = salt;
  }

  /**
   * The wire bytes for `plaintext` (the salt in front the first time).
   *
   * @param plaintext Application bytes (may be empty: then only a pending salt).
   * @returns Wire bytes.
   */
  encode(plaintext: Uint8Array): Uint8Array {
    const chunks = Math.ceil(plaintext.length / MAX_PAYLOAD);
    const salt = this.#salt;
    this.#salt = undefined;
    const out = new Uint8Array(
      (salt?.length ?? 0) + plaintext.length + chunks * CHUNK_OVERHEAD,
    );
    let at = 0;
    if (salt !== undefined) {
      out.set(salt);
      at = salt.length;
    }
    for (let from = 0; from < plaintext.length; from += MAX_PAYLOAD) {
      const piece = plaintext.subarray(from, from + MAX_PAYLOAD);
      this.#length[0] = piece.length >> 8;
      this.#length[1] = piece.length & 0xff;
      at += this.#aead.seal(this.#length, this.#nonce, out, at);
      increment(this.#nonce);
      at += this.#aead.seal(piece, this.#nonce, out, at);
      increment(this.#nonce);
    }
    return out;
  }
}

/**
 * Opens one direction of a TCP stream (see {@linkcode ChunkEncoder}),
 * fed wire bytes in any split. Holds at most one chunk.
 */
export class ChunkDecoder {
  #method: MethodInfo;
  #factory: AeadFactory;
  #key: Uint8Array;
  #onSalt: (salt: Uint8Array) => boolean;
  #aead: Aead | undefined;
  #nonce: Uint8Array;
  // Bytes of a unit not yet whole: the first #pendingLength of #pending,
  // whose room grows to the unit's length once, so that bytes arriving a few
  // at a time are each copied once (a peer sending one byte per segment had
  // every byte copy all the bytes before it: 300 ms of CPU for a 16 KiB
  // chunk).
  #pending: Uint8Array = new Uint8Array(0);
  #pendingLength = 0;
  #payload = -1;
  #opened = false;
  #salt: Uint8Array | undefined;

  /**
   * @param method The method.
   * @param factory Its AEAD.
   * @param key The master key.
   * @param onSalt Told the salt once the first payload opened, after the
   * rest of that `decode` call's chunks opened too (shadowsocks-libev
   * records a salt only then: a salt with a bad chunk after it, or no whole
   * chunk, stays unrecorded); returns false to refuse it (a replay).
   */
  constructor(
    method: MethodInfo,
    factory: AeadFactory,
    key: Uint8Array,
    onSalt: (salt: Uint8Array) => boolean = () => true,
  ) {
    this.#method = method;
    this.#factory = factory;
    this.#key = key;
    this.#onSalt = onSalt;
    this.#nonce = new Uint8Array(method.nonceLength);
  }

  /** Whether a chunk has opened (the peer knows the key). */
  get opened(): boolean {
    return this.#opened;
  }

  /** Bytes held that do not make a whole chunk yet (a truncated stream at its end). */
  get pending(): number {
    return this.#pendingLength;
  }

  /**
   * Open what `wire` completes, handing each payload to `emit` as it opens
   * (so a caller sees the payloads before a later chunk's error), except
   * the stream's first payloads: those are handed on at the end of the call
   * that opened them, once every chunk it completed opened and the salt was
   * taken (as shadowsocks-libev decrypts a whole read before it records the
   * salt or reads the request).
   *
   * @param wire Wire bytes, in order.
   * @param emit Takes each completed chunk's payload.
   * @throws {ChunkError} On a bad tag, a zero length (of the length's low 14
   * bits) or a refused salt; the stream is then unusable.
   */
  decode(wire: Uint8Array, emit: (payload: Uint8Array) => void): void {
    // Until the salt is taken, payloads wait for the end of this call.
    const held: Uint8Array[] | undefined = this.#opened ? undefined : [];
    let data = wire;
    const pending = this.#pendingLength;
    if (pending > 0) {
      const want = this.#aead === undefined
        ? this.#method.keyLength
        : this.#payload < 0
        ? 2 + TAG_LENGTH
        : this.#payload + TAG_LENGTH;
      if (pending + wire.length < want) {
        // Still not whole: kept in place, in room for the whole unit.
        if (this.#pending.length < want) {
          const room = new Uint8Array(want);
          room.set(this.#pending.subarray(0, pending));
          this.#pending = room;
        }
        this.#pending.set(wire, pending);
        this.#pendingLength = pending + wire.length;
        return;
      }
      data = new Uint8Array(pending + wire.length);
      data.set(this.#pending.subarray(0, pending));
      data.set(wire, pending);
    }
    let at = 0;
    // "stream" once a chunk opened (in this call too, its payload held).
    const stage = () => this.#opened || (held?.length ?? 0) > 0 ? "stream" : "salt";
    for (;;) {
      if (this.#aead === undefined) {
        const n = this.#method.keyLength;
        if (data.length - at < n) break;
        this.#salt = data.slice(at, at + n);
        this.#aead = this.#factory(sessionSubkey(this.#key, this.#salt));
        at += n;
      } else if (this.#payload < 0) {
        if (data.length - at < 2 + TAG_LENGTH) break;
        const length = this.#aead.open(data.subarray(at, at + 2 + TAG_LENGTH), this.#nonce);
        if (length === undefined) throw new ChunkError("bad length tag", stage());
        increment(this.#nonce);
        // The low 14 bits, as shadowsocks-libev reads it (SIP004 reserves
        // the top two; ss-libev masks them off rather than refuse them).
        const n = ((length[0]! << 8) | length[1]!) & MAX_PAYLOAD;
        if (n === 0) {
          throw new ChunkError(`chunk length 0 (a chunk carries 1-${MAX_PAYLOAD} bytes)`, "stream");
        }
        this.#payload = n;
        at += 2 + TAG_LENGTH;
      } else {
        const n = this.#payload + TAG_LENGTH;
        if (data.length - at < n) break;
        const payload = this.#aead.open(data.subarray(at, at + n), this.#nonce);
        if (payload === undefined) throw new ChunkError("bad payload tag", "stream");
        increment(this.#nonce);
        this.#payload = -1;
        at += n;
        if (held === undefined) emit(payload);
        else held.push(payload);
      }
    }
    this.#pending = at === data.length ? new Uint8Array(0) : data.slice(at);
    this.#pendingLength = this.#pending.length;
    if (held === undefined || held.length === 0) return;
    if (!this.#onSalt(this.#salt!)) throw new ChunkError("repeated salt", "salt");
    this.#opened = true;
    this.#salt = undefined;
    for (const payload of held) emit(payload);
  }
}
