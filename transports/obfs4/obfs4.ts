// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoBackend, CryptoLoader } from "../crypto_backend.ts";
import { defineTransport } from "../define_transport.ts";
import { deferred } from "../_deferred.ts";
import type { Transport, TransportOptions, TransportPair } from "../transport.ts";
import { HandshakeError } from "../_handshake_error.ts";
import {
  CLIENT_KEYS,
  type ClientConfig,
  encodeCert,
  generateServerConfig,
  loadServerConfig,
  loadWasm,
  parseClientConfig,
  SERVER_KEYS,
  type ServerConfig,
} from "./_config.ts";
import { MAX_SEGMENT_LENGTH } from "./_framing.ts";
import { GoRand } from "./_go_rand.ts";
import type { KeyPairReserve, KeyPairReserveOptions } from "./_keypair_reserve.ts";
import type { ClientHandshake, ServerHandshake } from "./_handshake.ts";
import { HashDrbg } from "./_hash_drbg.ts";
import { nextTask } from "./_next_task.ts";
import { type IatSleep, obfs4proxySleep } from "./_iat.ts";
import { ReplayFilter } from "../_replay_filter.ts";
import { decodeInTurns } from "../_decode_turns.ts";
import type { Session } from "./_session.ts";
import { WeightedDist } from "./_weighted_dist.ts";
import { concat } from "../_bytes.ts";
import { type DirectPair, DirectTransform, pairOfDirect } from "../_direct_pair.ts";
import { checkTimerMs } from "../_timeout.ts";
import { checkFactoryOptions, checkOptionType } from "../_factory_options.ts";

/** What a handshake has received before its first bytes and after its last: one for all. */
const NO_BYTES = new Uint8Array(0);

/**
 * A handshake's bytes until it is whole, in room that doubles: a peer that
 * sends its handshake one byte per segment (a prober at a bridge, a hostile
 * bridge at a client) had each read copied with every byte before it into a
 * fresh array, ~33 million bytes and 40-60 ms of the event loop for 8 KiB.
 * `add` returns a view of all the bytes so far.
 */
