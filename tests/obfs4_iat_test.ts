// Copyright the ptkit authors. MIT license.

// obfs4's inter-arrival-time obfuscation as a censor sees it: the gaps
// between network writes. ptkit must put on the wire what obfs4proxy 0.0.14
// puts there for the same bridge seed: a sampled delay of 0 sends back to
// back, and any other delay lasts as long as Go's `time.Sleep` makes it,
// with no per-write timer floor of its own.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { sha256 } from "@noble/hashes/sha2.js";
import { createObfs4, obfs4 } from "../transports/obfs4/mod.ts";
import { obfs4proxySleep } from "../transports/obfs4/_iat.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { distributionValues } from "../transports/obfs4/_weighted_dist.ts";
import { freePort, type ManagedPt, startObfs4proxy } from "./obfs4_live_helpers.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { kolmogorovQ, ksTwoSample, seededUniform } from "./obfs4_stats.ts";
import { seededRandom } from "./portable_checks.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const SEGMENT = 1448;
/**
 * The bridge seed of the comparison. Its IAT table (SHA-256 of the seed)
 * holds 84 delays, 0 among them (drawn about 2% of the time), and about 12%
 * of draws are under 1 ms: both ends of what the timers must get right.
 */
const SEED = "7f" + "13".repeat(23);
const WRITES = 2000;

Deno.test("obfs4proxySleep: 0 returns at once (no task boundary); others never end before what is asked, nor 1 ms, as Go's netpoller", async () => {
  strictEqual(obfs4proxySleep(0), undefined);
  strictEqual(obfs4proxySleep(-1), undefined);
  // Go on Linux: under 1 ms takes 1 ms; 1.5 ms a wait of 1 ms then one
  // more; 4.7 ms a wait of 4 ms then one more. Each wait may overrun (a
  // busy machine): a wait of 4 ms that ends at 4.9 ends the sleep there.
  // What holds whatever the load: never less than asked, nor than 1 ms.
  for (const [ms, least] of [[0.3, 1], [1, 1], [1.5, 1.5], [3, 3], [4.7, 4.7]] as const) {
    const start = performance.now();
    await obfs4proxySleep(ms);
    const took = performance.now() - start;
    ok(took >= least, `${ms} ms took ${took.toFixed(3)} ms, under ${least}`);
  }
  // Concurrent sleeps are all served.
  const sleeps = Array.from({ length: 20 }, (_, i) => obfs4proxySleep(0.1 + i / 4));
  await Promise.all(sleeps);
});

Deno.test("obfs4 iatSleep hook: called once per network write in IAT modes with obfs4proxy's delays, never in mode 0", async () => {
  for (const mode of ["0", "1", "2"]) {
    const delays: number[] = [];
    // A bridge's delays come from its drbg seed's distribution, which may
    // hold one value (lyrebird's WeightedDist draws how many, from 1): a
    // random bridge gave 4.9 ms for all 44 writes in CI. Seeded bytes give
    // a bridge whose distribution holds many.
    const transport = createObfs4({
      random: seededRandom(Number(mode) + 1),
      iatSleep: (ms) => {
        delays.push(ms);
        return obfs4proxySleep(Math.min(ms, 0.2)); // Quick, but a real wait.
      },
    });
    const server = await transport.server({ "iat-mode": mode }, { local: new MemoryStore() });
    const client = await transport.client(server.clientOptions);
    const c = client.pair({});
    const s = server.pair();
    // Wire them back to back.
    c.encode.readable.pipeTo(s.decode.writable).catch(() => {});
    s.encode.readable.pipeTo(c.decode.writable).catch(() => {});
    const writer = s.encode.writable.getWriter();
    const reader = c.decode.readable.getReader();
    await s.ready;
    const data = crypto.getRandomValues(new Uint8Array(60_000));
    writer.write(data).catch(() => {});
    let got = 0;
    while (got < data.length) {
      const { value, done } = await reader.read();
      if (done) break;
      got += value.length;
    }
    strictEqual(got, data.length);
    if (mode === "0") {
      deepStrictEqual(delays, []);
    } else {
      // Mode 1 writes whole segments: at least 60 kB / 1448 waits.
      ok(delays.length >= (mode === "1" ? 41 : 1), `mode ${mode}: ${delays.length} waits`);
      // Each is a sampled delay: 0 to 10 ms in steps of 0.1 ms.
      for (const ms of delays) {
        ok(
          ms >= 0 && ms <= 10 && Number.isInteger(Math.round(ms * 1e6) / 1e5),
          `mode ${mode}: ${ms}`,
        );
      }
      ok(new Set(delays).size > 1, `mode ${mode}: ${delays}`);
    }
    await writer.close().catch(() => {});
    reader.cancel().catch(() => {});
  }
});

