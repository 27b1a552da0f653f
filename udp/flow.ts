// Copyright the ptkit authors. MIT license.
// Internal: one UDP flow bound to one transport connection, shared by the
// client and server pools. Not part of the public API.

import type { TransportConn } from "../net/transport_conn.ts";
import type { Clock } from "./clock.ts";
import { DeframerStream } from "./deframer_stream.ts";
import type { Framing } from "./framing.ts";
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
  readonly queueDatagrams: number;
  readonly queueBytes: number;
  readonly sendBufferBytes: number;
  readonly clock: Clock;
}

interface Queued {
  readonly framed: Uint8Array;
  readonly size: number;
}

/** Largest write to the transport connection when coalescing datagrams. */
const BATCH_BYTES = 64 * 1024;

/**
 * A flow: datagrams from one UDP peer go through one transport connection,
 * and datagrams coming back go to that peer.
 */
export class Flow {
  readonly id: number;
  #settings: FlowSettings;
  #sendUdp: (datagram: Uint8Array) => Promise<void>;
  #onClose: (flow: Flow, reason: UdpCloseReason, error: unknown) => void;
  #state: UdpFlowState = "waiting";
  #closeReason: UdpCloseReason | undefined;
  #counters: MutableCounters = zeroCounters();
  #totals: MutableCounters;
  #queue: Queued[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #wake: (() => void) | undefined;
  #conn: TransportConn | undefined;
  #startTime: number;
  #lastActivity: number;
  #timer: unknown = undefined;
  #tasks: Promise<unknown>[] = [];

  constructor(
    id: number,
    settings: FlowSettings,
    totals: MutableCounters,
    sendUdp: (datagram: Uint8Array) => Promise<void>,
    onClose: (flow: Flow, reason: UdpCloseReason, error: unknown) => void,
  ) {
    this.id = id;
    this.#settings = settings;
    this.#totals = totals;
    this.#sendUdp = sendUdp;
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

  /** A datagram from the UDP side, to go into the transport connection. */
  push(datagram: Uint8Array): void {
    this.#lastActivity = this.#settings.clock.now();
    if (this.#state === "closed") return this.drop("closed");
    let framed: Uint8Array;
    try {
      framed = this.#settings.framing.frame(datagram, this.#settings.maxDatagram);
    } catch (error) {
      return this.drop(error instanceof RangeError ? "oversize" : "invalid");
    }
    const queued = this.#queue.length - this.#queueHead;
    if (this.#state === "waiting") {
      if (
        queued >= this.#settings.queueDatagrams ||
        this.#queuedBytes + framed.byteLength > this.#settings.queueBytes
      ) return this.drop("waiting");
    } else if (
      queued > 0 && this.#queuedBytes + framed.byteLength > this.#settings.sendBufferBytes
    ) {
      return this.drop("congested");
    }
    this.#queue.push({ framed, size: datagram.byteLength });
    this.#queuedBytes += framed.byteLength;
    this.#wake?.();
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
    this.#tasks.push(this.#pumpOut(conn), this.#pumpIn(conn), conn.closed);
  }

  close(reason: UdpCloseReason, error?: unknown): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closeReason = reason;
    if (this.#timer !== undefined) {
      this.#settings.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const pending = this.#queue.length - this.#queueHead;
    if (pending > 0) {
      this.drop(reason === "writeFailed" || reason === "dialFailed" ? reason : "closed", pending);
    }
    this.#queue = [];
    this.#queueHead = 0;
    this.#queuedBytes = 0;
    this.#wake?.();
    this.#conn?.close();
    this.#onClose(this, reason, error);
  }

  stats(): UdpFlowStats {
    const c = this.#counters;
    return {
      id: this.id,
      state: this.#state,
      startTime: this.#startTime,
      lastActivity: this.#lastActivity,
      ...(this.#closeReason === undefined ? {} : { closeReason: this.#closeReason }),
      queuedDatagrams: this.#queue.length - this.#queueHead,
      queuedBytes: this.#queuedBytes,
      datagramsToTunnel: c.datagramsToTunnel,
      bytesToTunnel: c.bytesToTunnel,
      datagramsFromTunnel: c.datagramsFromTunnel,
      bytesFromTunnel: c.bytesFromTunnel,
      drops: { ...c.drops },
    };
  }

  #armIdle(): void {
    const { idleTimeout, clock } = this.#settings;
    if (this.#state === "closed" || !Number.isFinite(idleTimeout)) return;
    const wait = Math.max(0, this.#lastActivity + idleTimeout - clock.now());
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#state === "closed") return;
      if (clock.now() - this.#lastActivity >= idleTimeout) this.close("idle");
      else this.#armIdle();
    }, wait);
  }

  #take(): { chunk: Uint8Array; count: number; bytes: number } {
    const first = this.#queue[this.#queueHead++]!;
    let count = 1;
    let bytes = first.size;
    let total = first.framed.byteLength;
    let end = this.#queueHead;
    while (end < this.#queue.length && total + this.#queue[end]!.framed.byteLength <= BATCH_BYTES) {
      total += this.#queue[end]!.framed.byteLength;
      end++;
    }
    let chunk = first.framed;
    if (end > this.#queueHead) {
      chunk = new Uint8Array(total);
      chunk.set(first.framed);
      let offset = first.framed.byteLength;
      for (; this.#queueHead < end; this.#queueHead++) {
        const item = this.#queue[this.#queueHead]!;
        chunk.set(item.framed, offset);
        offset += item.framed.byteLength;
        count++;
        bytes += item.size;
      }
    }
    this.#queuedBytes -= total;
    if (this.#queueHead === this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    return { chunk, count, bytes };
  }

  async #pumpOut(conn: TransportConn): Promise<void> {
    const writer = conn.writable.getWriter();
    try {
      while (this.#state === "connected") {
        if (this.#queueHead === this.#queue.length) {
          await new Promise<void>((resolve) => this.#wake = resolve);
          this.#wake = undefined;
          continue;
        }
        const { chunk, count, bytes } = this.#take();
        try {
          await writer.write(chunk);
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
    } finally {
      writer.releaseLock();
    }
  }

  async #pumpIn(conn: TransportConn): Promise<void> {
    const { framing, maxDatagram, clock } = this.#settings;
    const datagrams = conn.readable.pipeThrough(new DeframerStream(framing, { maxDatagram }));
    const reader = datagrams.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#lastActivity = clock.now();
        if (this.#state === "closed") {
          this.drop("closed");
          continue;
        }
        try {
          await this.#sendUdp(value);
        } catch {
          this.drop("udpSendFailed");
          continue;
        }
        this.#counters.datagramsFromTunnel++;
        this.#counters.bytesFromTunnel += value.byteLength;
        this.#totals.datagramsFromTunnel++;
        this.#totals.bytesFromTunnel += value.byteLength;
      }
      this.close("peerClosed");
    } catch (error) {
      const framingError = error instanceof SyntaxError || error instanceof RangeError;
      this.close(framingError ? "framingError" : "connectionError", error);
    } finally {
      reader.releaseLock();
    }
  }
}
