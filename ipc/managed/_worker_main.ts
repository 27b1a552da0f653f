// Copyright the ptkit authors. MIT license.
// Internal: `-workers N`, a child's half (`main.ts --ptkit-worker`). It reads
// its setup line from stdin (see _workers.ts), asks the kernel for SIGTERM
// when its parent dies (prctl PR_SET_PDEATHSIG, Linux, through FFI), joins
// the parent's ports with SO_REUSEPORT and serves with the parent's state in
// memory (it never writes the state directory). What follows on stdin is
// the parent's input; its end stops the child. Its LOG lines are prefixed
// with its number; the parent prints the methods, not the children.

import type { Transport } from "../../transports/transport.ts";
import { MemoryStore } from "../../transports/memory_store.ts";
import { formatPtLine, type PtLine } from "../lines/pt_line.ts";
import { decodeWorkerSetup, encodeWorkerMetrics, MAX_SETUP_LENGTH } from "./_workers.ts";
import { runManaged } from "./_run.ts";

/**
 * Run as a worker child until the parent says stop or goes away.
 *
 * @param registry The transports on offer (the parent's).
 * @returns The exit code: 0, or 64 when the setup cannot be read.
 */
export async function runWorker(registry: ReadonlyMap<string, Transport>): Promise<number> {
  dieWithParent();
  const reader = Deno.stdin.readable.getReader();
  const { line, rest } = await firstLine(reader);
  if (line === undefined) return 64;
  let setup;
  try {
    setup = decodeWorkerSetup(line);
  } catch (error) {
    console.error((error as Error).message);
    return 64;
  }
  // Started after the parent died (prctl came too late): nothing to serve.
  if (Deno.ppid !== setup.parent) return 0;
  const local = new MemoryStore();
  for (const [key, value] of setup.state) await local.set(key, value);
  const prefix = `Worker ${setup.index} of ${setup.count}: `;
  const encoder = new TextEncoder();
  const emit = (line: PtLine) => {
    const out = line.type === "LOG" ? { ...line, message: `${prefix}${line.message}` } : line;
    try {
      Deno.stdout.writeSync(encoder.encode(`${formatPtLine(out)}\n`));
    } catch {
      // The parent is gone; stdin's end stops this worker.
    }
  };
  const stdin = new ReadableStream<Uint8Array>({
    start: (controller) => {
      if (rest.length > 0) controller.enqueue(rest);
    },
    pull: async (controller) => {
      try {
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch {
        controller.close();
      }
    },
  });
  return await runManaged(
    {
      ...setup.config,
      // Only what the parent serves: it told of an unknown transport, or
      // one that could not start, once for all.
      transports: setup.config.transports.filter((name) => setup.listenAt.has(name)),
      workers: 1,
      warnings: [],
      exitOnStdinClose: true,
    },
    {
      emit,
      registry,
      process: true,
      stdin,
      // The parent closes the pipe when it stops (or dies).
      inputEnd: "parent stopping",
      listenAt: setup.listenAt,
      reusePort: true,
      local,
      sharedBy: setup.config.workers ?? 1,
      replaySnapshot: setup.replays ?? "",
      sendReplay: (line) => {
        try {
          let bytes = encoder.encode(line);
          while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
        } catch {
          // The parent is gone; stdin's end stops this worker.
        }
      },
      reportMetrics: (snapshot) => {
        try {
          // One whole line, however the pipe takes it.
          let bytes = encoder.encode(encodeWorkerMetrics(snapshot));
          while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
        } catch {
          // The parent is gone; stdin's end stops this worker.
        }
      },
    },
  );
}

/** The first line of `reader` (without its newline), and the bytes after it. */
async function firstLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<{ line: string | undefined; rest: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { line: undefined, rest: new Uint8Array(0) };
    const newline = value.indexOf(10);
    if (newline < 0) {
      chunks.push(value);
      size += value.length;
      if (size > MAX_SETUP_LENGTH) return { line: undefined, rest: new Uint8Array(0) };
      continue;
    }
    chunks.push(value.subarray(0, newline));
    const bytes = new Uint8Array(size + newline);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    return { line: new TextDecoder().decode(bytes), rest: value.slice(newline + 1) };
  }
}

/** `PR_SET_PDEATHSIG` and SIGTERM on Linux. */
const PR_SET_PDEATHSIG = 1;
const SIGTERM = 15;

/**
 * Ask the kernel for SIGTERM when the parent dies (Linux, `--allow-ffi`).
 * Without it, the end of stdin still stops the worker.
 */
function dieWithParent(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return;
    const libc = Deno.dlopen("libc.so.6", {
      prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
    });
    try {
      libc.symbols.prctl(PR_SET_PDEATHSIG, BigInt(SIGTERM), 0n, 0n, 0n);
    } finally {
      libc.close();
    }
  } catch {
    // No libc.so.6 (musl): stdin's end is enough.
  }
}
