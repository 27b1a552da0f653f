// Copyright the ptkit authors. MIT license.
// Internal: one UDP flow bound to one transport connection, shared by the
// client and server pools. Not part of the public API.

import { setImmediate } from "node:timers";
import type { TransportConn } from "../net/transport_conn.ts";
import { hasDirectEnds, takeDirectEnds } from "../net/_chunk_io.ts";
import type { Clock } from "./_clock.ts";
import { Deframer } from "./_deframer.ts";
import type { Framing } from "./framing.ts";
import type { QueueBudget } from "./_queue_budget.ts";
import {
  type MutableCounters,
  type UdpCloseReason,
  type UdpDropReason,
  type UdpFlowState,
  type UdpFlowStats,
  zeroCounters,
} from "./udp_stats.ts";

/** Settings shared by every flow of a pool. */
export interface FlowSettings {
  readonly framing: Framing;
  readonly maxDatagram: number;
  readonly idleTimeout: number;
  /**
   * How long a datagram (either way) keeps the flow open at least, in ms,
   * or `undefined` when it says nothing (STUN framing: a TURN allocation's
   * lifetime, see `allocationLifetimeMs`).
   */
  readonly holdFor?: (datagram: Uint8Array) => number | undefined;
  readonly queueDatagrams: number;
  readonly queueBytes: number;
  readonly sendBufferBytes: number;
  /** What every flow of the pool holds together, framed, toward its connection. */
  readonly budget: QueueBudget;
  readonly clock: Clock;
}

/**
 * Sends `count` datagrams on the UDP side in order, setting `results[i]` to
 * whether `datagrams[i]` went (what the one-datagram sender returns for it).
 */
export type SendMany = (datagrams: Uint8Array[], count: number, results: boolean[]) => void;

/** Framed datagrams written to the transport connection as one chunk. */
interface Batch {
  bytes: Uint8Array;
  /** Bytes used. */
  used: number;
  /** Datagrams in it. */
  count: number;
  /** Their bytes, unframed. */
  size: number;
}

/** Chunk size datagrams are framed into while the connection is busy, at most. */
const BATCH_BYTES = 64 * 1024;
/**
 * A batch's buffer starts this large at least (or as large as the flow's
 * last batch) and grows fourfold as it fills, up to
 * {@linkcode BATCH_BYTES}: a fresh 64 KiB for every burst, zeroed, was the
 * flow's largest cost per datagram in CPU profiles (and its external memory
 * the garbage collector's), where most bursts hold a few KiB.
 */
const MIN_BATCH = 4 * 1024;

/**
 * Give `batch` room for `need` bytes (at most {@linkcode BATCH_BYTES}),
 * keeping what it holds; `hint` is the size the flow's last batch needed.
 */
function grow(batch: Batch, need: number, hint: number): void {
  const size = Math.min(
    BATCH_BYTES,
    Math.max(need, MIN_BATCH, hint, 4 * batch.bytes.byteLength),
  );
  const bytes = new Uint8Array(size);
  bytes.set(batch.bytes.subarray(0, batch.used));
  batch.bytes = bytes;
}
/**
 * Datagrams one flow sends from its connection before the others get a turn
 * of the event loop: a 256 KiB read of empty length-framed datagrams is
 * 131,072 of them, each a send, and reads that are already queued follow one
 * another without a turn.
 */
const DATAGRAMS_PER_TURN = 256;
const EMPTY = new Uint8Array(0);

/**
 * A flow: datagrams from one UDP peer go through one transport connection,
 * and datagrams coming back go to that peer.
 */
export class Flow {
  readonly id: number;
  #settings: FlowSettings;
  #sendUdp: (datagram: Uint8Array) => boolean;
  #sendUdpMany: SendMany | undefined;
  #onClose: (flow: Flow, reason: UdpCloseReason, error: unknown) => void;
  #state: UdpFlowState = "waiting";
  #closeReason: UdpCloseReason | undefined;
  #counters: MutableCounters = zeroCounters();
  #totals: MutableCounters;
  #queue: Batch[] = [];
  #queueHead = 0;
  #queuedDatagrams = 0;
  #queuedBytes = 0;
  /** The last batch in the queue, while datagrams may still be added to it. */
  #open: Batch | undefined;
  /**
   * The last batch in the queue while it holds the one datagram that came to
   * an empty queue (sized to it): a second one before it is written joins
   * it, and both go in one write.
   */
  #alone: Batch | undefined;
  /** Bytes of the last batch written (what the next one likely needs). */
  #lastBatch = 0;
  #wake: (() => void) | undefined;
  #conn: TransportConn | undefined;
  #startTime: number;
  #lastActivity: number;
  /** The flow stays open until then at least (a TURN allocation's expiry). */
  #holdUntil = 0;
  #timer: unknown = undefined;
  /** When `#timer` is due (the clock's ms). */
  #timerAt = 0;
  #tasks: Promise<unknown>[] = [];

