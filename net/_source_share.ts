// Copyright the ptkit authors. MIT license.
// Internal: a fair share of something scarce (a UDP server's flows, a TURN
// server's allocations) between sources. One source may use all of it
// while nobody else wants any; when it is full, a source holding fewer
// takes the place of one item of the source holding the most.

/** Items held, grouped by the source (an IP address, an IPv6 /64) they count against. */
export class SourceShare<T> {
  #bySource = new Map<string, Set<T>>();
  #sourceOf = new Map<T, string>();

  /** How many items are held in all. */
  get size(): number {
    return this.#sourceOf.size;
  }

  /** How many items `source` holds. */
  count(source: string): number {
    return this.#bySource.get(source)?.size ?? 0;
  }

  /** Hold `item` for `source` (the newest of its items). */
  add(source: string, item: T): void {
    let held = this.#bySource.get(source);
    if (held === undefined) this.#bySource.set(source, held = new Set());
    held.add(item);
    this.#sourceOf.set(item, source);
  }

  /**
   * Stop holding `item` (idempotent).
   *
   * @returns Whether it was held.
   */
  delete(item: T): boolean {
    const source = this.#sourceOf.get(item);
    if (source === undefined) return false;
    this.#sourceOf.delete(item);
    const held = this.#bySource.get(source)!;
    held.delete(item);
    if (held.size === 0) this.#bySource.delete(source);
    return true;
  }

  /** The items `source` holds, oldest first. */
  held(source: string): T[] {
    return [...this.#bySource.get(source) ?? []];
  }

  /**
   * The items, oldest first, of the source that holds the most, when
   * `source` holds at least two fewer (taking one of them for `source` then
   * leaves neither ahead); otherwise none.
   *
   * @param source The source asking for room.
   * @param counted Which items count (one user's allocations, say). Defaults to all.
   * @returns The items to choose one from, or undefined.
   */
  largest(source: string, counted: (item: T) => boolean = () => true): T[] | undefined {
    const count = (held: Set<T> | undefined) => [...held ?? []].filter(counted);
    let most: T[] = [];
    for (const held of this.#bySource.values()) {
      const items = count(held);
      if (items.length > most.length) most = items;
    }
    return most.length > count(this.#bySource.get(source)).length + 1 ? most : undefined;
  }

  /**
   * The item to give up so that `source` may hold one more (flows: a
   * connection each). At `perSource` items of its own, its least recently
   * active one goes, rather than the newcomer being refused: a client at
   * its own flow limit closes its idlest flow and opens a new one at once,
   * and the new connection races the old one's close. At `total` in all,
   * the least recently active item of the source holding the most, when
   * `source` holds at least two fewer, else its own.
   *
   * @param source The source asking for room.
   * @param perSource The most items one source holds.
   * @param total The most items held in all.
   * @param activity When an item was last active; `undefined` for one not
   * in use yet, which is never chosen.
   * @returns The item to close (still held: delete it), `undefined` when
   * there is room, or `null` when room is needed and no item can give it.
   */
  makeRoom(
    source: string,
    perSource: number,
    total: number,
    activity: (item: T) => number | undefined,
  ): T | undefined | null {
    const idlest = (candidates: T[]): T | undefined => {
      let victim: T | undefined;
      let since = Infinity;
      for (const item of candidates) {
        const at = activity(item);
        if (at !== undefined && at < since) [victim, since] = [item, at];
      }
      return victim;
    };
    if (this.count(source) >= perSource) {
      return idlest(this.held(source)) ?? null;
    }
    if (this.size >= total) {
      return idlest(this.largest(source) ?? []) ?? idlest(this.held(source)) ?? null;
    }
    return undefined;
  }
}
