// Copyright the ptkit authors. MIT license.
// Acceptance (f): Debian tor launches main.ts as its ClientTransportPlugin
// and bootstraps through it: tor client -> main.ts (plain, SOCKS) -> ptkit
// proxy (in this process) -> a second tor running as a bridge relay.

import { ok } from "node:assert";
import { proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { childEnv, MAIN, requireBinary } from "./ipc_util.ts";

function freePort(): number {
  using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return l.addr.port;
}

/** A tor process whose stdout log is collected and searchable. */
class Tor {
  readonly child: Deno.ChildProcess;
  log = "";
  #waiters: (() => void)[] = [];
  #done: Promise<void>;

  constructor(tor: string, torrc: string) {
    this.child = new Deno.Command(tor, {
      args: ["-f", torrc, "--ignore-missing-torrc"],
      env: childEnv(),
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

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    // Tor waits ShutdownWaitLength (set to 0 below) before exiting.
    await this.child.status;
    await this.#done;
  }
}

/** Pids of processes whose environment names `stateDir` as their PT state. */
async function ptProcesses(stateDir: string): Promise<number[]> {
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

Deno.test({
  name: "main.ts bootstraps Debian tor through a plain bridge",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    const torBinary = requireBinary("tor", "tor");
    const dir = await Deno.makeTempDir({ prefix: "ptkit_tor_" });
    const orPort = freePort();
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
        "Log notice stdout",
      ].join("\n") + "\n",
    );
    const bridge = new Tor(torBinary, `${dir}/bridge.torrc`);
    let client: Tor | undefined;
    await using front = await proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: orPort },
    });
    try {
      await bridge.waitFor(/Opening OR listener on 127\.0\.0\.1:[0-9]+|Bootstrapped 100%/, 60000);
      await Deno.writeTextFile(
        `${dir}/client.torrc`,
        [
          `DataDirectory ${dir}/client`,
          "SocksPort 0",
          "UseBridges 1",
          `Bridge plain 127.0.0.1:${front.addr.port}`,
          `ClientTransportPlugin plain exec ${MAIN}`,
          "ShutdownWaitLength 0",
          "Log notice stdout",
          "Log info file " + `${dir}/client.info.log`,
        ].join("\n") + "\n",
      );
      client = new Tor(torBinary, `${dir}/client.torrc`);
      const line = await client.waitFor(
        /Bootstrapped (1[0-9]|[2-9][0-9]|100)% \([a-z_]+\)/,
        120000,
      );
      console.log(`client tor: ${line}`);
      ok(front.stats().connectionsAccepted >= 1, "tor did not go through the ptkit proxy");
      // Tor's info log shows it spoke to main.ts with the expected lines.
      const info = await Deno.readTextFile(`${dir}/client.info.log`);
      ok(/Got a line from managed proxy '.*main\.ts': \(VERSION 1\)/.test(info), info);
      ok(/CMETHOD plain socks5 127\.0\.0\.1:[0-9]+/.test(info));
    } finally {
      await client?.stop();
      await bridge.stop();
    }
    // Tor closed main.ts's stdin on exit; main.ts must be gone.
    const state = `${dir}/client/pt_state`;
    let left = await ptProcesses(state);
    for (let i = 0; left.length > 0 && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = await ptProcesses(state);
    }
    for (const pid of left) Deno.kill(pid, "SIGKILL");
    ok(left.length === 0, `main.ts outlived tor: ${left}`);
    await Deno.remove(dir, { recursive: true });
  },
});
