// Copyright the ptkit authors. MIT license.

import type { HostPort, TransportPair } from "../transports/transport.ts";
import { HandshakeError } from "../transports/_handshake_error.ts";
import { deferred } from "../transports/_deferred.ts";
import { formatIp, isIpLiteral, parseIp } from "./_ip_address.ts";
import {
  type ChunkSink,
  type ChunkSource,
  closeWriter,
  connSink,
  connSource,
  describe,
  type DirectEnds,
  pump,
  registerDirectEnds,
  streamSink,
  streamSource,
} from "./_chunk_io.ts";
import { isNetConn, type NetConn } from "./net_conn.ts";
import { checkTransportPair } from "../transports/_pair.ts";
import { DIRECT_PAIR, type DirectPair, type DirectTransform } from "../transports/_direct_pair.ts";
import { checkDestination, checkTimeout } from "./address.ts";
import { checkFactoryOptions, checkOptionType } from "../transports/_factory_options.ts";

/** Byte counts and age of one transport connection. */
export interface ConnStats {
  /** When the connection was set up, in milliseconds since the epoch. */
  readonly startTime: number;
  /** Application bytes the application wrote (before encoding). */
  readonly appBytesWritten: number;
  /** Application bytes the application read (after decoding). */
  readonly appBytesRead: number;
  /** Bytes sent on the network (after encoding). */
  readonly wireBytesWritten: number;
  /** Bytes received from the network (before decoding). */
  readonly wireBytesRead: number;
}

/** How long a failed connection's finished output may take to go out. */
const LINGER_MS = 2000;

/** Options for {@linkcode TransportConn}. */
export interface TransportConnOptions {
  /** The transport's name, used in error messages. Defaults to `"transport"`. */
  readonly name?: string;
  /**
   * Milliseconds the transport's handshake (`pair.ready`) may take before the
   * connection fails. Defaults to 120000: longer than any transport's own
   * deadline (obfs4 closes failed handshakes after at most 90 s), so the
   * transport's behaviour on the wire is what a probe sees; none at all
   * for a pair that `holdsProbes` (Shadowsocks), as its reference server
   * sets none.
   */
  readonly handshakeTimeout?: number;
}

/**
 * A connection through a transport: application bytes written to `writable`
 * are encoded and sent on the network connection, and bytes received are
 * decoded and come out of `readable`. It looks like a `Deno.Conn` (streams,
 * `close`, `closeWrite`, addresses, `using` and `await using`) plus
 * {@linkcode stats}.
 *
 * Errors end the whole connection: a network error, or a transport stream
 * that throws, errors both `readable` and `writable` with the cause and
 * closes the network connection.
 *
 * @example Wrapping a TCP connection in the plain transport
 * ```ts
 * import { TransportConn } from "@ptkit/ptkit/net";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const peer = await listener.accept();
 * await using conn = new TransportConn(tcp, (await plain.client({})).pair({}));
 * const writer = conn.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hi"));
 * const buffer = new Uint8Array(2);
 * deepStrictEqual(await peer.read(buffer), 2);
 * deepStrictEqual(conn.stats().wireBytesWritten, 2);
 * peer.close();
 * ```
 */
