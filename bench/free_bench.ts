// Copyright the ptkit authors. MIT license.
// Free mode against socks mode, through main.ts as a standalone client and
// server (two processes, `plain`), on the same run. Socks mode: the
// application's SOCKS5 CONNECT names the PT server, which relays to its
// fixed target (the sink). Free mode: the client sends every connection to
// the server (`-free -target`) and the application's destination (the sink)
// travels inside the transport to the server's embedded SOCKS5 target. The
// bytes take the same hops; the goal is free mode within 5% of socks mode.
// One stream at a time, so the servers run one process each (`-workers 1`),
// and every process keeps its CPU (the kernel otherwise places the pairs
// differently, and two identical pairs differ by 10-15%). Many short rounds,
// each one upload per mode back to back: the figure is the median of the
// rounds' ratios with its confidence interval, which a neighbour's burst on
// a shared machine moves far less than a best-of. Beside it, the CPU
// seconds the client and server processes spend per GiB in each mode.

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

/**
 * Pin a process (all its threads) to CPUs with util-linux's `taskset`;
 * `cpus` as taskset's list (`1`, `0,1`). Returns the list it had before.
 */
async function pin(pid: number, cpus: number | string): Promise<string> {
  const run = async (...args: string[]) => {
    const { success, stdout } = await new Deno.Command("taskset", { args, stderr: "null" })
      .output();
    if (!success) throw new Error(`taskset ${args.join(" ")} failed`);
    return new TextDecoder().decode(stdout);
  };
  const before = (await run("-c", "-p", String(pid))).trim().split(": ").pop()!;
  await run("-a", "-c", "-p", String(cpus), String(pid));
  return before;
}

