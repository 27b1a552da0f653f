// Copyright the ptkit authors. MIT license.
// UDP section of `deno task bench`: datagrams per second through
// transparent-UDP over plain and obfs4 against raw UDP to the same echo
// server, at 64, 512 and 1400-byte datagrams.
//
// The PT client and the PT server are main.ts processes, started as a user
// runs them (`-mode transparent-UDP`, with --allow-ffi so their sockets
// batch); the application socket and the echo server live in this process,
// for the raw run and the PT runs alike (every leg through the kernel, see
// echoRun). Each run echoes COUNT datagrams with
// WINDOW outstanding; a datagram not back after a quiet 200 ms counts as
// lost. Beside the loss: the kernel's UDP receive-buffer drops over the run
// (/proc/net/snmp RcvbufErrors, machine-wide), and the CPU time per
// datagram echoed (user + system, from /proc/PID/stat) of the PT client and
// server (their children included) and of this process: on a machine other
// work loads, datagrams per second fall with the CPU the processes get,
// while CPU per datagram follows what their work costs (and rises as
// bursts get shorter: reads and writes then carry fewer datagrams each).
//
//   deno run -A bench/udp_bench.ts
//   UDP_BENCH_SIZES=64 UDP_BENCH_TRANSPORTS=plain UDP_BENCH_COUNT=50000 deno run -A bench/udp_bench.ts
//   UDP_BENCH_PROFILE=/tmp/prof deno run -A bench/udp_bench.ts  (V8 CPU profiles of the PTs)

import { UdpSocket } from "../udp/mod.ts";
import { udpReceiveBufferErrors } from "../tests/udp_test_utils.ts";
import { childPids, cpuSeconds } from "./_cpu.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const TRANSPORTS = ["plain", "obfs4"];

/**
 * A comma-separated list from the environment variable `name` (`fallback`
 * when unset), each item checked by `parse`; a bad one ends the bench with
 * a message naming the variable.
 */
function listFromEnv<T>(name: string, fallback: T[], parse: (item: string) => T | undefined): T[] {
  const text = Deno.env.get(name);
  if (text === undefined || text.trim() === "") return fallback;
  const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
  const parsed = items.map(parse);
  const bad = items.find((_, i) => parsed[i] === undefined);
  if (bad !== undefined || parsed.length === 0) {
    throw new TypeError(`Cannot run the UDP bench: ${name} has ${JSON.stringify(bad ?? text)}`);
  }
  return parsed as T[];
}

/** Datagram sizes, in bytes (UDP_BENCH_SIZES). */
const SIZES = listFromEnv("UDP_BENCH_SIZES", [64, 512, 1400], (item) => {
  const size = Number(item);
  return /^\d+$/.test(item) && size >= 1 && size <= 65_507 ? size : undefined;
});
/** Transports the PT pairs run (UDP_BENCH_TRANSPORTS). */
const CHOSEN = listFromEnv(
  "UDP_BENCH_TRANSPORTS",
  TRANSPORTS,
  (item) => TRANSPORTS.includes(item) ? item : undefined,
);
/** Datagrams per timed run (UDP_BENCH_COUNT). */
const COUNT = listFromEnv("UDP_BENCH_COUNT", [20_000], (item) => {
  const count = Number(item);
  return /^\d+$/.test(item) && count >= 1_000 ? count : undefined;
})[0]!;
/**
 * Datagrams outstanding (UDP_BENCH_WINDOW): fewer make shorter bursts, so
 * each read and write of the PTs carries fewer datagrams, as when the PTs
 * keep up with the application (an idle machine) rather than fall behind.
 */
const WINDOW = listFromEnv("UDP_BENCH_WINDOW", [256], (item) => {
  const window = Number(item);
  return /^\d+$/.test(item) && window >= 1 && window <= 4096 ? window : undefined;
})[0]!;

/** CPU seconds `pid` and its descendants (a server's -workers children) have used. */
function treeCpuSeconds(pid: number): number {
  let total = cpuSeconds(pid);
  for (const child of childPids(pid)) total += treeCpuSeconds(child);
  return total;
}

