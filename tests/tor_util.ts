// Copyright the ptkit authors. MIT license.
// Helpers for tests that run Debian tor on loopback in temporary directories.

import { childEnv, MAIN } from "./ipc_util.ts";

/** A free loopback TCP port (free when this returns). */
export function freePort(): number {
  using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return l.addr.port;
}

/** A tor process whose stdout log is collected and searchable. */
export class Tor {
  readonly child: Deno.ChildProcess;
  log = "";
  #waiters: (() => void)[] = [];
  #done: Promise<void>;

  constructor(tor: string, torrc: string, env: Record<string, string> = {}) {
    this.child = new Deno.Command(tor, {
      args: ["-f", torrc, "--ignore-missing-torrc"],
      env: childEnv(env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.log += text;
        for (const wake of this.#waiters.splice(0)) wake();
      }
    };
    this.#done = Promise.all([collect(this.child.stdout), collect(this.child.stderr)]).then(
      () => {
        for (const wake of this.#waiters.splice(0)) wake();
      },
    );
  }

  /** Wait until the log matches; fails if tor exits or `limitMs` passes first. */
  async waitFor(pattern: RegExp, limitMs: number): Promise<string> {
    const deadline = Date.now() + limitMs;
    let exited = false;
    this.child.status.then(() => exited = true);
    for (;;) {
      const match = pattern.exec(this.log);
      if (match) return match[0];
      if (exited) throw new Error(`tor exited before ${pattern}:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`tor never logged ${pattern}:\n${this.log}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, 500);
      });
      clearTimeout(timer);
    }
  }

  /** Stop tor (SIGTERM; torrc should set `ShutdownWaitLength 0`). */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await this.child.status;
    await this.#done;
  }
}

/** Pids of processes whose environment names `stateDir` as their PT state. */
export async function ptProcesses(stateDir: string): Promise<number[]> {
  const found: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const environ = await Deno.readTextFile(`/proc/${entry.name}/environ`);
      if (environ.includes(`TOR_PT_STATE_LOCATION=${stateDir}`)) found.push(Number(entry.name));
    } catch {
      // Gone or not ours.
    }
  }
  return found;
}

/** Wait up to 5 s for tor's PTs using `stateDir` to exit; kills and reports leftovers. */
export async function ptLeftovers(stateDir: string): Promise<number[]> {
  let left = await ptProcesses(stateDir);
  for (let i = 0; left.length > 0 && i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = await ptProcesses(stateDir);
  }
  for (const pid of left) Deno.kill(pid, "SIGKILL");
  return left;
}

/**
 * Start a tor bridge in `dir/bridge` (made here, with `dir/client` for the
 * client): ORPort on loopback, no descriptor published, no exits, no SOCKS
 * port, quick shutdown, and one directory authority, on loopback, where
 * nothing listens: a relay otherwise fetches the consensus from the public
 * Tor network's authorities and fallbacks, which a test must never reach
 * (tor then uses none of its built-in ones); `lines` add the transport's
 * settings and logging.
 */
export async function startBridgeTor(
  tor: string,
  dir: string,
  orPort: number,
  lines: readonly string[],
): Promise<Tor> {
  await Deno.mkdir(`${dir}/bridge`, { mode: 0o700 });
  await Deno.mkdir(`${dir}/client`, { mode: 0o700 });
  await Deno.writeTextFile(
    `${dir}/bridge.torrc`,
    [
      `DataDirectory ${dir}/bridge`,
      `ORPort 127.0.0.1:${orPort}`,
      "BridgeRelay 1",
      "PublishServerDescriptor 0",
      "AssumeReachable 1",
      "ExitPolicy reject *:*",
      "SocksPort 0",
      "ShutdownWaitLength 0",
      `DirAuthority loopback orport=9 no-v2 v3ident=${"0".repeat(40)} 127.0.0.1:9 ${
        "0".repeat(39)
      }1`,
      ...lines,
    ].join("\n") + "\n",
  );
  return new Tor(tor, `${dir}/bridge.torrc`);
}

/**
 * Start a tor client in `dir/client` that uses `bridge` (a `Bridge` line's
 * value) through `main.ts` as its `ClientTransportPlugin` for `transport`;
 * `lines` add logging. `env` reaches the PT through tor.
 */
export async function startClientTor(
  tor: string,
  dir: string,
  transport: string,
  bridge: string,
  lines: readonly string[] = ["Log notice stdout"],
  env: Record<string, string> = {},
): Promise<Tor> {
  await Deno.writeTextFile(
    `${dir}/client.torrc`,
    [
      `DataDirectory ${dir}/client`,
      "SocksPort 0",
      "UseBridges 1",
      `Bridge ${bridge}`,
      `ClientTransportPlugin ${transport} exec ${MAIN}`,
      "ShutdownWaitLength 0",
      ...lines,
    ].join("\n") + "\n",
  );
  return new Tor(tor, `${dir}/client.torrc`, env);
}

/**
 * After a bridge and a client made by {@linkcode startBridgeTor} and
 * {@linkcode startClientTor} have stopped: the bridge's PT logged no failed
 * connection, no `main.ts` outlived tor, and `dir` is removed.
 */
export async function assertCleanTorRun(bridge: Tor, dir: string): Promise<void> {
  const failed = bridge.log.split("\n").filter((line) => line.includes("connection failed"));
  if (failed.length > 0) throw new Error(`A PT connection failed:\n${failed.join("\n")}`);
  const left = [
    ...await ptLeftovers(`${dir}/bridge/pt_state`),
    ...await ptLeftovers(`${dir}/client/pt_state`),
  ];
  if (left.length > 0) throw new Error(`main.ts outlived tor: ${left}`);
  await Deno.remove(dir, { recursive: true });
}
