// Copyright the ptkit authors. MIT license.

// Test-only helpers for the live obfs4proxy tests: the managed obfs4proxy
// process, an echo server and a hashing transfer.

import { createHash } from "node:crypto";

/**
 * A drbg seed whose obfs4 length table is [0] alone (found by search over
 * seeds; `distributionValues` confirms it).
 */
export const ZERO_ONLY_SEED: Uint8Array = Uint8Array.from(
  { length: 24 },
  (_, i) => [0x42, 0x05][i] ?? 0,
);

/**
 * A drbg seed whose obfs4 length table is [17] alone: every length it gives
 * is too short to pad to with one packet (found by search over seeds;
 * `distributionValues` confirms it).
 */
export const SMALL_ONLY_SEED: Uint8Array = Uint8Array.from(
  { length: 24 },
  (_, i) => [0xb6, 0x69][i] ?? 0,
);

/**
 * A drbg seed whose obfs4 length table is [2] alone: an IAT-mode 2 writer
 * cuts its bursts into 2-byte writes (found by search over seeds;
 * `distributionValues` confirms it).
 */
export const TINY_ONLY_SEED: Uint8Array = Uint8Array.from(
  { length: 24 },
  (_, i) => [0x75, 0xac, 0x01][i] ?? 0,
);

/** A running managed obfs4proxy. */
export interface ManagedPt {
  /** The METHOD line's fields after the method keyword. */
  readonly method: string[];
  /** The process id. */
  readonly pid: number;
  /** Close stdin, then kill, then wait. */
  stop(): Promise<void>;
  /** What it printed on stderr so far (the last 8 KiB). */
  stderr(): string;
}

/**
 * Start obfs4proxy (or `command`, another managed PT) with the PT environment
 * `env`; wait for `* METHODS DONE`.
 */
export async function startObfs4proxy(
  env: Record<string, string>,
  command: string[] = ["obfs4proxy"],
): Promise<ManagedPt> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command[0]!, {
      args: command.slice(1),
      env: { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_EXIT_ON_STDIN_CLOSE: "1", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw new Error(
      `Cannot run obfs4proxy (install the Debian package 'obfs4proxy'): ${error}`,
    );
  }
  const stdin = child.stdin.getWriter();
  let stderrText = "";
  const stderrDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (text) => void (stderrText = (stderrText + text).slice(-8192)) }),
  ).catch(() => {});
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let method: string[] | undefined;
  // After METHODS DONE the PT's stdout is read on to its end, as tor does: a
  // PT writes a STATUS line per connection, and a pipe nobody reads would
  // stop it (its writes block) once 64 KiB of them were waiting.
  let draining: Promise<void> | undefined;
  const drain = () =>
    draining ??= (async () => {
      try {
        for (;;) if ((await lines.read()).done) return;
      } catch {
        // The pipe broke: the process is gone.
      }
    })();
  const stop = async () => {
    await stdin.close().catch(() => {});
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited on stdin close.
    }
    await Promise.all([drain(), child.status, stderrDone]);
  };
  try {
    while (method === undefined || !/METHODS DONE/.test(text)) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`obfs4proxy exited early; output: ${text}`);
      text += value;
      const m = text.match(/^[SC]METHOD obfs4 (.*)$/m);
      if (m) method = m[1]!.split(" ");
      if (/^[SC]METHOD-ERROR|^ENV-ERROR|^VERSION-ERROR/m.test(text)) {
        throw new Error(`obfs4proxy refused: ${text}`);
      }
    }
  } catch (error) {
    await stop();
    throw error;
  }
  drain();
  return { method, stop, pid: child.pid, stderr: () => stderrText };
}

/** A port that was free a moment ago. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

/** A TCP echo server with half-close; `close` stops it and its connections. */
export function startEcho(): { addr: Deno.NetAddr; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await conn.write(buf.subarray(off, n));
      }
      await conn.closeWrite();
    } catch {
      // Peer went away.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed.
      }
    }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        const t = serve(conn);
        tasks.add(t);
        t.finally(() => tasks.delete(t));
      }
    } catch {
      // Listener closed.
    }
  })();
  return {
    addr: listener.addr as Deno.NetAddr,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed.
        }
      }
      await loop;
      await Promise.all(tasks);
    },
  };
}

/**
 * Send `size` random bytes on `writable` while reading them back (SHA-256 of
 * both). The write side is closed only once everything came back, because
 * obfs4proxy closes both directions at the first EOF.
 */
export async function echoTransfer(
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  size: number,
  chunk = 65536,
): Promise<{ sent: string; received: string; receivedBytes: number }> {
  const sentHash = createHash("sha256");
  const receivedHash = createHash("sha256");
  const writer = conn.writable.getWriter();
  const writing = (async () => {
    for (let off = 0; off < size; off += chunk) {
      const data = crypto.getRandomValues(new Uint8Array(Math.min(chunk, size - off)));
      sentHash.update(data);
      await writer.write(data);
    }
  })();
  // If the read below fails (the peer reset mid-transfer), `writing` is never
  // awaited; its rejection then would be unhandled and end the whole test
  // file. The handler marks it handled; `await writing` still throws.
  writing.catch(() => {});
  let receivedBytes = 0;
  const reader = conn.readable.getReader();
  while (receivedBytes < size) {
    const { value, done } = await reader.read();
    if (done) break;
    receivedHash.update(value);
    receivedBytes += value.length;
  }
  await writing;
  await writer.close();
  reader.releaseLock();
  return { sent: sentHash.digest("hex"), received: receivedHash.digest("hex"), receivedBytes };
}

/** Wrap a Deno.Conn as readable/writable with half-close on writable close. */
export function connStreams(conn: Deno.Conn): {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
} {
  return {
    readable: new ReadableStream<Uint8Array>({
      async pull(controller) {
        const buf = new Uint8Array(65536);
        const n = await conn.read(buf);
        if (n === null) controller.close();
        else controller.enqueue(buf.subarray(0, n));
      },
    }),
    writable: new WritableStream<Uint8Array>({
      async write(data) {
        let off = 0;
        while (off < data.length) off += await conn.write(data.subarray(off));
      },
      close: () => conn.closeWrite(),
    }),
  };
}
