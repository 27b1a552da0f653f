// Copyright the ptkit authors. MIT license.
// Helpers for the ipc tests: spawning main.ts and reading its protocol lines.

import { ok } from "node:assert";

/** Absolute path of main.ts (exec'd by path, as tor does). */
export const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** A variant of main.ts whose registry adds the `echo` test transport. */
export const ECHO_MAIN = new URL("./ipc_echo_main.ts", import.meta.url).pathname;

/** The environment a child gets: nothing inherited but PATH and HOME. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  for (const name of ["HOME", "DENO_DIR", "NO_COLOR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

let cachedDenoDir: string | undefined;

/**
 * Deno's cache directory as this Deno finds it (`deno info --json`:
 * DENO_DIR, else XDG_CACHE_HOME, HOME or the password database's home), for
 * a child given another HOME. `$HOME/.cache/deno` was a guess that a test
 * run without HOME turned into a relative `undefined/.cache/deno`: the
 * child filled a new cache inside the checkout.
 */
export function denoDir(): string {
  if (cachedDenoDir !== undefined) return cachedDenoDir;
  const out = new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  ok(out.success, `deno info --json failed: ${new TextDecoder().decode(out.stderr)}`);
  const dir = JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
  ok(typeof dir === "string" && dir.startsWith("/"), `deno info gave denoDir ${dir}`);
  return cachedDenoDir = dir;
}

/** Every line a PT may print on stdout. */
export const PROTOCOL_LINE =
  /^(VERSION|VERSION-ERROR|ENV-ERROR|PROXY|PROXY-ERROR|CMETHOD|CMETHOD-ERROR|CMETHODS|SMETHOD|SMETHOD-ERROR|SMETHODS|LOG|STATUS|CMESSAGE|SMESSAGE)( [\x20-\x7e]*)?$/;

/** Check that stdout holds only protocol lines, each newline-terminated. */
export function assertProtocolOnly(stdout: string): string[] {
  if (stdout === "") return [];
  ok(stdout.endsWith("\n"), `stdout does not end with a newline: ${JSON.stringify(stdout)}`);
  const lines = stdout.slice(0, -1).split("\n");
  for (const line of lines) {
    ok(PROTOCOL_LINE.test(line), `Not a protocol line: ${JSON.stringify(line)}`);
  }
  return lines;
}

/** A running PT child whose stdout is read line by line. */
export class PtProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #stderr: Promise<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;

  constructor(
    args: string[],
    env: Record<string, string>,
    options: { program?: string; stdin?: "piped" | "null" } = {},
  ) {
    this.child = new Deno.Command(options.program ?? MAIN, {
      args,
      env: childEnv(env),
      clearEnv: true,
      stdin: options.stdin ?? "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if ((options.stdin ?? "piped") === "piped") this.#stdin = this.child.stdin.getWriter();
    this.#reader = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stderr = new Response(this.child.stderr).text();
  }

  /**
   * Read stdout until a line matching `pattern` (from line `from` on: 0, the
   * first line printed); returns it.
   */
  async waitFor(pattern: RegExp, from = 0): Promise<string> {
    for (;;) {
      const found = this.lines.find((l, i) => i >= from && pattern.test(l));
      if (found !== undefined) return found;
      const newline = this.#buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        ok(PROTOCOL_LINE.test(line), `Not a protocol line: ${JSON.stringify(line)}`);
        this.lines.push(line);
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) {
        throw new Error(
          `PT exited before printing ${pattern}; stdout: ${JSON.stringify(this.lines)}; ` +
            `stderr: ${await this.#stderr}`,
        );
      }
      this.#buffer += value;
    }
  }

  /** The address of the CMETHOD line of `name`. */
  async cmethod(name: string, mode = "socks5"): Promise<{ hostname: string; port: number }> {
    const line = await this.waitFor(new RegExp(`^CMETHOD(-ERROR)? ${name} `));
    ok(
      line.startsWith(`CMETHOD ${name} ${mode} `),
      `expected CMETHOD ${name} ${mode}, got ${line}`,
    );
    const [hostname, port] = line.split(" ")[3]!.split(":");
    await this.waitFor(/^CMETHODS DONE$/);
    return { hostname: hostname!, port: Number(port) };
  }

  /** Write text (lines, newline included) to the child's stdin. */
  async write(text: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(text));
  }

  /** Close the child's stdin. */
  async closeStdin(): Promise<void> {
    if (this.#stdin === undefined) return;
    const writer = this.#stdin;
    this.#stdin = undefined;
    await writer.close().catch(() => {});
  }

  /** Wait for exit; returns the code, the rest of stdout and stderr. */
  async exit(): Promise<{ code: number; stdout: string; stderr: string; lines: string[] }> {
    let rest = this.#buffer;
    for (;;) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      rest += value;
    }
    this.#buffer = "";
    const more = assertProtocolOnly(rest);
    this.lines.push(...more);
    const status = await this.child.status;
    return { code: status.code, stdout: rest, stderr: await this.#stderr, lines: this.lines };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.closeStdin();
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.exit().catch(() => {});
  }
}

