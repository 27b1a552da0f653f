// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoBackend } from "../crypto_backend.ts";
import {
  FRAME_OVERHEAD,
  FrameDecoder,
  FrameEncoder,
  MAX_FRAME_PAYLOAD,
  MAX_SEGMENT_LENGTH,
} from "./_framing.ts";
import { DRBG_SEED_LENGTH } from "./_hash_drbg.ts";
import type { WeightedDist } from "./_weighted_dist.ts";
import { concat } from "../_bytes.ts";

/** Packet header: type (1) and payload length (2). */
const PACKET_OVERHEAD = 3;
/** The most application bytes one packet carries. */
export const MAX_PACKET_PAYLOAD = MAX_FRAME_PAYLOAD - PACKET_OVERHEAD;
const HEADER_LENGTH = FRAME_OVERHEAD + PACKET_OVERHEAD;
const TYPE_PAYLOAD = 0;
/**
 * Application bytes padded as one write: obfs4proxy copies with 32 KiB
 * buffers and pads once per write, which also bounds the memory one burst
 * takes.
 */
export const MAX_BURST = 32 * 1024;
/**
 * In IAT mode 2, how many times one burst is padded past its target (the
 * padding came out to more than one packet) before the rest is written as
 * it is: see {@linkcode Session.encode}.
 */
const MAX_REPADS = 2;
const TYPE_PRNG_SEED = 1;

/** obfs4's inter-arrival time obfuscation: 0 none, 1 enabled, 2 paranoid. */
export type IatMode = 0 | 1 | 2;

/** What a {@linkcode Session} needs. */
export interface SessionOptions {
  /** 72 bytes keying the frames this side sends. */
  readonly sendKeys: Uint8Array;
  /** 72 bytes keying the frames this side receives. */
  readonly receiveKeys: Uint8Array;
  /** The crypto backend (secretbox, SHA-256). */
  readonly crypto: CryptoBackend;
  /** The IAT mode for what this side sends. */
  readonly iatMode: IatMode;
  /** Packet length distribution (padding, paranoid write sizes). */
  readonly lengthDist: WeightedDist;
  /** Inter-arrival time distribution, in units of 100 microseconds. */
  readonly iatDist: WeightedDist;
  /** Whether this side acts on PRNG-seed packets (clients do). */
  readonly acceptSeed: boolean;
}

const EMPTY = new Uint8Array(0);
/**
 * Where a packet is laid out before it is sealed into its frame, shared by
 * every session: it is filled and sealed in one synchronous call, so no two
 * sessions use it at once (one per session cost every idle connection
 * 1.4 KiB).
 */
const scratch = new Uint8Array(MAX_FRAME_PAYLOAD);

/**
 * Buffers of sent writes and of relayed decoded bytes (see
 * {@linkcode Session.recycle} and {@linkcode Session.recycleDecoded}), by
 * size (see {@linkcode outputSize}, at least {@linkcode MIN_SPARE_OUTPUT}):
 * a write of a socket's read (up to 256 KiB) or the bytes decoded from one
 * in a fresh buffer was zeroed memory from the allocator (page faults,
 * memset, frees) per read. Up to {@linkcode MAX_SPARE_OUTPUTS} of each size
 * are kept, at most {@linkcode SPARE_OUTPUT_BUDGET} bytes in all: 16
 * streams relayed at once each hold one of their size, and eight a size
 * (the limit before) made most of their writes take a fresh buffer.
 */
const spareOutputs = new Map<number, ArrayBuffer[]>();
const MIN_SPARE_OUTPUT = 16 * 1024;
/** The largest kept: a write of a 256 KiB read, with its frames and padding. */
const MAX_SPARE_OUTPUT = 512 * 1024;
const MAX_SPARE_OUTPUTS = 16;
const SPARE_OUTPUT_BUDGET = 8 * 1024 * 1024;
/** Bytes of the buffers in {@linkcode spareOutputs}. */
let sparedBytes = 0;
/**
 * The most decoded chunks a session keeps track of as lent (handed out, not
 * yet given back): past it, the oldest is forgotten (never made a spare).
 */
const MAX_LENT_DECODED = 8;

/**
 * The buffer size for `length` bytes: a power of two, or 9/8 of one for a
 * length just over it. The frames of a 256 KiB read (262-278 KiB), or the
 * bytes decoded from one, took a 512 KiB buffer, zeroed in full by the
 * allocator: twice the memory, page faults and memset the bytes need.
 */
