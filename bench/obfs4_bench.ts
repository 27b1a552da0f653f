// Copyright the ptkit authors. MIT license.

// ptkit's obfs4 against Debian's obfs4proxy, side by side in one run, over
// loopback. Every peer is its own process: obfs4proxy client and server,
// and ptkit's main.ts as client and as server, exec'd by path as tor does
// (so with its shebang's permissions: native libsodium). Progress goes to
// stderr while it runs; at the end one table gives each figure for
// obfs4proxy and ptkit, their ratio, and the issue's target. Not a test.
//
//   deno run -A bench/obfs4_bench.ts [MiB per throughput run, default 64]
//
// Parts (OBFS4_BENCH_ONLY=part,part picks some): start (exec to
// CMETHODS DONE / SMETHODS DONE, beside `deno run` of a one-line program),
// throughput (one stream each way, 16 streams; pairs and mixed pairs),
// latency (SOCKS connect + handshake + 1-byte echo, median of 50),
// handshakes (per second, 64 concurrent clients, and the CPU time each
// side's process took per handshake, from /proc), firstbyte (time to the
// server's first handshake byte, raw clients, median of 200), memory
// (resident memory with 1000 idle connections, client and server, and its
// anonymous part: RSS less mapped files such as the executable), iat
// (iat-mode 1: one transfer, and 50 at once with another connection's echo
// latency), workers (16 streams and handshakes/s with -workers 1 and 2).
// OBFS4_BENCH_IAT_MIB sizes the single iat-mode 1 transfer
// (default 2). OBFS4_BENCH_PROFILE=<dir> writes V8 CPU profiles of ptkit's
// processes there.

import { cpuSeconds } from "./_cpu.ts";
import { readExactly } from "../net/mod.ts";
import { parseClientConfig } from "../transports/obfs4/_config.ts";
import { ClientHandshake } from "../transports/obfs4/_handshake.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { freePort, type ManagedPt, startObfs4proxy } from "../tests/obfs4_live_helpers.ts";
import { socks5Connect } from "../tests/obfs4_socks5.ts";

const CHUNK = 65536;
const size = Number(Deno.args[0] ?? 64) * 1024 * 1024;
const only = Deno.env.get("OBFS4_BENCH_ONLY")?.split(",");
const run = (part: string) => only === undefined || only.includes(part);
const progress = (message: string) => console.error(`obfs4 bench: ${message}`);

// The target: first byte 'U' = read `n` bytes (u32 BE after it) then answer
// one byte; 'D' = send `n` bytes; 'E' = echo.
const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
(async () => {
  for await (const conn of target) {
    (async () => {
      const buf = new Uint8Array(CHUNK);
      try {
        const head = await readExactly(conn, 5);
        const n = new DataView(head.buffer).getUint32(1);
        if (head[0] === 0x55) {
          for (let got = 0; got < n;) {
            const r = await conn.read(buf);
            if (r === null) return;
            got += r;
          }
          await conn.write(new Uint8Array([1]));
        } else if (head[0] === 0x44) {
          const data = crypto.getRandomValues(new Uint8Array(CHUNK));
          for (let sent = 0; sent < n;) {
            sent += await conn.write(data.subarray(0, Math.min(CHUNK, n - sent)));
          }
        } else {
          for (;;) {
            const r = await conn.read(buf);
            if (r === null) break;
            await conn.write(buf.subarray(0, r));
          }
        }
        await conn.read(buf);
      } catch {
        // Done.
      } finally {
        conn.close();
      }
    })();
  }
})();
const targetPort = (target.addr as Deno.NetAddr).port;

const dirs: string[] = [];
const tmp = async () => {
  const d = await Deno.makeTempDir({ prefix: "ptkit_obfs4_bench_" });
  dirs.push(d);
  return d;
};

const deno = Deno.execPath();
const main = new URL("../main.ts", import.meta.url).pathname;
const profileDir = Deno.env.get("OBFS4_BENCH_PROFILE");
/** ptkit's executable: by path (its shebang), or with the shebang's flags and --cpu-prof. */
function ptkit(role: string): string[] {
  if (profileDir === undefined) return [main];
  const shebang = Deno.readTextFileSync(main).split("\n")[0]!.split(/\s+/);
  const flags = shebang.slice(shebang.indexOf("run") + 1);
  return [deno, "run", ...flags, "--cpu-prof", `--cpu-prof-dir=${profileDir}/${role}`, main];
}