/** Read from a connection until `n` bytes or end of stream. */
export async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    const count = await conn.read(out.subarray(offset));
    if (count === null) break;
    offset += count;
  }
  return out.subarray(0, offset);
}

/** Read a connection until it ends (or errors). */
export async function readAll(conn: Deno.Conn, limit = 1 << 20): Promise<Uint8Array> {
  const chunks: number[] = [];
  const buffer = new Uint8Array(16384);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(...buffer.subarray(0, n));
      if (chunks.length > limit) break;
    }
  } catch {
    // Reset counts as the end.
  }
  return new Uint8Array(chunks);
}

/** Fail with the Debian package name when a binary is missing. */
export function requireBinary(binary: string, pkg: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      Deno.statSync(`${dir}/${binary}`);
      return `${dir}/${binary}`;
    } catch {
      // Not here.
    }
  }
  throw new Error(`${binary} not found: install the Debian package '${pkg}'`);
}

/** Wait until something accepts TCP connections on 127.0.0.1:`port` (at most 5 s). */
export async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  throw new Error(`Nothing listens on port ${port}`);
}

/** microsocks on a free port with one user; stop it with `kill`. */
export async function startMicrosocks(
  user: string,
  password: string,
): Promise<{ port: number; kill(): Promise<void> }> {
  const microsocks = requireBinary("microsocks", "microsocks");
  const port = (() => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return listener.addr.port;
  })();
  const process = new Deno.Command(microsocks, {
    args: ["-i", "127.0.0.1", "-p", String(port), "-u", user, "-P", password],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitListening(port);
  return {
    port,
    async kill() {
      process.kill("SIGTERM");
      await process.status;
    },
  };
}

/** Pids whose parent is `pid` (Linux, from /proc). */
export async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      // The command name may hold spaces: fields start after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) found.push(Number(entry.name));
    } catch {
      // Gone.
    }
  }
  return found;
}

/** A TCP echo service that counts the connections it accepted. */
export function countingEcho(): {
  addr: Deno.NetAddr;
  accepted: () => number;
  close(): Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const conns = new Set<Deno.Conn>();
  const loop = (async () => {
    const tasks: Promise<void>[] = [];
    for await (const conn of listener) {
      accepted++;
      conns.add(conn);
      tasks.push((async () => {
        const buffer = new Uint8Array(4096);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            await conn.write(buffer.subarray(0, n));
          }
          await conn.closeWrite();
          await conn.read(buffer);
        } catch {
          // Reset.
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        }
      })());
    }
    await Promise.all(tasks);
  })();
  return {
    addr: listener.addr,
    accepted: () => accepted,
    close: async () => {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await loop;
    },
  };
}
