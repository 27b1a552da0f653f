// Copyright the ptkit authors. MIT license.
// An in-memory connection for the unit level of the reference tables: the
// server end is a NetConn for ptkit's parsers, the client end is driven by
// the test, which can also ask whether the server is waiting for input.

import type { NetConn } from "../../net/mod.ts";

/** A byte queue with one reader. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #wake: (() => void) | undefined;
  #blocked: (() => void)[] = [];

  push(bytes: Uint8Array): void {
    if (this.#ended) throw new Error("Write after end");
    if (bytes.length > 0) this.#chunks.push(bytes.slice());
    this.#wakeReader();
  }

  end(): void {
    this.#ended = true;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Resolves when the reader waits on an empty, open queue. */
  whenBlocked(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#wake !== undefined) resolve();
      else this.#blocked.push(resolve);
    });
  }

  async read(max: number): Promise<Uint8Array | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        for (const notify of this.#blocked.splice(0)) notify();
      });
    }
    const head = this.#chunks[0]!;
    if (head.length <= max) {
      this.#chunks.shift();
      return head;
    }
    this.#chunks[0] = head.subarray(max);
    return head.subarray(0, max);
  }
}

const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 0 };

/** Two ends of an in-memory connection. */
export class MemoryPipe {
  #toServer = new ByteQueue();
  #toClient = new ByteQueue();

  /** The server's end, for the code under test. */
  readonly server: NetConn = {
    read: async (p) => {
      const bytes = await this.#toServer.read(p.length);
      if (bytes === null) return null;
      p.set(bytes);
      return bytes.length;
    },
    write: (p) => {
      this.#toClient.push(p);
      return Promise.resolve(p.length);
    },
    closeWrite: () => {
      this.#toClient.end();
      return Promise.resolve();
    },
    close: () => {
      this.#toClient.end();
      this.#toServer.end();
    },
    localAddr: ADDR,
    remoteAddr: ADDR,
  };

  /** Send bytes to the server. */
  send(bytes: Uint8Array): void {
    this.#toServer.push(bytes);
  }

  /** End what the client sends. */
  end(): void {
    this.#toServer.end();
  }

  /** Up to `n` bytes from the server: fewer only when it closed. */
  async recv(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const bytes = await this.#toClient.read(n - got);
      if (bytes === null) break;
      out.set(bytes, got);
      got += bytes.length;
    }
    return out.subarray(0, got);
  }

  /** Resolves once the server waits for more input on an empty queue. */
  serverBlocked(): Promise<void> {
    return this.#toServer.whenBlocked();
  }
}