interface Server {
  pt: ManagedPt;
  port: number;
  cert: string;
  iatMode: string;
}
async function server(
  command?: string[],
  options: Record<string, string> = {},
  state?: string,
): Promise<Server> {
  const port = freePort();
  const opts = Object.entries(options).map(([k, v]) => `obfs4:${k}=${v}`).join(";");
  const pt = await startObfs4proxy({
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${port}`,
    TOR_PT_ORPORT: `127.0.0.1:${targetPort}`,
    TOR_PT_STATE_LOCATION: state ?? await tmp(),
    ...(opts === "" ? {} : { TOR_PT_SERVER_TRANSPORT_OPTIONS: opts }),
  }, command);
  const [addr, args] = pt.method;
  return {
    pt,
    port: Number(addr!.split(":")[1]),
    cert: args!.match(/cert=([^,]+)/)![1]!,
    iatMode: args!.match(/iat-mode=(\d)/)?.[1] ?? "0",
  };
}
interface Client {
  pt: ManagedPt;
  socks: { hostname: string; port: number };
}
async function client(command?: string[]): Promise<Client> {
  const pt = await startObfs4proxy({
    TOR_PT_CLIENT_TRANSPORTS: "obfs4",
    TOR_PT_STATE_LOCATION: await tmp(),
  }, command);
  const [host, port] = pt.method[1]!.split(":");
  return { pt, socks: { hostname: host!, port: Number(port) } };
}

async function dial(c: Client, s: Server): Promise<Deno.TcpConn> {
  return await socks5Connect(c.socks, { hostname: "127.0.0.1", port: s.port }, {
    username: `cert=${s.cert};iat-mode=${s.iatMode}`,
    password: "\0",
  });
}

function header(mode: string, n: number): Uint8Array {
  const h = new Uint8Array(5);
  h[0] = mode.charCodeAt(0);
  new DataView(h.buffer).setUint32(1, n);
  return h;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let o = 0; o < data.length;) o += await conn.write(data.subarray(o));
}

/** One transfer of `n` bytes; returns when the last byte arrived. */
async function transfer(c: Client, s: Server, mode: "U" | "D", n: number): Promise<void> {
  const conn = await dial(c, s);
  try {
    await writeAll(conn, header(mode, n));
    const buf = new Uint8Array(CHUNK * 4);
    if (mode === "U") {
      const data = crypto.getRandomValues(new Uint8Array(CHUNK));
      for (let sent = 0; sent < n; sent += CHUNK) {
        await writeAll(conn, data.subarray(0, Math.min(CHUNK, n - sent)));
      }
      if (await conn.read(buf) === null) throw new Error("Stream ended early");
    } else {
      for (let got = 0; got < n;) {
        const r = await conn.read(buf);
        if (r === null) throw new Error("Stream ended early");
        got += r;
      }
    }
  } finally {
    conn.close();
  }
}

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;
const quantile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.floor(p * (values.length - 1))]!;

async function throughput(c: Client, s: Server) {
  let t = performance.now();
  await transfer(c, s, "U", size);
  const up = mbps(size, performance.now() - t);
  t = performance.now();
  await transfer(c, s, "D", size);
  const down = mbps(size, performance.now() - t);
  // 16 streams together: 8 up, 8 down, `size` bytes in all.
  const each = Math.floor(size / 16);
  t = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, (_, i) => transfer(c, s, i % 2 ? "D" : "U", each)),
  );
  const multi = mbps(each * 16, performance.now() - t);
  return { up, down, multi };
}

const ECHO_HEAD = new Uint8Array([0x45, 0, 0, 0, 0, 7]);

/** Median of SOCKS connect + handshake + 1-byte echo, 50 connections in turn. */
async function latency(c: Client, s: Server): Promise<number> {
  const times: number[] = [];
  const buf = new Uint8Array(16);
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    const conn = await dial(c, s);
    await writeAll(conn, ECHO_HEAD);
    if (await conn.read(buf) === null) throw new Error("No echo");
    times.push(performance.now() - t);
    conn.close();
  }
  return median(times);
}

/** What {@linkcode handshakeRate} measured. */
interface HandshakeRate {
  /** Handshakes per second. */
  rate: number;
  /** CPU microseconds (user + system, all threads) per handshake of the client process. */
  clientCpu: number;
  /** The same of the server process. */
  serverCpu: number;
}

/**
 * Handshakes per second: 64 clients each connecting, echoing 1 byte,
 * closing, for `ms`; with the CPU time each side's process took per
 * handshake (from /proc), the figure a shared, loaded machine does not
 * skew as much as the rate.
 */
async function handshakeRate(c: Client, s: Server, ms: number): Promise<HandshakeRate> {
  const cpuBefore = [cpuSeconds(c.pt.pid), cpuSeconds(s.pt.pid)];
  let done = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => {
    const buf = new Uint8Array(16);
    while (performance.now() < end) {
      const conn = await dial(c, s);
      await writeAll(conn, ECHO_HEAD);
      if (await conn.read(buf) === null) throw new Error("No echo");
      conn.close();
      done++;
    }
  }));
  const rate = done / ((performance.now() - start) / 1000);
  const perHandshake = (pid: number, before: number) => (cpuSeconds(pid) - before) / done * 1e6;
  return {
    rate,
    clientCpu: perHandshake(c.pt.pid, cpuBefore[0]!),
    serverCpu: perHandshake(s.pt.pid, cpuBefore[1]!),
  };
}

/**
 * A process's resident memory, and the part of it that is its own
 * (anonymous: heaps, stacks, buffers). The rest is mapped files, chiefly
 * the executable: Deno's maps 45-50 MiB of its 95 MB binary into each
 * process, page cache shared with every other Deno process, where
 * obfs4proxy's maps 6.
 */
async function rss(pid: number): Promise<{ rss: number; anon: number }> {
  const rollup = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
  const kib = (field: string) =>
    Number(rollup.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))![1]) * 1024;
  return { rss: kib("Rss"), anon: kib("Anonymous") };
}

/** Resident memory of client and server with 1000 idle connections open. */
async function idleMemory(c: Client, s: Server) {
  const settle = () => new Promise((r) => setTimeout(r, 1000));
  const conns: Deno.Conn[] = [];
  const buf = new Uint8Array(16);
  try {
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, async () => {
        const conn = await dial(c, s);
        conns.push(conn);
        await writeAll(conn, ECHO_HEAD);
        await conn.read(buf);
      }));
    }
    await settle();
    return { client: await rss(c.pt.pid), server: await rss(s.pt.pid) };
  } finally {
    for (const conn of conns) conn.close();
    await settle();
  }
}

/** Milliseconds from exec to the line matching `until`. */
async function startTime(
  command: string[],
  env: Record<string, string>,
  until: RegExp,
): Promise<number> {
  const t = performance.now();
  const child = new Deno.Command(command[0]!, {
    args: command.slice(1),
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!until.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${command.join(" ")} ended before ${until}`);
    text += value;
  }
  const ms = performance.now() - t;
  try {
    child.kill("SIGKILL");
  } catch {
    // Exited already (the empty program ends right after its line).
  }
  await child.status;
  await reader.cancel().catch(() => {});
  await child.stdin.close().catch(() => {});
  return ms;
}

