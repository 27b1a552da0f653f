// Copyright the ptkit authors. MIT license.
// Helpers for the UDP tests.

import { UdpSocket } from "@ptkit/ptkit/udp";
import type { Clock } from "../udp/_clock.ts";
import { defineTransport, type Transport } from "@ptkit/ptkit/transports";

/** A clock that moves only when told to; timers fire from `advance`. */
export class ManualClock implements Clock {
  #now = 1_000_000;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #nextId = 1;

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + ms, callback });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }

  /** Move time forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    while (true) {
      let next: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= target && (next === undefined || entry[1].at < next[1].at)) {
          next = entry;
        }
      }
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].callback();
    }
    this.#now = target;
  }

  /** Timers still pending. */
  get pending(): number {
    return this.#timers.size;
  }
}

/** A deterministic pseudo-random generator (mulberry32). */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Wait until `condition` holds, polling. Not a timing assertion: the limit
 * only turns a hang into a failure that says what was awaited.
 */
export async function waitFor(
  condition: () => boolean,
  what: string,
  limitMs = 30_000,
): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > limitMs) throw new Error(`Gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A UDP echo server; counts what it received. */
export async function udpEcho(): Promise<UdpSocket & { received: Uint8Array[] }> {
  const socket = await UdpSocket.open({ bufferSize: 8 * 1024 * 1024 }) as UdpSocket & {
    received: Uint8Array[];
  };
  socket.received = [];
  socket.onmessage = (data, from) => {
    socket.received.push(data.slice());
    socket.send(data, from);
  };
  return socket;
}

/** An application socket connected to `to`, collecting what comes back. */
export async function appSocket(
  to: { hostname: string; port: number },
): Promise<UdpSocket & { replies: Uint8Array[] }> {
  const socket = await UdpSocket.open({ connect: to, bufferSize: 4 * 1024 * 1024 }) as
    & UdpSocket
    & { replies: Uint8Array[] };
  socket.replies = [];
  socket.onmessage = (data) => socket.replies.push(data.slice());
  return socket;
}

/**
 * A transport that changes every byte (XOR with a per-direction key stream)
 * and re-cuts chunks at random points, so framing sees other boundaries
 * than the sender's.
 */
export const scramble: Transport = defineTransport({
  name: "scramble",
  parseConfig: () => undefined,
  pair: () => ({ encode: scrambler(), decode: scrambler() }),
});

function scrambler(): TransformStream<Uint8Array, Uint8Array> {
  let position = 0;
  const random = prng(99);
  return new TransformStream({
    transform(chunk, controller) {
      const out = new Uint8Array(chunk.byteLength);
      for (let i = 0; i < chunk.byteLength; i++) {
        out[i] = chunk[i]! ^ ((position++ * 131 + 7) & 0xff);
      }
      let offset = 0;
      while (offset < out.byteLength) {
        const size = Math.max(1, Math.floor(random() * out.byteLength));
        controller.enqueue(out.subarray(offset, offset + size));
        offset += size;
      }
    },
  });
}

/** The kernel's count of UDP datagrams dropped for a full receive buffer (Linux). */
export function udpReceiveBufferErrors(): number {
  try {
    const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) =>
      l.startsWith("Udp:")
    );
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    return Number(values[names.indexOf("RcvbufErrors")]);
  } catch {
    return NaN;
  }
}
