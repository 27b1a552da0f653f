// Copyright the ptkit authors. MIT license.
// Shared test helpers: deterministic data, hashing, and real TCP peers.

import { createHash } from "node:crypto";
import { type Connector, createConnector } from "../client.ts";
import { listen } from "../server.ts";
import type { TransportListener } from "../net/transport_listener.ts";
import { MemoryStore, type Transport, type TransportOptions } from "../transports/mod.ts";

/** A deterministic pseudo-random chunk generator (xorshift32), `total` bytes. */
export function* pseudoRandomChunks(
  total: number,
  seed: number,
  chunkSize = 64 * 1024,
): Generator<Uint8Array> {
  let x = seed >>> 0 || 1;
  for (let sent = 0; sent < total; sent += chunkSize) {
    const size = Math.min(chunkSize, total - sent);
    const chunk = new Uint8Array(size);
    const words = new Uint32Array(chunk.buffer, 0, size >>> 2);
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    yield chunk;
  }
}

/** SHA-256 hex of a sequence of chunks. */
export function hashOf(chunks: Iterable<Uint8Array>): string {
  const hash = createHash("sha256");
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest("hex");
}

/** Hashes chunks as they come. */
export class Hasher {
  #hash = createHash("sha256");
  bytes = 0;
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.bytes += chunk.byteLength;
  }
  digest(): string {
    return this.#hash.digest("hex");
  }
}

/** Write chunks to a WritableStream, then close it. */
export async function writeAll(
  writable: WritableStream<Uint8Array>,
  chunks: Iterable<Uint8Array>,
): Promise<void> {
  const writer = writable.getWriter();
  for (const chunk of chunks) await writer.write(chunk);
  await writer.close();
}

/** Read a ReadableStream to its end, hashing it. */
export async function hashReadable(readable: ReadableStream<Uint8Array>): Promise<Hasher> {
  const hasher = new Hasher();
  for await (const chunk of readable) hasher.update(chunk);
  return hasher;
}

/** Write chunks to a Deno.Conn with write(), then half-close it. */
export async function connWriteAll(conn: Deno.Conn, chunks: Iterable<Uint8Array>): Promise<void> {
  for (const chunk of chunks) {
    let offset = 0;
    while (offset < chunk.byteLength) offset += await conn.write(chunk.subarray(offset));
  }
  await conn.closeWrite();
}

/** Read a Deno.Conn with read() to end of stream, hashing it. */
export async function connHash(conn: Deno.Conn): Promise<Hasher> {
  const hasher = new Hasher();
  const buffer = new Uint8Array(64 * 1024);
  let n: number | null;
  while ((n = await conn.read(buffer)) !== null) hasher.update(buffer.subarray(0, n));
  return hasher;
}

/** A TCP server on loopback that runs `handle` for every connection. */
export function tcpServer(handle: (conn: Deno.Conn) => Promise<void>): {
  port: number;
  accepted: () => number;
  close: () => Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks = new Set<Promise<void>>();
  let accepted = 0;
  const loop = (async () => {
    for await (const conn of listener) {
      accepted++;
      const task = handle(conn).catch(() => {}).finally(() => {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      });
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })();
  return {
    port: listener.addr.port,
    accepted: () => accepted,
    close: async () => {
      listener.close();
      await loop.catch(() => {});
      await Promise.allSettled(tasks);
    },
  };
}

/** A TCP echo server on loopback (echoes, half-closes after the client does). */
export function echoServer(): ReturnType<typeof tcpServer> {
  return tcpServer(async (conn) => {
    const buffer = new Uint8Array(64 * 1024);
    let n: number | null;
    while ((n = await conn.read(buffer)) !== null) {
      let offset = 0;
      while (offset < n) offset += await conn.write(buffer.subarray(offset, n));
    }
    await conn.closeWrite();
  });
}

/**
 * `promise`, or a rejection naming `what` if it has not settled within
 * `limitMs`. A hang guard, not a timing check: the limit is far above what
 * the awaited step takes, and only turns a missing deadline or bound into a
 * failure instead of a test that never ends.
 */
export function guarded<T>(promise: Promise<T>, what: string, limitMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Still waiting for ${what}`)), limitMs);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/**
 * Write `wire` and read `total` bytes back from `decoded`; also how many had
 * been read when a timer set at the write's start ran (-1: it never did
 * before the end), to tell a decoder that gives the event loop turns.
 */
export async function bytesBeforeTimer(
  write: () => Promise<void>,
  decoded: ReadableStreamDefaultReader<Uint8Array>,
  total: number,
): Promise<{ got: number; atTimer: number }> {
  let got = 0;
  const reading = (async () => {
    while (got < total) {
      const { value, done } = await decoded.read();
      if (done) break;
      got += value.length;
    }
  })();
  let atTimer = -1;
  setTimeout(() => atTimer = got, 0);
  await write();
  await reading;
  return { got, atTimer };
}

/**
 * A transport's server on a free loopback port (its state in memory) and a
 * connector to it, given what the server tells clients besides `config`;
 * both closed on dispose.
 */
export async function loopbackEnds(transport: Transport, config: TransportOptions): Promise<
  { listener: TransportListener; connector: Connector } & AsyncDisposable
> {
  const listener = await listen(transport, config, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
  });
  // A Shadowsocks client knows the password besides what the server tells.
  const connector = await createConnector(transport, { ...config, ...listener.clientOptions });
  return {
    listener,
    connector,
    async [Symbol.asyncDispose]() {
      await connector.close();
      await listener.close();
    },
  };
}

/**
 * The TCP timer of this machine's one established IPv4 socket whose peer
 * is loopback port `port` (/proc/net/tcp: 2 is a keepalive, `ticks` in
 * 1/100 s), once a keepalive is armed on it, or what it has after 10 s.
 * ptkit sets a dialed connection's keepalive in the task after the dial.
 */
export async function clientTimerTo(port: number): Promise<{ timer: number; ticks: number }[]> {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  const read = async () => {
    const found = [];
    for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // The client's end: its peer is `port`, state established.
      if (fields[2]?.endsWith(`:${hex}`) && fields[3] === "01") {
        const [tr, when] = fields[5]!.split(":");
        found.push({ timer: Number(tr), ticks: parseInt(when!, 16) });
      }
    }
    return found;
  };
  let timers = await read();
  for (let i = 0; i < 50 && !(timers.length === 1 && timers[0]!.timer === 2); i++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    timers = await read();
  }
  return timers;
}

/**
 * The bytes `Uint8Array.prototype.set` copies while `run` runs (and the
 * value it settles with): how often a parser joins what it held with what
 * came, the cost a peer sending one byte per read drives up.
 */
export async function bytesCopiedBy<T>(
  run: () => Promise<T> | T,
): Promise<{ copied: number; value: T }> {
  let copied = 0;
  const set = Uint8Array.prototype.set;
  Uint8Array.prototype.set = function (
    this: Uint8Array,
    source: ArrayLike<number>,
    offset?: number,
  ) {
    copied += source.length;
    return set.call(this, source, offset);
  } as typeof set;
  try {
    const value = await run();
    return { copied, value };
  } finally {
    Uint8Array.prototype.set = set;
  }
}
