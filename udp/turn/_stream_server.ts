// Copyright the ptkit authors. MIT license.

import { Deframer } from "../_deframer.ts";
import { MAX_DATAGRAM } from "../framing.ts";
import { QueueBudget } from "../_queue_budget.ts";
import { checkTimeout } from "../../net/address.ts";
import { stunFraming } from "../stun/framing.ts";
import type { StunAddress } from "../stun/_message.ts";
import type { TurnServer } from "./_turn_server.ts";

/** Options of {@linkcode serveTurnStream}. */
export interface ServeTurnStreamOptions {
  /** The client's address as far as it is known, echoed in XOR-MAPPED-ADDRESS. */
  readonly remoteAddress?: StunAddress;
  /** The source the client counts against when a quota is full (see `TurnClient.source`). */
  readonly source?: string;
  /**
   * Bytes queued toward the client before further datagrams are dropped
   * (default 256 KiB). They wait in one buffer, not one write each; while
   * more than 64 KiB wait, the client's own requests are not read.
   */
  readonly maxQueuedBytes?: number;
  /**
   * Bytes queued toward all stream clients of the same server together
   * (default 64 MiB). Past it, a client holding 64 KiB or more takes no more
   * (what it is sent is dropped, as beyond `maxQueuedBytes`): 4,096
   * connections that do not read would otherwise hold 256 KiB each. The value
   * given with a server's first connection holds for all of its connections.
   */
  readonly maxTotalQueuedBytes?: number;
  /**
   * The largest STUN message or ChannelData (unpadded) sent to the client, in
   * bytes: the `maxDatagram` of the deframer at the other end. Larger ones are
   * dropped and counted (`oversize`). Default 65,507.
   */
  readonly maxPacket?: number;
  /**
   * End the connection after this many milliseconds without a frame either
   * way (`-udpidletimeout`), once its client holds no live allocation (a
   * quiet TURN client is not gone). Default: never (the client ends it).
   */
  readonly idleTimeout?: number;
  /** Abort to end the connection. */
  readonly signal?: AbortSignal;
}

let nextStreamId = 0;

/**
 * End a byte-stream connection in a {@linkcode TurnServer}: the stream carries STUN messages
 * and ChannelData back to back (PT 2.0 "STUN-aware" framing), and the connection is one TURN
 * client. Resolves when the stream ends or carries a bad frame (the rest of the client's side is
 * then cancelled); the client's allocation is deleted, the answers already queued are written and
 * the writable closed. Toward a slow client, datagrams beyond `maxQueuedBytes` are
 * dropped, as on UDP, and a client that does not read its answers is not read either. The
 * server's expiry sweep is the caller's: call `server.sweep()` every second or so when no
 * `serveTurnUdp` runs it (expired state is also dropped lazily).
 *
 * @param server The TURN server logic.
 * @param conn The byte stream (e.g. a transport connection's readable and writable).
 * @param options Client address, queue limit and abort signal.
 * @returns Resolves when the connection is over.
 * @throws {RangeError} When `maxQueuedBytes` or `maxPacket` is not a positive integer.
 *
 * @example A Binding request over an in-memory stream
 * ```ts
 * import { serveTurnStream } from "./_stream_server.ts";
 * import { TurnServer } from "./_turn_server.ts";
 * import { encodeStunMessage, parseStunMessage } from "../stun/_message.ts";
 * import { strictEqual } from "node:assert";
 *
 * const server = new TurnServer({
 *   realm: "r",
 *   users: {},
 *   relay: { families: [4], open: () => Promise.reject(new Error("unused")) },
 * });
 * const request = encodeStunMessage({
 *   method: 1, class: 0, transactionId: new Uint8Array(12), attributes: [],
 * });
 * const out: Uint8Array[] = [];
 * await serveTurnStream(server, {
 *   readable: ReadableStream.from([request]),
 *   writable: new WritableStream({ write: (c) => void out.push(c) }),
 * });
 * strictEqual(parseStunMessage(out[0]!).class, 2);
 * server.close();
 * ```
 */