/** One echo run's figures. */
export interface EchoRun {
  /** Datagrams per second. */
  rate: number;
  /** Datagrams that did not come back. */
  lost: number;
  /** Kernel receive-buffer drops during the run. */
  rcvbufErrors: number;
  /** CPU microseconds the measured processes used per datagram echoed (NaN without any). */
  cpuPerDatagram: number;
  /** CPU microseconds this process (the application and the echo server) used per datagram. */
  benchCpuPerDatagram: number;
}

/**
 * Echo `count` datagrams of `size` through `port` with WINDOW outstanding;
 * the CPU time of the processes `pids` (and their children) is measured
 * over the timed part.
 */
async function echoRun(
  port: number,
  size: number,
  pids: number[] = [],
  count = COUNT,
): Promise<EchoRun> {
  // Bound to the wildcard address, so that the raw run crosses the kernel
  // both ways, as every leg of a PT run does: a socket bound to one address
  // hands a datagram to another socket of this process (the echo) without
  // the kernel (UdpSocket's local hand-over, for a TURN server's relays),
  // which made "raw UDP" half in-process and about twice as fast. Datagrams
  // from anyone but `port` are still dropped (connect).
  await using socket = await UdpSocket.open({
    hostname: "0.0.0.0",
    connect: { hostname: "127.0.0.1", port },
  });
  const payload = crypto.getRandomValues(new Uint8Array(size));
  // One datagram first: a PT flow connects on its first datagram.
  await new Promise<void>((resolve) => {
    const retry = setInterval(() => socket.send(payload), 500);
    socket.onmessage = () => {
      clearInterval(retry);
      resolve();
    };
    socket.send(payload);
  });
  const errorsBefore = udpReceiveBufferErrors();
  const cpu = () => pids.reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
  const cpuBefore = cpu();
  const benchBefore = cpuSeconds("self");
  let sent = 0;
  let received = 0;
  let lost = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let quiet: ReturnType<typeof setTimeout> | undefined;
    const pump = () => {
      while (sent < count && sent - received - lost < WINDOW) {
        sent++;
        socket.send(payload);
      }
      clearTimeout(quiet);
      if (received + lost >= count) resolve();
      else quiet = setTimeout(stalled, 200);
    };
    // Nothing came back for 200 ms: what is still out is lost.
    const stalled = () => {
      lost = sent - received;
      pump();
    };
    socket.onmessage = () => {
      received++;
      pump();
    };
    pump();
  });
  const seconds = (performance.now() - start) / 1000;
  const cpuPerDatagram = pids.length === 0 ? NaN : (cpu() - cpuBefore) * 1e6 / received;
  const benchCpuPerDatagram = (cpuSeconds("self") - benchBefore) * 1e6 / received;
  return {
    rate: received / seconds,
    lost,
    rcvbufErrors: udpReceiveBufferErrors() - errorsBefore,
    cpuPerDatagram,
    benchCpuPerDatagram,
  };
}

/** Where V8 CPU profiles of the PT processes go (UDP_BENCH_PROFILE), if anywhere. */
const PROFILE_DIR = Deno.env.get("UDP_BENCH_PROFILE");

/**
 * A main.ts process; resolves once it printed a line matching `until`.
 * With UDP_BENCH_PROFILE, it writes a V8 CPU profile under `role` there when it exits.
 */
