// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { sha256 } from "@noble/hashes/sha2.js";
import {
  FRAME_OVERHEAD,
  FrameDecoder,
  FrameEncoder,
  MAX_FRAME_PAYLOAD,
  MAX_SEGMENT_LENGTH,
} from "./framing.ts";
import { DRBG_SEED_LENGTH } from "./hash_drbg.ts";
import type { Secretbox } from "./secretbox.ts";
import type { WeightedDist } from "./weighted_dist.ts";

/** Packet header: type (1) and payload length (2). */
const PACKET_OVERHEAD = 3;
/** The most application bytes one packet carries. */
export const MAX_PACKET_PAYLOAD = MAX_FRAME_PAYLOAD - PACKET_OVERHEAD;
const HEADER_LENGTH = FRAME_OVERHEAD + PACKET_OVERHEAD;
const TYPE_PAYLOAD = 0;
const TYPE_PRNG_SEED = 1;

/** obfs4's inter-arrival time obfuscation: 0 none, 1 enabled, 2 paranoid. */
export type IatMode = 0 | 1 | 2;

/** What a {@linkcode Session} needs. */
export interface SessionOptions {
  /** 72 bytes keying the frames this side sends. */
  readonly sendKeys: Uint8Array;
  /** 72 bytes keying the frames this side receives. */
  readonly receiveKeys: Uint8Array;
  /** The secretbox implementation. */
  readonly box: Secretbox;
  /** The IAT mode for what this side sends. */
  readonly iatMode: IatMode;
  /** Packet length distribution (padding, paranoid write sizes). */
  readonly lengthDist: WeightedDist;
  /** Inter-arrival time distribution, in units of 100 microseconds. */
  readonly iatDist: WeightedDist;
  /** Whether this side acts on PRNG-seed packets (clients do). */
  readonly acceptSeed: boolean;
}