/**
 * Time to the server's first handshake byte: a raw client sends a
 * ready-made client handshake right after connecting and waits for the
 * first byte of the answer; the servers take turns, 20 warm-up rounds, then
 * `n`. Milliseconds from the handshake sent.
 */
async function firstByte(servers: Server[], n: number) {
  const backend = await loadWasmCrypto();
  const messages = servers.map((s) =>
    Array.from(
      { length: n + 20 },
      () =>
        new ClientHandshake(backend, parseClientConfig({ cert: s.cert, "iat-mode": "0" }).identity)
          .message,
    )
  );
  const fromSent = servers.map((): number[] => []);
  const buf = new Uint8Array(16384);
  for (let i = 0; i < n + 20; i++) {
    for (const [j, s] of servers.entries()) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
      await writeAll(conn, messages[j]![i]!);
      const sent = performance.now();
      if (await conn.read(buf) === null) throw new Error("No handshake answer");
      if (i >= 20) fromSent[j]!.push(performance.now() - sent);
      conn.close();
    }
  }
  return fromSent.map((times) => ({ median: median(times), p90: quantile(times, 0.9) }));
}

/** The table: one row per figure. */
interface Row {
  readonly name: string;
  readonly unit: string;
  readonly go: number;
  readonly pt: number;
  /** The issue's target for pt / go, and whether higher is better. */
  readonly target?: { readonly ratio: number; readonly higher: boolean };
  /** What the ratio is taken against when it is not obfs4proxy's figure. */
  readonly baseName?: string;
}
const rows: Row[] = [];
const higher = (ratio: number) => ({ ratio, higher: true });
const lower = (ratio: number) => ({ ratio, higher: false });