function outputSize(length: number): number {
  const power = 2 ** Math.floor(Math.log2(length));
  if (length === power) return power;
  return length <= power * 1.125 ? power * 1.125 : power * 2;
}

/** `length` bytes, in a spare buffer when it is of a size to keep one for. */
function spareOutput(length: number): Uint8Array {
  if (length < MIN_SPARE_OUTPUT || length > MAX_SPARE_OUTPUT) return new Uint8Array(length);
  const size = outputSize(length);
  let buffer = spareOutputs.get(size)?.pop();
  if (buffer === undefined) buffer = new ArrayBuffer(size);
  else sparedBytes -= size;
  return new Uint8Array(buffer, 0, length);
}

function putSpareOutput(buffer: ArrayBuffer): void {
  const size = buffer.byteLength;
  // Only spareOutput's (a first write's buffer is of its own length).
  if (size < MIN_SPARE_OUTPUT || size > MAX_SPARE_OUTPUT || outputSize(size) !== size) return;
  if (sparedBytes + size > SPARE_OUTPUT_BUDGET) return;
  let kept = spareOutputs.get(size);
  if (kept === undefined) spareOutputs.set(size, kept = []);
  if (kept.length < MAX_SPARE_OUTPUTS) {
    kept.push(buffer);
    sparedBytes += size;
  }
}

/** Wire bytes of `n` application bytes in full and partial packets, before padding. */
function burstLength(n: number): number {
  const rest = n % MAX_PACKET_PAYLOAD;
  return Math.floor(n / MAX_PACKET_PAYLOAD) * MAX_SEGMENT_LENGTH +
    (rest > 0 ? HEADER_LENGTH + rest : 0);
}

/**
 * One established obfs4 connection's packet layer: turns application bytes
 * into padded, framed writes and received frames back into bytes.
 *
 * @example A client and a server session talk
 * ```ts
 * import { Session } from "./_session.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { WeightedDist } from "./_weighted_dist.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const crypto = await loadWasmCrypto();
 * const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
 * const a = new Uint8Array(72).fill(1);
 * const b = new Uint8Array(72).fill(2);
 * const common = { crypto, iatMode: 0 as const, lengthDist: dist, iatDist: dist };
 * const client = new Session({ ...common, sendKeys: a, receiveKeys: b, acceptSeed: true });
 * const server = new Session({ ...common, sendKeys: b, receiveKeys: a, acceptSeed: false });
 * const writes = client.encode(new Uint8Array([1, 2, 3]));
 * deepStrictEqual(server.decode(writes[0]!), new Uint8Array([1, 2, 3]));
 * ```
 */
export class Session {
  #crypto: CryptoBackend;
  #encoder: FrameEncoder;
  #decoder: FrameDecoder;
  #iatMode: IatMode;
  #lengthDist: WeightedDist;
  #iatDist: WeightedDist;
  #acceptSeed: boolean;
  #buffer: Uint8Array = EMPTY;
  #offset = 0;
  #framesDecoded = 0;
  /** The buffer of the last IAT-mode 0 write, until it is recycled. */
  #lent: ArrayBufferLike | undefined;
  /** Set once a write was recycled: writes then take spare buffers. */
  #recycles = false;
  /** The buffers of decoded chunks handed out, until recycled (see recycleDecoded). */
  #lentDecoded: ArrayBufferLike[] | undefined;
  /** Set once a decoded chunk was recycled: decodes then take spare buffers. */
  #recyclesDecoded = false;
  // The output of the decode in progress, and where its good payloads end
  // (handed on when a later frame is bad).
  #decoding: Uint8Array = EMPTY;
  #decodedEnd = 0;
  // A seed that came with the server's handshake, applied with the next read.
  #holdSeed = false;
  #heldSeed: Uint8Array | undefined;