class HandshakeBytes {
  #room: Uint8Array = NO_BYTES;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  add(read: Uint8Array): Uint8Array {
    const length = this.#length + read.length;
    if (length > this.#room.length) {
      const room = new Uint8Array(Math.max(length, 2 * this.#room.length, 256));
      room.set(this.#room.subarray(0, this.#length));
      this.#room = room;
    }
    this.#room.set(read, this.#length);
    this.#length = length;
    return this.#room.subarray(0, length);
  }

  clear(): void {
    this.#room = NO_BYTES;
    this.#length = 0;
  }
}
const CLIENT_HANDSHAKE_TIMEOUT_MS = 60_000;
const SERVER_HANDSHAKE_TIMEOUT_MS = 30_000;
/** Go's default TCP keepalive, on accepted and dialed connections (obfs4proxy, lyrebird). */
const KEEPALIVE_SECONDS = 15;
const MAX_CLOSE_DELAY_SECONDS = 60;
const MAX_IAT_DELAY = 100;
// Room for one decoded chunk, so the handshake proceeds before anyone reads.
const DECODE_READABLE: QueuingStrategy<Uint8Array> = { highWaterMark: 1 };
/**
 * Decode `chunk` into `controller` (see {@linkcode decodeInTurns}): a
 * slice at a time, with turns of the event loop, while its frames are small.
 */
function decodeFrames(
  session: Session,
  chunk: Uint8Array,
  controller: TransformStreamDefaultController<Uint8Array>,
): void | Promise<void> {
  return decodeInTurns(chunk, (slice) => {
    const before = session.framesDecoded;
    // Good frames' bytes before a bad frame are handed on before the error
    // (a reader waiting takes them), as obfs4proxy relays them.
    const out = session.decode(slice, (bytes) => controller.enqueue(bytes));
    if (out.length > 0) controller.enqueue(out);
    return session.framesDecoded - before;
  }, () => controller.desiredSize !== null);
}

/** Hooks for tests (clock, randomness, delays), and where spare key pairs are made. */
export interface Obfs4Options {
  /** The clock, in milliseconds since the epoch. Defaults to `Date.now`. */
  readonly now?: () => number;
  /** Fills its argument with random bytes. Defaults to `crypto.getRandomValues`. */
  readonly random?: (bytes: Uint8Array) => void;
  /**
   * How long, in milliseconds after it was accepted, a server connection
   * whose handshake failed or did not finish is kept (reading and discarding)
   * before it is closed, given the bridge's constant delay in seconds (in
   * [0, 60), derived from its drbg seed). Defaults to `30000 + 1000 * delay`.
   */
  readonly probeCloseDelay?: (bridgeDelaySeconds: number) => number;
  /**
   * How long, in milliseconds from the start of a client connection's pair,
   * it waits for the server's handshake before failing with a
   * `HandshakeError` (`"timeout"`). Defaults to 60 s (60000).
   */
  readonly clientHandshakeTimeout?: number;
  /**
   * How long, in milliseconds after it was accepted, a server connection
   * may take to complete its handshake; a handshake completed later is not
   * answered (the connection is still closed after `probeCloseDelay`).
   * Defaults to 30 s, as obfs4proxy.
   */
  readonly serverHandshakeTimeout?: number;
  /**
   * How a connection in IAT mode 1 or 2 waits after each network write,
   * given the delay sampled for it in milliseconds (0 to 10 in steps of
   * 0.1; obfs4proxy `time.Sleep`s it). The next write is made when the
   * returned promise resolves (at once when nothing is returned). Defaults
   * to a sleep that waits as obfs4proxy's does on Linux (whole-millisecond
   * kernel waits, as Go's netpoller makes them; 0 sends back to back).
   */
  readonly iatSleep?: (milliseconds: number) => Promise<void> | void;
  /**
   * Server side: make the spare ephemeral key pairs (Elligator2 rejection
   * sampling and a scalar multiplication, about 0.12 ms of CPU each with
   * native libsodium, 0.55 ms in WebAssembly) in a Web Worker instead of
   * on the main thread, 20 ms after each handshake. One worker per server
   * side, started at its first connection, loading the crypto backend's
   * own loader (`CryptoBackend.worker`); it keeps the process running
   * until the side is closed (closing the listener does it). Where no
   * Worker can start, spares are made on the main thread. Ignored when
   * `random` is given. Defaults to `false`: a worker takes about 19 MiB
   * of resident memory (14 MiB of it stay after it stops), holds the main
   * thread 65-145 ms each time it starts on a loaded machine, and made
   * handshakes cost the process more CPU, not less; a server uses more
   * cores with more processes (`-workers N`).
   */
  readonly keyPairWorker?: boolean;
}

/** The modules a connection needs (handshakes, sessions, spare key pairs): see _data_path.ts. */
type DataPath = typeof import("./_data_path.ts");

let dataPath: Promise<DataPath> | undefined;

/**
 * The modules a connection needs, loaded once. A side starts loading them
 * when it is configured, without waiting: Deno loads a dynamic import when
 * the event loop next runs, so a managed server, which writes its
 * SMETHOD lines in the same run of promise callbacks as it configures its
 * transports, has written SMETHODS DONE first; its first connection finds
 * them loaded, as it finds the crypto backend.
 */
function loadDataPath(): Promise<DataPath> {
  dataPath ??= import("./_data_path.ts");
  dataPath.catch(() => dataPath = undefined);
  return dataPath;
}

/**
 * The crypto backend of one configured side, with the modules its
 * connections use: loaded on first use (after the runtime has started;
 * a server starts without them), then at hand synchronously.
 */
class LazyCrypto {
  #load: CryptoLoader;
  #promise: Promise<CryptoBackend> | undefined;
  value: CryptoBackend | undefined;
  /** Set with `value`. */
  path: DataPath | undefined;

  constructor(load: CryptoLoader) {
    this.#load = load;
  }

  get(): Promise<CryptoBackend> {
    this.#promise ??= Promise.all([this.#load(), loadDataPath()]).then(
      ([crypto, path]) => {
        this.path = path;
        return this.value = crypto;
      },
    );
    this.#promise.catch(() => this.#promise = undefined);
    return this.#promise;
  }
}

/** Run `then` with the backend and the modules: at once when they are loaded, else once they are. */
function withCrypto(
  crypto: LazyCrypto,
  then: (crypto: CryptoBackend, path: DataPath) => void,
): void | Promise<void> {
  if (crypto.value !== undefined) return then(crypto.value, crypto.path!);
  return crypto.get().then((backend) => then(backend, crypto.path!));
}

/** A side's key pair reserve, made on first use; `closed` once the side closed. */
interface ReserveSlot {
  pairs?: KeyPairReserve;
  closed?: boolean;
}

/**
 * The side's reserve, made now if it was not. A connection accepted (or
 * dialled) before its side closed may make it after, once the crypto
 * backend has loaded: that one is closed at once, so that no worker or
 * timer outlives the side (a worker would keep the process running).
 */
function reserveOf(slot: ReserveSlot, make: () => KeyPairReserve): KeyPairReserve {
  if (slot.pairs === undefined) {
    slot.pairs = make();
    if (slot.closed) slot.pairs.close();
  }
  return slot.pairs;
}

interface Parsed {
  readonly crypto: LazyCrypto;
  /** Client side: spare ephemeral key pairs, made when the backend is loaded. */
  readonly reserve: ReserveSlot;
  /** The client options as given (per-connection settings are merged over them). */
  readonly clientOptions?: TransportOptions;
  /** The parsed client options; absent when the bridge comes with each connection. */
  readonly client?: ClientConfig;
  readonly server?: ServerShared;
}

interface ServerShared {
  readonly config: ServerConfig;
  readonly filter: ReplayFilter;
  readonly lengthDist: WeightedDist;
  readonly iatDist: WeightedDist;
  /** Spare ephemeral key pairs, made when the backend is loaded. */
  readonly reserve: ReserveSlot;
  readonly handshakeTimeoutMs: number;
  readonly closeDelayMs: number;
  /** The environment's notices (`env.onNotice`), for a key pair worker that failed. */
  readonly onNotice?: (message: string) => void;
}

/**
 * The bridge's constant extra delay, in seconds, before closing connections
 * whose handshake failed (as obfs4proxy derives it from the drbg seed).
 *
 * @example A delay in range
 * ```ts
 * import { bridgeCloseDelay } from "@ptkit/ptkit/transports/obfs4";
 * import { ok } from "node:assert";
 *
 * const d = bridgeCloseDelay(new Uint8Array(24));
 * ok(d >= 0 && d < 60);
 * ```
 *
 * @param drbgSeed The bridge's 24-byte drbg seed.
 * @returns Seconds in [0, 60).
 * @throws {TypeError} When `drbgSeed` is not a Uint8Array.
 * @throws {RangeError} When it is not 24 bytes long.
 */
export function bridgeCloseDelay(drbgSeed: Uint8Array): number {
  // Checked live against obfs4proxy 0.0.14: the first draw.
  return new GoRand(new HashDrbg(drbgSeed)).intn(MAX_CLOSE_DELAY_SECONDS);
}

async function send(
  session: Session,
  chunk: Uint8Array,
  controller: TransformStreamDefaultController<Uint8Array>,
  sleep: IatSleep,
): Promise<void> {
  if (session.iatMode === 0) {
    const writes = session.encode(chunk);
    if (writes.length > 0) controller.enqueue(writes[0]!);
    return;
  }
  // In IAT mode 2 each write is made as it is taken (see Session.writes).
  for (const w of session.writes(chunk)) {
    controller.enqueue(w);
    const wait = sleep(session.iatDelay());
    if (wait !== undefined) await wait;
  }
}

// The runtime's setImmediate (Deno, Node: the next turn of the event loop,
// 6 us a call here), else nextTask (browsers; 27 us in Deno: an operation
// on the runtime's thread pool).
// Looked up at the first call, not as this module loads: in Deno the global
// is a getter that loads the Node compatibility layer (10-20 ms), which a
// server would otherwise pay before SMETHODS DONE.
let afterThisTaskImpl: ((then: () => void) => void) | undefined;
const afterThisTask = (then: () => void): void => {
  if (afterThisTaskImpl === undefined) {
    const immediate = (globalThis as { setImmediate?: (then: () => void) => unknown })
      .setImmediate;
    afterThisTaskImpl = typeof immediate === "function" ? (then) => void immediate(then) : nextTask;
  }
  afterThisTaskImpl(then);
};

/** The parts both sides' pairs share. */
class PairCore {
  readonly sleep: IatSleep;
  session: Session | undefined;
  sessionReady = deferred<Session>();
  ready = deferred<void>();
  encodeController!: TransformStreamDefaultController<Uint8Array>;
  decodeController!: TransformStreamDefaultController<Uint8Array>;
  timers: ReturnType<typeof setTimeout>[] = [];
  finished = false;
  /** Called once, in a later task, after the first application bytes were encoded (then cleared). */
  afterFirstWrite: (() => void) | undefined;