async function startPt(args: string[], until: RegExp, role: string): Promise<{
  child: Deno.ChildProcess;
  line: string;
}> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      ...(PROFILE_DIR === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}/${role}`]),
      MAIN,
      ...args,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`main.ts ${args.join(" ")} exited before printing ${until}`);
    buffer += value;
    const line = buffer.split("\n").find((l) => until.test(l));
    if (line !== undefined) {
      reader.releaseLock();
      child.stdout.cancel().catch(() => {});
      return { child, line };
    }
  }
}

/** A transparent-UDP PT client and server pair over `transport` to `target`; the client's port. */
async function ptChain(transport: string, target: number, dir: string) {
  const server = await startPt(
    [
      ...["-server", "-transports", transport, "-mode", "transparent-UDP"],
      ...["-bindaddr", `${transport}-127.0.0.1:0`, "-target", `127.0.0.1:${target}`],
      ...["-state", `${dir}/server-${transport}`, "-exit-on-stdin-close"],
    ],
    new RegExp(`^SMETHOD ${transport} `),
    `server-${transport}`,
  );
  const [, , address, args = ""] = server.line.split(" ");
  const cert = /cert=([^,]+)/.exec(args)?.[1];
  const options = transport === "obfs4" ? { cert, "iat-mode": "0" } : {};
  const client = await startPt(
    [
      ...["-client", "-transports", transport, "-mode", "transparent-UDP"],
      ...["-proxylistenaddr", "127.0.0.1:0", "-target", address!],
      ...["-options", JSON.stringify(options), "-state", `${dir}/client-${transport}`],
      "-exit-on-stdin-close",
    ],
    new RegExp(`^CMETHOD ${transport} `),
    `client-${transport}`,
  );
  const port = Number(client.line.split(" ")[3]!.split(":").pop());
  return {
    port,
    pids: [client.child.pid, server.child.pid],
    async close() {
      for (const { child } of [client, server]) {
        await child.stdin.close().catch(() => {});
        await child.status;
      }
    },
  };
}

/** Run the UDP section; prints progress, then the table. */
export async function udpBench(): Promise<void> {
  await using echo = await UdpSocket.open();
  echo.onmessage = (data, from) => echo.send(data, from);
  const dir = await Deno.makeTempDir({ prefix: "ptkit_udp_bench_" });
  const chains = [];
  try {
    for (const transport of CHOSEN) {
      console.log(`  starting main.ts transparent-UDP client and server over ${transport}...`);
      chains.push({ transport, ...await ptChain(transport, echo.addr.port, dir) });
    }
    // The first timed run (raw, 64 B) came first to a cold JIT (46k/s
    // where 512 B gave 77k/s): every path echoes once, untimed.
    console.log("  warming up every path (untimed, each size)...");
    for (const size of SIZES) {
      for (const { port, pids } of [{ port: echo.addr.port, pids: [] }, ...chains]) {
        await echoRun(port, size, pids, Math.ceil(COUNT / 4));
      }
    }
    const rows: { name: string; size: number; run: EchoRun; base: EchoRun }[] = [];
    for (const size of SIZES) {
      console.log(`  ${size} B: raw UDP echo...`);
      const base = await echoRun(echo.addr.port, size);
      rows.push({ name: "raw UDP", size, run: base, base });
      for (const { transport, port, pids } of chains) {
        console.log(`  ${size} B: transparent-UDP over ${transport}...`);
        rows.push({
          name: `transparent-UDP over ${transport}`,
          size,
          run: await echoRun(port, size, pids),
          base,
        });
      }
    }
    console.log(
      `UDP echo, ${COUNT} datagrams, ${WINDOW} outstanding; ratio to raw UDP at the same size` +
        " (goal: plain >= 0.8, obfs4 >= 0.6). CPU microseconds (user + system, 10 ms ticks) per" +
        " datagram echoed: 'PT CPU' the PT client's and server's, 'app CPU' this process's" +
        " (the application and the echo server)",
    );
    console.log(
      `${"path".padEnd(30)} ${"size".padStart(5)} ${"dgram/s".padStart(9)} ${"MB/s".padStart(7)} ${
        "ratio".padStart(6)
      } ${"lost".padStart(6)} ${"RcvbufErrors".padStart(13)} ${"PT CPU".padStart(7)} ${
        "app CPU".padStart(8)
      }`,
    );
    for (const { name, size, run, base } of rows) {
      const cpu = Number.isNaN(run.cpuPerDatagram) ? "-" : run.cpuPerDatagram.toFixed(1);
      console.log(
        `${name.padEnd(30)} ${String(size).padStart(5)} ${run.rate.toFixed(0).padStart(9)} ${
          (run.rate * size / 1e6).toFixed(1).padStart(7)
        } ${(run.rate / base.rate).toFixed(2).padStart(6)} ${String(run.lost).padStart(6)} ${
          String(run.rcvbufErrors).padStart(13)
        } ${cpu.padStart(7)} ${run.benchCpuPerDatagram.toFixed(1).padStart(8)}`,
      );
    }
  } finally {
    for (const chain of chains) await chain.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  console.log("UDP bench (transparent-UDP through main.ts processes):");
  await udpBench();
}