const goServer = await server();
// ptkit's server on a state directory it made before the start-up runs.
const ptState = await tmp();
// One worker (the server's default is the CPUs): the pairs compare one
// process with one; the workers rows below take -workers 2.
const ptServer = await server([...ptkit("server"), "-workers", "1"], {}, ptState);
const goClient = await client();
const ptClient = await client(ptkit("client"));
type Pair = [string, Client, Server];
const pairs: Pair[] = [
  ["obfs4proxy pair", goClient, goServer],
  ["ptkit pair", ptClient, ptServer],
  ["ptkit client + obfs4proxy server", ptClient, goServer],
  ["obfs4proxy client + ptkit server", goClient, ptServer],
];

/**
 * One row per ptkit pair and mixed pair for a figure measured on `pairs` in
 * order, each against the obfs4proxy pair's (the first value); the ptkit
 * pair's row is named `figure, pairLabel`.
 */
function pairRows(
  figure: string,
  unit: string,
  values: number[],
  target: Row["target"],
  pairLabel = "pair",
): Row[] {
  return pairs.slice(1).map(([name], i) => ({
    name: `${figure}, ${name === "ptkit pair" ? pairLabel : name}`,
    unit,
    go: values[0]!,
    pt: values[i + 1]!,
    ...(target === undefined ? {} : { target }),
  }));
}

if (run("start")) {
  progress("start-up, exec to *METHODS DONE, median of 10 each");
  const empty = `${await tmp()}/empty.ts`;
  await Deno.writeTextFile(empty, 'console.log("DONE");\n');
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  };
  const clientEnv = { ...env, TOR_PT_CLIENT_TRANSPORTS: "obfs4", TOR_PT_STATE_LOCATION: ptState };
  const serverEnv = {
    ...env,
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
    TOR_PT_ORPORT: `127.0.0.1:${targetPort}`,
  };
  const goState = await tmp();
  const times = { empty: [] as number[], ptc: [] as number[], pts: [] as number[] };
  const goTimes = { c: [] as number[], s: [] as number[] };
  for (let i = 0; i < 10; i++) {
    times.empty.push(await startTime([deno, "run", empty], env, /DONE/));
    times.ptc.push(await startTime([main], clientEnv, /CMETHODS DONE/));
    times.pts.push(
      await startTime([main], { ...serverEnv, TOR_PT_STATE_LOCATION: ptState }, /SMETHODS DONE/),
    );
    goTimes.c.push(await startTime(["obfs4proxy"], clientEnv, /CMETHODS DONE/));
    goTimes.s.push(
      await startTime(
        ["obfs4proxy"],
        { ...serverEnv, TOR_PT_STATE_LOCATION: goState },
        /SMETHODS DONE/,
      ),
    );
  }
  const e = median(times.empty);
  rows.push(
    {
      name: "exec to CMETHODS DONE (vs empty deno run)",
      unit: "ms",
      go: e,
      pt: median(times.ptc),
      target: lower(1.5),
      baseName: "empty deno run",
    },
    {
      name: "exec to SMETHODS DONE (vs empty deno run)",
      unit: "ms",
      go: e,
      pt: median(times.pts),
      target: lower(1.5),
      baseName: "empty deno run",
    },
    {
      name: "exec to CMETHODS DONE (vs obfs4proxy)",
      unit: "ms",
      go: median(goTimes.c),
      pt: median(times.ptc),
    },
    {
      name: "exec to SMETHODS DONE (vs obfs4proxy)",
      unit: "ms",
      go: median(goTimes.s),
      pt: median(times.pts),
    },
  );
}