  constructor(sleep: IatSleep) {
    this.sleep = sleep;
  }

  /**
   * The first application bytes were handed on to the wire: run
   * `afterFirstWrite` in the next task, once they have been written
   * (the network write is made in this task's microtasks).
   */
  wrote(): void {
    const then = this.afterFirstWrite;
    if (then === undefined) return;
    this.afterFirstWrite = undefined;
    afterThisTask(then);
  }

  /** Run `f` after `ms` unless the handshake ends first. */
  after(ms: number, f: () => void): void {
    this.timers.push(setTimeout(f, ms));
  }

  stopTimer(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
  }

  succeed(session: Session): void {
    this.stopTimer();
    this.session = session;
    this.sessionReady.resolve(session);
    this.ready.resolve();
  }

  fail(error: unknown): void {
    this.stopTimer();
    if (this.finished) return;
    this.finished = true;
    this.sessionReady.reject(error);
    this.ready.reject(error);
    try {
      this.encodeController.error(error);
    } catch {
      // Already errored or closed.
    }
    try {
      this.decodeController.error(error);
    } catch {
      // Already errored or closed.
    }
  }

  encode(
    start: (c: TransformStreamDefaultController<Uint8Array>) => void | Promise<void>,
  ): Transformer<Uint8Array, Uint8Array> {
    return {
      start: (controller) => {
        this.encodeController = controller;
        return start(controller);
      },
      transform: (chunk, controller) => {
        const session = this.session;
        if (session === undefined) {
          return this.sessionReady.promise.then((s) => {
            this.wrote();
            return send(s, chunk, controller, this.sleep);
          });
        }
        if (session.iatMode === 0) {
          // The steady state: no promise, no await.
          const writes = session.encode(chunk);
          if (writes.length > 0) controller.enqueue(writes[0]!);
          if (this.afterFirstWrite !== undefined) this.wrote();
          return;
        }
        if (this.afterFirstWrite !== undefined) this.wrote();
        return send(session, chunk, controller, this.sleep);
      },
      cancel: () => this.stopTimer(),
    };
  }