export class TransportConn implements Disposable, AsyncDisposable {
  #net: NetConn;
  #startTime = Date.now();
  #appBytesWritten = 0;
  #appBytesRead = 0;
  #wireBytesWritten = 0;
  #wireBytesRead = 0;
  #closed = false;
  #closedByUser = false;
  #error: unknown = undefined;
  /** The `BadResource` that `close()` ended the connection with. */
  #closeReason: Error | undefined;
  #netClosed = false;
  #wireIn: Promise<void>;
  #wireOut: Promise<void>;
  #done: Promise<void>;
  #abortEncode: (reason: unknown) => void;
  #abortDecode: (reason: unknown) => void;
  // The streams are made when first asked for: a relay reads and writes
  // the connection without them (see #takeDirect), which an idle
  // connection's memory shows (two streams, their controllers, queues and
  // promises, about 5 KiB a connection).
  #readable: ReadableStream<Uint8Array> | undefined;
  #ready: Promise<void>;
  /** Rejected once the connection has failed or been closed (see the constructor). */
  #gone = deferred<never>();
  /** Rejects `ready` (nothing once it settled): with #gone's reason, or at the peer's end. */
  #rejectReady: ((reason: unknown) => void) | undefined;
  #destination: Promise<HostPort> | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #writable: WritableStream<Uint8Array> | undefined;
  /** Errors `writable` when the connection fails (see #fail). */
  #writableController: WritableStreamDefaultController | undefined;
  #clientAddress: HostPort | undefined;
  #encodeEnded = false;
  #writeShut: Promise<void> | undefined;
  #closingWrite: Promise<void> | undefined;
  /** Set once the encoder is being closed: writes from then on fail. */
  #writeClosed = false;
  /** The write to the encoder in progress, if any. */
  #writing: Promise<void> | undefined;
  #readCancelled = false;
  #encoder: WritableStreamDefaultWriter<Uint8Array>;
  #decoder: ReadableStreamDefaultReader<Uint8Array>;
  #name: string;
  /** The decoded chunk read ahead (as a stream of highWaterMark 1 reads one). */
  #ahead: Promise<Uint8Array | null> | undefined;
  /** Set once reading ended: null at end of stream (or cancel), else the error. */
  #readEnd: { readonly error: unknown } | null | undefined;
  /** Whether a relay took the connection's direct ends (the streams then stay locked). */
  #direct = false;
  /** Whether the pair is a direct one (obfs4's), whose encoder copies each write. */
  #copiesWrites: boolean;
  /** Told of each chunk the relay's direct sink wrote, once encoded (see DirectEnds). */
  #release: ((chunk: Uint8Array) => void) | undefined;
  /** A direct pair's: takes back a decoded chunk its reader is done with. */
  #recycleDecoded: ((chunk: Uint8Array) => void) | undefined;
  /** The direct sink's write in flight, whose failure the next write or end reports. */
  #directWrite: Promise<void> | undefined;

  static {
    registerDirectEnds({
      available: (end) => #net in end && end.#directAvailable(),
      take: (end) => (end as TransportConn).#takeDirect(),
    });
  }

  /**
   * Wrap a network connection in one side of a transport.
   *
   * @param net The network connection (a `Deno.Conn`, or what a dialer gave).
   * @param pair This connection's encode/decode pair.
   * @param options The transport name for error messages.
   * @throws {TypeError} When `net` is not a connection (`read`, `write`,
   * `closeWrite`, `close`), `pair` not `{ encode, decode }` of streams,
   * `options` not an object or `name` not a string.
   * @throws {RangeError} When `handshakeTimeout` is not a positive number of
   * ms a timer can hold (whether or not the pair has a handshake).
   */
  constructor(net: NetConn, pair: TransportPair, options: TransportConnOptions = {}) {
    checkConnOptions(options, "wrap a transport connection");
    const name = this.#name = options.name ?? "transport";
    if (!isNetConn(net)) {
      throw new TypeError(
        `Cannot wrap a transport connection: net must be a connection (read, write, closeWrite, close), got ${
          describe(net)
        }`,
      );
    }
    checkTransportPair(name, pair);
    this.#net = net;
    // Each write goes out when made, as Go's sockets (obfs4proxy's) do: the
    // transport's write sizes and timing are what it shows on the wire,
    // not what Nagle's algorithm makes of them.
    if ("setNoDelay" in net && typeof net.setNoDelay === "function") net.setNoDelay(true);
    // A reported client address is settled by the time the handshake is.
    const reported = pair.clientAddress?.then((address) => {
      this.#clientAddress = address;
    });
    const handshake = reported === undefined
      ? pair.ready
      : Promise.all([pair.ready, reported]).then(() => {});
    // However the transport settles its handshake, it fails once the
    // connection has failed or been closed (a reset during an obfs4 or
    // Shadowsocks probe delay, a server shutting down): whoever awaits
    // `ready` is never left waiting on a connection that is gone.
    // (#fail and close() reject `ready` with #gone's reason: no race with
    // #gone, whose handlers stayed on it for the connection's life.)
    // A transport that holds probes as long as their peer does (Shadowsocks)
    // gets no deadline unless one is given.
    const limit = options.handshakeTimeout ?? (pair.holdsProbes === true ? undefined : 120_000);
    // A handshake still waiting once the decoder has taken the peer's end
    // of stream (its flush done) cannot finish: it fails at once, as the
    // built-in transports' do, not at the deadline (a custom transport whose
    // `ready` waits for the peer's first byte): see the wire-in pump's end.
    if (handshake === undefined) {
      this.#ready = Promise.resolve();
    } else {
      const ready = deferred<void>();
      this.#ready = ready.promise;
      this.#rejectReady = ready.reject;
      (limit === undefined ? handshake : this.#limit(handshake, limit, name))
        .then(ready.resolve, ready.reject);
    }
    this.#ready.catch((error) => this.#fail(error));
    // Checked here, the one place every server's destination passes: a
    // transport's malformed one (a space, port 99999, null) was looked up
    // as a name or failed with JavaScript's own error. A promise
    // (checkTransportPair): a thenable of another kind may have no catch.
    this.#destination = pair.destination === undefined
      ? undefined
      : Promise.resolve(pair.destination).then((destination) =>
        checkReportedDestination(name, destination)
      );
    this.#destination?.catch(() => {});

    // A pair of the runtime's own transports (obfs4) runs its transformers
    // without their streams: two TransformStreams, their readers, writers
    // and promises cost an idle connection about 10 KiB of heap.
    const direct = directPair(pair);
    // A pair that passes chunks on (plain's) copies nothing: its chunks are
    // not free when transformed.
    const copies = direct !== undefined && direct.passesChunks !== true;
    this.#copiesWrites = copies;
    this.#recycleDecoded = direct?.recycleDecoded;
    const encodeReadable = direct === undefined
      ? pair.encode.readable
      : { getReader: () => direct.encode } as unknown as ReadableStream<Uint8Array>;
    const decodeWritable = direct === undefined
      ? pair.decode.writable
      : { getWriter: () => direct.decode } as unknown as WritableStream<Uint8Array>;
    const encodeSource = recycling(
      streamSource(encodeReadable, `Transport '${name}' encoder`),
      direct?.recycle,
    );
    this.#abortEncode = (reason) => encodeSource.cancel(reason);
    this.#wireOut = pump(encodeSource, connSink(net), (n) => this.#wireBytesWritten += n, {
      onEnd: () => this.#encodeEnded = true,
    });