Deno.test("ksTwoSample: the same distribution passes, a shift of a tenth of its spread does not", () => {
  // Kolmogorov's distribution at its usual critical values.
  ok(Math.abs(kolmogorovQ(1.358) - 0.05) < 0.001, String(kolmogorovQ(1.358)));
  ok(Math.abs(kolmogorovQ(1.628) - 0.01) < 0.0005, String(kolmogorovQ(1.628)));
  ok(Math.abs(kolmogorovQ(0.5) - 0.9639) < 0.001, String(kolmogorovQ(0.5)));
  const u = seededUniform(7);
  const same = ksTwoSample(Array.from({ length: 2000 }, u), Array.from({ length: 2000 }, u));
  ok(same.p > 0.05, `same: ${JSON.stringify(same)}`);
  const shifted = ksTwoSample(
    Array.from({ length: 2000 }, u),
    Array.from({ length: 2000 }, () => u() + 0.1),
  );
  ok(shifted.p < 1e-6 && Math.abs(shifted.d - 0.1) < 0.04, `shifted: ${JSON.stringify(shifted)}`);
  // Ties (discrete data) are stepped over together.
  strictEqual(ksTwoSample([0, 0, 1, 1], [0, 0, 1, 1]).d, 0);
});

/** A TCP relay that timestamps every read of what the server side sends. */
function timestampingRelay(upstreamPort: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const reads: number[] = []; // time (ms), bytes, time, bytes, ...
  const done = (async () => {
    const client = await listener.accept();
    listener.close();
    const server = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
    const pipe = async (from: Deno.Conn, to: Deno.Conn, log: boolean) => {
      const buf = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          if (log) reads.push(performance.now(), n);
          for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
        }
      } catch {
        // One side went away.
      }
      for (const c of [from, to]) {
        try {
          c.close();
        } catch {
          // Closed.
        }
      }
    };
    await Promise.all([pipe(client, server, false), pipe(server, client, true)]);
  })();
  return { port: (listener.addr as Deno.NetAddr).port, reads, done };
}

/**
 * Gaps between the server's writes, from the relay's reads: a read of more
 * than one segment holds writes made back to back (gap 0).
 */
function writeGaps(reads: number[]): number[] {
  const gaps: number[] = [];
  for (let i = 2; i < reads.length; i += 2) {
    gaps.push(reads[i]! - reads[i - 2]!);
    for (let k = Math.ceil(reads[i + 1]! / SEGMENT); k > 1; k--) gaps.push(0);
  }
  return gaps;
}

/** A target that sends bulk data to whoever connects, until they leave. */
function startBulkTarget() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    for await (const conn of listener) {
      (async () => {
        const data = crypto.getRandomValues(new Uint8Array(65536));
        try {
          for (;;) await conn.write(data);
        } catch {
          // Gone.
        }
        try {
          conn.close();
        } catch {
          // Closed.
        }
      })();
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close(), served };
}

interface Pair {
  server: ManagedPt;
  client: ManagedPt;
  serverPort: number;
  cert: string;
}

