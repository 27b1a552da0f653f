// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a transport pair's two transforms without their Web Streams,
// for the runtime's own connections. Not part of the public API.

import type { TransportPair } from "./transport.ts";

/** A pair's hook: its transforms as {@linkcode DirectTransform}s, if its streams were not made. */
export const DIRECT_PAIR: unique symbol = Symbol("ptkit.directPair");

/** What a pair with {@linkcode DIRECT_PAIR} gives the runtime. */
export interface DirectPair {
  readonly encode: DirectTransform;
  readonly decode: DirectTransform;
  /**
   * Told of each chunk read from `encode` once it is sent and no longer
   * used, so its buffer may carry a later one.
   */
  readonly recycle?: (chunk: Uint8Array) => void;
  /**
   * Told of a chunk read from `decode` once its reader no longer uses it
   * (wrote it in full), so its buffer may carry a later one.
   */
  readonly recycleDecoded?: (chunk: Uint8Array) => void;
  /**
   * Whether the transforms pass on the chunks they are given, not copies
   * (`plain`'s): a chunk written is then not free once its write resolves,
   * nor a chunk read from the socket once decoded.
   */
  readonly passesChunks?: boolean;
}

/** The controller a transformer is given: a `TransformStreamDefaultController`'s part in use. */
interface Controller {
  enqueue(chunk: Uint8Array): void;
  error(reason: unknown): void;
  readonly desiredSize: number | null;
}

const noop = () => {};
const DONE_WRITING: Promise<void> = Promise.resolve();
const DONE = { value: undefined, done: true } as unknown as ReadableStreamReadResult<Uint8Array>;

/**
 * A `Transformer` run as a `TransformStream` of the same strategy would run
 * it (start first; one transform at a time, each once the readable side
 * has room, which with a high-water mark of 0 is a pending read; flush at
 * close; cancel at abort or cancel; an error, thrown or given to
 * `controller.error`, ends both sides with it), with the reader's and the
 * writer's methods the runtime uses (`read`/`cancel`, `ready`/`write`/
 * `close`/`closed`/`abort`) on one object: no streams, controllers, queues
 * of promises or locks. An idle connection keeps two (about 1 KiB of heap
 * against 10 KiB for two `TransformStream`s with their reader and writer).
 * One reader and one writer, the runtime's.
 */