  /**
   * Start a session.
   *
   * @param options Keys, secretbox, IAT mode and distributions.
   */
  constructor(options: SessionOptions) {
    this.#crypto = options.crypto;
    this.#encoder = new FrameEncoder(options.sendKeys, options.crypto);
    this.#decoder = new FrameDecoder(options.receiveKeys, options.crypto);
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
    const packet = scratch.subarray(0, length);
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

  /** The padding packets' lengths for a burst of `total` wire bytes (none in IAT mode 2). */
  #padding(total: number, pads: number[]): number {
    if (this.#iatMode === 2) return total;
    const padTo = this.#lengthDist.sample();
    const tail = total % MAX_SEGMENT_LENGTH;
    const padLength = padTo >= tail ? padTo - tail : MAX_SEGMENT_LENGTH - tail + padTo;
    if (padLength > HEADER_LENGTH) pads.push(padLength - HEADER_LENGTH);
    else if (padLength > 0) pads.push(MAX_PACKET_PAYLOAD, padLength);
    for (const p of pads) total += HEADER_LENGTH + p;
    return total;
  }

  /** Frame `data` (at most one burst) and its padding into `out` at `offset`. */
  #burstInto(data: Uint8Array, pads: number[], out: Uint8Array, offset: number): number {
    for (let i = 0; i < data.length; i += MAX_PACKET_PAYLOAD) {
      const payload = data.subarray(i, Math.min(data.length, i + MAX_PACKET_PAYLOAD));
      offset += this.#packetInto(TYPE_PAYLOAD, payload, 0, out, offset);
    }
    for (const p of pads) offset += this.#packetInto(TYPE_PAYLOAD, EMPTY, p, out, offset);
    return offset;
  }

  /**
   * Encode one application write: every 32 KiB of it is a burst, padded
   * once, as obfs4proxy does.
   *
   * @param data Application bytes.
   * @returns The network writes to make, in order; in IAT mode 0 at most
   * one (every burst in one buffer), in IAT mode 1 one per segment, in IAT
   * mode 2 one per length drawn from the length table, the burst padded to
   * the last (wait {@linkcode Session.iatDelay} between them). Where that
   * padding overshoots (a length of at most 21 bytes takes two packets),
   * lengths are drawn again; after 2 overshoots in a burst its rest is one
   * write as it is, so that a table of small lengths (a hostile bridge's
   * seed) cannot loop, where obfs4proxy's buffer grows without end.
   * {@linkcode Session.writes} gives the same writes, IAT mode 2's made as
   * they are taken.
   */
  encode(data: Uint8Array): Uint8Array[] {
    if (this.#iatMode === 0) {
      // One buffer for the whole write: sizes first, then frames in place.
      const padding: number[][] = [];
      let total = 0;
      for (let i = 0; i < data.length || i === 0; i += MAX_BURST) {
        const length = Math.min(MAX_BURST, data.length - i);
        const pads: number[] = [];
        total += this.#padding(burstLength(length), pads);
        padding.push(pads);
      }
      if (total === 0) return [];
      let out: Uint8Array;
      if (this.#recycles) {
        out = spareOutput(total);
        this.#lent = out.buffer;
      } else {
        out = new Uint8Array(total);
      }
      let offset = 0;
      for (let i = 0, n = 0; i < data.length || n === 0; i += MAX_BURST, n++) {
        offset = this.#burstInto(data.subarray(i, i + MAX_BURST), padding[n]!, out, offset);
      }
      return [out];
    }
    return [...this.writes(data)];
  }

  /**
   * The network writes of one application write, as
   * {@linkcode Session.encode} gives them, but in IAT mode 2 each made only
   * when it is taken, the lengths to cut the bursts into drawn write by
   * write (`data` is read before this returns). A bridge's seed whose table
   * holds only tiny lengths (1 byte: one seed in ~145,000, or a hostile
   * bridge's choice) cuts a 256 KiB write into ~266,000 writes: made at
   * once, their views took 34 MB of heap (130 times the write's bytes),
   * held while they went out one by one with a delay between them.
   *
   * @param data Application bytes.
   * @returns The writes, in order; in IAT mode 2 taken from it one by one,
   * once (the frames of a burst are sealed as it is reached, so no other
   * write of this session may be encoded until all are taken).
   */
  writes(data: Uint8Array): Iterable<Uint8Array> {
    if (this.#iatMode === 0) return this.encode(data);
    if (this.#iatMode === 2) {
      // The first burst is framed now; the rest of `data` is copied (the
      // caller's buffer may be reused once this returns) and framed when
      // its burst is reached, after the padding of the bursts before it,
      // which the frame nonces must follow.
      const first = this.#framedBurst(data.subarray(0, MAX_BURST));
      const rest = data.length > MAX_BURST ? data.slice(MAX_BURST) : EMPTY;
      return this.#paranoidWrites(first, rest);
    }
    const writes: Uint8Array[] = [];
    for (let i = 0; i < data.length || i === 0; i += MAX_BURST) {
      const burst = this.#framedBurst(data.subarray(i, i + MAX_BURST));
      for (let at = 0; at < burst.length; at += MAX_SEGMENT_LENGTH) {
        writes.push(burst.subarray(at, at + MAX_SEGMENT_LENGTH));
      }
    }
    return writes;
  }

  /** One burst's frames and (IAT mode 1) padding. */
  #framedBurst(data: Uint8Array): Uint8Array {
    const pads: number[] = [];
    const burst = new Uint8Array(this.#padding(burstLength(data.length), pads));
    this.#burstInto(data, pads, burst, 0);
    return burst;
  }

  *#paranoidWrites(first: Uint8Array, rest: Uint8Array): Generator<Uint8Array, void, undefined> {
    yield* this.#cut(first);
    for (let i = 0; i < rest.length; i += MAX_BURST) {
      yield* this.#cut(this.#framedBurst(rest.subarray(i, i + MAX_BURST)));
    }
  }