function concat(parts: Uint8Array[], total?: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total ?? parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * One established obfs4 connection's packet layer: turns application bytes
 * into padded, framed writes and received frames back into bytes.
 *
 * @example A client and a server session talk
 * ```ts
 * import { Session } from "./session.ts";
 * import { loadSecretbox } from "./secretbox.ts";
 * import { WeightedDist } from "./weighted_dist.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const box = await loadSecretbox();
 * const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
 * const a = new Uint8Array(72).fill(1);
 * const b = new Uint8Array(72).fill(2);
 * const common = { box, iatMode: 0 as const, lengthDist: dist, iatDist: dist };
 * const client = new Session({ ...common, sendKeys: a, receiveKeys: b, acceptSeed: true });
 * const server = new Session({ ...common, sendKeys: b, receiveKeys: a, acceptSeed: false });
 * const writes = client.encode(new Uint8Array([1, 2, 3]));
 * deepStrictEqual(server.decode(writes[0]!), new Uint8Array([1, 2, 3]));
 * ```
 */
export class Session {
  #encoder: FrameEncoder;
  #decoder: FrameDecoder;
  #iatMode: IatMode;
  #lengthDist: WeightedDist;
  #iatDist: WeightedDist;
  #acceptSeed: boolean;
  #buffer: Uint8Array = new Uint8Array(0);
  #scratch = new Uint8Array(MAX_FRAME_PAYLOAD);
  #offset = 0;

  /**
   * Start a session.
   *
   * @param options Keys, secretbox, IAT mode and distributions.
   */
  constructor(options: SessionOptions) {
    this.#encoder = new FrameEncoder(options.sendKeys, options.box);
    this.#decoder = new FrameDecoder(options.receiveKeys, options.box);
    this.#iatMode = options.iatMode;
    this.#lengthDist = options.lengthDist;
    this.#iatDist = options.iatDist;
    this.#acceptSeed = options.acceptSeed;
  }

  /** The IAT mode of what this side sends. */
  get iatMode(): IatMode {
    return this.#iatMode;
  }

  #packet(type: number, payload: Uint8Array, padding: number): Uint8Array {
    const out = new Uint8Array(HEADER_LENGTH + payload.length + padding);
    this.#packetInto(type, payload, padding, out, 0);
    return out;
  }

  #packetInto(
    type: number,
    payload: Uint8Array,
    padding: number,
    dest: Uint8Array,
    offset: number,
  ): number {
    const length = PACKET_OVERHEAD + payload.length + padding;
    const packet = this.#scratch.subarray(0, length);
    packet[0] = type;
    packet[1] = payload.length >> 8;
    packet[2] = payload.length & 0xff;
    packet.set(payload, PACKET_OVERHEAD);
    packet.fill(0, PACKET_OVERHEAD + payload.length);
    return this.#encoder.encodeInto(packet, dest, offset);
  }

  /**
   * The PRNG-seed frame a server sends right after its handshake.
   *
   * @param seed The 24-byte seed.
   * @returns The frame's wire bytes.
   */
  seedFrame(seed: Uint8Array): Uint8Array {
    return this.#packet(TYPE_PRNG_SEED, seed, 0);
  }

  #pad(burstLength: number, padTo: number): Uint8Array[] {
    const tail = burstLength % MAX_SEGMENT_LENGTH;
    const padLength = padTo >= tail ? padTo - tail : MAX_SEGMENT_LENGTH - tail + padTo;
    const empty = new Uint8Array(0);
    if (padLength > HEADER_LENGTH) {
      return [this.#packet(TYPE_PAYLOAD, empty, padLength - HEADER_LENGTH)];
    }
    if (padLength > 0) {
      return [
        this.#packet(TYPE_PAYLOAD, empty, MAX_PACKET_PAYLOAD),
        this.#packet(TYPE_PAYLOAD, empty, padLength),
      ];
    }
    return [];
  }

  /**
   * Encode one application write.
   *
   * @param data Application bytes.
   * @returns The network writes to make, in order; in IAT modes 1 and 2
   * wait {@linkcode Session.iatDelay} between them.
   */
  encode(data: Uint8Array): Uint8Array[] {
    const full = Math.floor(data.length / MAX_PACKET_PAYLOAD);
    const rest = data.length % MAX_PACKET_PAYLOAD;
    let total = full * MAX_SEGMENT_LENGTH + (rest > 0 ? HEADER_LENGTH + rest : 0);
    const pads: number[] = [];
    if (this.#iatMode !== 2) {
      const padTo = this.#lengthDist.sample();
      const tail = total % MAX_SEGMENT_LENGTH;
      const padLength = padTo >= tail ? padTo - tail : MAX_SEGMENT_LENGTH - tail + padTo;
      if (padLength > HEADER_LENGTH) pads.push(padLength - HEADER_LENGTH);
      else if (padLength > 0) pads.push(MAX_PACKET_PAYLOAD, padLength);
      for (const p of pads) total += HEADER_LENGTH + p;
    }
    let burst: Uint8Array = new Uint8Array(total);
    let offset = 0;
    for (let i = 0; i < data.length; i += MAX_PACKET_PAYLOAD) {
      const payload = data.subarray(i, Math.min(data.length, i + MAX_PACKET_PAYLOAD));
      offset += this.#packetInto(TYPE_PAYLOAD, payload, 0, burst, offset);
    }
    const empty = new Uint8Array(0);
    for (const p of pads) offset += this.#packetInto(TYPE_PAYLOAD, empty, p, burst, offset);
    if (this.#iatMode === 0) return burst.length > 0 ? [burst] : [];
    const writes: Uint8Array[] = [];
    if (this.#iatMode === 1) {
      for (let i = 0; i < burst.length; i += MAX_SEGMENT_LENGTH) {
        writes.push(burst.subarray(i, i + MAX_SEGMENT_LENGTH));
      }
      return writes;
    }
    offset = 0;
    let zeros = 0;
    while (offset < burst.length) {
      let target = this.#lengthDist.sample();
      // A length of 0 writes nothing: draw again. A seed whose table holds
      // only 0 (one in ~145,000, or a hostile peer's choice) must not spin,
      // so after a run of zeros the rest goes out in full segments.
      if (target === 0) {
        if (++zeros < 16) continue;
        target = MAX_SEGMENT_LENGTH;
      }
      zeros = 0;
      const remaining = burst.length - offset;
      if (remaining < target) {
        burst = concat([burst.subarray(offset), ...this.#pad(remaining, target)]);
        offset = 0;
        if (burst.length !== target) continue;
      }
      writes.push(burst.subarray(offset, offset + target));
      offset += target;
    }
    return writes;
  }

  /** @returns How long to wait between IAT-mode writes, in milliseconds. */
  iatDelay(): number {
    return this.#iatDist.sample() / 10;
  }

  /**
   * Decode received wire bytes.
   *
   * @param chunk Bytes from the network.
   * @returns The application bytes they complete (possibly none). Throws a
   * `SyntaxError` for a bad frame or packet.
   */
  decode(chunk: Uint8Array): Uint8Array {
    const pending = this.#buffer.length - this.#offset;
    const out = new Uint8Array(Math.max(0, pending) + chunk.length);
    let total = 0;
    if (pending > 0) {
      // Finish the partial frame with at most one frame's worth of the
      // chunk rather than copying all of it behind the leftover.
      const take = Math.min(chunk.length, MAX_SEGMENT_LENGTH);
      this.#buffer = concat([this.#buffer.subarray(this.#offset), chunk.subarray(0, take)]);
      this.#offset = 0;
      total = this.#frames(out, total, 1);
      if (this.#offset > 0 && take < chunk.length) {
        this.#buffer = chunk;
        this.#offset -= pending; // What the frame took from `chunk`.
      }
    } else {
      this.#buffer = chunk;
      this.#offset = 0;
    }
    total = this.#frames(out, total, Infinity);
    if (this.#offset === this.#buffer.length) {
      this.#buffer = new Uint8Array(0);
      this.#offset = 0;
    } else if (this.#offset > 0 && this.#buffer.length - this.#offset < 4096) {
      this.#buffer = this.#buffer.slice(this.#offset);
      this.#offset = 0;
    }
    return total === 0 ? new Uint8Array(0) : out.subarray(0, total);
  }

  /** Decode up to `max` frames from the buffer into `out` at `total`. */
  #frames(out: Uint8Array, total: number, max: number): number {
    for (let n = 0; n < max; n++) {
      const consumed = this.#decoder.decodeInto(this.#buffer, this.#offset, out, total);
      if (consumed === 0) break;
      this.#offset += consumed;
      const packetLength = consumed - FRAME_OVERHEAD;
      if (packetLength < PACKET_OVERHEAD) {
        throw new SyntaxError(`Cannot decode obfs4 packet: ${packetLength} bytes is too short`);
      }
      const type = out[total]!;
      const length = (out[total + 1]! << 8) | out[total + 2]!;
      if (length > packetLength - PACKET_OVERHEAD) {
        throw new SyntaxError(`Cannot decode obfs4 packet: invalid payload length ${length}`);
      }
      const start = total + PACKET_OVERHEAD;
      if (type === TYPE_PAYLOAD) {
        out.copyWithin(total, start, start + length);
        total += length;
      } else if (type === TYPE_PRNG_SEED) {
        if (this.#acceptSeed && length === DRBG_SEED_LENGTH) {
          const seed = out.slice(start, start + length);
          this.#lengthDist.reset(seed);
          if (this.#iatMode !== 0) this.#iatDist.reset(sha256(seed).subarray(0, 24));
        }
      }
    }
    return total;
  }
}