  /**
   * The pair: its transformers start now; the streams are made when first
   * asked for, and the runtime's connections run the transformers without
   * them (DIRECT_PAIR), one or the other.
   */
  pair(
    decode: Transformer<Uint8Array, Uint8Array>,
    encode: Transformer<Uint8Array, Uint8Array>,
  ): TransportPair {
    const direct: DirectPair = {
      encode: new DirectTransform(encode, 0),
      decode: new DirectTransform(decode, DECODE_READABLE.highWaterMark!),
      recycle: (chunk) => this.session?.recycle(chunk),
      recycleDecoded: (chunk) => this.session?.recycleDecoded(chunk),
    };
    return pairOfDirect(direct, "an obfs4 pair", { ready: this.ready.promise });
  }
}

/**
 * Make a server's next spare key pair on a timer, 20 ms on (when no worker
 * makes them): by then the handshake written just before has left, and a
 * client that connects again at once (a browser's next connection, a
 * bench) has been answered, so the 0.1-0.3 ms it takes (Elligator2's square
 * roots on bigints) delays no client. With
 * 1 ms the refill met the next client's handshake: the server's first
 * handshake byte took 0.69-0.79 ms median against 0.68 ms with 20 ms, in
 * turns in one run of `OBFS4_BENCH_ONLY=firstbyte bench/obfs4_bench.ts`.
 */
function refillSoon(reserve: KeyPairReserve): void {
  reserve.refillAfter(REFILL_DELAY_MS);
}

const REFILL_DELAY_MS = 20;

// Spare key pairs a server keeps at most. Made on the main thread, one
// 20 ms after a handshake, so that the next connection finds one ready
// (the connections of a burst make their own, as obfs4proxy's do); made
// in a worker (keyPairWorker), asked for half at a time. A client
// (one per user, a handful of connections) keeps one, made on its own
// thread after each handshake.
const SERVER_SPARES = 64;

function serverReserveOptions(
  options: Obfs4Options,
  shared: ServerShared,
): KeyPairReserveOptions {
  const size = SERVER_SPARES;
  if (options.random !== undefined) return { size, random: options.random };
  const notice = shared.onNotice;
  return {
    size,
    worker: options.keyPairWorker ?? false,
    ...(notice === undefined ? {} : {
      onWorkerError: (reason: string) =>
        notice(
          `obfs4 makes its spare key pairs on the main thread: their worker failed (${reason})`,
        ),
    }),
  };
}

/**
 * Why an obfs4 server says nothing: it answers no handshake made for
 * another bridge's keys (probe resistance), and closes it only later.
 */
const WRONG_CERT_HINT =
  " (an obfs4 server never answers a handshake made with a wrong cert: check the bridge line's cert, and that the address is this bridge's)";

function clientPair(config: ClientConfig, parsed: Parsed, options: Obfs4Options): TransportPair {
  const random = options.random ?? ((b: Uint8Array) => crypto.getRandomValues(b));
  const core = new PairCore(options.iatSleep ?? obfs4proxySleep);
  const now = (options.now ?? Date.now)();
  let handshake: ClientHandshake | undefined;
  const received = new HandshakeBytes();
  // Until the handshake is sent (the crypto backend loading): the server's
  // bytes are taken after it.
  let sending: Promise<void> | undefined;
  const encode = core.encode((controller) => {
    const sent = withCrypto(parsed.crypto, (backend, path) => {
      const spares = reserveOf(
        parsed.reserve,
        () =>
          new path.KeyPairReserve(
            backend,
            options.random === undefined ? {} : { random: options.random },
          ),
      );
      handshake = new path.ClientHandshake(backend, config.identity, {
        now,
        random,
        keyPair: spares.take(),
      });
      controller.enqueue(handshake.message);
      handshake.forgetMessage();
      // The client's next spare (0.1-0.3 ms of this thread) is made in the
      // task after the connection's first application bytes were written:
      // while the server answers them (a TLS ClientHello's round trip, a
      // bench's echo), when nothing else of this connection is waiting,
      // and the next connection finds it ready. A timer of 0 (which Deno
      // runs 1-2 ms later) met the loopback connect's completion or the
      // server's answer, and held them up; 20 ms later, connections 5 ms
      // apart (a browser's, a bench's) made three pairs in four on their
      // critical path. After a connection that sends nothing, the next one
      // makes its pair itself (as under a burst of connections).
      core.afterFirstWrite = () => {
        if (parsed.reserve.closed !== true) spares.refill();
      };
    });
    if (sent instanceof Promise) {
      const done = () => {
        sending = undefined;
      };
      sending = sent.then(done, done);
    }
    return sent;
  });
  const take = (
    chunk: Uint8Array,
    controller: TransformStreamDefaultController<Uint8Array>,
  ): void | Promise<void> => {
    try {
      if (core.session !== undefined) {
        return decodeFrames(core.session, chunk, controller)?.catch((error) => {
          core.fail(error);
          throw error;
        });
      }
      // The first read is parsed as it is; the chunk is the caller's again
      // once this returns, so what waits for more is a copy.
      const bytes = received.length === 0 ? chunk : received.add(chunk);
      // The handshake was sent before anything could arrive.
      const result = handshake!.parse(bytes);
      if (result === undefined) {
        if (bytes === chunk) received.add(chunk);
        return;
      }
      const session = new parsed.crypto.path!.Session({
        sendKeys: result.keys.subarray(0, 72),
        receiveKeys: result.keys.subarray(72, 144),
        crypto: parsed.crypto.value!,
        iatMode: config.iatMode,
        // The client's own tables, of fresh secret seeds (obfs4proxy's
        // newObfs4ClientConn), until the server's seed comes.
        lengthDist: WeightedDist.fresh(random, 0, MAX_SEGMENT_LENGTH),
        iatDist: WeightedDist.fresh(random, 0, MAX_IAT_DELAY),
        acceptSeed: true,
      });
      handshake = undefined;
      core.succeed(session);
      const rest = bytes.subarray(result.consumed);
      received.clear();
      if (rest.length > 0) {
        const out = session.decodeWithHandshake(rest, (bytes) => controller.enqueue(bytes));
        if (out.length > 0) controller.enqueue(out);
      }
    } catch (error) {
      core.fail(error);
      throw error;
    }
  };
  const decode: Transformer<Uint8Array, Uint8Array> = {
    start: (controller) => {
      core.decodeController = controller;
      core.after(
        options.clientHandshakeTimeout ?? CLIENT_HANDSHAKE_TIMEOUT_MS,
        () =>
          core.fail(
            new HandshakeError(
              "timeout",
              `Cannot complete obfs4 handshake: timed out${WRONG_CERT_HINT}`,
            ),
          ),
      );
    },
    transform: (chunk, controller) => {
      if (sending !== undefined) return sending.then(() => take(chunk, controller));
      return take(chunk, controller);
    },
    flush: () => {
      if (core.session === undefined) {
        const error = new HandshakeError(
          "failed",
          `Cannot complete obfs4 handshake: server closed the connection${WRONG_CERT_HINT}`,
        );
        core.fail(error);
        throw error;
      }
    },
    cancel: (reason) => core.fail(reason),
  };
  return core.pair(decode, encode);
}

function serverPair(shared: ServerShared, parsed: Parsed, options: Obfs4Options): TransportPair {
  const { config } = shared;
  const core = new PairCore(options.iatSleep ?? obfs4proxySleep);
  let handshake: ServerHandshake | undefined;
  // The ephemeral key pair is ready before the client speaks (a spare in the reserve).
  const begin = (backend: CryptoBackend, path: DataPath) => {
    const spares = reserveOf(shared.reserve, () => {
      const made = new path.KeyPairReserve(backend, serverReserveOptions(options, shared));
      // The worker's thread starts at the side's first connection, before
      // it has sent anything: started at its first good handshake, it could
      // meet a process whose descriptors a flood holds, and Deno ends the
      // whole process when a Worker's thread cannot get one.
      refillSoon(made);
      return made;
    });
    handshake = new path.ServerHandshake(backend, config.keys, shared.filter, {
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.random === undefined ? {} : { random: options.random }),
      // A spare made in advance, taken once the client's handshake is
      // valid: connections that never send one (a slowloris reopening
      // thousands a second) cost no key pair (0.1-0.3 ms each).
      keyPair: () => spares.take(),
    });
  };
  const started = withCrypto(parsed.crypto, begin);
  const received = new HandshakeBytes();
  let failed = false;
  // Why the handshake failed (a replay is counted apart from other probes).
  let why: HandshakeError["reason"] = "failed";
  // From here on, whatever arrives is read and dropped unanswered.
  const giveUp = () => {
    if (failed) return;
    failed = true;
    received.clear();
    handshake = undefined;
    if (shared.reserve.pairs !== undefined) refillSoon(shared.reserve.pairs);
  };
  const encode = core.encode(() => {});
  const decode: Transformer<Uint8Array, Uint8Array> = {
    start: (controller) => {
      core.decodeController = controller;
      // As obfs4proxy: the client has 30 s to complete its handshake;
      // after that nothing is answered. Probe resistance: a connection
      // without a good handshake is closed only after a bridge-specific
      // delay, whatever it sends.
      core.after(shared.handshakeTimeoutMs, giveUp);
      core.after(
        shared.closeDelayMs,
        () =>
          core.fail(
            new HandshakeError(
              why === "replay" ? "replay" : "probe-delay",
              `Cannot accept obfs4 handshake: ${
                why === "replay" ? "replayed" : "invalid or timed out"
              }, closed after the probe delay`,
            ),
          ),
      );
      return started;
    },
    transform: (chunk, controller) => {
      const frames = (session: Session, wire: Uint8Array) => {
        try {
          return decodeFrames(session, wire, controller)?.catch((error) => {
            core.fail(error);
            throw error;
          });
        } catch (error) {
          core.fail(error);
          throw error;
        }
      };
      if (core.session !== undefined) return frames(core.session, chunk);
      if (failed) return;
      // As obfs4proxy, which reads a handshake 8 KiB at a time and looks
      // at what it has after each read: a chunk is taken as those reads
      // would take it (a full-length handshake followed by more bytes is
      // answered), and what follows a complete handshake is frames.
      // The modules are loaded: start() waited for them.
      const path = parsed.crypto.path!;
      for (let at = 0; at < chunk.length; at += path.MAX_HANDSHAKE_LENGTH) {
        const read = chunk.subarray(at, at + path.MAX_HANDSHAKE_LENGTH);
        // The first read is parsed as it is, what waits for more is a copy.
        const bytes = received.length === 0 ? read : received.add(read);
        let step;
        try {
          step = handshake!.parse(bytes);
        } catch (error) {
          if (error instanceof SyntaxError && error.message.endsWith("replayed handshake")) {
            why = "replay";
          }
          giveUp();
          return;
        }
        if (!step.done) {
          if (bytes === read) received.add(read);
          continue;
        }
        received.clear();
        handshake = undefined;
        const session = new path.Session({
          sendKeys: step.keys.subarray(72, 144),
          receiveKeys: step.keys.subarray(0, 72),
          crypto: parsed.crypto.value!,
          iatMode: config.iatMode,
          lengthDist: shared.lengthDist,
          iatDist: shared.iatDist,
          acceptSeed: false,
        });
        core.encodeController.enqueue(
          concat(step.response, session.seedFrame(config.drbgSeed)),
        );
        core.succeed(session);
        refillSoon(shared.reserve.pairs!);
        const rest = chunk.subarray(at + read.length);
        if (rest.length === 0) return;
        // obfs4proxy has written its answer before it reads a frame: the
        // rest is decoded a turn later, so that a bad frame in it drops a
        // connection whose answer has left.
        return new Promise((resolve) => setTimeout(resolve, 0)).then(() => frames(session, rest));
      }
    },
    flush: () => {
      if (core.session === undefined) {
        const error = new HandshakeError(
          why,
          `Cannot accept obfs4 handshake: ${
            why === "replay" ? "replayed, then " : ""
          }client closed the connection`,
        );
        core.fail(error);
        throw error;
      }
    },
    cancel: (reason) => core.fail(reason),
  };
  return core.pair(decode, encode);
}

