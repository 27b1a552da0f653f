// Copyright the ptkit authors. MIT license.
// Internal: token buckets for the requests a TURN server answers (one per
// byte-stream connection, one per source), on the server's clock.

/** A token bucket: tokens left, and when they were counted (ms). */
export interface RequestBudget {
  tokens: number;
  at: number;
}

/**
 * What a request of `size` bytes costs in tokens: one, and one more per
 * KiB. A signed 64 KiB request (its MAC, its parse) cost the server
 * 0.36-0.73 ms where a small one cost 15-20 us.
 *
 * @param size The request's length in bytes.
 * @returns Its cost.
 */
export function requestCost(size: number): number {
  return 1 + (size >> 10);
}

/**
 * Refill `budget` for the time since it was last counted, then take `cost`
 * tokens (at most `burst`: a request costing more than a burst takes a
 * whole one). A clock stepped back gives nothing and takes nothing.
 *
 * @param budget The bucket, changed in place.
 * @param now The time in ms.
 * @param burst The most tokens it holds.
 * @param perMs Tokens added per ms.
 * @param cost Tokens the request costs (see {@linkcode requestCost}).
 * @returns Whether they were taken.
 */
export function takeRequestToken(
  budget: RequestBudget,
  now: number,
  burst: number,
  perMs: number,
  cost = 1,
): boolean {
  budget.tokens = Math.min(burst, budget.tokens + Math.max(0, now - budget.at) * perMs);
  budget.at = now;
  const take = Math.min(cost, burst);
  if (budget.tokens < take) return false;
  budget.tokens -= take;
  return true;
}

/**
 * One request budget per source (an IP address, an IPv6 /64), for at most
 * `maxSources` sources (rounded up to an even number), so that any number of
 * sources, spoofed ones too, take bounded memory. They are kept in two
 * generations of half that each: when the newer is full, the older is
 * forgotten (its sources start again with a full burst) and the newer takes
 * its place; a source of the older that asks again moves to the newer. So a
 * source is forgotten only after at least `maxSources / 2` others have
 * asked since it last did. (Deleting the oldest key of one Map on every new
 * source cost 14 us a request here: V8 skips the deleted entries at the
 * front of the table on each look for the first.)
 */
export class SourceRequestRates {
  #newer = new Map<string, RequestBudget>();
  #older = new Map<string, RequestBudget>();
  #burst: number;
  #perMs: number;
  #half: number;

  /**
   * @param burst Requests a source may make at once.
   * @param perSecond Requests a source may make a second after its burst.
   * @param maxSources The most sources tracked (rounded up to an even number).
   */
  constructor(burst: number, perSecond: number, maxSources: number) {
    this.#burst = burst;
    this.#perMs = perSecond / 1000;
    this.#half = Math.ceil(maxSources / 2);
  }

  /** Sources tracked now. */
  get size(): number {
    return this.#newer.size + this.#older.size;
  }

  /**
   * Take the tokens of one request of `source`.
   *
   * @param source The source.
   * @param now The time in ms.
   * @param cost Tokens the request costs (see {@linkcode requestCost}).
   * @returns Whether the request may be answered.
   */
  take(source: string, now: number, cost = 1): boolean {
    let budget = this.#newer.get(source);
    if (budget === undefined) {
      budget = this.#older.get(source);
      if (budget === undefined) budget = { tokens: this.#burst, at: now };
      else this.#older.delete(source);
      if (this.#newer.size >= this.#half) {
        this.#older = this.#newer;
        this.#newer = new Map();
      }
      this.#newer.set(source, budget);
    }
    return takeRequestToken(budget, now, this.#burst, this.#perMs, cost);
  }
}
