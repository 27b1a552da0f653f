// Copyright the ptkit authors. MIT license.
// `deno task bench`: throughput and connection rate through ptkit, printed as
// ratios against baselines measured in the same run. Not a test: timings vary
// on shared machines, so only the ratios are meaningful.

import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { relay } from "../net/relay.ts";
import { plain } from "../transports/plain.ts";
import { ipcBench } from "./ipc_bench.ts";
import { freeBench } from "./free_bench.ts";
import { pipeToHop } from "./pipe_hop.ts";
import { udpBench } from "./udp_bench.ts";

const USAGE = `Usage: deno task bench

Prints progress, then each figure beside a baseline measured in the same run
(raw loopback, obfs4proxy, ss-libev, coturn, nginx) and their ratios. Takes
no arguments; these variables choose what runs:

  BENCH_MIB=N                  MiB per throughput run (default 512)
  BENCH_ONLY=free              run only the free-mode section
  BENCH_FREE_ROUNDS=N          free-mode paired rounds (default 48)
  BENCH_FREE_AA=1              free mode: socks mode against itself (the noise)
  BENCH_QUICK=1                TURN: a shorter run
  OBFS4_BENCH_ONLY=LIST        obfs4: start,throughput,latency,handshakes,firstbyte,memory,iat
  OBFS4_BENCH_IAT_MIB=N        obfs4: MiB of the iat-mode 1 transfer (default 2)
  OBFS4_BENCH_PROFILE=DIR      obfs4: write V8 CPU profiles of ptkit's processes to DIR
  SHADOWSOCKS_BENCH_METHODS=L  Shadowsocks: comma-separated methods
  UDP_BENCH_SIZES=LIST         UDP: datagram sizes in bytes, comma-separated (default 64,512,1400)
  UDP_BENCH_TRANSPORTS=LIST    UDP: plain,obfs4 or either alone (default both)
  UDP_BENCH_COUNT=N            UDP: datagrams per timed run (default 20000, at least 1000)
  UDP_BENCH_WINDOW=N           UDP: datagrams outstanding (default 256; fewer: shorter bursts)
  UDP_BENCH_PROFILE=DIR        UDP: write V8 CPU profiles of the PT processes to DIR

The UDP table's "PT CPU" is the PT client's and server's CPU time (user +
system, from /proc/PID/stat) in microseconds per datagram echoed, "app CPU"
the bench process's (the application and the echo server): on a machine
other work loads, datagrams per second follow the CPU the processes get,
while CPU per datagram follows what their work costs (it still rises as
bursts get shorter: the PT's reads and writes then carry fewer datagrams).

Each section is a script of its own under bench/ (deno run -A bench/obfs4_bench.ts ...).
`;
if (Deno.args.length > 0) {
  const help = Deno.args.some((arg) => /^--?h(elp)?$/.test(arg));
  (help ? console.log : console.error)(
    help ? USAGE : `Unknown argument ${JSON.stringify(Deno.args[0])}\n\n${USAGE}`,
  );
  Deno.exit(help ? 0 : 64);
}

const TOTAL = Number(Deno.env.get("BENCH_MIB") ?? "512") * 1024 * 1024;
const ROUNDS = 3;
// Free mode against socks mode: many short paired rounds (a quarter of
// TOTAL each way), for the median of their ratios.
const FREE_ROUNDS = Number(Deno.env.get("BENCH_FREE_ROUNDS") ?? "48");
const freeUpload = (conn: Deno.Conn) => uploadOver(conn, TOTAL / 4);
const SHORT = 500;
const chunk = crypto.getRandomValues(new Uint8Array(65536));

type Server = { port: number; close(): void };

/** A sink that counts bytes and answers every connection's end with 1 KiB. */
function sink(): Server {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(256 * 1024);
        while (await conn.read(buffer) !== null) { /* discard */ }
        await conn.write(chunk.subarray(0, 1024));
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return { port: listener.addr.port, close: () => listener.close() };
}

/** A client hop: raw TCP in, dialed through `plain` to the proxy. */
async function ptClientHop(proxyPort: number): Promise<Server> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(plain, {});
  (async () => {
    for await (const conn of listener) {
      connector.dial({ port: proxyPort }).then((out) => relay(conn, out)).catch(() => {});
    }
  })().catch(() => {});
  return { port: listener.addr.port, close: () => listener.close() };
}