if (run("throughput")) {
  // Warm up every path (JIT, crypto load).
  for (const [, c, s] of pairs) await transfer(c, s, "U", 4 * 1024 * 1024);
  const tp: { up: number; down: number; multi: number }[] = [];
  for (const [name, c, s] of pairs) {
    progress(`throughput, ${name}, ${size / 2 ** 20} MiB per run`);
    tp.push(await throughput(c, s));
  }
  const [go, pt, ptGo, goPt] = tp as [typeof tp[0], typeof tp[0], typeof tp[0], typeof tp[0]];
  rows.push(
    { name: "pair, one stream up", unit: "MB/s", go: go.up, pt: pt.up, target: higher(1.5) },
    { name: "pair, one stream down", unit: "MB/s", go: go.down, pt: pt.down, target: higher(1.5) },
    { name: "pair, 16 streams", unit: "MB/s", go: go.multi, pt: pt.multi, target: higher(1.3) },
  );
  for (
    const [label, t] of [["ptkit client + obfs4proxy server", ptGo], [
      "obfs4proxy client + ptkit server",
      goPt,
    ]] as const
  ) {
    rows.push(
      { name: `${label}, up`, unit: "MB/s", go: go.up, pt: t.up, target: higher(1) },
      { name: `${label}, down`, unit: "MB/s", go: go.down, pt: t.down, target: higher(1) },
      { name: `${label}, 16 streams`, unit: "MB/s", go: go.multi, pt: t.multi, target: higher(1) },
    );
  }
}

if (run("latency")) {
  const lat: number[] = [];
  for (const [name, c, s] of pairs) {
    progress(`latency, ${name}: connect + handshake + 1-byte echo, median of 50`);
    lat.push(await latency(c, s));
  }
  rows.push(...pairRows("latency", "ms", lat, lower(1)));
}

if (run("handshakes")) {
  // Warm up every path first (JIT): one second of handshakes a pair.
  progress("handshakes per second, warm-up, 1 s a pair");
  for (const [, c, s] of pairs) await handshakeRate(c, s, 1000);
  const measured: HandshakeRate[] = [];
  for (const [name, c, s] of pairs) {
    progress(`handshakes per second, ${name}, 64 concurrent clients for 3 s`);
    measured.push(await handshakeRate(c, s, 3000));
  }
  rows.push(
    ...pairRows("handshakes/s", "1/s", measured.map((m) => m.rate), higher(1), "64 clients, pair"),
  );
  // CPU per handshake (user + system of the process, all its threads), each
  // ptkit side against obfs4proxy's same side in the obfs4proxy pair; the
  // mixed pairs' rows show the ptkit side in them (against obfs4proxy's
  // other side).
  const [go, pt, ptGo, goPt] = measured as [
    HandshakeRate,
    HandshakeRate,
    HandshakeRate,
    HandshakeRate,
  ];
  rows.push(
    { name: "CPU per handshake, client, pair", unit: "us", go: go.clientCpu, pt: pt.clientCpu },
    { name: "CPU per handshake, server, pair", unit: "us", go: go.serverCpu, pt: pt.serverCpu },
    {
      name: "CPU per handshake, client, vs obfs4proxy server",
      unit: "us",
      go: go.clientCpu,
      pt: ptGo.clientCpu,
    },
    {
      name: "CPU per handshake, server, vs obfs4proxy client",
      unit: "us",
      go: go.serverCpu,
      pt: goPt.serverCpu,
    },
  );
}

