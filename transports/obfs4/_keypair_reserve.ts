// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoBackend } from "../crypto_backend.ts";
import { generateRepresentableKeyPair, type RepresentableKeyPair } from "./_elligator2.ts";
import type { RandomFill } from "./_random.ts";

/** A request to the worker (`_keypair_worker.ts`): how many pairs, made with which backend. */
export interface KeyPairRequest {
  readonly module: string;
  readonly load: string;
  readonly count: number;
}

/** The worker's answer: `count` records of {@linkcode KEY_PAIR_RECORD} bytes, or why none came. */
export type KeyPairAnswer = { readonly pairs: Uint8Array } | { readonly error: string };

/** Bytes per record: secret key, public key, representative. */
export const KEY_PAIR_RECORD = 96;

/** Options of a {@linkcode KeyPairReserve}. */
export interface KeyPairReserveOptions {
  /**
   * Fills an array with random bytes. Defaults to `crypto.getRandomValues`.
   * A reserve given its own never starts a worker (the worker draws from
   * the system's generator).
   */
  readonly random?: RandomFill;
  /** How many spares are kept. Defaults to 1. */
  readonly size?: number;
  /**
   * Make the spares in a Web Worker (`_keypair_worker.ts`), with the
   * backend's `worker` loader, so that no connection's traffic waits while
   * one is made (a pair costs 0.3 ms with native libsodium, 1.3 ms in
   * WebAssembly, all on the main thread otherwise). Where no Worker can
   * start or it fails, spares are made on the main thread as without it.
   * Defaults to `false`.
   */
  readonly worker?: boolean;
  /**
   * How long, in milliseconds, the worker has to answer a request before it
   * is given up as failed (its first answer includes loading its modules).
   * Defaults to 20000.
   */
  readonly workerAnswerTimeout?: number;
  /** Told why, when the worker could not start or failed (spares then come from the main thread). */
  readonly onWorkerError?: (reason: string) => void;
  /**
   * How long, in milliseconds, a worker that filled the reserve runs on
   * while no spare is taken before it is stopped; it starts again once
   * the reserve is down to half. Defaults to 500.
   */
  readonly workerIdleTimeout?: number;
}

/**
 * A worker holds its own thread, V8 heap and modules (10-15 MiB of an idle
 * bridge's resident memory): once it has filled the reserve and no spare is
 * taken for this long, it stops. Starting it again, once half the spares
 * are taken, costs this thread 15-25 ms, at most once per half a reserve
 * of handshakes.
 */
const WORKER_IDLE_MS = 500;

/**
 * Representable key pairs made ahead of need, so that a handshake's
 * ephemeral key is ready when it is wanted instead of being made (rejection
 * sampling included) while a peer waits. {@linkcode KeyPairReserve.take}
 * hands out a spare, or a new pair when a burst of connections used the
 * spares up; {@linkcode KeyPairReserve.refillAfter} makes the next spares
 * in a worker, or on the main thread at a moment when nobody is waiting.
 *
 * @example Taking and refilling
 * ```ts
 * import { KeyPairReserve } from "./_keypair_reserve.ts";
 * import { representativeToPublicKey } from "./_elligator2.ts";
 * import { loadWasmCrypto } from "../crypto_backend.ts";
 * import { deepStrictEqual, notDeepStrictEqual } from "node:assert";
 *
 * const reserve = new KeyPairReserve(await loadWasmCrypto());
 * const a = reserve.take();
 * reserve.refill();
 * const b = reserve.take();
 * notDeepStrictEqual(a.secretKey, b.secretKey);
 * deepStrictEqual(representativeToPublicKey(b.representative), b.publicKey);
 * ```
 */