  constructor(
    id: number,
    settings: FlowSettings,
    totals: MutableCounters,
    sendUdp: (datagram: Uint8Array) => boolean,
    onClose: (flow: Flow, reason: UdpCloseReason, error: unknown) => void,
    sendUdpMany?: SendMany,
  ) {
    this.id = id;
    this.#settings = settings;
    this.#totals = totals;
    this.#sendUdp = sendUdp;
    this.#sendUdpMany = sendUdpMany;
    this.#onClose = onClose;
    this.#startTime = this.#lastActivity = settings.clock.now();
    this.#armIdle();
  }

  get state(): UdpFlowState {
    return this.#state;
  }

  /** Resolves once the flow's connection and loops have ended. */
  get done(): Promise<void> {
    return (async () => {
      let seen = -1;
      while (seen < this.#tasks.length) {
        seen = this.#tasks.length;
        await Promise.allSettled(this.#tasks);
      }
    })();
  }

  /** Keep a promise (a pending dial) in {@linkcode Flow.done}. */
  track(task: Promise<unknown>): void {
    this.#tasks.push(task.catch(() => {}));
  }

  drop(reason: UdpDropReason, count = 1): void {
    this.#counters.drops[reason] += count;
    this.#totals.drops[reason] += count;
  }

  /**
   * A datagram from the UDP side, to go into the transport connection. It is
   * framed at once (so `datagram` may be a reused receive buffer): while the
   * connection is busy, straight into the chunk the next write takes.
   */
  push(datagram: Uint8Array): void {
    this.#lastActivity = this.#settings.clock.now();
    if (this.#state === "closed") return this.drop("closed");
    this.#hold(datagram);
    const { framing, maxDatagram } = this.#settings;
    let length: number;
    let framed: Uint8Array | undefined;
    try {
      if (framing.frameLength !== undefined && framing.writeFrame !== undefined) {
        length = framing.frameLength(datagram, maxDatagram);
      } else {
        framed = framing.frame(datagram, maxDatagram);
        length = framed.byteLength;
      }
    } catch (error) {
      return this.drop(error instanceof RangeError ? "oversize" : "invalid");
    }
    if (this.#state === "waiting") {
      if (
        this.#queuedDatagrams >= this.#settings.queueDatagrams ||
        this.#queuedBytes + length > this.#settings.queueBytes || this.#overBudget(length)
      ) return this.drop("waiting");
    } else if (
      this.#queuedDatagrams > 0 &&
      (this.#queuedBytes + length > this.#settings.sendBufferBytes || this.#overBudget(length))
    ) {
      return this.drop("congested");
    }
    let batch = this.#open;
    if (batch !== undefined && batch.used + length > batch.bytes.byteLength) {
      if (batch.used + length <= BATCH_BYTES) grow(batch, batch.used + length, this.#lastBatch);
      else batch = this.#open = undefined;
    }
    if (batch === undefined) {
      const alone = this.#alone;
      this.#alone = undefined;
      if (alone !== undefined && alone.used + length <= BATCH_BYTES) {
        // More came before the first was written (a burst read at once):
        // room for them beside it, rather than a write of its own.
        if (alone.used + length > alone.bytes.byteLength) {
          grow(alone, alone.used + length, this.#lastBatch);
        }
        batch = this.#open = alone;
      } else {
        // Alone in the queue it will be written at once: room for as much
        // as the flow's last batch held (the rest of a burst read at once
        // joins it without a second buffer), no more. Behind others, a
        // batch of up to BATCH_BYTES, grown as it fills.
        const first = this.#queuedDatagrams === 0;
        const whole = first || length >= BATCH_BYTES;
        const size = whole
          ? Math.max(length, Math.min(BATCH_BYTES, this.#lastBatch))
          : Math.min(BATCH_BYTES, Math.max(MIN_BATCH, 4 * length, this.#lastBatch));
        batch = { bytes: new Uint8Array(size), used: 0, count: 0, size: 0 };
        this.#queue.push(batch);
        this.#open = whole ? undefined : batch;
        if (first) this.#alone = batch;
      }
    }
    if (framed !== undefined) batch.bytes.set(framed, batch.used);
    else framing.writeFrame!(datagram, batch.bytes, batch.used);
    batch.used += length;
    batch.count++;
    batch.size += datagram.byteLength;
    this.#queuedDatagrams++;
    this.#queuedBytes += length;
    this.#settings.budget.take(length);
    // The writer waits for the first datagram of a burst only: the rest of
    // the burst finds it woken (a resolve each was 1% of a flow's samples).
    const wake = this.#wake;
    if (wake !== undefined) {
      this.#wake = undefined;
      wake();
    }
  }

  /** Whether `length` more bytes would take this flow past its share of a spent budget. */
  #overBudget(length: number): boolean {
    return !this.#settings.budget.admits(this.#queuedBytes, length);
  }

  /** Waiting -> Connected: start moving datagrams both ways. */
  connect(conn: TransportConn): void {
    if (this.#state !== "waiting") {
      conn.close();
      this.#tasks.push(conn.closed);
      return;
    }
    this.#state = "connected";
    this.#conn = conn;
    // A transport connection is read and written as its streams would be,
    // without them (one stream layer less each way, per chunk).
    if (hasDirectEnds(conn)) {
      const { source, send } = takeDirectEnds(conn);
      this.#tasks.push(this.#pumpOut(send), this.#pumpIn(() => source.read()), conn.closed);
      return;
    }
    const writer = conn.writable.getWriter();
    const reader = conn.readable.getReader();
    this.#tasks.push(
      this.#pumpOut((chunk) => writer.write(chunk)).finally(() => writer.releaseLock()),
      this.#pumpIn(async () => {
        const { value, done } = await reader.read();
        return done ? null : value;
      }).finally(() => reader.releaseLock()),
      conn.closed,
    );
  }

  close(reason: UdpCloseReason, error?: unknown): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closeReason = reason;
    if (this.#timer !== undefined) {
      this.#settings.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const pending = this.#queuedDatagrams;
    if (pending > 0) {
      this.drop(reason === "writeFailed" || reason === "dialFailed" ? reason : "closed", pending);
    }
    this.#queue = [];
    this.#queueHead = 0;
    this.#queuedDatagrams = 0;
    this.#settings.budget.release(this.#queuedBytes);
    this.#queuedBytes = 0;
    this.#open = undefined;
    this.#alone = undefined;
    this.#wake?.();
    this.#conn?.close();
    this.#onClose(this, reason, error);
  }

  /** When a datagram last crossed, either way (the clock's ms). */
  get lastActivity(): number {
    return this.#lastActivity;
  }

  stats(): UdpFlowStats {
    const c = this.#counters;
    return {
      id: this.id,
      state: this.#state,
      startTime: this.#startTime,
      lastActivity: this.#lastActivity,
      ...(this.#closeReason === undefined ? {} : { closeReason: this.#closeReason }),
      queuedDatagrams: this.#queuedDatagrams,
      queuedBytes: this.#queuedBytes,
      datagramsToTunnel: c.datagramsToTunnel,
      bytesToTunnel: c.bytesToTunnel,
      datagramsFromTunnel: c.datagramsFromTunnel,
      bytesFromTunnel: c.bytesFromTunnel,
      drops: { ...c.drops },
    };
  }

  /** Keep the flow open as long as `datagram` says (a TURN allocation's lifetime). */
  #hold(datagram: Uint8Array): void {
    const ms = this.#settings.holdFor?.(datagram);
    if (ms === undefined) return;
    const { clock } = this.#settings;
    this.#holdUntil = clock.now() + ms;
    // A shorter hold (a Refresh deleting the allocation) brings the timer forward.
    if (this.#timer !== undefined && this.#timerAt > this.#idleDeadline()) {
      clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armIdle();
    }
  }

  /** When the flow closes for idleness, as things stand (the clock's ms). */
  #idleDeadline(): number {
    return Math.max(this.#lastActivity + this.#settings.idleTimeout, this.#holdUntil);
  }

  #armIdle(): void {
    const { idleTimeout, clock } = this.#settings;
    if (this.#state === "closed" || !Number.isFinite(idleTimeout)) return;
    const wait = Math.max(0, this.#idleDeadline() - clock.now());
    this.#timerAt = clock.now() + wait;
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#state === "closed") return;
      if (clock.now() >= this.#idleDeadline()) this.close("idle");
      else this.#armIdle();
    }, wait);
  }

  #take(): Batch {
    const batch = this.#queue[this.#queueHead]!;
    this.#queue[this.#queueHead++] = undefined as unknown as Batch;
    if (batch === this.#open) this.#open = undefined;
    if (batch === this.#alone) this.#alone = undefined;
    this.#lastBatch = batch.used;
    this.#queuedDatagrams -= batch.count;
    this.#queuedBytes -= batch.used;
    this.#settings.budget.release(batch.used);
    if (this.#queueHead === this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    return batch;
  }

  async #pumpOut(write: (chunk: Uint8Array) => Promise<void>): Promise<void> {
    try {
      while (this.#state === "connected") {
        if (this.#queueHead === this.#queue.length) {
          await new Promise<void>((resolve) => this.#wake = resolve);
          this.#wake = undefined;
          continue;
        }
        const { bytes: buffer, used, count, size: bytes } = this.#take();
        const chunk = used === buffer.byteLength ? buffer : buffer.subarray(0, used);
        try {
          await write(chunk);
        } catch (error) {
          this.drop("writeFailed", count);
          throw error;
        }
        this.#counters.datagramsToTunnel += count;
        this.#counters.bytesToTunnel += bytes;
        this.#totals.datagramsToTunnel += count;
        this.#totals.bytesToTunnel += bytes;
      }
    } catch (error) {
      this.close("writeFailed", error);
    }
  }

  /** Count a datagram sent on the UDP side, or dropped there. */
  #sentUdp(datagram: Uint8Array, ok: boolean): void {
    if (!ok) {
      this.drop("udpSendFailed");
    } else {
      this.#counters.datagramsFromTunnel++;
      this.#counters.bytesFromTunnel += datagram.byteLength;
      this.#totals.datagramsFromTunnel++;
      this.#totals.bytesFromTunnel += datagram.byteLength;
    }
  }

  /**
   * Datagrams off the connection, sent on the UDP side as soon as they are
   * complete: those of one read together (one system call for up to 32,
   * with `sendUdpMany`), before the next read or turn.
   */
  async #pumpIn(read: () => Promise<Uint8Array | null>): Promise<void> {
    const { framing, maxDatagram, clock } = this.#settings;
    const deframer = new Deframer(framing, maxDatagram);
    const many = this.#sendUdpMany;
    // Views into the chunks read, valid until the next read: sent before it.
    const ready: Uint8Array[] = [];
    const results: boolean[] = [];
    let count = 0;
    const flush = () => {
      if (count === 0) return;
      many!(ready, count, results);
      for (let i = 0; i < count; i++) {
        this.#sentUdp(ready[i]!, results[i]!);
        ready[i] = EMPTY;
      }
      count = 0;
    };
    let turn = 0;
    try {
      while (true) {
        const value = await read();
        if (value === null) {
          deframer.finish();
          break;
        }
        this.#lastActivity = clock.now();
        deframer.push(value);
        try {
          for (let datagram; (datagram = deframer.next()) !== undefined;) {
            if (++turn % DATAGRAMS_PER_TURN === 0) {
              flush();
              // A turn for everyone else: I/O is polled and due timers run
              // before an immediate. Not setTimeout(0), which waits 2 ms
              // here (a quarter of a busy flow's rate, measured).
              await new Promise((resolve) => setImmediate(resolve));
            }
            if (this.#state === "closed") {
              this.drop("closed");
              continue;
            }
            this.#hold(datagram);
            if (many === undefined) this.#sentUdp(datagram, this.#sendUdp(datagram));
            else ready[count++] = datagram;
          }
        } finally {
          // What came before a framing error goes too, as it did one by one.
          flush();
        }
      }
      this.close("peerClosed");
    } catch (error) {
      const framingError = error instanceof SyntaxError || error instanceof RangeError;
      this.close(framingError ? "framingError" : "connectionError", error);
    }
  }
}
