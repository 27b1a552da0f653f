// Copyright the ptkit authors. MIT license.
// Helpers for the hardening tests: connection floods from Node.js (it can
// reset a socket; Deno cannot set SO_LINGER), file descriptor limits, and
// the servers' "good connection" checks.

import { ok } from "node:assert";
import { requireBinary } from "./ipc_util.ts";

const FLOOD = new URL("./conn_flood.mjs", import.meta.url).pathname;

/** What `conn_flood.mjs` reports. */
export interface FloodSummary {
  connected: number;
  failed: number;
  closed: number;
  open: number;
  ms: number;
}

/** Node.js, or fail naming the Debian package. */
export function node(): string {
  return requireBinary("node", "nodejs");
}

/** `prlimit`, or fail naming the Debian package. */
export function prlimit(): string {
  return requireBinary("prlimit", "util-linux");
}

function lastJson(stdout: Uint8Array): FloodSummary {
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  return JSON.parse(lines.at(-1)!.replace(/^ready /, ""));
}

/**
 * Open `count` connections to `port` and reset each (SO_LINGER {on, 0}) as
 * soon as it is connected. With `sync`, the calling process is blocked
 * meanwhile, so that a listener in this process cannot accept any of them
 * before they are reset.
 */
export async function resetConnections(
  port: number,
  count: number,
  options: { sync?: boolean; hostname?: string } = {},
): Promise<FloodSummary> {
  const command = new Deno.Command(node(), {
    args: [FLOOD, "reset", options.hostname ?? "127.0.0.1", String(port), String(count)],
    stdout: "piped",
    stderr: "inherit",
  });
  const output = options.sync ? command.outputSync() : await command.output();
  ok(output.success, "conn_flood.mjs reset failed");
  return lastJson(output.stdout);
}

/** Reset connections to `port` as fast as this machine manages, for `ms`. */
export async function floodResets(port: number, ms: number): Promise<FloodSummary> {
  const output = await new Deno.Command(node(), {
    args: [FLOOD, "flood", "127.0.0.1", String(port), String(ms), "200"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  ok(output.success, "conn_flood.mjs flood failed");
  return lastJson(output.stdout);
}

/** Connections held open by a Node.js process until `close()`. */
export interface Holder extends AsyncDisposable {
  /** Counts once every connection is connected or failed. */
  readonly ready: Promise<FloodSummary>;
  /** Counts now (after `ready`). */
  status(): Promise<FloodSummary>;
  /** Close every connection; resolves with the final counts. */
  close(): Promise<FloodSummary>;
}

/**
 * Open `count` idle connections to `port` from `localAddress` and hold them,
 * in a process whose file descriptor limit allows it.
 */
export function holdConnections(port: number, count: number, localAddress = "127.0.0.1"): Holder {
  const child = new Deno.Command(prlimit(), {
    args: [`--nofile=${count + 1024}`, node(), FLOOD, "hold", "127.0.0.1", String(port)]
      .concat([String(count), localAddress]),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const newline = buffer.indexOf("\n");
      if (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`conn_flood.mjs hold ended early: ${buffer}`);
      buffer += value;
    }
  };
  const ready = nextLine().then((line) => {
    ok(line.startsWith("ready "), line);
    return JSON.parse(line.slice(6)) as FloodSummary;
  });
  const stdin = child.stdin.getWriter();
  const status = async () => {
    await ready;
    await stdin.write(new TextEncoder().encode("\n"));
    const line = await nextLine();
    ok(line.startsWith("status "), line);
    return JSON.parse(line.slice(7)) as FloodSummary;
  };
  let closing: Promise<FloodSummary> | undefined;
  const close = () => {
    closing ??= (async () => {
      await ready.catch(() => {});
      await stdin.close().catch(() => {});
      const summary = JSON.parse(await nextLine()) as FloodSummary;
      await child.status;
      lines.releaseLock();
      await child.stdout.cancel().catch(() => {});
      return summary;
    })();
    return closing;
  };
  return { ready, status, close, [Symbol.asyncDispose]: async () => void await close() };
}

/** Send `bytes` on a fresh TCP connection and read as many back (an echo check). */
export async function tcpEcho(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes);
    const got = new Uint8Array(bytes.length);
    let offset = 0;
    while (offset < got.length) {
      const n = await conn.read(got.subarray(offset));
      if (n === null) break;
      offset += n;
    }
    return got.subarray(0, offset);
  } finally {
    conn.close();
  }
}

/** Stop a process (SIGSTOP) while `work` runs, then let it go on (SIGCONT). */
export async function whileStopped<T>(pid: number, work: () => Promise<T>): Promise<T> {
  Deno.kill(pid, "SIGSTOP");
  try {
    return await work();
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
}

/** Resolve within `ms` or reject naming `what`; returns the time taken in ms. */
export async function within<T>(ms: number, what: string, work: () => Promise<T>): Promise<number> {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const task = work();
  task.catch(() => {}); // Reported by the race below.
  try {
    await Promise.race([
      task,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - start;
}

/**
 * How many established TCP connections a server on `port` has from
 * `remote` (an IPv4 address), counted by the kernel (/proc/net/tcp):
 * accepted, or waiting to be.
 */
export async function serverConnections(port: number, remote: string): Promise<number> {
  const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, "0");
  const remoteHex = remote.split(".").map(Number).reverse().map((b) => hex(b, 2)).join("");
  const local = `:${hex(port, 4)}`;
  let count = 0;
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const [, localAddress, remoteAddress, state] = line.trim().split(/\s+/);
    if (state === "01" && localAddress?.endsWith(local) && remoteAddress?.startsWith(remoteHex)) {
      count++;
    }
  }
  return count;
}