export class KeyPairReserve {
  #crypto: CryptoBackend;
  #random: RandomFill;
  #spares: RepresentableKeyPair[] = [];
  #size: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  // When the pending timer fires (performance.now() milliseconds).
  #timerDue = 0;
  #closed = false;
  #worker: Worker | undefined;
  #asked = false;
  #answerTimer: ReturnType<typeof setTimeout> | undefined;
  #onWorkerError: ((reason: string) => void) | undefined;
  #answerTimeout: number;
  // A worker is wanted but not started yet: it starts at the first refill,
  // in a later task (starting one blocks this thread for 15-25 ms).
  #wantsWorker: boolean;
  // The worker answered at least once (it has loaded).
  #answered = false;
  #idleTimeout: number;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  // A spare was taken since the idle timer was set.
  #taken = false;

  /**
   * Make the first spare; a worker, when asked for, starts at the first
   * {@linkcode KeyPairReserve.refillAfter}.
   *
   * @param crypto The crypto backend.
   * @param options Randomness, size and worker.
   */
  constructor(crypto: CryptoBackend, options: KeyPairReserveOptions = {}) {
    this.#crypto = crypto;
    this.#random = options.random ?? ((b) => globalThis.crypto.getRandomValues(b));
    this.#size = options.size ?? 1;
    this.#onWorkerError = options.onWorkerError;
    this.#answerTimeout = options.workerAnswerTimeout ?? 20_000;
    this.#idleTimeout = options.workerIdleTimeout ?? WORKER_IDLE_MS;
    this.#spares.push(generateRepresentableKeyPair(crypto, this.#random));
    this.#wantsWorker = options.worker === true && options.random === undefined &&
      crypto.worker !== undefined && typeof Worker === "function";
  }

  /**
   * Hand out a key pair; each is handed out once.
   *
   * @returns A spare, or a pair made now if there is none.
   */
  take(): RepresentableKeyPair {
    this.#taken = true;
    return this.#spares.pop() ?? generateRepresentableKeyPair(this.#crypto, this.#random);
  }

  /** Make one more spare now, on this thread, unless the reserve is full. */
  refill(): void {
    if (this.#spares.length < this.#size) {
      this.#spares.push(generateRepresentableKeyPair(this.#crypto, this.#random));
    }
  }

