// Copyright the ptkit authors. MIT license.
// Free mode against socks mode, through main.ts as a standalone client and
// server (two processes, `plain`), on the same run. Socks mode: the
// application's SOCKS5 CONNECT names the PT server, which relays to its
// fixed target (the sink). Free mode: the client sends every connection to
// the server (`-free -target`) and the application's destination (the sink)
// travels inside the transport to the server's embedded SOCKS5 target. The
// bytes take the same hops; the goal is free mode within 5% of socks mode.
// Besides the throughput (wall clock, which on a 2-core machine running four
// busy processes moves 10-15% between runs), the CPU seconds the client and
// server processes spend per GiB in each mode: the cost the issue is about
// (a copy or a wrap more per chunk), and steadier than the wall clock.

import { socks5Connect } from "../tests/obfs4_socks5.ts";
import { spawnUntil, stop } from "./ipc_bench.ts";
import { childPids, cpuSeconds } from "./_cpu.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ENV = {
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  HOME: Deno.env.get("HOME") ?? "/root",
};

/** The port of the first `CMETHOD`/`SMETHOD` line of `plain`. */
function methodPort(lines: string[], keyword: "CMETHOD" | "SMETHOD"): number {
  const line = lines.find((l) => l.startsWith(`${keyword} plain `))!;
  return Number(line.split(" ")[keyword === "CMETHOD" ? 3 : 2]!.split(":").pop());
}

interface Pair {
  /** Open an application connection to the sink through the pair. */
  connect(): Promise<Deno.Conn>;
  /** CPU seconds used so far by the client and server processes (with the server's workers). */
  cpu(): number;
  close(): Promise<void>;
}

async function startPair(free: boolean, sinkPort: number, state: string): Promise<Pair> {
  const server = await spawnUntil(
    MAIN,
    free
      ? ["-server", "-transports", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", "socks"]
        .concat(["-allow", "loopback", "-state", state])
      : ["-server", "-transports", "plain", "-bindaddr", "plain-127.0.0.1:0"]
        .concat(["-target", `127.0.0.1:${sinkPort}`, "-state", state]),
    ENV,
    /^SMETHODS DONE/,
  );
  const serverPort = methodPort(server.lines, "SMETHOD");
  const client = await spawnUntil(
    MAIN,
    ["-client", "-transports", "plain", "-state", state].concat(
      free ? ["-free", "-target", `127.0.0.1:${serverPort}`] : [],
    ),
    ENV,
    /^CMETHODS DONE/,
  );
  const socksPort = methodPort(client.lines, "CMETHOD");
  const destination = { hostname: "127.0.0.1", port: free ? sinkPort : serverPort };
  return {
    connect: () => socks5Connect({ hostname: "127.0.0.1", port: socksPort }, destination),
    cpu: () =>
      [client.child.pid, server.child.pid, ...childPids(server.child.pid)]
        .reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    close: async () => {
      await stop(client.child);
      await stop(server.child);
    },
  };
}

/**
 * Run the section: best of `2 * rounds` uploads through each mode, the
 * two modes alternating so that both see the same machine load.
 */
export async function freeBench(
  upload: (conn: Deno.Conn) => Promise<number>,
  sinkPort: number,
  rounds: number,
  row: (name: string, value: number, unit: string, base: number) => void,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "ptkit-bench-free-" });
  const socks = await startPair(false, sinkPort, state);
  const free = await startPair(true, sinkPort, state);
  try {
    let bestSocks = 0;
    let bestFree = 0;
    // CPU seconds and bytes per mode, over all rounds.
    const used = { socks: { cpu: 0, bytes: 0 }, free: { cpu: 0, bytes: 0 } };
    // Twice the rounds of the other sections, in ABBA order: on a shared
    // machine a neighbour's burst then hurts both modes alike.
    for (let i = 0; i < 2 * rounds; i++) {
      const order = i % 2 === 0 ? [false, true] : [true, false];
      for (const isFree of order) {
        const pair = isFree ? free : socks;
        const conn = await pair.connect();
        const [cpuBefore, start] = [pair.cpu(), performance.now()];
        const rate = await upload(conn);
        const tally = isFree ? used.free : used.socks;
        tally.cpu += pair.cpu() - cpuBefore;
        tally.bytes += rate * 1e6 * (performance.now() - start) / 1000;
        if (isFree) bestFree = Math.max(bestFree, rate);
        else bestSocks = Math.max(bestSocks, rate);
      }
    }
    console.log(
      "Standalone client and server (main.ts, plain), free mode vs socks mode (goal >= 0.95):",
    );
    row("socks mode: SOCKS5 to the server, fixed target", bestSocks, "MB/s", bestSocks);
    row("free mode: destination inside, SOCKS5 target", bestFree, "MB/s", bestSocks);
    // Lower is better here: the ratio is free mode's CPU cost over socks mode's (goal <= 1.05).
    const perGiB = (t: { cpu: number; bytes: number }) => t.cpu / (t.bytes / 2 ** 30);
    console.log("CPU seconds per GiB, client + server processes (goal for free mode <= 1.05):");
    row("socks mode", perGiB(used.socks), "s/GiB", perGiB(used.socks));
    row("free mode", perGiB(used.free), "s/GiB", perGiB(used.socks));
  } finally {
    await socks.close();
    await free.close();
    await Deno.remove(state, { recursive: true });
  }
}