const BRIDGE_KEYS = ["cert", "node-id", "public-key"];

/**
 * A connection's settings merged over the client options; settings that
 * name a bridge (a cert, or the legacy node-id and public-key) replace the
 * bridge the options name (a cert there would otherwise win over them).
 */
function withBridge(
  options: TransportOptions | undefined,
  settings: TransportOptions,
): TransportOptions {
  const base: Record<string, string> = { ...options };
  if (BRIDGE_KEYS.some((k) => settings[k] !== undefined)) {
    for (const k of BRIDGE_KEYS) delete base[k];
  }
  return { ...base, ...settings };
}

/** A probeCloseDelay's answer, checked as a timer's delay (0: at once). */
function checkedCloseDelay(ms: number): number {
  checkTimerMs(ms, "probeCloseDelay result", "configure an obfs4 server", true);
  return ms;
}

/**
 * Make an obfs4 transport with test hooks (clock, randomness, probe delay).
 * Applications use {@linkcode obfs4}.
 *
 * @example A transport whose failed handshakes close quickly
 * ```ts
 * import { createObfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { strictEqual } from "node:assert";
 *
 * const transport = createObfs4({ probeCloseDelay: () => 100 });
 * strictEqual(transport.name, "obfs4");
 * ```
 *
 * @param options The hooks.
 * @returns The transport.
 * @throws {RangeError} When `clientHandshakeTimeout` or
 * `serverHandshakeTimeout` is not a positive number of ms a timer can hold
 * (up to 2,147,483,647). A `probeCloseDelay` answering such a value (or a
 * negative one) fails the server side's configuration with one.
 * @throws {TypeError} When `options` is not an object, a hook (`now`,
 * `random`, `probeCloseDelay`, `iatSleep`) is given and is not a function,
 * `keyPairWorker` is given and is not a boolean, or a handshake timeout is
 * given and is not a number.
 */