/** Whether the section pins its processes: two CPUs or more and `taskset` to do it. */
async function canPin(): Promise<boolean> {
  if (navigator.hardwareConcurrency < 2) return false;
  try {
    return (await new Deno.Command("taskset", { args: ["-V"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

async function startPair(
  free: boolean,
  sinkPort: number,
  state: string,
  pinned: boolean,
): Promise<Pair> {
  const server = await spawnUntil(
    MAIN,
    free
      ? [
        "-server",
        "-workers",
        "1",
        "-transports",
        "plain",
        "-bindaddr",
        "plain-127.0.0.1:0",
        "-target",
        "socks",
      ]
        .concat(["-allow", "loopback", "-state", state])
      : ["-server", "-workers", "1", "-transports", "plain", "-bindaddr", "plain-127.0.0.1:0"]
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
  if (pinned) {
    await pin(client.child.pid, 0);
    await pin(server.child.pid, 1);
  }
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
 * The distribution-free 95% confidence interval of a median: the ranks
 * `[k, n + 1 - k]` (1-based) of the sorted sample, with `k` the largest rank
 * such that a Binomial(n, 1/2) falls below it with probability <= 2.5%.
 * `null` when the sample is too small for one (fewer than 6 values).
 */
export function medianInterval(sorted: number[]): [number, number] | null {
  const n = sorted.length;
  let k = 0;
  let below = 0; // P(Binomial(n, 1/2) < k + 1), grown one term at a time.
  let term = 2 ** -n; // C(n, k) / 2^n for the current k
  while (k < n && below + term <= 0.025) {
    below += term;
    term = term * (n - k) / (k + 1);
    k++;
  }
  return k === 0 ? null : [sorted[k - 1]!, sorted[n - k]!];
}

/** The median of a sorted sample. */
function median(sorted: number[]): number {
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Run the section: `rounds` rounds, each one upload through each mode
 * back to back (the order alternating, ABBA), so that a neighbour's burst on
 * this shared machine hurts both uploads of a round alike. The figure is
 * the median of the rounds' paired ratios (free over socks), with its 95%
 * confidence interval; the best upload of each mode is printed beside it.
 */
export async function freeBench(
  upload: (conn: Deno.Conn) => Promise<number>,
  sinkPort: number,
  rounds: number,
  row: (name: string, value: number, unit: string, base: number) => void,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "ptkit-bench-free-" });
  // The same CPUs for both modes' processes: client on CPU 0; server and
  // this process (the application's upload and the sink) on CPU 1. Left to
  // the scheduler, where each process runs differs between the pairs, and
  // two identical socks-mode pairs then differ by 10-15% (BENCH_FREE_AA=1
  // runs socks mode against itself, to see the section's own noise).
  const pinned = await canPin();
  const aa = Deno.env.get("BENCH_FREE_AA") === "1";
  const socks = await startPair(false, sinkPort, state, pinned);
  const free = await startPair(!aa, sinkPort, state, pinned);
  const affinity = pinned ? await pin(Deno.pid, 1) : undefined;
  try {
    const best = { socks: 0, free: 0 };
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    // CPU seconds and bytes per mode, over all rounds.
    const used = { socks: { cpu: 0, bytes: 0 }, free: { cpu: 0, bytes: 0 } };
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? ["socks", "free"] as const : ["free", "socks"] as const;
      const round = { socks: { rate: 0, perGiB: 0 }, free: { rate: 0, perGiB: 0 } };
      for (const mode of order) {
        const pair = mode === "free" ? free : socks;
        const conn = await pair.connect();
        const [cpuBefore, start] = [pair.cpu(), performance.now()];
        const rate = await upload(conn);
        const [cpu, bytes] = [
          pair.cpu() - cpuBefore,
          rate * 1e6 * (performance.now() - start) / 1000,
        ];
        used[mode].cpu += cpu;
        used[mode].bytes += bytes;
        best[mode] = Math.max(best[mode], rate);
        round[mode] = { rate, perGiB: cpu / (bytes / 2 ** 30) };
      }
      ratios.push(round.free.rate / round.socks.rate);
      cpuRatios.push(round.free.perGiB / round.socks.perGiB);
      Deno.stderr.writeSync(
        new TextEncoder().encode(
          `\rfree mode bench: round ${i + 1}/${rounds}, free/socks ${ratios.at(-1)!.toFixed(2)}   `,
        ),
      );
    }
    Deno.stderr.writeSync(new TextEncoder().encode("\n"));
    ratios.sort((a, b) => a - b);
    cpuRatios.sort((a, b) => a - b);
    const interval = (sorted: number[]) => {
      const ci = medianInterval(sorted);
      return ci ? `95% CI ${ci[0].toFixed(2)}-${ci[1].toFixed(2)}` : "too few rounds for a CI";
    };
    console.log(
      `Standalone client and server (main.ts, plain, -workers 1), ${
        aa ? "socks mode against itself (BENCH_FREE_AA=1)" : "free mode vs socks mode"
      }, ${rounds} paired rounds${pinned ? ", pinned: client CPU 0, server and sink CPU 1" : ""}:`,
    );
    row("socks mode: SOCKS5 to the server, fixed target", best.socks, "MB/s", best.socks);
    row(
      aa ? "socks mode, second pair" : "free mode: destination inside, SOCKS5 target",
      best.free,
      "MB/s",
      best.socks,
    );
    console.log(
      `  median of the paired ratios free/socks ${median(ratios).toFixed(2)} (${
        interval(ratios)
      }; goal >= 0.95)`,
    );
    // Lower is better here: free mode's CPU cost over socks mode's (goal <= 1.05).
    const perGiB = (t: { cpu: number; bytes: number }) => t.cpu / (t.bytes / 2 ** 30);
    console.log("CPU seconds per GiB, client + server processes:");
    row("socks mode", perGiB(used.socks), "s/GiB", perGiB(used.socks));
    row("free mode", perGiB(used.free), "s/GiB", perGiB(used.socks));
    console.log(
      `  median of the paired ratios free/socks ${median(cpuRatios).toFixed(2)} (${
        interval(cpuRatios)
      }; goal <= 1.05)`,
    );
  } finally {
    if (affinity !== undefined) await pin(Deno.pid, affinity);
    await socks.close();
    await free.close();
    await Deno.remove(state, { recursive: true });
  }
}