    // A direct pair's decoder (obfs4's) copies what it keeps: the socket
    // is read into spare buffers, each given back once decoded, not a
    // fresh one per read.
    // The first read takes a whole handshake (16 KiB); later ones follow the traffic.
    const wireSource = connSource(net, 16 * 1024, copies);
    const decodeSink = direct === undefined
      ? streamSink(decodeWritable)
      : transformSink(direct.decode, copies ? (chunk) => wireSource.release(chunk) : noRelease);
    this.#abortDecode = (reason) => decodeSink.abort(reason);
    this.#wireIn = pump(wireSource, decodeSink, (n) => this.#wireBytesRead += n);

    // One handler per direction, the network connection closed once both
    // have ended: an idle connection kept, for its life, a second and
    // third handler on the wire-in pump, a second on the wire-out one, and
    // Promise.allSettled's element functions, array and promises.
    let resolveDone!: () => void;
    this.#done = new Promise<void>((resolve) => resolveDone = resolve);
    let running = 2;
    const ended = () => {
      if (--running > 0) return;
      // A microtask later, as allSettled's handler ran.
      queueMicrotask(() => {
        this.#closeNet();
        resolveDone();
      });
    };
    this.#wireIn.then(() => {
      // Nothing once `ready` has settled.
      this.#rejectReady?.(
        new HandshakeError(
          "failed",
          `Transport '${name}' handshake failed: the peer closed the connection before the handshake finished`,
        ),
      );
      ended();
    }, (error) => {
      if (!this.#readCancelled) this.#fail(error);
      ended();
    });
    this.#wireOut.then(ended, (error) => {
      this.#fail(error);
      ended();
    });

    this.#encoder = direct === undefined
      ? pair.encode.writable.getWriter()
      : direct.encode as unknown as WritableStreamDefaultWriter<Uint8Array>;
    // One chunk is read ahead, so a transport whose handshake runs in its
    // decoder makes progress (and resolves `ready`) before the application
    // reads anything.
    this.#decoder = direct === undefined
      ? pair.decode.readable.getReader()
      : direct.decode as unknown as ReadableStreamDefaultReader<Uint8Array>;
    this.#readAhead();
  }

  /** Start reading the next decoded chunk ahead. */
  #readAhead(): void {
    const ahead = this.#ahead = this.#readDecoded();
    ahead.catch(() => {});
  }

  /** One chunk from the decoder: null at its end (or once closed by the user). */
  async #readDecoded(): Promise<Uint8Array | null> {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await this.#decoder.read();
    } catch (error) {
      if (this.#closedByUser) return null;
      this.#fail(error);
      throw error;
    }
    const { value, done } = result;
    if (done) return null;
    if (!(value instanceof Uint8Array)) {
      const error = new TypeError(
        `Transport '${this.#name}' decoder produced a chunk that is not a Uint8Array: ${
          describe(value)
        }`,
      );
      this.#fail(error);
      throw error;
    }
    this.#appBytesRead += value.byteLength;
    return value;
  }

  /**
   * The next decoded chunk (null: end of stream); the one after is read
   * ahead at once, as a stream of highWaterMark 1 pulls it. Called one at
   * a time (by the readable's pull, or the relay's pump).
   */
  async #nextChunk(): Promise<Uint8Array | null> {
    const end = this.#readEnd;
    if (end !== undefined) {
      if (end === null) return null;
      throw end.error;
    }
    const ahead = this.#ahead ?? this.#readDecoded();
    this.#ahead = undefined;
    let value: Uint8Array | null;
    try {
      value = await ahead;
    } catch (error) {
      this.#readEnd ??= { error };
      throw error;
    }
    if (value === null) this.#readEnd ??= null;
    else if (this.#readEnd === undefined) this.#readAhead();
    return value;
  }

  /**
   * Cancelling stops reading, nothing more: the write side goes on (a
   * relay cancels one direction and lets the other finish), and the
   * peer's later bytes, which the cancelled decoder refuses, no longer
   * fail the whole connection. `close()` ends both.
   */
  #cancelRead(reason: unknown): void {
    if (this.#readEnd !== undefined) return;
    this.#readEnd = null;
    this.#ahead = undefined;
    this.#readCancelled = true;
    this.#decoder.cancel(reason).catch(() => {});
  }

  /** A write through `writable` (or the relay's direct sink), tracked for #shutWrite. */
  #trackedWrite(chunk: Uint8Array, release?: (chunk: Uint8Array) => void): Promise<void> {
    const writing = this.#write(this.#encoder, chunk, release);
    this.#writing = writing;
    writing.then(() => {
      if (this.#writing === writing) this.#writing = undefined;
    }, () => {
      if (this.#writing === writing) this.#writing = undefined;
    });
    return writing;
  }

  #directAvailable(): boolean {
    return !this.#direct && this.#readable === undefined && this.#writable === undefined;
  }

  /**
   * The relay's ends, reading and writing as `readable` and `writable`
   * would (one chunk read ahead, one write in flight whose failure the
   * next write or the end reports) without making them; the streams, if
   * asked for later, are locked, as a relay's would be.
   */
  #takeDirect(): DirectEnds {
    this.#direct = true;
    const settled = async () => {
      const writing = this.#directWrite;
      if (writing !== undefined) await writing;
    };
    // Once the reader said it keeps nothing of a chunk past its next read
    // (recycleReads), the chunk read last goes back to the pair then.
    let recycle: ((chunk: Uint8Array) => void) | undefined;
    let handed: Uint8Array | null = null;
    return {
      source: {
        read: () => {
          if (recycle === undefined) return this.#nextChunk();
          if (handed !== null) recycle(handed);
          handed = null;
          return this.#nextChunk().then((chunk) => handed = chunk);
        },
        cancel: (reason) => this.#cancelRead(reason),
      },
      sink: {
        write: async (chunk) => {
          await settled();
          const writing = this.#directWrite = this.#trackedWrite(chunk, this.#release);
          writing.catch(() => {});
        },
        end: async () => {
          await settled();
          await this.#shutWrite(this.#encoder);
        },
        abort: (reason) => {
          this.#encoder.abort(reason).catch(() => {});
        },
      },
      send: (chunk) => this.#trackedWrite(chunk),
      releaseTo: (release) => {
        // Only a direct pair's encoder is known to copy what it is given
        // (another transform may pass the chunk itself on).
        if (this.#copiesWrites) this.#release = release;
      },
      recycleReads: () => {
        recycle = this.#recycleDecoded;
      },
    };
  }

  async #write(
    encoder: WritableStreamDefaultWriter<Uint8Array>,
    chunk: Uint8Array,
    release?: (chunk: Uint8Array) => void,
  ): Promise<void> {
    if (!(chunk instanceof Uint8Array)) {
      const error = new TypeError(
        `Cannot write to transport connection: chunk must be a Uint8Array, got ${describe(chunk)}`,
      );
      this.#fail(error);
      throw error;
    }
    this.#throwIfGone();
    if (this.#writeClosed) {
      throw new TypeError("Cannot write to transport connection: its write side is closed");
    }
    await encoder.ready;
    this.#throwIfGone();
    if (this.#writeClosed) {
      throw new TypeError("Cannot write to transport connection: its write side is closed");
    }
    this.#appBytesWritten += chunk.byteLength;
    // A direct pair's encoder (obfs4's) has copied the chunk once its write resolves.
    encoder.write(chunk).then(release && (() => release(chunk)), () => {});
  }

  /**
   * Flush the encoder and shut the network write side, once. Writes the
   * application made before (the one in progress, and those queued behind
   * it in `writable`) go out first.
   */
  #shutWrite(encoder: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
    return this.#writeShut ??= (async () => {
      // The stream hands the next queued chunk to the sink once a write
      // settles: wait a turn after each, until none follows.
      let idleTurns = 0;
      while (idleTurns < 2) {
        if (this.#writing === undefined) {
          idleTurns++;
          await Promise.resolve();
        } else {
          idleTurns = 0;
          await this.#writing.catch(() => {});
        }
      }
      this.#writeClosed = true;
      // An encoder that holds a chunk for ever (waiting for a reply that
      // never comes) keeps its stream from closing, even once cancelled:
      // close() or a failure ends the wait, with its error.
      await Promise.race([
        closeWriter(encoder).then(() => this.#wireOut),
        this.#gone.promise,
      ]);
    })();
  }

  /**
   * Decoded bytes from the peer. Cancelling it stops reading (bytes that
   * still arrive are not read); the write side stays open until
   * {@linkcode TransportConn.closeWrite} or {@linkcode TransportConn.close}.
   */
  get readable(): ReadableStream<Uint8Array> {
    if (this.#readable === undefined) {
      this.#readable = new ReadableStream<Uint8Array>({
        // The chunk read ahead is this stream's one queued chunk.
        pull: async (controller) => {
          const value = await this.#nextChunk();
          if (value === null) controller.close();
          else controller.enqueue(value);
        },
        cancel: (reason) => this.#cancelRead(reason),
      }, { highWaterMark: 0 });
      if (this.#direct) this.#readable.getReader();
    }
    return this.#readable;
  }

  /**
   * Bytes to encode and send to the peer. Closing it half-closes the
   * connection. It errors, with {@linkcode TransportConn.error}, as soon as
   * the connection fails (a writer's `closed` rejects, a pipe into it ends).
   */
  get writable(): WritableStream<Uint8Array> {
    if (this.#writable === undefined) {
      this.#writable = new WritableStream<Uint8Array>({
        start: (controller) => {
          this.#writableController = controller;
          // Made after a failure: errored from the start, as it would be.
          if (this.#closed && !this.#closedByUser) controller.error(this.#error);
        },
        write: (chunk) => this.#trackedWrite(chunk),
        close: () => this.#shutWrite(this.#encoder),
        abort: (reason) => {
          this.#encoder.abort(reason).catch(() => {});
        },
      });
      if (this.#direct) this.#writable.getWriter();
    }
    return this.#writable;
  }

  /** The local address of the network connection. */
  get localAddr(): Deno.Addr {
    return this.#net.localAddr;
  }

  /** The remote address of the network connection. */
  get remoteAddr(): Deno.Addr {
    return this.#net.remoteAddr;
  }

  /**
   * Resolves once the transport's handshake has completed (at once for a
   * transport without one); rejects when it failed, and the connection is
   * then closed. It rejects at once (`HandshakeError`, reason `failed`)
   * when the peer's bytes end, and the decoder has taken that end, before
   * the pair's `ready` settled; at `handshakeTimeout` when they do not.
   */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /**
   * A free transport's server side: the destination the client's stream
   * names, resolved once it arrived and was authenticated (see
   * `TransportPair.destination`); `undefined` for a bound transport, whose
   * server relays to a fixed target.
   */
  get destination(): Promise<HostPort> | undefined {
    return this.#destination;
  }

  /**
   * Resolves once the network connection is closed, however that happened.
   * Never rejects.
   */
  get closed(): Promise<void> {
    return this.#done;
  }

  /**
   * The client's address: the one the transport reported (a front server's
   * `X-Forwarded-For`, see `TransportPair.clientAddress`) once `ready` has
   * resolved, when it is an IP literal; otherwise the socket's peer
   * (`remoteAddr`), or `undefined` when that is not an IP address. What
   * tor's Extended ORPort gets as `USERADDR`. Never log it.
   */
  get clientAddress(): HostPort | undefined {
    const reported = this.#clientAddress;
    if (reported !== undefined && isIpLiteral(reported.hostname)) {
      return { hostname: formatIp(parseIp(reported.hostname)), port: reported.port };
    }
    const remote = this.remoteAddr;
    if (remote.transport !== "tcp" || !isIpLiteral(remote.hostname)) return undefined;
    return { hostname: remote.hostname, port: remote.port };
  }

  /** The error that ended the connection, or `undefined` while none has. */
  get error(): unknown {
    return this.#error;
  }

  /**
   * Finish writing: flush the encoder and shut the network write side. Reading
   * goes on until the peer finishes too. Works while the application holds a
   * writer of {@linkcode TransportConn.writable}: what it wrote before (a
   * write in progress, writes queued behind it) goes out first. Write
   * nothing after calling it: a write that reaches the connection before the
   * encoder is closed still goes out, later ones fail.
   *
   * Calling it again returns the first call's promise.
   *
   * @returns Resolves when the write side is shut; rejects with
   * `Deno.errors.BadResource` when {@linkcode TransportConn.close} comes
   * first (or with the error that ended the connection), even while the
   * encoder still holds a chunk.
   */
  closeWrite(): Promise<void> {
    return this.#closingWrite ??= this.#closeWriteOnce();
  }

  async #closeWriteOnce(): Promise<void> {
    if (this.#direct || this.writable.locked) return await this.#shutWrite(this.#encoder);
    const writer = this.writable.getWriter();
    try {
      await writer.close();
    } finally {
      writer.releaseLock();
    }
  }

  /**
   * Close the connection at once, in both directions. Pending reads end, and
   * writes fail with `Deno.errors.BadResource` (as a `Deno.Conn`'s do after
   * its `close()`), as does `ready` while the handshake runs. Calling it
   * again does nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closedByUser = true;
    const reason = this.#closeReason = new Deno.errors.BadResource("Transport connection closed");
    this.#gone.reject(reason);
    this.#rejectReady?.(reason);
    this.#abortEncode(reason);
    this.#abortDecode(reason);
    this.#closeNet();
  }

  /**
   * Byte counts so far.
   *
   * @returns A snapshot of the counters.
   */
  stats(): ConnStats {
    return {
      startTime: this.#startTime,
      appBytesWritten: this.#appBytesWritten,
      appBytesRead: this.#appBytesRead,
      wireBytesWritten: this.#wireBytesWritten,
      wireBytesRead: this.#wireBytesRead,
    };
  }

  /**
   * Close the connection, for `using` (as a `Deno.Conn` takes): the same as
   * {@linkcode TransportConn.close}. `await using` also waits until it is
   * closed.
   */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Close the connection and wait until it is. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#done;
  }

  /**
   * A write after `close()` or a failure is refused (the encoder, aborted,
   * would take it and drop it): with `BadResource`, or the failure's error.
   */
  #throwIfGone(): void {
    if (this.#closed) throw this.#closeReason ?? this.#error;
  }

  #fail(error: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#error = error;
    this.#gone.reject(error);
    this.#rejectReady?.(error);
    // The writable errors now, not at the application's next write: a
    // writer's closed promise rejects, a pipe into it ends (a closed one
    // stays closed).
    this.#writableController?.error(error);
    this.#abortDecode(error);
    if (this.#encodeEnded) {
      // The transport finished its output before it failed (an HTTP error
      // page, say): let those bytes and the FIN go out first, briefly.
      const timer = setTimeout(() => this.#closeNet(), LINGER_MS);
      this.#wireOut.catch(() => {}).finally(() => {
        clearTimeout(timer);
        this.#closeNet();
      });
      return;
    }
    this.#abortEncode(error);
    this.#closeNet();
  }

  #limit(ready: Promise<void>, ms: number, name: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#handshakeTimer = setTimeout(() => {
        reject(
          new HandshakeError(
            "timeout",
            `Transport '${name}' handshake did not complete within ${ms} ms`,
          ),
        );
      }, ms);
      ready.then(resolve, reject).finally(() => {
        clearTimeout(this.#handshakeTimer);
        // Not kept for the connection's life: the timer holds its callback,
        // whose scope holds `reject` and its promise.
        this.#handshakeTimer = undefined;
      });
    });
  }

  #closeNet(): void {
    clearTimeout(this.#handshakeTimer);
    if (this.#netClosed) return;
    this.#netClosed = true;
    try {
      this.#net.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * `source` telling `recycle` of each chunk once the pump reads the next
 * (it has then written it to the socket in full), or `source` itself.
 */
function recycling(
  source: ChunkSource,
  recycle: ((chunk: Uint8Array) => void) | undefined,
): ChunkSource {
  if (recycle === undefined) return source;
  let last: Uint8Array | null = null;
  return {
    read: () => {
      if (last !== null) recycle(last);
      last = null;
      return source.read().then((chunk) => last = chunk);
    },
    cancel: (reason) => {
      last = null;
      source.cancel(reason);
    },
  };
}

/**
 * Writes to a direct pair's transform as {@linkcode streamSink} writes to a
 * writable (each write once the last is transformed, without waiting for
 * its own), handing each chunk to `release` once transformed (the
 * transform, obfs4's decoder, copies what it keeps).
 */
function transformSink(
  transform: DirectTransform,
  release: (chunk: Uint8Array) => void,
): ChunkSink {
  return {
    write: async (chunk) => {
      await transform.ready;
      transform.write(chunk).then(() => release(chunk), () => {});
    },
    end: () => closeWriter(transform as unknown as WritableStreamDefaultWriter<Uint8Array>),
    abort(reason) {
      transform.abort(reason).catch(() => {});
    },
  };
}

function noRelease(): void {}

/** The pair's transformers to run without streams, when it offers them (DIRECT_PAIR). */
function directPair(pair: TransportPair): DirectPair | undefined {
  const take = (pair as { [DIRECT_PAIR]?: () => DirectPair | undefined })[DIRECT_PAIR];
  return typeof take === "function" ? take.call(pair) : undefined;
}

/**
 * A destination a server pair reported, checked as a client's is
 * ({@linkcode checkDestination}): the name is not repeated.
 *
 * @param name The transport's name.
 * @param destination What the pair's `destination` resolved to.
 * @returns The destination, a name in punycode form.
 * @throws {TypeError} When it is not a host name or IP address and port.
 * @throws {RangeError} When its port is out of range.
 */
function checkReportedDestination(name: string, destination: unknown): HostPort {
  try {
    return checkDestination(destination, "relay");
  } catch (error) {
    const Kind = error instanceof RangeError ? RangeError : TypeError;
    throw new Kind(
      `Transport '${name}' reported a malformed destination: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * Check a {@linkcode TransportConnOptions}: `undefined` or an object whose
 * `name` is a string and whose `handshakeTimeout` a timer can hold. A
 * timeout was checked only for a pair with a handshake, so a listener
 * given -1 failed each such connection as it was accepted, and null options
 * failed with 'Cannot read properties of null'. Internal.
 *
 * @param options What the caller gave.
 * @param what The call, for the message (`wrap a transport connection`).
 * @throws {TypeError} When it is not an object, or `name` not a string.
 * @throws {RangeError} When `handshakeTimeout` is out of range.
 */
export function checkConnOptions(options: unknown, what: string): void {
  checkFactoryOptions(options, what, []);
  const { name, handshakeTimeout } = (options ?? {}) as TransportConnOptions;
  checkOptionType(name, "string", "name", what);
  checkTimeout(handshakeTimeout, "handshakeTimeout", what);
}
