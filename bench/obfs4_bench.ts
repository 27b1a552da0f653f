// Copyright the ptkit authors. MIT license.

// ptkit's obfs4 against Debian's obfs4proxy, side by side in one run, over
// loopback. Every peer is its own process: obfs4proxy client and server,
// ptkit client (main.ts, a managed PT with a SOCKS5 port, like obfs4proxy's)
// and ptkit server (this file with --serve, `proxy` in front of the target).
// Prints, per role, ptkit / obfs4proxy ratios with the other end obfs4proxy:
// throughput of one stream each way and of 16 streams together, SOCKS
// connect + obfs4 handshake + 1-byte echo latency, and resident memory per
// idle connection with 1000 connections open; then the time to the server's
// first handshake byte (each server, raw clients, median of 200) and
// iat-mode 1 throughput of a ptkit pair against an obfs4proxy pair on the
// same bridge seed. Not a test.
//
//   deno run -A bench/obfs4_bench.ts [MiB per throughput run, default 64]
//
// OBFS4_BENCH_ONLY=handshake,iat (any of throughput, memory, handshake, iat)
// runs only those parts; OBFS4_BENCH_IAT_MIB sizes the iat-mode 1 runs
// (default 2: about 8 s each at obfs4proxy's speed).

import { proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { parseClientConfig } from "../transports/obfs4/config.ts";
import { ClientHandshake } from "../transports/obfs4/handshake.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { freePort, type ManagedPt, startObfs4proxy } from "../tests/obfs4_live_helpers.ts";
import { socks5Connect } from "../tests/obfs4_socks5.ts";

const CHUNK = 65536;

if (Deno.args[0] === "--serve") {
  // Child mode: a ptkit obfs4 server in front of the target; speaks just
  // enough of the managed-PT protocol for startObfs4proxy.
  const manager = await proxy(obfs4, {}, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
    target: { hostname: "127.0.0.1", port: Number(Deno.args[1]) },
    onError: () => {},
  });
  console.log(
    `SMETHOD obfs4 127.0.0.1:${manager.addr.port} ARGS:cert=${manager.clientOptions.cert},iat-mode=0`,
  );
  console.log("SMETHODS DONE");
  // SIGTERM ends it too, through Deno.exit (so that --cpu-prof writes its profile).
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
  await manager.close();
  Deno.exit(0);
}

const size = Number(Deno.args[0] ?? 64) * 1024 * 1024;

