// Copyright the ptkit authors. MIT license.
// TURN bench: coturn's turnutils_uclient against ptkit's TURN server and
// Debian's turnserver (coturn) in the same run, runs interleaved so that
// load from elsewhere falls on both: three runs with channels (`-y -c`), one
// with Send/Data indications (`-y -c -s`), one to an echo peer
// (turnutils_peer, `-c -e 127.0.0.1 -r PORT`), all with the same load. ptkit
// runs as `ipc/cli/_turn.ts` with --unstable-net and --allow-ffi (its fast
// path: raised buffers, batch receive). Prints progress, then a table of each
// run and the ptkit/coturn ratios; beside the loss, the kernel's UDP
// receive-buffer drops during the run (/proc/net/snmp RcvbufErrors,
// machine-wide).
//
// Each run gets servers of its own, started for it: uclient's load-balancing
// probe allocates, refreshes to 777 s and closes its socket without a
// Refresh of 0, so every run leaves 50 allocations behind (100 clients,
// -y), and a later socket of uclient's that the kernel gives one of their
// ports gets 437 (Allocation Mismatch: the 5-tuple has an allocation, RFC
// 8656 section 7.2; coturn answers the same), after which uclient sleeps
// 1 s and tries again. With servers kept from run to run these retries grew
// with each run (0-2 a run, by chance, for either server) and moved a run's
// wall time by whole seconds. A run's own probes can still collide: the
// retries are counted ("437s") and "wall-r" is the wall time without
// uclient's 1 s sleeps after them.
//
// uclient's round trip is measured with the millisecond clock it reads once
// per tick of its 1 ms timer (turnutils_uclient's uclient.c: current_mstime
// is set in timer_handler, not when a datagram arrives): a message answered
// before the next tick counts 0 ms, one answered after it 1 ms. Its average
// is thus the share of answers that came after the next tick, in ms; below
// about 0.05 ms (5 in 100,000 messages late) the ratio is noise.
//
//   deno run -A bench/turn_bench.ts            # -n 5000 -m 100 -l 1000 -z 5
//   deno run -A bench/turn_bench.ts --quick    # -n 500 -m 20 -l 1000 -z 5
//   deno run -A bench/turn_bench.ts --only=Send  # the runs whose load names it

import { bindingRequest, freeUdpPort, waitForUdp } from "../tests/turn_util.ts";
import { udpReceiveBufferErrors } from "../tests/udp_test_utils.ts";
import { cpuSeconds } from "./_cpu.ts";

const quick = Deno.args.includes("--quick");
const LOAD = quick
  ? ["-n", "500", "-m", "20", "-l", "1000", "-z", "5"]
  : ["-n", "5000", "-m", "100", "-l", "1000", "-z", "5"];

interface Result {
  wallSeconds: number;
  exitCode: number;
  lostPercent: number;
  rcvbufErrors: number;
  rttMs: number;
  jitterMs: number;
  /** uclient's retries after 437 (Allocation Mismatch), each after a 1 s sleep. */
  retries437: number;
  serverCpuSeconds: number;
  serverPeakRssMiB: number;
}

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function measure(server: Deno.ChildProcess, port: number, args: string[]): Promise<Result> {
  const cpuBefore = cpuSeconds(server.pid);
  const errorsBefore = udpReceiveBufferErrors();
  const started = performance.now();
  const out = await new Deno.Command("turnutils_uclient", {
    args: [...args, "-u", "u", "-w", "p", "-p", String(port), "127.0.0.1"],
    stdin: "null",
  }).output();
  const wallSeconds = (performance.now() - started) / 1000;
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    wallSeconds,
    exitCode: out.code,
    lostPercent: num(/Total lost packets \d+ \(([\d.]+)%\)/),
    rcvbufErrors: udpReceiveBufferErrors() - errorsBefore,
    rttMs: num(/Average round trip delay ([\d.]+) ms/),
    jitterMs: num(/Average jitter ([\d.]+) ms/),
    retries437: text.match(/trying allocate again 437/g)?.length ?? 0,
    serverCpuSeconds: cpuSeconds(server.pid) - cpuBefore,
    serverPeakRssMiB: rssMiB(server.pid),
  };
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  await child.status;
}

function spawn(program: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
}

/**
 * A port free for UDP and TCP on 127.0.0.1: turnserver listens on both and
 * gives up when the TCP one is taken.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await freeUdpPort();
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // Taken for TCP: draw another.
    }
  }
}

/** A server started for one run, ready (it answers a Binding request). */
async function startServer(name: "ptkit" | "coturn"): Promise<[Deno.ChildProcess, number]> {
  const port = await freePort();
  const child = name === "ptkit"
    ? spawn(Deno.execPath(), [
      ...["run", "--unstable-net", "--allow-ffi", "--allow-net", "--allow-read", "--allow-env"],
      new URL("../ipc/cli/_turn.ts", import.meta.url).pathname,
      ...["--listen", `127.0.0.1:${port}`, "--user", "u:p", "--realm", "pt.test"],
      // Every uclient client comes from 127.0.0.1, and -m 100 with -y holds
      // over 100 allocations (its probes' too): no per-source cap, as coturn has none.
      ...["--allow-loopback-peers", "--source-quota", "0"],
    ])
    : spawn("turnserver", [
      ...["-n", "--lt-cred-mech", "--user=u:p", "--realm=pt.test", "--allow-loopback-peers"],
      ...["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", `--listening-port=${port}`],
      ...["--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout"],
    ]);
  try {
    await waitForUdp(
      port,
      bindingRequest(),
      name === "ptkit" ? "ptkit's TURN server" : "turnserver",
    );
  } catch (error) {
    await stop(child);
    throw error;
  }
  return [child, port];
}