/** Send TOTAL bytes to `port`, wait for the answer; MB/s. */
function upload(port: number): Promise<number> {
  return Deno.connect({ hostname: "127.0.0.1", port }).then(uploadOver);
}

/** Send `total` bytes (default TOTAL) over an open connection, wait for the answer; MB/s. */
async function uploadOver(conn: Deno.Conn, total = TOTAL): Promise<number> {
  const start = performance.now();
  for (let sent = 0; sent < total; sent += chunk.byteLength) {
    let offset = 0;
    while (offset < chunk.byteLength) offset += await conn.write(chunk.subarray(offset));
  }
  await conn.closeWrite();
  const buffer = new Uint8Array(2048);
  while (await conn.read(buffer) !== null) { /* the answer */ }
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  return total / 1e6 / seconds;
}

/** Short connections per second: connect, 1 KiB each way, close. */
async function shortRate(port: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < SHORT; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(chunk.subarray(0, 1024));
    await conn.closeWrite();
    const buffer = new Uint8Array(2048);
    while (await conn.read(buffer) !== null) { /* the answer */ }
    conn.close();
  }
  return SHORT / ((performance.now() - start) / 1000);
}

async function best(fn: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < ROUNDS; i++) top = Math.max(top, await fn());
  return top;
}

const row = (name: string, value: number, unit: string, base: number) =>
  console.log(
    `${name.padEnd(48)} ${value.toFixed(value < 10 ? 2 : 0).padStart(8)} ${unit.padEnd(7)} ratio ${
      (value / base).toFixed(2)
    }`,
  );

const target = sink();
if (Deno.env.get("BENCH_ONLY") === "free") {
  // One section alone: BENCH_ONLY=free deno task bench.
  await freeBench(freeUpload, target.port, FREE_ROUNDS, row);
  Deno.exit(0);
}
const hopB = pipeToHop(target.port);
const hopA = pipeToHop(hopB.port);
const manager = await proxy(plain, {}, {
  hostname: "127.0.0.1",
  port: 0,
  target: { hostname: "127.0.0.1", port: target.port },
});
const client = await ptClientHop(manager.addr.port);

const raw = await best(() => upload(target.port));
const twoHop = await best(() => upload(hopA.port));
const viaPlain = await best(() => upload(client.port));
const rawRate = await best(() => shortRate(target.port));
const twoHopRate = await best(() => shortRate(hopA.port));
const plainRate = await best(() => shortRate(client.port));

console.log(`ptkit core bench: ${TOTAL / 1024 / 1024} MiB per run, best of ${ROUNDS}`);
console.log("Throughput (ratio to the raw two-hop pipeTo chain; goal >= 0.9):");
row("raw loopback, one connection to the sink", raw, "MB/s", twoHop);
row("raw two-hop pipeTo relay chain", twoHop, "MB/s", twoHop);
row("two hops: ptkit dial(plain) + proxy(plain)", viaPlain, "MB/s", twoHop);
console.log(
  `Short connections (connect, 1 KiB each way, close; ${SHORT} per run; ratio to the raw two-hop chain):`,
);
row("raw loopback, one connection to the sink", rawRate, "conn/s", twoHopRate);
row("raw two-hop pipeTo relay chain", twoHopRate, "conn/s", twoHopRate);
row("two hops: ptkit dial(plain) + proxy(plain)", plainRate, "conn/s", twoHopRate);

console.log();
await ipcBench(uploadOver, target.port, hopB.port, row);
console.log();
await freeBench(freeUpload, target.port, FREE_ROUNDS, row);
console.log();
await udpBench();

client.close();
await manager.close();

// obfs4, Shadowsocks, TURN and WebTunnel run their peers (obfs4proxy,
// ss-libev, coturn, nginx) as processes of their own; each bench prints its own ratios.
for (
  const [script, args] of [
    ["obfs4_bench.ts", [String(Math.min(64, TOTAL / 1024 / 1024))]],
    ["shadowsocks_bench.ts", [String(Math.min(256, TOTAL / 1024 / 1024))]],
    ["turn_bench.ts", Deno.env.get("BENCH_QUICK") ? ["--quick"] : []],
    ["webtunnel_bench.ts", [String(Math.min(256, TOTAL / 1024 / 1024))]],
  ] as const
) {
  console.log();
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(`./${script}`, import.meta.url).pathname, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) console.log(`${script} exited with code ${code}`);
}
hopA.close();
hopB.close();
target.close();
Deno.exit(0);
