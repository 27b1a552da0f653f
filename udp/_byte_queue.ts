// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a FIFO of bytes made of the chunks a stream delivered. Not part
// of the public API.

/** Bytes waiting to be parsed, kept as the chunks they arrived in. */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #offset = 0;
  #length = 0;

  /** How many bytes are queued. */
  get length(): number {
    return this.#length;
  }

  /** Append a chunk (kept by reference). */
  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.byteLength;
  }

  /** A copy of the first `n` bytes, which stay queued. `n` must be <= length. */
  peek(n: number): Uint8Array {
    return this.#copy(n, false);
  }

  /** Remove the first `n` bytes and return them as a fresh array. */
  take(n: number): Uint8Array {
    return this.#copy(n, true);
  }

  /**
   * Remove the first `n` bytes and return them: a view into the chunk they
   * arrived in when they lie in one (no copy), else a fresh array.
   */
  takeView(n: number): Uint8Array {
    const chunk = this.#chunks[this.#head];
    if (chunk === undefined || chunk.byteLength - this.#offset < n) return this.#copy(n, true);
    const view = chunk.subarray(this.#offset, this.#offset + n);
    this.#length -= n;
    this.#offset += n;
    if (this.#offset === chunk.byteLength) {
      this.#offset = 0;
      this.#head++;
      if (this.#head === this.#chunks.length) {
        this.#chunks = [];
        this.#head = 0;
      }
    }
    return view;
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
      } else if (this.#head > 1024) {
        this.#chunks = this.#chunks.slice(this.#head);
        this.#head = 0;
      }
    }
    return out;
  }
}