const peerPort = await freeUdpPort();
const peer = spawn("turnutils_peer", ["-L", "127.0.0.1", "-p", String(peerPort)]);

const runs: { load: string; args: string[] }[] = [
  { load: "channels, run 1", args: ["-y", "-c", ...LOAD] },
  { load: "channels, run 2", args: ["-y", "-c", ...LOAD] },
  { load: "channels, run 3", args: ["-y", "-c", ...LOAD] },
  { load: "Send/Data indications", args: ["-y", "-c", "-s", ...LOAD] },
  { load: "echo peer", args: ["-c", "-e", "127.0.0.1", "-r", String(peerPort), ...LOAD] },
];
const only = Deno.args.find((arg) => arg.startsWith("--only="))?.slice("--only=".length);
if (only !== undefined) runs.splice(0, runs.length, ...runs.filter((r) => r.load.includes(only)));
const results: { load: string; ptkit: Result; coturn: Result }[] = [];
try {
  await waitForUdp(peerPort, new Uint8Array([1]), "turnutils_peer");
  let step = 0;
  for (const { load, args } of runs) {
    const row = {} as { ptkit: Result; coturn: Result };
    for (const name of ["ptkit", "coturn"] as const) {
      console.log(
        `[${++step}/${runs.length * 2}] ${name}: ${load} (turnutils_uclient ${args.join(" ")})...`,
      );
      const [server, port] = await startServer(name);
      try {
        row[name] = await measure(server, port, args);
      } finally {
        await stop(server);
      }
      const r = row[name];
      console.log(
        `      lost ${r.lostPercent}%, ${
          r.wallSeconds.toFixed(1)
        } s, ${r.retries437} retries after 437, exit ${r.exitCode}`,
      );
    }
    results.push({ load, ...row });
  }
} finally {
  await stop(peer);
}

const fixed = (n: number, digits: number) => Number.isFinite(n) ? n.toFixed(digits) : "n/a";
console.log(
  `TURN, turnutils_uclient ${LOAD.join(" ")}; ptkit (--allow-ffi) vs coturn, interleaved:`,
);
console.log(
  [
    "load".padEnd(22),
    "server".padEnd(7),
    "lost %".padStart(7),
    "RcvbufErr".padStart(9),
    "wall s".padStart(7),
    "437s".padStart(4),
    "RTT ms".padStart(9),
    "jitter".padStart(7),
    "CPU s".padStart(6),
    "RSS MiB".padStart(8),
  ].join(" "),
);
for (const { load, ptkit, coturn } of results) {
  for (const [name, r] of [["ptkit", ptkit], ["coturn", coturn]] as const) {
    console.log(
      [
        load.padEnd(22),
        name.padEnd(7),
        fixed(r.lostPercent, 2).padStart(7),
        String(r.rcvbufErrors).padStart(9),
        fixed(r.wallSeconds, 1).padStart(7),
        String(r.retries437).padStart(4),
        fixed(r.rttMs, 4).padStart(9),
        fixed(r.jitterMs, 2).padStart(7),
        fixed(r.serverCpuSeconds, 2).padStart(6),
        fixed(r.serverPeakRssMiB, 1).padStart(8),
      ].join(" "),
    );
  }
}
console.log(
  "ratios ptkit/coturn (goals for channels: wall <= 1.0, RTT <= 2, CPU <= 1.5; wall-r: without uclient's 1 s sleeps after 437):",
);
console.log(
  [
    "load".padEnd(22),
    "wall".padStart(6),
    "wall-r".padStart(6),
    "RTT".padStart(6),
    "jitter".padStart(7),
    "CPU".padStart(6),
    "RSS".padStart(6),
  ].join(" "),
);
for (const { load, ptkit, coturn } of results) {
  const ratio = (key: keyof Result, width: number) =>
    fixed(ptkit[key] / coturn[key], 2).padStart(width);
  console.log(
    [
      load.padEnd(22),
      ratio("wallSeconds", 6),
      fixed(
        (ptkit.wallSeconds - ptkit.retries437) / (coturn.wallSeconds - coturn.retries437),
        2,
      ).padStart(6),
      ratio("rttMs", 6),
      ratio("jitterMs", 7),
      ratio("serverCpuSeconds", 6),
      ratio("serverPeakRssMiB", 6),
    ].join(" "),
  );
}
