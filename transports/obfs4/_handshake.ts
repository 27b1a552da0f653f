// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoBackend } from "../crypto_backend.ts";
import {
  generateRepresentableKeyPair,
  type RepresentableKeyPair,
  representativeToPublicKey,
} from "./_elligator2.ts";
import { ntorClient, ntorKdf, type NtorResult, ntorServer } from "./_ntor.ts";
import { randomBytes, type RandomFill, randomInt } from "./_random.ts";
import type { ReplayFilter } from "../_replay_filter.ts";

/** The longest handshake either side sends (and obfs4proxy's handshake read size). */
export const MAX_HANDSHAKE_LENGTH = 8192;
const KEY_LENGTH = 32;
const MARK_LENGTH = 16;
const MAC_LENGTH = 16;
const AUTH_LENGTH = 32;
/** The shortest client handshake padding. */
export const CLIENT_MIN_PADDING = 77;
/** The longest client handshake padding. */
export const CLIENT_MAX_PADDING = 8128;
const SERVER_MAX_PADDING = 8051;
const SERVER_MIN_LENGTH = KEY_LENGTH + AUTH_LENGTH + MARK_LENGTH + MAC_LENGTH;

export type { RandomFill };

/** The long-term identity of an obfs4 bridge as a client knows it. */
export interface BridgeIdentity {
  /** The 20-byte node ID. */
  readonly nodeId: Uint8Array;
  /** The bridge's X25519 public key B. */
  readonly publicKey: Uint8Array;
}

/** What a completed handshake gives. */
export interface HandshakeResult {
  /** 144 bytes: client-to-server keys (72), then server-to-client keys (72). */
  readonly keys: Uint8Array;
  /** How many received bytes the handshake took; the rest are frames. */
  readonly consumed: number;
}

const encoder = new TextEncoder();

function epochHour(now: number, offset = 0): Uint8Array {
  return encoder.encode(String(Math.floor(now / 3_600_000) + offset));
}

function macKey(identity: BridgeIdentity): Uint8Array {
  const key = new Uint8Array(KEY_LENGTH + 20);
  key.set(identity.publicKey);
  key.set(identity.nodeId, KEY_LENGTH);
  return key;
}

