// Copyright the ptkit authors. MIT license.
// Internal: the bound on running helper processes that connectors share
// (see `HelperLimit` in client.ts).

/** One helper process as the limit sees it. */
export interface HelperSlot {
  /** Connections (and dials under way) through the helper. */
  readonly open: number;
  /** When it was last used (`performance.now()`). */
  readonly lastUsed: number;
  /** Stop the helper and give its slot back; resolves once it is gone. */
  close(): Promise<void>;
}

/**
 * At most `max` helpers at once: a new one takes the slot of the idle one
 * (no open connection) used longest ago, and none when all are busy.
 */
export class HelperSlots {
  readonly max: number;
  #slots = new Set<HelperSlot>();

  constructor(max: number) {
    this.max = max;
  }

  /** The helpers holding a slot. */
  get size(): number {
    return this.#slots.size;
  }

  /**
   * Take a slot for `slot`, stopping the idle helper used longest ago when
   * all are taken.
   *
   * @returns Resolves once there is room (the idle helper is gone), or
   * `false` when every helper has open connections.
   */
  take(slot: HelperSlot): Promise<void> | false {
    let evicted: Promise<void> | undefined;
    if (this.#slots.size >= this.max) {
      let idle: HelperSlot | undefined;
      for (const other of this.#slots) {
        if (other.open === 0 && (idle === undefined || other.lastUsed < idle.lastUsed)) {
          idle = other;
        }
      }
      if (idle === undefined) return false;
      this.#slots.delete(idle);
      evicted = idle.close();
    }
    this.#slots.add(slot);
    return evicted ?? Promise.resolve();
  }

  /** Give `slot` back (its helper is stopping). */
  release(slot: HelperSlot): void {
    this.#slots.delete(slot);
  }
}