  /**
   * Fill the reserve again: with a worker, ask it in the next task (once
   * the reserve is down to half; the first such call starts it, and starts
   * it again after it stopped idle), else
   * {@linkcode KeyPairReserve.refill} in `ms` milliseconds, as also while
   * a worker has not answered yet and the reserve is empty. One timer at a
   * time: the one due soonest. Nothing once {@linkcode KeyPairReserve.close} was called.
   *
   * @param ms The delay of a refill on this thread, in milliseconds.
   */
  refillAfter(ms: number): void {
    if (this.#closed) return;
    // With a worker, in the next task: starting it holds this thread 15-25
    // ms, a post 50 us or more (it wakes the worker), and the bytes just
    // written should go out first. A running worker is asked only when the
    // reserve is down to half: no timer for the other handshakes (one costs
    // this thread 20-30 us). Until it first answers (loading its crypto
    // takes up to a second), an empty reserve is refilled on this thread,
    // as without a worker.
    const now = (this.#wantsWorker || this.#worker !== undefined) && this.#askDue();
    // A worker stopped idle starts again once the reserve is down to half:
    // until then, spares are taken from what it made.
    if (!now && this.#wantsWorker && this.#spares.length > 0) return;
    if (!now && this.#worker !== undefined && (this.#answered || this.#spares.length > 0)) return;
    // One timer at a time; one due sooner takes its place (the worker is
    // asked at once though a refill on this thread was waiting).
    const delay = now ? 0 : ms;
    const due = performance.now() + delay;
    if (this.#timer !== undefined) {
      if (this.#timerDue <= due) return;
      clearTimeout(this.#timer);
    }
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#wantsWorker) {
        this.#wantsWorker = false;
        this.#startWorker();
        // It loads for up to a second: the next handshake's spare meanwhile.
        if (this.#worker !== undefined && this.#spares.length === 0) this.refillAfter(ms);
      } else if (this.#worker !== undefined && this.#askDue()) this.#ask();
      else this.refill();
    }, delay);
  }

  /** Stop the worker and clear a pending refill; later ones do nothing. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#answerTimer);
    clearTimeout(this.#idleTimer);
    this.#worker?.terminate();
    this.#worker = undefined;
  }

  /** How many spares are ready. */
  get spares(): number {
    return this.#spares.length;
  }

  /**
   * Whether a worker makes the spares (it may still be loading); none
   * before the first refill, nor while it is stopped idle.
   */
  get usesWorker(): boolean {
    return this.#worker !== undefined;
  }

  #startWorker(): void {
    if (this.#crypto.worker?.mayStart?.() === false) {
      // Not now (the process is short of descriptors): this thread makes
      // the spares, and the next refill tries again.
      this.#wantsWorker = true;
      return this.refill();
    }
    let worker: Worker;
    try {
      worker = new Worker(new URL("./_keypair_worker.ts", import.meta.url), { type: "module" });
    } catch (error) {
      // No worker here (a runtime without module workers, or no permission).
      this.#onWorkerError?.(error instanceof Error ? error.message : String(error));
      return this.refill();
    }
    this.#worker = worker;
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#fail(worker, event.message);
    };
    worker.onmessageerror = () => this.#fail(worker, "a message could not be read");
    worker.onmessage = (event: MessageEvent<KeyPairAnswer>) => {
      if (this.#worker !== worker) return;
      this.#asked = false;
      clearTimeout(this.#answerTimer);
      const answer = event.data;
      this.#answered = !("error" in answer);
      if ("error" in answer) return this.#fail(worker, answer.error);
      const { pairs } = answer;
      for (let at = 0; at + KEY_PAIR_RECORD <= pairs.length; at += KEY_PAIR_RECORD) {
        if (this.#spares.length >= this.#size) break;
        this.#spares.push({
          secretKey: pairs.subarray(at, at + 32),
          publicKey: pairs.subarray(at + 32, at + 64),
          representative: pairs.subarray(at + 64, at + 96),
        });
      }
      // Taken faster than made: ask again.
      this.#ask();
      this.#stopWhenIdle(worker);
    };
    this.#ask();
  }

  /**
   * Ask the worker for what the reserve lacks once it is down to half, one
   * request at a time: each message costs the main thread tens of
   * microseconds, so they come in batches.
   */
  #ask(): void {
    if (this.#worker === undefined || !this.#askDue()) return;
    const missing = this.#size - this.#spares.length;
    this.#asked = true;
    const { module, load } = this.#crypto.worker!;
    const worker = this.#worker;
    worker.postMessage({ module, load, count: missing } satisfies KeyPairRequest);
    // A worker that never answers (its backend's module hangs loading) is
    // given up, as one that fails.
    this.#answerTimer = setTimeout(
      () => this.#fail(worker, `no answer in ${this.#answerTimeout} ms`),
      this.#answerTimeout,
    );
  }

  /**
   * Stop `worker` once it has been idle for the idle timeout: no request
   * pending and no spare taken meanwhile. The next refill that finds the
   * reserve down to half starts a new one.
   */
  #stopWhenIdle(worker: Worker): void {
    clearTimeout(this.#idleTimer);
    this.#taken = false;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#worker !== worker) return;
      if (this.#taken || this.#asked) return this.#stopWhenIdle(worker);
      worker.terminate();
      this.#worker = undefined;
      this.#answered = false;
      this.#wantsWorker = true;
    }, this.#idleTimeout);
  }

  /** Whether a request to the worker is due: none pending, the reserve down to half. */
  #askDue(): boolean {
    return !this.#asked && (this.#size - this.#spares.length) * 2 >= this.#size;
  }

  /** A worker that cannot load, fails or is silent: spares come from this thread again. */
  #fail(worker: Worker, reason: string): void {
    if (this.#worker !== worker) return;
    worker.terminate();
    this.#worker = undefined;
    this.#asked = false;
    clearTimeout(this.#answerTimer);
    clearTimeout(this.#idleTimer);
    this.#onWorkerError?.(reason);
    if (this.#spares.length < this.#size) this.refillAfter(0);
  }
}