function mac(crypto: CryptoBackend, key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  return crypto.hmacSha256(key, ...parts).subarray(0, MAC_LENGTH);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

// Where `needle` (not empty) starts in haystack[from, to), or -1. The
// runtime's own byte search finds each candidate (the server's padding is
// up to 8 KiB, searched on every read until the mark arrives).
function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number, to: number): number {
  const first = needle[0]!;
  const last = to - needle.length;
  for (
    let i = haystack.indexOf(first, from);
    i >= 0 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

function fail(why: string): SyntaxError {
  return new SyntaxError(`Cannot accept obfs4 handshake: ${why}`);
}

/** Options for {@linkcode ClientHandshake}. */
export interface ClientHandshakeOptions {
  /** The time in milliseconds since the epoch. Defaults to `Date.now()`. */
  readonly now?: number;
  /** Random byte source. Defaults to `crypto.getRandomValues`. */
  readonly random?: RandomFill;
  /** The padding length. Defaults to a random one in [77, 8128]. */
  readonly padding?: number;
  /** The ephemeral key pair. Defaults to one made now. */
  readonly keyPair?: RepresentableKeyPair;
}

/**
 * The client side of the obfs4 handshake: the message to send, then the
 * check of the server's answer.
 *
 * @example Making a client handshake
 * ```ts
 * import { ClientHandshake } from "./_handshake.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { ok } from "node:assert";
 *
 * const identity = { nodeId: new Uint8Array(20), publicKey: new Uint8Array(32).fill(9) };
 * const hs = new ClientHandshake(await loadWasmCrypto(), identity);
 * ok(hs.message.length >= 32 + 77 + 32);
 * ```
 */
export class ClientHandshake {
  #crypto: CryptoBackend;
  #identity: BridgeIdentity;
  #key: Uint8Array;
  #secret: Uint8Array;
  #public: Uint8Array;
  #epoch: Uint8Array;
  #message: Uint8Array | undefined;
  // The server's mark, once its representative arrived, and where the
  // search for it goes on (the answer comes in pieces; each parse sees all
  // of it so far).
  #mark: Uint8Array | undefined;
  #searchFrom = KEY_LENGTH + AUTH_LENGTH;

  /**
   * Generate a client handshake.
   *
   * @param crypto The crypto backend.
   * @param identity The bridge's node ID and public key.
   * @param options Clock, randomness, padding length and key pair.
   */
  constructor(
    crypto: CryptoBackend,
    identity: BridgeIdentity,
    options: ClientHandshakeOptions = {},
  ) {
    const random = options.random ?? ((b: Uint8Array) => globalThis.crypto.getRandomValues(b));
    this.#crypto = crypto;
    this.#identity = identity;
    this.#key = macKey(identity);
    const pair = options.keyPair ?? generateRepresentableKeyPair(crypto, random);
    this.#secret = pair.secretKey;
    this.#public = pair.publicKey;
    this.#epoch = epochHour(options.now ?? Date.now());
    const padLength = options.padding ?? randomInt(random, CLIENT_MIN_PADDING, CLIENT_MAX_PADDING);
    const message = new Uint8Array(KEY_LENGTH + padLength + MARK_LENGTH + MAC_LENGTH);
    const pad = message.subarray(KEY_LENGTH, KEY_LENGTH + padLength);
    for (let i = 0; i < padLength; i += 65536) random(pad.subarray(i, i + 65536));
    const mark = mac(crypto, this.#key, pair.representative);
    const tag = mac(crypto, this.#key, pair.representative, pad, mark, this.#epoch);
    message.set(pair.representative);
    message.set(mark, KEY_LENGTH + padLength);
    message.set(tag, KEY_LENGTH + padLength + MARK_LENGTH);
    this.#message = message;
  }

  /** The bytes to send (empty once {@linkcode ClientHandshake.forgetMessage} was called). */
  get message(): Uint8Array {
    return this.#message ?? new Uint8Array(0);
  }

  /** Drop the message once it is sent (it is up to 8 KiB; idle connections keep nothing). */
  forgetMessage(): void {
    this.#message = undefined;
  }

  /**
   * Look for the server's complete answer at the start of `received`.
   *
   * @param received Everything received so far.
   * @returns The session keys, or `undefined` when more bytes are needed.
   * Throws a `SyntaxError` when the answer is invalid.
   */
  parse(received: Uint8Array): HandshakeResult | undefined {
    if (received.length < SERVER_MIN_LENGTH) return undefined;
    const crypto = this.#crypto;
    const representative = received.subarray(0, KEY_LENGTH);
    const mark = this.#mark ??= mac(crypto, this.#key, representative);
    const end = Math.min(received.length, MAX_HANDSHAKE_LENGTH);
    const pos = indexOf(received, mark, this.#searchFrom, end - MAC_LENGTH);
    if (pos < 0) {
      if (received.length >= MAX_HANDSHAKE_LENGTH) {
        throw new SyntaxError("Cannot complete obfs4 handshake: server mark not found");
      }
      // Every start up to here was tried: a mark there would have fitted.
      this.#searchFrom = Math.max(this.#searchFrom, end - MAC_LENGTH - MARK_LENGTH + 1);
      return undefined;
    }
    const tag = received.subarray(pos + MARK_LENGTH, pos + MARK_LENGTH + MAC_LENGTH);
    if (!equal(tag, mac(crypto, this.#key, received.subarray(0, pos + MARK_LENGTH), this.#epoch))) {
      throw new SyntaxError("Cannot complete obfs4 handshake: server MAC mismatch");
    }
    const result = ntorClient(
      crypto,
      this.#secret,
      this.#public,
      representativeToPublicKey(representative, crypto),
      this.#identity.publicKey,
      this.#identity.nodeId,
    );
    const auth = received.subarray(KEY_LENGTH, KEY_LENGTH + AUTH_LENGTH);
    if (result === undefined || !equal(result.auth, auth)) {
      throw new SyntaxError("Cannot complete obfs4 handshake: ntor AUTH mismatch");
    }
    return { keys: ntorKdf(crypto, result.keySeed), consumed: pos + MARK_LENGTH + MAC_LENGTH };
  }
}

/** A bridge's long-term keys, as its server side holds them. */
export interface BridgeKeys extends BridgeIdentity {
  /** The bridge's X25519 secret key b. */
  readonly secretKey: Uint8Array;
}

/** What a server handshake step yields. */
export type ServerHandshakeStep =
  | { readonly done: false }
  | { readonly done: true; readonly keys: Uint8Array; readonly response: Uint8Array };

/** Options for {@linkcode ServerHandshake}. */
export interface ServerHandshakeOptions {
  /** The clock, in milliseconds since the epoch. Defaults to `Date.now`. */
  readonly now?: () => number;
  /** Random byte source. Defaults to `crypto.getRandomValues`. */
  readonly random?: RandomFill;
  /**
   * The server's ephemeral key pair, or where to take it once a valid
   * client handshake has arrived (a spare made in advance: garbage then
   * costs no key pair). Defaults to one made then.
   */
  readonly keyPair?: RepresentableKeyPair | (() => RepresentableKeyPair);
}

/**
 * The server side of the obfs4 handshake: finds and checks the client's
 * message, then makes the answer.
 *
 * @example Refusing garbage
 * ```ts
 * import { ServerHandshake } from "./_handshake.ts";
 * import { ReplayFilter } from "../_replay_filter.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { throws } from "node:assert";
 *
 * const keys = { nodeId: new Uint8Array(20), publicKey: new Uint8Array(32), secretKey: new Uint8Array(32) };
 * const hs = new ServerHandshake(await loadWasmCrypto(), keys, new ReplayFilter());
 * throws(() => hs.parse(new Uint8Array(8192)), SyntaxError);
 * ```
 */
export class ServerHandshake {
  #crypto: CryptoBackend;
  #keys: BridgeKeys;
  #key: Uint8Array;
  #filter: ReplayFilter;
  #now: () => number;
  #random: RandomFill;
  #pair: RepresentableKeyPair | (() => RepresentableKeyPair);
  #mark: Uint8Array | undefined;

  /**
   * Prepare to answer one client. The server's ephemeral key pair should be
   * ready before the client speaks (obfs4proxy makes it when it accepts the
   * connection), so that the Elligator2 rejection sampling never shows in
   * the time to answer: give a spare made in advance, taken only once a
   * valid handshake has arrived.
   *
   * @param crypto The crypto backend.
   * @param keys The bridge's keys.
   * @param filter The bridge's replay filter.
   * @param options Clock, randomness and the ephemeral key pair.
   */
  constructor(
    crypto: CryptoBackend,
    keys: BridgeKeys,
    filter: ReplayFilter,
    options: ServerHandshakeOptions = {},
  ) {
    this.#crypto = crypto;
    this.#keys = keys;
    this.#key = macKey(keys);
    this.#filter = filter;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? ((b) => globalThis.crypto.getRandomValues(b));
    this.#pair = options.keyPair ??
      (() => generateRepresentableKeyPair(crypto, this.#random));
  }

  /**
   * Look at everything received so far.
   *
   * @param received The bytes received.
   * @returns Whether the handshake is complete and, if so, the session keys
   * and the answer to send. Throws a `SyntaxError` for an invalid or replayed
   * handshake.
   */
  parse(received: Uint8Array): ServerHandshakeStep {
    const found = this.#locate(received);
    if (found === undefined) return { done: false };
    const pair = typeof this.#pair === "function" ? this.#pair() : this.#pair;
    const keys = this.#keys;
    return this.#respond(
      found.epoch,
      pair,
      ntorServer(
        this.#crypto,
        pair.secretKey,
        pair.publicKey,
        keys.secretKey,
        found.X,
        keys.publicKey,
        keys.nodeId,
      ),
    );
  }

  #locate(received: Uint8Array): { epoch: Uint8Array; X: Uint8Array } | undefined {
    if (received.length < KEY_LENGTH + CLIENT_MIN_PADDING + MARK_LENGTH + MAC_LENGTH) {
      return undefined;
    }
    const crypto = this.#crypto;
    this.#mark ??= mac(crypto, this.#key, received.subarray(0, KEY_LENGTH));
    const end = Math.min(received.length, MAX_HANDSHAKE_LENGTH);
    const pos = end - MARK_LENGTH - MAC_LENGTH;
    if (!equal(received.subarray(pos, pos + MARK_LENGTH), this.#mark)) {
      if (received.length >= MAX_HANDSHAKE_LENGTH) throw fail("mark not found");
      return undefined;
    }
    const tag = received.subarray(pos + MARK_LENGTH, end);
    const now = this.#now();
    let epoch: Uint8Array | undefined;
    for (const offset of [0, -1, 1]) {
      const candidate = epochHour(now, offset);
      if (equal(tag, mac(crypto, this.#key, received.subarray(0, pos + MARK_LENGTH), candidate))) {
        if (this.#filter.testAndSet(now, tag)) throw fail("replayed handshake");
        epoch = candidate;
        break;
      }
    }
    if (epoch === undefined) throw fail("MAC mismatch");
    if (received.length !== end) throw fail("trailing data after the MAC");
    return { epoch, X: representativeToPublicKey(received.subarray(0, KEY_LENGTH), crypto) };
  }

  #respond(
    epoch: Uint8Array,
    pair: { representative: Uint8Array },
    result: NtorResult | undefined,
  ): ServerHandshakeStep {
    if (result === undefined) throw fail("invalid client key");
    const crypto = this.#crypto;
    const padLength = randomInt(this.#random, 0, SERVER_MAX_PADDING);
    const pad = randomBytes(this.#random, padLength);
    const mark = mac(crypto, this.#key, pair.representative);
    const tagOut = mac(crypto, this.#key, pair.representative, result.auth, pad, mark, epoch);
    const response = new Uint8Array(SERVER_MIN_LENGTH + padLength);
    response.set(pair.representative);
    response.set(result.auth, KEY_LENGTH);
    response.set(pad, KEY_LENGTH + AUTH_LENGTH);
    response.set(mark, KEY_LENGTH + AUTH_LENGTH + padLength);
    response.set(tagOut, KEY_LENGTH + AUTH_LENGTH + padLength + MARK_LENGTH);
    return { done: true, keys: ntorKdf(crypto, result.keySeed), response };
  }
}