if (run("workers")) {
  // -workers 2: two processes share the port (SO_REUSEPORT), same state.
  const twoWorkers = await server([...ptkit("server-workers"), "-workers", "2"], {}, ptState);
  // The second worker starts after SMETHODS DONE: give it time to serve.
  await new Promise((r) => setTimeout(r, 2000));
  await transfer(ptClient, twoWorkers, "U", 4 * 1024 * 1024);
  const each = Math.floor(size / 16);
  const multi = async (s: Server) => {
    const t = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, (_, i) => transfer(ptClient, s, i % 2 ? "D" : "U", each)),
    );
    return mbps(each * 16, performance.now() - t);
  };
  const goMulti = async () => {
    const t = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, (_, i) => transfer(goClient, goServer, i % 2 ? "D" : "U", each)),
    );
    return mbps(each * 16, performance.now() - t);
  };
  progress(`workers, 16 streams: obfs4proxy pair, ptkit -workers 1, ptkit -workers 2`);
  const go16 = await goMulti();
  const one16 = await multi(ptServer);
  const two16 = await multi(twoWorkers);
  progress("workers, handshakes per second, 64 concurrent clients for 3 s each");
  // Rates only: -workers 2's handshakes run in its child processes.
  const goRate = (await handshakeRate(goClient, goServer, 3000)).rate;
  const oneRate = (await handshakeRate(ptClient, ptServer, 3000)).rate;
  const twoRate = (await handshakeRate(ptClient, twoWorkers, 3000)).rate;
  rows.push(
    {
      name: "pair, 16 streams, -workers 1",
      unit: "MB/s",
      go: go16,
      pt: one16,
      target: higher(1.3),
    },
    {
      name: "pair, 16 streams, -workers 2",
      unit: "MB/s",
      go: go16,
      pt: two16,
      target: higher(1.3),
    },
    {
      name: "handshakes/s, 64 clients, -workers 1",
      unit: "1/s",
      go: goRate,
      pt: oneRate,
      target: higher(1),
    },
    {
      name: "handshakes/s, 64 clients, -workers 2",
      unit: "1/s",
      go: goRate,
      pt: twoRate,
      target: higher(1),
    },
  );
  await twoWorkers.pt.stop();
}

if (run("firstbyte")) {
  progress("time to the server's first handshake byte, median of 200, servers in turn");
  const [go, pt] = await firstByte([goServer, ptServer], 200);
  rows.push(
    { name: "server's first handshake byte, median", unit: "ms", go: go!.median, pt: pt!.median },
    { name: "server's first handshake byte, p90", unit: "ms", go: go!.p90, pt: pt!.p90 },
  );
}

if (run("memory")) {
  progress("resident memory, 1000 idle connections through each pair");
  const go = await idleMemory(goClient, goServer);
  const pt = await idleMemory(ptClient, ptServer);
  const mib = (n: number) => n / 2 ** 20;
  rows.push(
    {
      name: "RSS, 1000 idle conns, client + server",
      unit: "MiB",
      go: mib(go.client.rss + go.server.rss),
      pt: mib(pt.client.rss + pt.server.rss),
      target: lower(1),
    },
    {
      name: "RSS, 1000 idle conns, client",
      unit: "MiB",
      go: mib(go.client.rss),
      pt: mib(pt.client.rss),
    },
    {
      name: "RSS, 1000 idle conns, server",
      unit: "MiB",
      go: mib(go.server.rss),
      pt: mib(pt.server.rss),
    },
    // What the processes hold of their own: RSS less the mapped files.
    {
      name: "RSS anonymous, 1000 idle conns, client + server",
      unit: "MiB",
      go: mib(go.client.anon + go.server.anon),
      pt: mib(pt.client.anon + pt.server.anon),
    },
    {
      name: "RSS anonymous, 1000 idle conns, client",
      unit: "MiB",
      go: mib(go.client.anon),
      pt: mib(pt.client.anon),
    },
    {
      name: "RSS anonymous, 1000 idle conns, server",
      unit: "MiB",
      go: mib(go.server.anon),
      pt: mib(pt.server.anon),
    },
  );
}