export function createObfs4(options: Obfs4Options = {}): Transport {
  const what = "create an obfs4 transport";
  checkFactoryOptions(options, what, ["now", "random", "probeCloseDelay", "iatSleep"]);
  checkOptionType(options.keyPairWorker, "boolean", "keyPairWorker", what);
  checkTimerMs(options.clientHandshakeTimeout, "clientHandshakeTimeout", what);
  checkTimerMs(options.serverHandshakeTimeout, "serverHandshakeTimeout", what);
  const probeCloseDelay = options.probeCloseDelay ??
    ((d: number) => SERVER_HANDSHAKE_TIMEOUT_MS + d * 1000);
  return defineTransport<Parsed>({
    name: "obfs4",
    optionKeys: { client: CLIENT_KEYS, server: SERVER_KEYS },
    // As obfs4proxy's Go listener: keepalive probes after 15 s idle, then
    // every 15 s (a prober holding an idle connection sees them).
    serverKeepAlive: KEEPALIVE_SECONDS,
    // Go's dialer gives obfs4proxy's and lyrebird's clients the same
    // keepalive on their connection to the bridge (a censor watching an idle
    // one sees its probes).
    connection: () => ({ keepAlive: KEEPALIVE_SECONDS }),
    async parseConfig(config, role, env): Promise<Parsed> {
      // Nothing loads the crypto backend here: it loads when the first
      // connection needs it (the managed proxy starts it right after
      // CMETHODS DONE / SMETHODS DONE).
      const lazy = new LazyCrypto(env?.crypto ?? loadWasm);
      if (role === "client") {
        // Empty options: every connection's settings name the bridge (as
        // Tor's SOCKS arguments do).
        const client = Object.keys(config).length === 0 ? undefined : parseClientConfig(config);
        loadDataPath().catch(() => {});
        return client === undefined
          ? { crypto: lazy, reserve: {}, clientOptions: config }
          : { crypto: lazy, reserve: {}, clientOptions: config, client };
      }
      // An iat-mode option saved into obfs4_state.json is said (env.onNotice).
      const server = await loadServerConfig(
        config,
        env.local,
        options.random,
        () => lazy.get(),
        env.onNotice,
      );
      const digest = await crypto.subtle.digest("SHA-256", server.drbgSeed.slice());
      const iatSeed = new Uint8Array(digest, 0, 24);
      // Its last wait: from here to its SMETHOD line a managed server runs on.
      loadDataPath().catch(() => {});
      return {
        crypto: lazy,
        reserve: {},
        server: {
          config: server,
          filter: new ReplayFilter({
            ...(env?.replays === undefined ? {} : { share: env.replays }),
            ...(options.now === undefined ? {} : { now: options.now }),
          }),
          lengthDist: new WeightedDist(server.drbgSeed, 0, MAX_SEGMENT_LENGTH),
          iatDist: new WeightedDist(iatSeed, 0, MAX_IAT_DELAY),
          reserve: {},
          handshakeTimeoutMs: options.serverHandshakeTimeout ?? SERVER_HANDSHAKE_TIMEOUT_MS,
          closeDelayMs: checkedCloseDelay(probeCloseDelay(bridgeCloseDelay(server.drbgSeed))),
          ...(env.onNotice === undefined ? {} : { onNotice: env.onNotice }),
        },
      };
    },
    pair(parsed, role, settings) {
      if (role === "server") return serverPair(parsed.server!, parsed, options);
      const client = Object.keys(settings).length === 0 && parsed.client !== undefined
        ? parsed.client
        : parseClientConfig(withBridge(parsed.clientOptions, settings));
      return clientPair(client, parsed, options);
    },
    clientOptions: (parsed) => ({
      cert: encodeCert(parsed.server!.config.keys),
      "iat-mode": String(parsed.server!.config.iatMode),
    }),
    // The listener or connector closed: no refill timer outlives it (a test
    // with Deno's op sanitizer would fail), and the filter stops sharing.
    close: (parsed) => {
      for (const slot of [parsed.reserve, parsed.server?.reserve]) {
        if (slot === undefined) continue;
        slot.closed = true;
        slot.pairs?.close();
      }
      parsed.server?.filter.close();
    },
    async generateConfig(env) {
      const config = await generateServerConfig(0, options.random, env?.crypto ?? loadWasm);
      const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      return {
        client: { cert: encodeCert(config.keys), "iat-mode": "0" },
        server: {
          "node-id": hex(config.keys.nodeId),
          "private-key": hex(config.keys.secretKey),
          "drbg-seed": hex(config.drbgSeed),
          "iat-mode": "0",
        },
      };
    },
  });
}

