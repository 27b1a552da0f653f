// Copyright the ptkit authors. MIT license.
// Internal: the name lookups remote clients ask for (free mode's SOCKS
// destinations, Shadowsocks' destinations), bounded in all and per source.
//
// Names under a domain whose name servers never answer cost a client
// nothing to send, and each lookup of one holds its sockets (two queries)
// until the deadline (10 s): unbounded, a client with 1024 connections
// could hold 2048 sockets and every other client's lookup would wait behind
// its own. (getaddrinfo, which ptkit no longer uses for them, held one of
// the 32 threads of Deno's blocking pool each: 32 such names stopped every
// file read of the process.)

/**
 * Lookups running at once, all sources together. Sources that each run
 * their 8 slow lookups can still fill it (16 of them); a freed place then
 * goes to a source running none, so other clients' lookups wait for the
 * next slow one to end instead of for every one.
 */
export const MAX_LOOKUPS = 128;
/** Lookups running at once for one source. */
export const MAX_LOOKUPS_PER_SOURCE = 8;
/** How long a lookup waits for its turn before it fails, in ms. */
export const LOOKUP_WAIT_MS = 10_000;
/**
 * Lookups waiting for one source: its connection may be gone (nothing
 * watches it meanwhile), so only this bounds what a client that opens and
 * closes connections leaves in line.
 */
export const MAX_WAITING_PER_SOURCE = 64;
/** Lookups waiting, all sources together. */
export const MAX_WAITING = 4096;

interface Waiter {
  readonly source: string | undefined;
  readonly start: () => void;
  readonly drop: (error: Error) => void;
}

/**
 * Runs lookups, at most `max` at once and `perSource` for one source; the
 * others wait in line, and a free place goes to the waiting lookup whose
 * source runs the fewest (the oldest of those), so a source with many slow
 * lookups under way is served last. A lookup that waits longer than
 * `waitMs` fails without running, and so does one beyond `maxWaitingPerSource`
 * waiting for its source; with `maxWaiting` in line, the source with the
 * most waiting (two more than the newcomer's at least) loses its oldest,
 * else the newcomer fails.
 */
export class LookupQueue {
  #max: number;
  #perSource: number;
  #waitMs: number;
  #maxWaitingPerSource: number;
  #maxWaiting: number;
  #running = 0;
  #bySource = new Map<string, number>();
  #waiting: Waiter[] = [];
  #waitingBySource = new Map<string, number>();

  /**
   * Make a queue.
   *
   * @param limits At most `max` lookups at once, `perSource` for one
   * source; `waitMs` to wait for a turn; at most `maxWaiting` waiting,
   * `maxWaitingPerSource` for one source.
   */
  constructor(
    {
      max = MAX_LOOKUPS,
      perSource = MAX_LOOKUPS_PER_SOURCE,
      waitMs = LOOKUP_WAIT_MS,
      maxWaitingPerSource = MAX_WAITING_PER_SOURCE,
      maxWaiting = MAX_WAITING,
    }: {
      readonly max?: number;
      readonly perSource?: number;
      readonly waitMs?: number;
      readonly maxWaitingPerSource?: number;
      readonly maxWaiting?: number;
    } = {},
  ) {
    this.#max = max;
    this.#perSource = perSource;
    this.#waitMs = waitMs;
    this.#maxWaitingPerSource = maxWaitingPerSource;
    this.#maxWaiting = maxWaiting;
  }

  /** How many lookups are running. */
  get running(): number {
    return this.#running;
  }

  /** How many lookups are waiting for their turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Run `lookup` when its turn comes.
   *
   * @param source The source it counts against (`sourceKey`), or
   * `undefined` for one that counts only in all.
   * @param lookup The lookup.
   * @param signal Aborting it takes a lookup still waiting out of the line
   * (its connection closed: its place goes to another).
   * @returns What it returns.
   * @throws {Error} When it waited `waitMs` without its turn, or could not
   * wait in line (it never ran); the signal's reason when it was aborted
   * while waiting.
   */
  async run<T>(
    source: string | undefined,
    lookup: () => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    signal?.throwIfAborted();
    // A lookup that waited was counted when its turn came.
    if (this.#waiting.length === 0 && this.#mayStart(source)) this.#count(source, 1);
    else await this.#turn(source, signal);
    try {
      return await lookup();
    } finally {
      this.#count(source, -1);
      this.#next();
    }
  }

  #mayStart(source: string | undefined): boolean {
    return this.#running < this.#max &&
      (source === undefined || (this.#bySource.get(source) ?? 0) < this.#perSource);
  }

  #count(source: string | undefined, delta: number): void {
    this.#running += delta;
    if (source === undefined) return;
    const n = (this.#bySource.get(source) ?? 0) + delta;
    if (n === 0) this.#bySource.delete(source);
    else this.#bySource.set(source, n);
  }

  #turn(source: string | undefined, signal: AbortSignal | undefined): Promise<void> {
    const waiting = (key: string | undefined) =>
      key === undefined ? 0 : this.#waitingBySource.get(key) ?? 0;
    if (waiting(source) >= this.#maxWaitingPerSource) {
      return Promise.reject(new Error("Too many name lookups waiting for one client"));
    }
    if (this.#waiting.length >= this.#maxWaiting) {
      let most: string | undefined;
      for (const [key, n] of this.#waitingBySource) if (n > waiting(most)) most = key;
      if (most === undefined || waiting(most) < waiting(source) + 2) {
        return Promise.reject(new Error("Too many name lookups waiting"));
      }
      this.#waiting.find((waiter) => waiter.source === most)!
        .drop(new Error("Too many name lookups waiting: given up for another client's"));
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => waiter.drop(signal!.reason);
      const leave = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        if (source !== undefined) {
          const n = waiting(source) - 1;
          if (n === 0) this.#waitingBySource.delete(source);
          else this.#waitingBySource.set(source, n);
        }
      };
      const waiter: Waiter = {
        source,
        start: () => {
          leave();
          resolve();
        },
        drop: (error) => {
          leave();
          reject(error);
        },
      };
      const timer = setTimeout(
        () => waiter.drop(new Error(`No turn to look the name up within ${this.#waitMs} ms`)),
        this.#waitMs,
      );
      this.#waiting.push(waiter);
      if (source !== undefined) this.#waitingBySource.set(source, waiting(source) + 1);
      signal?.addEventListener("abort", onAbort, { once: true });
      // A place may be free already (only others' lookups were waiting).
      this.#next();
    });
  }

  /** Start the waiting lookups that may run now, fewest running first. */
  #next(): void {
    while (this.#running < this.#max) {
      let best = -1;
      let fewest = Infinity;
      for (let i = 0; i < this.#waiting.length; i++) {
        const { source } = this.#waiting[i]!;
        if (!this.#mayStart(source)) continue;
        const running = source === undefined ? 0 : this.#bySource.get(source) ?? 0;
        if (running < fewest) {
          fewest = running;
          best = i;
        }
      }
      if (best < 0) return;
      const waiter = this.#waiting[best]!;
      // Counted now, before it resumes, so the next choice sees it.
      this.#count(waiter.source, 1);
      waiter.start();
    }
  }
}