// The target: first byte 'U' = read `n` bytes (u32 BE after it) then answer
// one byte; 'D' = send `n` bytes; 'E' = echo.
const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  for (let got = 0; got < buf.length;) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) return false;
    got += n;
  }
  return true;
}
(async () => {
  for await (const conn of target) {
    (async () => {
      const buf = new Uint8Array(CHUNK);
      try {
        const head = new Uint8Array(5);
        if (!await readFull(conn, head)) return;
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

interface Server {
  pt: ManagedPt;
  port: number;
  cert: string;
  iatMode: string;
}
async function server(command?: string[], options: Record<string, string> = {}): Promise<Server> {
  const port = freePort();
  const opts = Object.entries(options).map(([k, v]) => `obfs4:${k}=${v}`).join(";");
  const pt = await startObfs4proxy({
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${port}`,
    TOR_PT_ORPORT: `127.0.0.1:${targetPort}`,
    TOR_PT_STATE_LOCATION: await tmp(),
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

const deno = Deno.execPath();
const self = new URL(import.meta.url).pathname;
const main = new URL("../main.ts", import.meta.url).pathname;
// OBFS4_BENCH_PROFILE=<dir>: V8 CPU profiles of the ptkit processes go there.
const profileDir = Deno.env.get("OBFS4_BENCH_PROFILE");
const profile = (name: string) =>
  profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}/${name}`] : [];
const goServer = await server();
const ptServer = await server([
  deno,
  "run",
  "-A",
  ...profile("server"),
  self,
  "--serve",
  String(targetPort),
]);
const goClient = await client();
const ptClient = await client([deno, "run", "-A", ...profile("client"), main]);

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

/** Median of SOCKS connect + handshake + 1-byte echo, 50 connections in turn. */
async function latency(c: Client, s: Server): Promise<number> {
  const times: number[] = [];
  const buf = new Uint8Array(16);
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    const conn = await dial(c, s);
    await writeAll(conn, new Uint8Array([0x45, 0, 0, 0, 0, 7]));
    if (await conn.read(buf) === null) throw new Error("No echo");
    times.push(performance.now() - t);
    conn.close();
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

async function rss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]) * 1024;
}

/** RSS growth of client and server per idle connection, 1000 connections open. */
async function idleMemory(c: Client, s: Server) {
  const settle = () => new Promise((r) => setTimeout(r, 1000));
  await settle();
  const before = [await rss(c.pt.pid), await rss(s.pt.pid)];
  const conns: Deno.Conn[] = [];
  const buf = new Uint8Array(16);
  try {
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, async () => {
        const conn = await dial(c, s);
        conns.push(conn);
        await writeAll(conn, new Uint8Array([0x45, 0, 0, 0, 0, 7]));
        await conn.read(buf);
      }));
    }
    await settle();
    const after = [await rss(c.pt.pid), await rss(s.pt.pid)];
    return {
      client: (after[0]! - before[0]!) / 1000,
      server: (after[1]! - before[1]!) / 1000,
      clientTotal: after[0]!,
      serverTotal: after[1]!,
    };
  } finally {
    for (const conn of conns) conn.close();
    await settle();
  }
}

const only = Deno.env.get("OBFS4_BENCH_ONLY")?.split(",");
const run = (part: string) => only === undefined || only.includes(part);

const pairs: [string, Client, Server][] = [
  ["obfs4proxy client -> obfs4proxy server", goClient, goServer],
  ["ptkit client      -> obfs4proxy server", ptClient, goServer],
  ["obfs4proxy client -> ptkit server     ", goClient, ptServer],
  ["ptkit client      -> ptkit server     ", ptClient, ptServer],
];
const r = (a: number, b: number) => (a / b).toFixed(2);
if (run("throughput")) {
  // Warm up every path (JIT, libsodium load).
  for (const [, c, s] of pairs) await transfer(c, s, "U", 4 * 1024 * 1024);

  const tp: { up: number; down: number; multi: number }[] = [];
  const lat: number[] = [];
  for (const [, c, s] of pairs) {
    tp.push(await throughput(c, s));
    lat.push(await latency(c, s));
  }
  const f = (n: number, d = 0) => n.toFixed(d).padStart(5);
  console.log(
    `obfs4, loopback, ${size / 2 ** 20} MiB per throughput run; ratio = this / first row`,
  );
  console.log(
    "pipeline                                 upload MB/s    download MB/s  16 streams MB/s  latency ms",
  );
  pairs.forEach(([name], i) => {
    const t = tp[i]!;
    const b = tp[0]!;
    console.log(
      `${name}  ${f(t.up)} (${r(t.up, b.up)})   ${f(t.down)} (${r(t.down, b.down)})   ${
        f(t.multi)
      } (${r(t.multi, b.multi)})    ${f(lat[i]!, 1)} (${r(lat[i]!, lat[0]!)})`,
    );
  });
  console.log(
    "Issue ratios (ptkit / obfs4proxy, other end obfs4proxy): client up/down/16 " +
      `${r(tp[1]!.up, tp[0]!.up)}/${r(tp[1]!.down, tp[0]!.down)}/${
        r(tp[1]!.multi, tp[0]!.multi)
      }, ` +
      `server up/down/16 ${r(tp[2]!.up, tp[0]!.up)}/${r(tp[2]!.down, tp[0]!.down)}/${
        r(tp[2]!.multi, tp[0]!.multi)
      }, latency client ${r(lat[1]!, lat[0]!)} server ${r(lat[2]!, lat[0]!)}`,
  );
}
// OBFS4_BENCH_SKIP_MEMORY=1: as leaving "memory" out of OBFS4_BENCH_ONLY.
if (run("memory") && Deno.env.get("OBFS4_BENCH_SKIP_MEMORY") !== "1") {
  const goMem = await idleMemory(goClient, goServer);
  const ptMem = await idleMemory(ptClient, ptServer);
  const kb = (n: number) => (n / 1024).toFixed(0);
  console.log(
    `RSS per idle connection at 1000 connections, KiB: obfs4proxy client ${kb(goMem.client)}, ` +
      `ptkit client ${kb(ptMem.client)} (ratio ${r(ptMem.client, goMem.client)}); ` +
      `obfs4proxy server ${kb(goMem.server)}, ptkit server ${kb(ptMem.server)} ` +
      `(ratio ${r(ptMem.server, goMem.server)})`,
  );
  console.log(
    `RSS total with 1000 connections, MiB: obfs4proxy client ${
      (goMem.clientTotal / 2 ** 20).toFixed(0)
    }, ptkit client ${(ptMem.clientTotal / 2 ** 20).toFixed(0)}; obfs4proxy server ${
      (goMem.serverTotal / 2 ** 20).toFixed(0)
    }, ptkit server ${(ptMem.serverTotal / 2 ** 20).toFixed(0)}`,
  );
}

/**
 * Time to the server's first handshake byte: a raw client sends a
 * ready-made client handshake right after connecting and waits for the
 * first byte of the answer; the servers take turns, 20 warm-up rounds, then
 * `n`. Milliseconds from the handshake sent and from the connect started.
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
  const fromConnect = servers.map((): number[] => []);
  const buf = new Uint8Array(16384);
  for (let i = 0; i < n + 20; i++) {
    for (const [j, s] of servers.entries()) {
      const start = performance.now();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
      await writeAll(conn, messages[j]![i]!);
      const sent = performance.now();
      if (await conn.read(buf) === null) throw new Error("No handshake answer");
      const end = performance.now();
      conn.close();
      if (i >= 20) {
        fromSent[j]!.push(end - sent);
        fromConnect[j]!.push(end - start);
      }
    }
  }
  const q = (a: number[], p: number) =>
    [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))]!;
  return servers.map((_, j) => ({
    median: q(fromSent[j]!, 0.5),
    p90: q(fromSent[j]!, 0.9),
    p99: q(fromSent[j]!, 0.99),
    connectMedian: q(fromConnect[j]!, 0.5),
  }));
}

if (run("handshake")) {
  const [go, pt] = await firstByte([goServer, ptServer], 200);
  const ms = (x: number) => x.toFixed(3);
  console.log(
    `Time to the server's first handshake byte, median of 200 (p90, p99), ms: obfs4proxy ` +
      `${ms(go!.median)} (${ms(go!.p90)}, ${ms(go!.p99)}), ptkit ${ms(pt!.median)} ` +
      `(${ms(pt!.p90)}, ${ms(pt!.p99)}); ratio ${r(pt!.median, go!.median)}. From the connect: ` +
      `obfs4proxy ${ms(go!.connectMedian)}, ptkit ${ms(pt!.connectMedian)}; ratio ${
        r(pt!.connectMedian, go!.connectMedian)
      }`,
  );
}

if (run("iat")) {
  // Both pairs on one bridge (keys and drbg seed), so both draw their
  // delays from the same table.
  const iatSize = Number(Deno.env.get("OBFS4_BENCH_IAT_MIB") ?? 2) * 1024 * 1024;
  const bridge = { ...(await obfs4.generateConfig!()).server, "iat-mode": "1" };
  const goIat = await server(undefined, bridge);
  const ptIat = await server([deno, "run", "-A", main], bridge);
  const mibps = async (c: Client, s: Server, mode: "U" | "D") => {
    const t = performance.now();
    await transfer(c, s, mode, iatSize);
    return iatSize / 2 ** 20 / ((performance.now() - t) / 1000);
  };
  const go = { down: await mibps(goClient, goIat, "D"), up: await mibps(goClient, goIat, "U") };
  const pt = { down: await mibps(ptClient, ptIat, "D"), up: await mibps(ptClient, ptIat, "U") };
  console.log(
    `iat-mode 1, ${iatSize / 2 ** 20} MiB each way, MiB/s: obfs4proxy pair down ` +
      `${go.down.toFixed(3)} up ${go.up.toFixed(3)}; ptkit pair down ${pt.down.toFixed(3)} up ` +
      `${pt.up.toFixed(3)}; ratio ptkit / obfs4proxy down ${r(pt.down, go.down)} up ${
        r(pt.up, go.up)
      }`,
  );
  await goIat.pt.stop();
  await ptIat.pt.stop();
}

for (const p of [ptClient, goClient, ptServer, goServer]) await p.pt.stop();
target.close();
for (const d of dirs) await Deno.remove(d, { recursive: true });
Deno.exit(0);