/**
 * The obfs4 transport, wire-compatible with obfs4proxy 0.0.14 and lyrebird.
 *
 * Client options: `cert` and `iat-mode` from the bridge line (or the legacy
 * `node-id` and `public-key`); they may instead come with each connection's
 * settings (merged over the client options), as Tor's SOCKS arguments do.
 * Server options: `node-id`, `private-key` and `drbg-seed` (all or none) and
 * `iat-mode`; without keys the server reads `obfs4_state.json` from
 * `env.local`, creating it and `obfs4_bridgeline.txt` when missing. Other
 * keys are ignored and reported to `env.onIgnoredOption`, as obfs4proxy
 * and lyrebird ignore them; a missing `cert` or `iat-mode` and malformed
 * values are errors.
 *
 * @example A client and server pair in memory
 * ```ts
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { MemoryStore } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * const server = await obfs4.server({}, { local: new MemoryStore() });
 * ok(server.clientOptions.cert);
 * const client = await obfs4.client(server.clientOptions);
 * const pair = client.pair({});
 * ok(pair.encode);
 * // A pair holds its handshake deadline (60 s) until it is used or dropped:
 * // cancelling its streams drops it and stops that timer (`ready` rejects).
 * pair.ready?.catch(() => {});
 * await Promise.allSettled([pair.encode.readable.cancel(), pair.decode.readable.cancel()]);
 * ```
 */
export const obfs4: Transport = createObfs4();