async function startPair(
  command: string[] | undefined,
  options: Record<string, string>,
  targetPort: number,
  dir: string,
): Promise<Pair> {
  const serverPort = freePort();
  const opts = Object.entries(options).map(([k, v]) => `obfs4:${k}=${v}`).join(";");
  const server = await startObfs4proxy({
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${serverPort}`,
    TOR_PT_SERVER_TRANSPORT_OPTIONS: opts,
    TOR_PT_ORPORT: `127.0.0.1:${targetPort}`,
    TOR_PT_STATE_LOCATION: `${dir}/server`,
  }, command);
  const client = await startObfs4proxy({
    TOR_PT_CLIENT_TRANSPORTS: "obfs4",
    TOR_PT_STATE_LOCATION: `${dir}/client`,
  }, command).catch(async (error) => {
    await server.stop();
    throw error;
  });
  const cert = server.method[1]!.match(/cert=([^,]+)/)![1]!;
  return { server, client, serverPort, cert };
}

/** Download through `pair` via a timestamping relay until `writes` writes came. */
async function captureGaps(pair: Pair, writes: number) {
  const relay = timestampingRelay(pair.serverPort);
  const [host, port] = pair.client.method[1]!.split(":");
  const conn = await socks5Connect(
    { hostname: host!, port: Number(port) },
    { hostname: "127.0.0.1", port: relay.port },
    { username: `cert=${pair.cert};iat-mode=1`, password: "\0" },
  );
  const buf = new Uint8Array(65536);
  const start = performance.now();
  let bytes = 0;
  // The first reads carry the handshake: skip them.
  while (relay.reads.length / 2 < writes + 40) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("the download ended early");
    bytes += n;
  }
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  await relay.done;
  return {
    gaps: writeGaps(relay.reads.slice(40)).slice(0, writes),
    mibps: bytes / 2 ** 20 / seconds,
  };
}

function describe(gaps: number[]): string {
  const sorted = [...gaps].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.floor(p * (sorted.length - 1))]!.toFixed(2);
  const under = (ms: number) => (gaps.filter((g) => g < ms).length / gaps.length * 100).toFixed(1);
  return `quartiles ${q(0.25)}/${q(0.5)}/${q(0.75)} ms, ${under(0.05)}% under 0.05 ms, ` +
    `${under(1)}% under 1 ms, ${under(2)}% under 2 ms, mean ${
      (gaps.reduce((a, b) => a + b, 0) / gaps.length).toFixed(2)
    } ms`;
}

Deno.test(`obfs4 iat-mode 1: gaps between ${WRITES} writes on the wire match obfs4proxy's for the same bridge seed (two-sample KS, p > 0.01)`, async () => {
  const seed = Uint8Array.from(SEED.match(/../g)!, (h) => parseInt(h, 16));
  ok(
    distributionValues(sha256(seed).subarray(0, 24), 0, 100).includes(0),
    "the seed has no 0 delay",
  );
  const generated = await obfs4.generateConfig!();
  const options = { ...generated.server, "drbg-seed": SEED, "iat-mode": "1" };
  const target = startBulkTarget();
  const dir = await Deno.makeTempDir({ prefix: "ptkit_obfs4iat_" });
  const pairs: Pair[] = [];
  try {
    pairs.push(await startPair(undefined, options, target.port, `${dir}/go`));
    pairs.push(
      await startPair([Deno.execPath(), "run", "-A", MAIN], options, target.port, `${dir}/pt`),
    );
    // At p > 0.01, one capture in a hundred of two identical distributions
    // fails by chance, and a busy machine shifts wall-clock gaps a little
    // more (seen once in CI: D = 0.052, p = 0.0086, with the same quartiles
    // within 0.05 ms). So a failed comparison is made once more on fresh
    // captures, and the test fails only when both do. A real difference
    // fails both: a 2 ms timer floor, which removes the 13% of gaps under
    // 2 ms, makes D at least 0.13 and p about 1e-16 in each capture.
    let ks: ReturnType<typeof ksTwoSample> | undefined;
    for (let attempt = 1; attempt <= 2 && !(ks !== undefined && ks.p > 0.01); attempt++) {
      // Both at once: the same load on the machine for both.
      const [theirs, ours] = await Promise.all(pairs.map((p) => captureGaps(p, WRITES)));
      console.log(`capture ${attempt}:`);
      console.log(`obfs4proxy pair: ${theirs!.mibps.toFixed(3)} MiB/s; ${describe(theirs!.gaps)}`);
      console.log(`ptkit pair:      ${ours!.mibps.toFixed(3)} MiB/s; ${describe(ours!.gaps)}`);
      ks = ksTwoSample(ours!.gaps, theirs!.gaps);
      console.log(`KS: D = ${ks.d.toFixed(4)} at ${ks.at.toFixed(3)} ms, p = ${ks.p.toFixed(4)}`);
    }
    ok(
      ks!.p > 0.01,
      `gaps differ: D = ${ks!.d.toFixed(4)} at ${ks!.at.toFixed(3)} ms, p = ${ks!.p}`,
    );
  } finally {
    for (const p of pairs) await Promise.all([p.client.stop(), p.server.stop()]);
    target.close();
    await target.served;
    await Deno.remove(dir, { recursive: true });
  }
});
