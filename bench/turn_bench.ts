// Copyright the ptkit authors. MIT license.
// TURN bench: coturn's turnutils_uclient against ptkit's TURN server and Debian's turnserver
// in the same run; prints each side's figures and the ptkit/coturn ratios.
//
//   deno run -A bench/turn_bench.ts            # -y -c -n 5000 -m 100 -l 1000 -z 5
//   deno run -A bench/turn_bench.ts --quick    # -y -c -n 500 -m 20 -l 1000 -z 5

import dgram from "node:dgram";
import { encodeStunMessage, parseStunMessage } from "../udp/turn/mod.ts";

const quick = Deno.args.includes("--quick");
const LOAD = quick
  ? ["-y", "-c", "-n", "500", "-m", "20", "-l", "1000", "-z", "5"]
  : ["-y", "-c", "-n", "5000", "-m", "100", "-l", "1000", "-z", "5"];

async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** Wait until a STUN Binding request to the port is answered. */
async function waitForStun(port: number): Promise<void> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    for (let i = 0; i < 100; i++) {
      const request = encodeStunMessage({
        method: 1,
        class: 0,
        transactionId: crypto.getRandomValues(new Uint8Array(12)),
        attributes: [],
      });
      const answered = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 100);
        socket.once("message", (msg: Uint8Array) => {
          clearTimeout(timer);
          try {
            resolve(parseStunMessage(new Uint8Array(msg)).class === 2);
          } catch {
            resolve(false);
          }
        });
        socket.send(request, port, "127.0.0.1");
      });
      if (answered) return;
    }
    throw new Error(`No STUN answer on port ${port}`);
  } finally {
    socket.removeAllListeners("message");
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, USER_HZ = 100
}

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

interface Result {
  wallSeconds: number;
  exitCode: number;
  lostPercent: number;
  rttMs: number;
  jitterMs: number;
  serverCpuSeconds: number;
  serverPeakRssMiB: number;
}

async function measure(name: string, server: Deno.ChildProcess, port: number): Promise<Result> {
  await waitForStun(port);
  const cpuBefore = cpuSeconds(server.pid);
  const started = performance.now();
  const out = await new Deno.Command("turnutils_uclient", {
    args: [...LOAD, "-u", "u", "-w", "p", "-p", String(port), "127.0.0.1"],
    stdin: "null",
  }).output();
  const wallSeconds = (performance.now() - started) / 1000;
  const serverCpuSeconds = cpuSeconds(server.pid) - cpuBefore;
  const serverPeakRssMiB = rssMiB(server.pid);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const result = {
    wallSeconds,
    exitCode: out.code,
    lostPercent: num(/Total lost packets \d+ \(([\d.]+)%\)/),
    rttMs: num(/Average round trip delay ([\d.]+) ms/),
    jitterMs: num(/Average jitter ([\d.]+) ms/),
    serverCpuSeconds,
    serverPeakRssMiB,
  };
  console.log(name, JSON.stringify(result));
  for (const line of text.split("\n").filter((l) => /Total (lost|transmit)|Average/.test(l))) {
    console.log(`  ${line.trim()}`);
  }
  return result;
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  await child.status;
}

const ourPort = await freeUdpPort();
const ours = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-env",
    new URL("../udp/turn/cli.ts", import.meta.url).pathname,
    "--listen",
    `127.0.0.1:${ourPort}`,
    "--user",
    "u:p",
    "--realm",
    "pt.test",
    "--allow-loopback-peers",
  ],
  stdin: "null",
  stdout: "null",
  stderr: "null",
}).spawn();
let ptkit: Result;
try {
  ptkit = await measure("ptkit  ", ours, ourPort);
} finally {
  await stop(ours);
}

const coturnPort = await freeUdpPort();
const coturn = new Deno.Command("turnserver", {
  args: [
    "-n",
    "--lt-cred-mech",
    "--user=u:p",
    "--realm=pt.test",
    "--allow-loopback-peers",
    "--listening-ip=127.0.0.1",
    "--relay-ip=127.0.0.1",
    `--listening-port=${coturnPort}`,
    "--no-tls",
    "--no-dtls",
    "--no-cli",
    "--log-file=stdout",
  ],
  stdin: "null",
  stdout: "null",
  stderr: "null",
}).spawn();
let reference: Result;
try {
  reference = await measure("coturn ", coturn, coturnPort);
} finally {
  await stop(coturn);
}

console.log(`load: turnutils_uclient ${LOAD.join(" ")}`);
console.log("ratios ptkit/coturn (lower is better except none):");
for (
  const key of ["wallSeconds", "rttMs", "jitterMs", "serverCpuSeconds", "serverPeakRssMiB"] as const
) {
  console.log(`  ${key}: ${(ptkit[key] / reference[key]).toFixed(2)}`);
}
console.log(`  lostPercent: ptkit ${ptkit.lostPercent}% vs coturn ${reference.lostPercent}%`);