export async function serveTurnStream(
  server: TurnServer,
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  options: ServeTurnStreamOptions = {},
): Promise<void> {
  const key = `stream:${nextStreamId++}`;
  const limit = checkSize("maxQueuedBytes", options.maxQueuedBytes, DEFAULT_MAX_QUEUED);
  const maxPacket = checkSize("maxPacket", options.maxPacket, MAX_DATAGRAM);
  const idleTimeout = options.idleTimeout;
  if (idleTimeout !== undefined) checkTimeout(idleTimeout, "idleTimeout", "serve TURN stream");
  const total = checkSize(
    "maxTotalQueuedBytes",
    options.maxTotalQueuedBytes,
    DEFAULT_MAX_TOTAL_QUEUED,
  );
  let budget = budgets.get(server);
  // The first connection's total stands for the server's.
  if (budget === undefined) budgets.set(server, budget = new QueueBudget(total));
  const writer = conn.writable.getWriter();
  const out = new OutQueue(writer, limit, budget);
  const client = {
    key,
    address: options.remoteAddress ?? { family: 4, address: "0.0.0.0", port: 0 } as const,
    ...(options.source === undefined ? {} : { source: options.source }),
    stream: true,
    maxPacket,
    send: (view: Uint8Array): boolean => {
      lastActivity = performance.now();
      return out.push(view);
    },
  };
  // Frames are taken from each chunk read one at a time (a stream of them
  // would hold every 20-byte request of a 256 KiB read as a chunk of its own).
  const deframer = new Deframer(stunFraming, MAX_DATAGRAM);
  const reader = conn.readable.getReader();
  let ended = false;
  // An abort ends the read, and a wait for the client to read.
  const onAbort = () => {
    out.stop();
    reader.cancel(options.signal?.reason).catch(() => {});
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  // Idle: nothing either way for idleTimeout ends the connection, but not
  // while the client's allocation lives (a TURN client says nothing between
  // its refreshes; STUN mode's UDP flows are held the same way), checked
  // again every idleTimeout. What is still queued has waited that long for
  // a client that does not read: it is dropped, as on an abort.
  let lastActivity = performance.now();
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let idled = false;
  const armIdle = (wait: number) => {
    idleTimer = setTimeout(() => {
      const left = lastActivity + idleTimeout! - performance.now();
      if (left > 0) return armIdle(left);
      if (server.allocationLeft(key) > 0) return armIdle(idleTimeout!);
      idled = true;
      out.stop();
      reader.cancel(new Error("TURN stream idle")).catch(() => {});
    }, wait);
  };
  if (idleTimeout !== undefined) armIdle(idleTimeout);
  try {
    reading: while (!out.broken) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        deframer.finish();
        break;
      }
      lastActivity = performance.now();
      deframer.push(value);
      let turn = 0;
      for (let frame; (frame = deframer.next()) !== undefined;) {
        if (out.broken) break reading;
        server.handle(client, frame);
        // A client that does not read its answers is not read either.
        if (out.queued > READ_PAUSE) await out.drained(READ_PAUSE);
        // Other connections get their turn: a 256 KiB read of 20-byte
        // frames is 13,000 of them.
        if (++turn % FRAMES_PER_TURN === 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
  } catch (error) {
    // A bad frame or an aborted stream ends only this connection; its
    // client's side is cancelled, so whoever writes to it stops waiting.
    reader.cancel(error).catch(() => {});
    ended = true;
  } finally {
    clearTimeout(idleTimer);
    options.signal?.removeEventListener("abort", onAbort);
    // Stopped sending (the client's side broke): nothing more is read either.
    if (!ended) reader.cancel().catch(() => {});
    server.disconnect(key);
    if (options.signal?.aborted || (idled && out.queued > 0)) {
      // Aborted, or idle with a write in flight: what the client did not
      // take is dropped, not waited for (an abort, too, waits for a write
      // in flight).
      out.stop();
      writer.abort(options.signal?.reason ?? new Error("TURN stream idle")).catch(() => {});
    } else {
      // The answers already queued go out before the close (a client that
      // half-closes after its requests gets them all).
      await out.finished();
      out.stop();
      await writer.close().catch(() => {});
    }
  }
}

/** A size option: a positive safe integer, or the default when undefined. */
function checkSize(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot serve TURN stream: ${name} must be a positive integer, got ${value}`,
    );
  }
  return value;
}

const DEFAULT_MAX_QUEUED = 256 * 1024;
const DEFAULT_MAX_TOTAL_QUEUED = 64 * 1024 * 1024;
/** Bytes queued toward the stream clients of each server, in all. */
const budgets = new WeakMap<TurnServer, QueueBudget>();
/** Queued bytes toward a client above which its requests wait. */
const READ_PAUSE = 64 * 1024;
/** Frames one connection handles before the others get a turn. */
const FRAMES_PER_TURN = 256;

/**
 * What goes to one stream client: packets copied into one growing buffer
 * while a write is in flight (a client that does not read holds one buffer,
 * not a write and a promise per 56-byte answer).
 */
class OutQueue {
  broken = false;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #limit: number;
  #budget: QueueBudget;
  /** Bytes this queue counts in `#budget` (queued or in flight, until written or stopped). */
  #counted = 0;
  #buffer = new Uint8Array(0);
  #used = 0;
  #inFlight = 0;
  #writing = false;
  #waiters: { below: number; resolve: () => void }[] = [];

  constructor(
    writer: WritableStreamDefaultWriter<Uint8Array>,
    limit: number,
    budget: QueueBudget,
  ) {
    this.#writer = writer;
    this.#limit = limit;
    this.#budget = budget;
  }

  /** Bytes not yet written out. */
  get queued(): number {
    return this.#used + this.#inFlight;
  }

  /** Queue a copy of `view` (it may sit in a relay's receive buffer); false when full or broken. */
  push(view: Uint8Array): boolean {
    if (this.broken || this.queued + view.length > this.#limit) return false;
    if (!this.#budget.admits(this.queued, view.length)) return false;
    if (this.#used + view.length > this.#buffer.length) {
      // Alone it is written at once: no room to spare. Behind a write in
      // flight, room for more to come.
      const needed = this.#used + view.length;
      const grown = new Uint8Array(
        this.#writing ? Math.min(this.#limit, Math.max(4096, 2 * needed)) : needed,
      );
      grown.set(this.#buffer.subarray(0, this.#used));
      this.#buffer = grown;
    }
    this.#buffer.set(view, this.#used);
    this.#used += view.length;
    this.#counted += view.length;
    this.#budget.take(view.length);
    if (!this.#writing) void this.#flush();
    return true;
  }

  /** Send nothing more; whoever waits in {@linkcode OutQueue.drained} goes on. */
  stop(): void {
    this.broken = true;
    // What was not written is let go: it no longer counts against the others.
    this.#used = 0;
    this.#buffer = new Uint8Array(0);
    this.#release(this.#counted);
    this.#wake();
  }

  /** Count `n` bytes fewer in what the server's clients hold. */
  #release(n: number): void {
    const released = Math.min(n, this.#counted);
    this.#counted -= released;
    this.#budget.release(released);
  }

  /** Resolves once everything queued was written, or the stream broke. */
  finished(): Promise<void> {
    return this.drained(1);
  }

  /** Resolves once fewer than `below` bytes are queued, or the stream broke. */
  drained(below: number): Promise<void> {
    if (this.broken || this.queued < below) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ below, resolve }));
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    while (this.#used > 0 && !this.broken) {
      // The buffer goes to the writer as it is (the stream may hold it
      // until read); what is queued meanwhile goes into a new one.
      const chunk = this.#buffer.subarray(0, this.#used);
      this.#buffer = new Uint8Array(0);
      this.#inFlight = chunk.length;
      this.#used = 0;
      try {
        await this.#writer.write(chunk);
      } catch {
        this.broken = true;
      }
      this.#release(chunk.length);
      this.#inFlight = 0;
      this.#wake();
    }
    this.#writing = false;
    if (this.broken) this.stop();
    else this.#wake();
  }

  #wake(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!this.broken && this.queued >= w.below) return true;
      w.resolve();
      return false;
    });
  }
}
