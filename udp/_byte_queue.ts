// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a FIFO of bytes made of the chunks a stream delivered. Not part
// of the public API.

// A chunk this large that fills at least half its buffer is kept as it
// is; smaller ones, or views of a much larger buffer, are copied into a tail
// buffer of the queue's own. Each array costs the runtime a few hundred
// bytes besides its bytes, and a view keeps its whole buffer: a peer that
// sends a frame one byte per segment made each byte held cost about 475
// (red team, round 8).
const KEEP_LENGTH = 2048;
const TAIL_SIZE = 8192;

/**
 * Bytes waiting to be parsed: large chunks kept as they arrived, small ones
 * copied together, so that what is held stays near the bytes queued.
 */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #offset = 0;
  #length = 0;
  // The buffer small chunks are copied into, and how much of it is written.
  #tail: Uint8Array | undefined;
  #tailEnd = 0;

  /** How many bytes are queued. */
  get length(): number {
    return this.#length;
  }

  /** Append a chunk: kept by reference when large, else copied. */
  push(chunk: Uint8Array): void {
    const n = chunk.byteLength;
    if (n === 0) return;
    this.#length += n;
    if (n >= KEEP_LENGTH && n * 2 >= chunk.buffer.byteLength) {
      this.#chunks.push(chunk);
      return;
    }
    let tail = this.#tail;
    if (tail === undefined || tail.byteLength - this.#tailEnd < n) {
      tail = this.#tail = new Uint8Array(Math.max(TAIL_SIZE, n));
      this.#tailEnd = 0;
    }
    const start = this.#tailEnd;
    tail.set(chunk, start);
    this.#tailEnd = start + n;
    // The last queued chunk ends where these bytes start in the tail: it
    // grows in place (a view of the same buffer) rather than a view each.
    const last = this.#chunks.length - 1;
    const open = this.#chunks[last];
    if (
      open?.buffer === tail.buffer && open.byteOffset + open.byteLength === start
    ) {
      this.#chunks[last] = tail.subarray(open.byteOffset, this.#tailEnd);
    } else {
      this.#chunks.push(tail.subarray(start, this.#tailEnd));
    }
  }

  /**
   * The first `n` bytes, which stay queued: a view of the chunk they lie in
   * when they lie in one (no copy; a deframer peeks at every header), else a
   * copy. `n` must be <= length.
   */
  peek(n: number): Uint8Array {
    const chunk = this.#chunks[this.#head];
    if (chunk !== undefined && chunk.byteLength - this.#offset >= n) {
      return chunk.subarray(this.#offset, this.#offset + n);
    }
    return this.#copy(n, false);
  }

  /**
   * Copy the first `target.length` bytes into `target`; they stay queued.
   * No array is made (a deframer reads every header this way).
   * `target.length` must be <= length.
   */
  peekInto(target: Uint8Array): void {
    const n = target.length;
    let index = this.#head;
    let offset = this.#offset;
    for (let i = 0; i < n; i++) {
      let chunk = this.#chunks[index]!;
      if (offset === chunk.byteLength) {
        chunk = this.#chunks[++index]!;
        offset = 0;
      }
      target[i] = chunk[offset++]!;
    }
  }

  /** Remove the first `n` bytes and return them as a fresh array. */
  take(n: number): Uint8Array {
    return this.#copy(n, true);
  }

  /**
   * Remove the first `n` bytes and return bytes `start` to `end` of them
   * (all of them by default): a view into the chunk they arrived in when
   * they lie in one (no copy), else a fresh array. `0 <= start <= end <= n`.
   */
  takeView(n: number, start: number = 0, end: number = n): Uint8Array {
    const chunk = this.#chunks[this.#head];
    if (chunk === undefined || chunk.byteLength - this.#offset < n) {
      const copy = this.#copy(n, true);
      return start === 0 && end === n ? copy : copy.subarray(start, end);
    }
    const view = chunk.subarray(this.#offset + start, this.#offset + end);
    this.#length -= n;
    this.#offset += n;
    if (this.#offset === chunk.byteLength) {
      this.#offset = 0;
      this.#head++;
      if (this.#head === this.#chunks.length) {
        this.#chunks = [];
        this.#head = 0;
      } else {
        this.#dropConsumed();
      }
    }
    return view;
  }

  // Chunks read to their end are let go at once (amortized: the entries
  // moved are at most those dropped): a peer whose frames straddle every
  // read must not keep up to 1024 whole read buffers alive.
  #dropConsumed(): void {
    if (this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  #copy(n: number, consume: boolean): Uint8Array {
    if (n > this.#length) {
      throw new RangeError(`Cannot read ${n} bytes: only ${this.#length} queued`);
    }
    const out = new Uint8Array(n);
    let filled = 0;
    let index = this.#head;
    let offset = this.#offset;
    while (filled < n) {
      const chunk = this.#chunks[index]!;
      const count = Math.min(chunk.byteLength - offset, n - filled);
      out.set(chunk.subarray(offset, offset + count), filled);
      filled += count;
      offset += count;
      if (offset === chunk.byteLength) {
        index++;
        offset = 0;
      }
    }
    if (consume) {
      this.#length -= n;
      this.#head = index;
      this.#offset = offset;
      if (this.#head === this.#chunks.length) {
        this.#chunks = [];
        this.#head = 0;
      } else {
        this.#dropConsumed();
      }
    }
    return out;
  }
}
