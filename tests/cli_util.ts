// Copyright the ptkit authors. MIT license.
// Helpers for tests of the friendly CLI: a child whose plain-text stdout is
// searchable, and a tiny HTTP server that counts its connections.

import { runCli } from "../ipc/cli/_commands.ts";
import { childEnv, childrenOf } from "./ipc_util.ts";

/**
 * Run `main.ts <args>` in this process (runCli, no environment) until its
 * output includes `until`, then stop it as Ctrl-C would; without `until`,
 * until it ends. Its exit code and output.
 */
export async function runUntil(
  args: string[],
  until?: string,
): Promise<{ code: number; out: string; err: string }> {
  const stop = new AbortController();
  let out = "";
  let err = "";
  const code = await runCli(args, {
    stdout: (t) => {
      out += t;
      if (until !== undefined && out.includes(until)) stop.abort();
    },
    stderr: (t) => err += t,
    getEnv: () => undefined,
    process: false,
    signal: stop.signal,
  });
  return { code, out, err };
}

/** A child process whose stdout and stderr are collected as text. */
export class TextProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  #waiters: (() => void)[] = [];
  #ended = false;
  #done: Promise<void>;

  constructor(program: string, args: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(program, {
      args,
      env: childEnv(env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this[key] += text;
        for (const wake of this.#waiters.splice(0)) wake();
      }
    };
    this.#done = Promise.all([
      collect(this.child.stdout, "stdout"),
      collect(this.child.stderr, "stderr"),
    ]).then(() => {
      this.#ended = true; // Before the waiters wake: they look at it.
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** Resolves once stdout and stderr have ended. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Wait until stdout matches `pattern` (fails if the child's output ends first). */
  async waitFor(pattern: RegExp): Promise<RegExpExecArray> {
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match) return match;
      if (this.#ended) {
        throw new Error(`Output ended before ${pattern}:\n${this.stdout}\n${this.stderr}`);
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /**
   * Send SIGINT and wait for the exit code. A descendant that outlives the
   * child (`deno task` gone, its `main.ts` left running) would hold the
   * output pipes open for good: after {@linkcode ORPHAN_WAIT_MS} it is
   * killed and the call fails, naming it, instead of waiting forever.
   */
  async interrupt(): Promise<number> {
    const family = await descendants(this.child.pid);
    this.child.kill("SIGINT");
    const status = await this.child.status;
    await this.#outputEnds(family);
    return status.code;
  }

  async #outputEnds(family: number[]): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      this.#done.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ORPHAN_WAIT_MS)),
    ]);
    clearTimeout(timer);
    if (ended) return;
    const left = [];
    for (const pid of family) {
      const command = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => undefined);
      if (command === undefined) continue;
      left.push(`${pid} ${command.replaceAll("\0", " ").trim()}`);
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    await this.#done;
    throw new Error(
      `The child exited, but its output stayed open ${ORPHAN_WAIT_MS} ms: left running (now killed): ${
        left.join("; ") || "none found"
      }`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const family = await descendants(this.child.pid);
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.child.status;
    for (const pid of family) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    }
    await this.#done;
  }
}

/** How long output may stay open after the child exits (its descendants' pipes). */
const ORPHAN_WAIT_MS = 30_000;

/** The processes descending from `pid`, from /proc (children first). */
async function descendants(pid: number): Promise<number[]> {
  // A for-of over an array also visits what is pushed onto it meanwhile.
  const family = [pid];
  for (const parent of family) family.push(...await childrenOf(parent));
  return family.slice(1);
}

/** A minimal HTTP/1.0 server on loopback that counts connections. */
export class CountingHttpServer implements AsyncDisposable {
  readonly listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  connections = 0;
  #loop: Promise<void>;

  constructor(readonly body: string) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.connections++;
        try {
          const buffer = new Uint8Array(4096);
          let head = "";
          while (!head.includes("\r\n\r\n")) {
            const n = await conn.read(buffer);
            if (n === null) break;
            head += new TextDecoder().decode(buffer.subarray(0, n));
          }
          await conn.write(
            new TextEncoder().encode(
              `HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
            ),
          );
        } catch {
          // Client went away.
        } finally {
          conn.close();
        }
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.listener.close();
    await this.#loop;
  }
}

/** Run curl and return its exit code, stdout and stderr. */
export async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command("curl", {
    args: ["-sS", "-m", "20", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    out: new TextDecoder().decode(output.stdout),
    err: new TextDecoder().decode(output.stderr),
  };
}
