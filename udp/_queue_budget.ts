// Copyright the ptkit authors. MIT license.

/**
 * Bytes that many queues toward slow readers hold together: UDP flows toward
 * their transport connections, TURN stream clients toward their connections.
 * Each queue has a limit of its own, but a thousand queues at their limits
 * would be gigabytes: past the budget's `limit` in all, a queue already holding
 * its {@linkcode QueueBudget.share} takes no more, while one holding less
 * still may (a new or quiet client is not starved by the ones that do not
 * read).
 */
export class QueueBudget {
  /** Bytes all queues may hold together before the rule applies. */
  readonly limit: number;
  /** Bytes a queue may hold whatever the others hold (its own limits allowing). */
  readonly share: number;
  #used = 0;

  constructor(limit: number, share: number = DEFAULT_SHARE) {
    this.limit = limit;
    this.share = share;
  }

  /** Bytes held by all queues. */
  get used(): number {
    return this.#used;
  }

  /** Whether a queue holding `held` bytes may take `length` more. */
  admits(held: number, length: number): boolean {
    return held + length <= this.share || this.#used + length <= this.limit;
  }

  /** Count `n` more bytes held. */
  take(n: number): void {
    this.#used += n;
  }

  /** Count `n` bytes fewer held (written out or let go). */
  release(n: number): void {
    this.#used -= n;
  }
}

/** What a queue may hold whatever the others hold. */
const DEFAULT_SHARE = 64 * 1024;