if (run("iat")) {
  // Both on one bridge (keys and drbg seed), so both draw their delays from
  // the same table.
  const iatSize = Number(Deno.env.get("OBFS4_BENCH_IAT_MIB") ?? 2) * 1024 * 1024;
  const bridge = { ...(await obfs4.generateConfig!()).server, "iat-mode": "1" };
  const goIat = await server(undefined, bridge);
  const ptIat = await server(ptkit("server-iat"), bridge);
  const mibps = async (c: Client, s: Server, mode: "U" | "D") => {
    const t = performance.now();
    await transfer(c, s, mode, iatSize);
    return iatSize / 2 ** 20 / ((performance.now() - t) / 1000);
  };
  progress(`iat-mode 1, ${iatSize / 2 ** 20} MiB each way, each pair`);
  const go = { down: await mibps(goClient, goIat, "D"), up: await mibps(goClient, goIat, "U") };
  const pt = { down: await mibps(ptClient, ptIat, "D"), up: await mibps(ptClient, ptIat, "U") };
  rows.push(
    { name: "iat-mode 1 pair, down", unit: "MiB/s", go: go.down, pt: pt.down },
    { name: "iat-mode 1 pair, up", unit: "MiB/s", go: go.up, pt: pt.up },
  );
  // A busy bridge: 50 downloads at once (obfs4proxy clients, so only the
  // server differs) while another connection echoes one byte every 20 ms.
  const busy = async (s: Server) => {
    const echo = await dial(goClient, s);
    await writeAll(echo, ECHO_HEAD.subarray(0, 5));
    const buf = new Uint8Array(16);
    const times: number[] = [];
    let stop = false;
    const probe = (async () => {
      while (!stop) {
        const t = performance.now();
        await writeAll(echo, new Uint8Array([1]));
        await echo.read(buf);
        times.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t = performance.now();
    await Promise.all(Array.from({ length: 50 }, () => transfer(goClient, s, "D", 256 * 1024)));
    const rate = 50 * 0.25 / ((performance.now() - t) / 1000);
    stop = true;
    await probe;
    echo.close();
    return { rate, p50: median(times), p90: quantile(times, 0.9) };
  };
  progress("iat-mode 1, 50 downloads of 256 KiB at once, another connection's echo latency");
  const goBusy = await busy(goIat);
  const ptBusy = await busy(ptIat);
  rows.push(
    {
      name: "iat-mode 1 server, 50 at once, total",
      unit: "MiB/s",
      go: goBusy.rate,
      pt: ptBusy.rate,
    },
    { name: "iat-mode 1 server busy, echo p50", unit: "ms", go: goBusy.p50, pt: ptBusy.p50 },
    { name: "iat-mode 1 server busy, echo p90", unit: "ms", go: goBusy.p90, pt: ptBusy.p90 },
  );
  await goIat.pt.stop();
  await ptIat.pt.stop();
}

for (const p of [ptClient, goClient, ptServer, goServer]) await p.pt.stop();
target.close();
for (const d of dirs) await Deno.remove(d, { recursive: true });

// The table. The ratio is ptkit's figure over obfs4proxy's (or the named
// base); "ok" when it meets the issue's target.
const f = (n: number) => n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
console.log(
  `obfs4: ptkit against obfs4proxy 0.0.14, one run, loopback, ${
    size / 2 ** 20
  } MiB per throughput run`,
);
console.log(
  `${"figure".padEnd(48)} ${"unit".padEnd(5)} ${"base".padStart(8)} ${"ptkit".padStart(8)} ${
    "ratio".padStart(6)
  }  target`,
);
for (const row of rows) {
  const ratio = row.pt / row.go;
  const target = row.target === undefined
    ? ""
    : `${row.target.higher ? ">=" : "<="} ${row.target.ratio.toFixed(1)} ${
      (row.target.higher ? ratio >= row.target.ratio : ratio <= row.target.ratio) ? "ok" : "MISSED"
    }`;
  console.log(
    `${row.name.padEnd(48)} ${row.unit.padEnd(5)} ${f(row.go).padStart(8)} ${
      f(row.pt).padStart(8)
    } ${ratio.toFixed(2).padStart(6)}  ${target}${
      row.baseName === undefined ? "" : ` (base: ${row.baseName})`
    }`,
  );
}
Deno.exit(0);