  /** IAT mode 2: a burst cut into writes of lengths drawn one by one. */
  *#cut(burst: Uint8Array): Generator<Uint8Array, void, undefined> {
    let offset = 0;
    let zeros = 0;
    let repads = 0;
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
        // Padding to a length of at most a header's (a table whose values
        // are all 21 or less, one seed in ~7,000, or a hostile bridge's
        // choice) takes two packets and overshoots by a segment, which the
        // same small lengths then take away again, without end: lyrebird
        // and obfs4proxy loop so, their buffer growing until memory runs
        // out. After a few such overshoots the rest goes out as it is.
        if (repads === MAX_REPADS) {
          yield burst.subarray(offset);
          return;
        }
        const pads = this.#pad(remaining, target);
        burst = pads.length === 0
          ? burst.subarray(offset)
          : concat(burst.subarray(offset), ...pads);
        offset = 0;
        if (burst.length !== target) {
          repads++;
          continue;
        }
      }
      yield burst.subarray(offset, offset + target);
      offset += target;
    }
  }

  /**
   * Take back what {@linkcode Session.encode} returned last (IAT mode 0),
   * once it is sent: its buffer goes to the process's spares for later
   * writes, which from the first call on take spare buffers (a session
   * whose writes are never given back makes each its own). Anything else
   * is ignored.
   *
   * @param write The write, which its holder no longer uses.
   */
  recycle(write: Uint8Array): void {
    this.#recycles = true;
    if (write.buffer !== this.#lent) return;
    this.#lent = undefined;
    putSpareOutput(write.buffer as ArrayBuffer);
  }

  /**
   * Take back a chunk {@linkcode Session.decode} returned, once its holder
   * no longer uses it (a relay wrote it to a socket in full): its buffer
   * goes to the process's spares for later decodes, which from the first
   * call on take spare buffers (a session whose chunks are never given back
   * makes each its own). A chunk given back twice, or one this session did
   * not decode, is ignored.
   *
   * @param chunk The decoded chunk, which its holder no longer uses.
   */
  recycleDecoded(chunk: Uint8Array): void {
    this.#recyclesDecoded = true;
    const lent = this.#lentDecoded;
    if (lent === undefined) return;
    const i = lent.indexOf(chunk.buffer);
    if (i < 0) return;
    lent.splice(i, 1);
    putSpareOutput(chunk.buffer as ArrayBuffer);
  }

  /** @returns How long to wait between IAT-mode writes, in milliseconds. */
  iatDelay(): number {
    return this.#iatDist.sample() / 10;
  }

  /** Frames decoded so far. */
  get framesDecoded(): number {
    return this.#framesDecoded;
  }

  /**
   * Decode received wire bytes.
   *
   * @param chunk Bytes from the network.
   * @param beforeError Given, it is handed the application bytes of the
   * good frames that came before a bad one, just before the error is thrown
   * (obfs4proxy relays them before it drops the connection).
   * @returns The application bytes they complete (possibly none). Throws a
   * `SyntaxError` for a bad frame or packet.
   */
  decode(chunk: Uint8Array, beforeError?: (bytes: Uint8Array) => void): Uint8Array {
    this.#decodedEnd = PACKET_OVERHEAD;
    try {
      return this.#decode(chunk);
    } catch (error) {
      if (beforeError !== undefined && this.#decodedEnd > PACKET_OVERHEAD) {
        beforeError(this.#decoding.slice(PACKET_OVERHEAD, this.#decodedEnd));
      }
      throw error;
    } finally {
      this.#decoding = EMPTY;
    }
  }

  /**
   * Decode the bytes that came in the same read as the server's handshake
   * (a client's). A PRNG seed among them takes effect with the next bytes
   * received: obfs4proxy's and lyrebird's clients act on it at their next
   * network read, so their writes until then (a TLS ClientHello) are padded
   * from their own tables.
   *
   * @param chunk Bytes from the network, after the handshake.
   * @param beforeError As for {@linkcode Session.decode}.
   * @returns The application bytes they complete (possibly none).
   */
  decodeWithHandshake(chunk: Uint8Array, beforeError?: (bytes: Uint8Array) => void): Uint8Array {
    this.#holdSeed = true;
    try {
      return this.decode(chunk, beforeError);
    } finally {
      this.#holdSeed = false;
    }
  }

  #reseed(seed: Uint8Array): void {
    this.#lengthDist.reset(seed);
    if (this.#iatMode !== 0) {
      this.#iatDist.reset(this.#crypto.sha256(seed).subarray(0, 24));
    }
  }

  #decode(chunk: Uint8Array): Uint8Array {
    if (this.#heldSeed !== undefined) {
      this.#reseed(this.#heldSeed);
      this.#heldSeed = undefined;
    }
    const pending = this.#buffer.length - this.#offset;
    // Payloads are opened straight into place: each packet is decrypted 3
    // bytes before where its payload goes, over the end of the previous
    // payload (saved and put back), so the packet header costs no copy.
    const length = PACKET_OVERHEAD + Math.max(0, pending) + chunk.length;
    const out = this.#decoding = this.#recyclesDecoded
      ? spareOutput(length)
      : new Uint8Array(length);
    let total = PACKET_OVERHEAD;
    if (pending > 0) {
      // Finish the partial frame with at most one frame's worth of the
      // chunk rather than copying all of it behind the leftover.
      const take = Math.min(chunk.length, MAX_SEGMENT_LENGTH);
      this.#buffer = concat(this.#buffer.subarray(this.#offset), chunk.subarray(0, take));
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
    // What is left (less than a frame) is copied: the chunk is the
    // caller's again once this returns (a socket's read buffer, read into
    // again).
    if (this.#offset === this.#buffer.length) {
      this.#buffer = EMPTY;
      this.#offset = 0;
    } else if (this.#offset > 0 || this.#buffer === chunk) {
      this.#buffer = this.#buffer.slice(this.#offset);
      this.#offset = 0;
    }
    if (total === PACKET_OVERHEAD) {
      // Nothing handed out: the buffer is a spare again at once.
      if (this.#recyclesDecoded) putSpareOutput(out.buffer as ArrayBuffer);
      return EMPTY;
    }
    if (this.#recyclesDecoded) {
      const lent = this.#lentDecoded ??= [];
      if (lent.push(out.buffer) > MAX_LENT_DECODED) lent.shift();
    }
    return out.subarray(PACKET_OVERHEAD, total);
  }

  /**
   * Decode up to `max` frames from the buffer, their payloads into `out` at
   * `total` (which is at least 3).
   */
  #frames(out: Uint8Array, total: number, max: number): number {
    for (let n = 0; n < max; n++) {
      const h = total - PACKET_OVERHEAD;
      const saved0 = out[h]!, saved1 = out[h + 1]!, saved2 = out[h + 2]!;
      let consumed: number;
      try {
        consumed = this.#decoder.decodeInto(this.#buffer, this.#offset, out, h);
      } catch (error) {
        out[h] = saved0;
        out[h + 1] = saved1;
        out[h + 2] = saved2;
        throw error;
      }
      if (consumed === 0) break;
      this.#offset += consumed;
      this.#framesDecoded++;
      const type = out[h]!;
      const length = (out[h + 1]! << 8) | out[h + 2]!;
      out[h] = saved0;
      out[h + 1] = saved1;
      out[h + 2] = saved2;
      const packetLength = consumed - FRAME_OVERHEAD;
      if (packetLength < PACKET_OVERHEAD) {
        throw new SyntaxError(`Cannot decode obfs4 packet: ${packetLength} bytes is too short`);
      }
      if (length > packetLength - PACKET_OVERHEAD) {
        throw new SyntaxError(`Cannot decode obfs4 packet: invalid payload length ${length}`);
      }
      const start = total;
      if (type === TYPE_PAYLOAD) {
        total += length;
        this.#decodedEnd = total;
      } else if (type === TYPE_PRNG_SEED) {
        if (this.#acceptSeed && length === DRBG_SEED_LENGTH) {
          const seed = out.slice(start, start + length);
          if (this.#holdSeed) this.#heldSeed = seed;
          else this.#reseed(seed);
        }
      }
    }
    return total;
  }
}