export class DirectTransform implements Controller {
  #transformer: Transformer<Uint8Array, Uint8Array>;
  #highWaterMark: number;
  #queue: Uint8Array[] = [];
  #error: { readonly reason: unknown } | undefined;
  /** Set once flush is done: the queue drains, then reads end. */
  #flushed = false;
  /** Set once the reader cancelled: reads end. */
  #cancelled = false;
  #read: {
    resolve(result: ReadableStreamReadResult<Uint8Array>): void;
    reject(reason: unknown): void;
  } | undefined;
  /** The write (or close) in progress: `ready` waits for it. */
  #busy: Promise<void> | undefined;
  /** Set once close() was called. */
  #closing = false;
  #closed: Promise<void> | undefined;
  #settleClosed: { resolve(): void; reject(reason: unknown): void } | undefined;
  /** A transform waiting for room on the readable side. */
  #room: (() => void) | undefined;
  /** Until the transformer's start settles. */
  #started: Promise<void> | undefined;
  /** Told when the transform errors (its streams, when made: see {@linkcode transformStreamOf}). */
  #onError: ((reason: unknown) => void) | undefined;

  /**
   * Start `transformer`, as a `TransformStream` does when made.
   *
   * @param transformer The transformer.
   * @param highWaterMark The readable side's high-water mark (in chunks).
   */
  constructor(transformer: Transformer<Uint8Array, Uint8Array>, highWaterMark: number) {
    this.#transformer = transformer;
    this.#highWaterMark = highWaterMark;
    let started: unknown;
    try {
      started = transformer.start?.(this.#controller());
    } catch (error) {
      this.error(error);
      return;
    }
    if (started instanceof Promise) {
      this.#started = started.then(() => {
        this.#started = undefined;
      }, (error) => {
        this.#started = undefined;
        this.error(error);
      });
    }
  }

  // The controller's side.

  /** As a controller's: null once errored, 0 once closed or cancelled. */
  get desiredSize(): number | null {
    if (this.#error !== undefined) return null;
    if (this.#flushed || this.#cancelled) return 0;
    return this.#highWaterMark - this.#queue.length;
  }

  /**
   * Hand a chunk to the reader.
   *
   * @param chunk The chunk.
   * @throws {TypeError} Once closed, cancelled or errored.
   */
  enqueue(chunk: Uint8Array): void {
    if (this.#error !== undefined || this.#flushed || this.#cancelled) {
      throw new TypeError("Cannot enqueue a chunk: the stream is closed or errored");
    }
    const read = this.#read;
    if (read !== undefined) {
      this.#read = undefined;
      read.resolve({ value: chunk, done: false });
    } else {
      this.#queue.push(chunk);
    }
  }

  /**
   * End both sides with `reason` (nothing once closed or errored).
   *
   * @param reason The error.
   */
  error(reason: unknown): void {
    if (this.#error !== undefined || this.#flushed) return;
    this.#error = { reason };
    this.#onError?.(reason);
    this.#queue = [];
    const read = this.#read;
    this.#read = undefined;
    read?.reject(reason);
    this.#settleClosed?.reject(reason);
    this.#settleClosed = undefined;
    const room = this.#room;
    this.#room = undefined;
    room?.();
  }

  // The reader's side.

  /**
   * The next chunk, as a reader's `read()`.
   *
   * @returns The chunk, or done.
   */
  read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#cancelled) return Promise.resolve(DONE);
    if (this.#queue.length > 0) {
      const value = this.#queue.shift()!;
      this.#roomMade();
      return Promise.resolve({ value, done: false });
    }
    if (this.#error !== undefined) return rejected(this.#error.reason);
    if (this.#flushed) return Promise.resolve(DONE);
    const promise = new Promise<ReadableStreamReadResult<Uint8Array>>((resolve, reject) => {
      this.#read = { resolve, reject };
    });
    this.#roomMade();
    return promise;
  }

  /**
   * Stop reading, as a reader's `cancel()`: the transformer's cancel runs
   * and the writable side errors with `reason`.
   *
   * @param reason Why.
   * @returns Resolves at once.
   */
  cancel(reason?: unknown): Promise<void> {
    if (this.#cancelled) return Promise.resolve();
    this.#cancelled = true;
    this.#queue = [];
    const read = this.#read;
    this.#read = undefined;
    read?.resolve(DONE);
    if (this.#error === undefined && !this.#flushed) {
      try {
        this.#transformer.cancel?.(reason);
      } catch {
        // Errored with the reason below either way.
      }
      this.error(reason);
    }
    return Promise.resolve();
  }

  // The writer's side.

  /** As a writer's: resolves once no write is in progress, rejects once errored. */
  get ready(): Promise<void> {
    if (this.#error !== undefined) return rejected(this.#error.reason);
    const busy = this.#busy;
    return busy === undefined ? Promise.resolve() : busy.then(() => this.ready, () => this.ready);
  }

  /** As a writer's: resolves once closed, rejects once errored. */
  get closed(): Promise<void> {
    if (this.#closed === undefined) {
      if (this.#error !== undefined) return rejected(this.#error.reason);
      if (this.#flushed) return Promise.resolve();
      this.#closed = new Promise<void>((resolve, reject) => {
        this.#settleClosed = { resolve, reject };
      });
      this.#closed.catch(noop);
    }
    return this.#closed;
  }

  /**
   * Transform `chunk` after the writes before it, once the readable side
   * has room.
   *
   * @param chunk The chunk.
   * @returns Resolves once transformed; rejects with the error that ended the stream.
   */
  write(chunk: Uint8Array): Promise<void> {
    if (this.#error !== undefined) return rejected(this.#error.reason);
    if (this.#closing) return rejected(new TypeError("Cannot write to a closing stream"));
    if (this.#busy === undefined && this.#started === undefined && this.#hasRoom()) {
      // The steady state: nothing before it, room for it, and a transform
      // that finishes at once (obfs4's, iat-mode 0) costs no promise.
      let result: void | PromiseLike<void>;
      try {
        result = this.#transformer.transform!(chunk, this.#controller());
      } catch (error) {
        this.error(error);
        return rejected(error);
      }
      if (!(result instanceof Promise)) {
        const error = this.#error as { readonly reason: unknown } | undefined;
        return error === undefined ? DONE_WRITING : rejected(error.reason);
      }
      return this.#queueStep(() =>
        result.then(() => this.#throwIfErrored(), (error) => {
          this.error(error);
          throw error;
        })
      );
    }
    return this.#queueStep(() => this.#transform(chunk));
  }

  /**
   * Flush after the writes before it; the reader then gets what is queued,
   * then its end.
   *
   * @returns Resolves once flushed; rejects with the error that ended the stream.
   */
  close(): Promise<void> {
    if (this.#error !== undefined || this.#closing) {
      return rejected(new TypeError("Writable stream is closed or errored."));
    }
    this.#closing = true;
    void this.closed;
    return this.#queueStep(() => this.#flush());
  }

  /**
   * End both sides with `reason`, as a writer's `abort()`: the transformer's
   * cancel runs first.
   *
   * @param reason Why.
   * @returns Resolves at once.
   */
  abort(reason?: unknown): Promise<void> {
    if (this.#error !== undefined || this.#flushed) return Promise.resolve();
    try {
      this.#transformer.cancel?.(reason);
    } catch {
      // Errored with the reason below either way.
    }
    this.error(reason);
    return Promise.resolve();
  }

  /**
   * Be told at once when the transform errors.
   *
   * @param listener Called with the error.
   */
  onError(listener: (reason: unknown) => void): void {
    this.#onError = listener;
    const error = this.#error;
    if (error !== undefined) listener(error.reason);
  }

  // Inside.

  #controller(): TransformStreamDefaultController<Uint8Array> {
    return this as unknown as TransformStreamDefaultController<Uint8Array>;
  }

  #queueStep(step: () => Promise<void>): Promise<void> {
    const after = this.#busy;
    const done: Promise<void> = (after === undefined ? step() : after.then(step, step)).finally(
      () => {
        if (this.#busy === done) this.#busy = undefined;
      },
    );
    this.#busy = done;
    done.catch(noop);
    return done;
  }

  async #transform(chunk: Uint8Array): Promise<void> {
    if (this.#started !== undefined) await this.#started;
    if (!this.#hasRoom()) await new Promise<void>((resolve) => this.#room = resolve);
    if (this.#error !== undefined) throw this.#error.reason;
    try {
      await this.#transformer.transform!(chunk, this.#controller());
    } catch (error) {
      this.error(error);
      throw error;
    }
    this.#throwIfErrored();
  }

  async #flush(): Promise<void> {
    if (this.#started !== undefined) await this.#started;
    if (this.#error !== undefined) throw this.#error.reason;
    try {
      await this.#transformer.flush?.(this.#controller());
    } catch (error) {
      this.error(error);
      throw error;
    }
    this.#throwIfErrored();
    this.#flushed = true;
    if (this.#queue.length === 0) {
      const read = this.#read;
      this.#read = undefined;
      read?.resolve(DONE);
    }
    this.#settleClosed?.resolve();
    this.#settleClosed = undefined;
  }

  #throwIfErrored(): void {
    const error = this.#error;
    if (error !== undefined) throw error.reason;
  }

  /** Whether the readable side has room: a read waiting, or a queue under the mark. */
  #hasRoom(): boolean {
    return this.#error !== undefined || this.#flushed || this.#cancelled ||
      this.#queue.length < this.#highWaterMark ||
      (this.#read !== undefined && this.#queue.length === 0);
  }

  #roomMade(): void {
    if (this.#room !== undefined && this.#hasRoom()) {
      const room = this.#room;
      this.#room = undefined;
      room();
    }
  }
}

function rejected(reason: unknown): Promise<never> {
  const promise = Promise.reject(reason);
  promise.catch(noop);
  return promise;
}

/**
 * A {@linkcode DirectTransform} as the `TransformStream` a pair's users
 * see: writes go through it, reads pull from it (the readable side keeps no
 * queue of its own: the transform's is the stream's), and both sides error
 * as soon as it does.
 *
 * @param transform The transform.
 * @returns Its readable and writable sides.
 */
export function transformStreamOf(
  transform: DirectTransform,
): TransformStream<Uint8Array, Uint8Array> {
  let errorReadable: ((reason: unknown) => void) | undefined;
  let errorWritable: ((reason: unknown) => void) | undefined;
  const readable = new ReadableStream<Uint8Array>({
    start: (controller) => {
      errorReadable = (reason) => controller.error(reason);
    },
    pull: async (controller) => {
      const { value, done } = await transform.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => transform.cancel(reason),
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({
    start: (controller) => {
      errorWritable = (reason) => controller.error(reason);
    },
    write: (chunk) => transform.write(chunk),
    close: () => transform.close(),
    abort: (reason) => transform.abort(reason),
  });
  transform.onError((reason) => {
    try {
      errorReadable?.(reason);
    } catch {
      // Closed already.
    }
    try {
      errorWritable?.(reason);
    } catch {
      // Closed already.
    }
  });
  return { readable, writable } as TransformStream<Uint8Array, Uint8Array>;
}

/**
 * The pair of `direct`: its streams (`encode`, `decode`) made when first
 * asked for, or `direct` itself for the runtime ({@linkcode DIRECT_PAIR})
 * while they are not; one or the other. `what` names the pair in the
 * error of a stream asked for once the runtime took it ("an obfs4 pair");
 * `extra` holds the pair's other members (obfs4's `ready`).
 */
export function pairOfDirect(
  direct: DirectPair,
  what: string,
  extra: { readonly ready?: Promise<void> } = {},
): TransportPair {
  let streams: {
    encode: TransformStream<Uint8Array, Uint8Array>;
    decode: TransformStream<Uint8Array, Uint8Array>;
  } | undefined;
  let taken = false;
  const made = () => {
    if (taken) {
      throw new TypeError(`Cannot use ${what}'s streams: a transport connection runs it`);
    }
    return streams ??= {
      encode: transformStreamOf(direct.encode),
      decode: transformStreamOf(direct.decode),
    };
  };
  return {
    get encode() {
      return made().encode;
    },
    get decode() {
      return made().decode;
    },
    ...extra,
    [DIRECT_PAIR]: (): DirectPair | undefined => {
      if (streams !== undefined || taken) return undefined;
      taken = true;
      return direct;
    },
  } as TransportPair;
}
