// Copyright the ptkit authors. MIT license.

// An on-path attacker who flips bits in a frame's length field: obfs4proxy
// does not drop the connection at once but reads a random 16 to 1446 more
// bytes first (the countermeasure against length-field probing); ptkit's
// server must do the same, on the same input, over real loopback TCP.

import { ok, strictEqual } from "node:assert";
import { writeFull } from "../net/conn_io.ts";
import { proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import type { TransportOptions } from "../transports/transport.ts";
import { freePort, startEcho, startObfs4proxy } from "./obfs4_live_helpers.ts";
import { ksTwoSample } from "./obfs4_stats.ts";
import { rawSession, readUntilClosed } from "./obfs4_wire_helpers.ts";

const CONNECTIONS = 200;
const AT_ONCE = 20;
/** Bytes sent per step after the tampered length, and the pause after each. */
const STEP = 8;
const SETTLE_MS = 3;
const MIN_BOX = 16;
const MAX_BOX = 1446;

/** Resolves true when `closed` settles within `ms`, else false. */
async function closedWithin(closed: Promise<void>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([closed.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A de-masked length outside [16, 1446], as a flipped bit would make. */
function invalidLength(): number {
  const r = crypto.getRandomValues(new Uint16Array(1))[0]!;
  return r % 8 === 0 ? r % MIN_BOX : MAX_BOX + 1 + (r % (0x10000 - MAX_BOX - 1));
}

/**
 * Complete a handshake, send a frame length out of range, then dribble
 * bytes until the server closes: how many bytes after the length field it
 * took (to {@linkcode STEP} bytes).
 */
async function bytesBeforeClose(port: number, cert: TransportOptions): Promise<number> {
  const session = await rawSession(port, cert);
  try {
    const masked = invalidLength() ^ session.masks.nextMask();
    await writeFull(session.conn, new Uint8Array([masked >> 8, masked & 0xff]));
    const closed = readUntilClosed(session.conn).then((n) => {
      strictEqual(n, 0, "the server answered a tampered frame");
    });
    const filler = crypto.getRandomValues(new Uint8Array(MAX_BOX));
    let sent = 0;
    while (sent < MAX_BOX) {
      if (await closedWithin(closed, SETTLE_MS)) return sent;
      const n = Math.min(STEP, MAX_BOX - sent);
      try {
        await writeFull(session.conn, filler.subarray(sent, sent + n));
      } catch {
        return sent; // Reset: it had closed.
      }
      sent += n;
    }
    // A whole largest frame followed the length: it must give up unprompted.
    ok(await closedWithin(closed, 10_000), `still open after ${MAX_BOX} further bytes`);
    return sent;
  } finally {
    session.conn.close();
  }
}

async function measure(port: number, cert: TransportOptions): Promise<number[]> {
  const counts: number[] = [];
  for (let i = 0; i < CONNECTIONS; i += AT_ONCE) {
    counts.push(
      ...await Promise.all(Array.from({ length: AT_ONCE }, () => bytesBeforeClose(port, cert))),
    );
  }
  return counts;
}

function checkSpread(name: string, counts: number[]): void {
  const sorted = [...counts].sort((a, b) => a - b);
  const quarters = [0, 0, 0, 0];
  for (const c of counts) {
    quarters[Math.min(3, Math.floor(((c - MIN_BOX) / (MAX_BOX + 1 - MIN_BOX)) * 4))]!++;
  }
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  console.log(
    `${name}: further bytes before the close over ${counts.length} connections: ` +
      `min ${sorted[0]}, median ${sorted[counts.length >> 1]}, mean ${mean.toFixed(0)}, ` +
      `max ${sorted.at(-1)}; by quarter of [16, 1446]: ${quarters.join(" ")}`,
  );
  // Never before 16 bytes (the shortest box), always by 1446 (the longest).
  ok(sorted[0]! >= MIN_BOX, `${name} closed after ${sorted[0]} further bytes`);
  ok(sorted.at(-1)! <= MAX_BOX, `${name} closed after ${sorted.at(-1)} further bytes`);
  // Uniform over [16, 1446]: 50 a quarter expected (sd 6), extremes near the
  // ends (a miss has probability below 1e-5).
  for (const q of quarters) ok(q >= 25, `${name}: quarters ${quarters}`);
  ok(
    sorted[0]! < MIN_BOX + 100 && sorted.at(-1)! > MAX_BOX - 100,
    `${name}: ${sorted[0]}..${sorted.at(-1)}`,
  );
}

Deno.test(`obfs4 server reads a random 16-1446 further bytes after a tampered frame length before closing, like obfs4proxy (${CONNECTIONS} connections each)`, async () => {
  const echo = startEcho();
  const manager = await proxy(obfs4, {}, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
    target: { hostname: "127.0.0.1", port: echo.addr.port },
    onError: () => {},
  });
  const dir = await Deno.makeTempDir({ prefix: "ptkit_obfs4t_" });
  const port = freePort();
  let go;
  try {
    go = await startObfs4proxy({
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${port}`,
      TOR_PT_ORPORT: `127.0.0.1:${echo.addr.port}`,
      TOR_PT_STATE_LOCATION: dir,
    });
    const goCert = { cert: go.method[1]!.match(/cert=([^,]+)/)![1]!, "iat-mode": "0" };
    const ours = await measure(manager.addr.port, manager.clientOptions);
    const theirs = await measure(port, goCert);
    checkSpread("ptkit", ours);
    checkSpread("obfs4proxy", theirs);
    const ks = ksTwoSample(ours, theirs);
    console.log(`ptkit vs obfs4proxy: KS D = ${ks.d.toFixed(3)}, p = ${ks.p.toFixed(3)}`);
    ok(ks.p > 0.001, `the two spreads differ: D = ${ks.d.toFixed(3)} at ${ks.at}, p = ${ks.p}`);
  } finally {
    await go?.stop();
    await manager.close();
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});
