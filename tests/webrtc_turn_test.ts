// Copyright the ptkit authors. MIT license.
// WebRTC in headless Chromium (Debian's `chromium`) through ptkit's TURN, as a
// messenger's voice/video app uses it: two RTCPeerConnections in one page,
// iceTransportPolicy "relay" and ptkit as the only ICE server, data-channel
// messages both ways, from one byte to the SCTP maximum. First the
// standalone TURN server (what `main.ts turn` runs), then STUN mode: Chromium
// talks TURN to a client PT, whose flows cross plain or obfs4 to a server
// PT ending them in its embedded TURN server (`-mode STUN -target turn`).
// A peer connection with a wrong password gets no relay candidate; closing
// the peer connections frees their allocations.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { inChromium } from "./chromium_util.ts";
import { PtProcess } from "./ipc_util.ts";
import { freePort, sample } from "./metrics_util.ts";
import { serveTurnUdp } from "../udp/turn/_udp_server.ts";
import type { TurnServerStats } from "../udp/turn/_turn_server.ts";

const PAGE_SCRIPT = await Deno.readTextFile(new URL("./webrtc_turn_page.js", import.meta.url));
const HTML = '<!doctype html>\n<meta charset="utf-8">\n<title>ptkit WebRTC through TURN</title>\n' +
  '<script type="module" src="/page.js"></script>\n';
// One byte, a datagram's worth, 64 KiB and the largest message Chromium's
// SCTP takes (its maxMessageSize, 256 KiB).
const SIZES = [1, 1200, 65_536, "max"] as const;
const WRONG_PASSWORD = "wrong-password-4f1c";

/** What the page reports (tests/webrtc_turn_page.js). */
interface Report {
  bad: { candidates: string[][]; errors: { url: string; code: number; text: string }[][] };
  candidates: string[][];
  errors: unknown[][];
  states: string[][];
  maxMessageSize: number;
  sizes: number[];
  forward: string[];
  backward: string[];
  pair?: { local: string; relayProtocol: string; remote: string };
}

/** The page's message `index` of a run with `seed` (its `message`). */
function message(seed: number, index: number, size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let j = 0; j < size; j++) bytes[j] = (j * 31 + seed * 7 + index) & 255;
  return bytes;
}

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Wait (at most 10 s, a hang guard) until `done()`; returns its last answer. */
async function until<T>(probe: () => T | Promise<T>, done: (value: T) => boolean): Promise<T> {
  let value = await probe();
  for (let i = 0; i < 100 && !done(value); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await probe();
  }
  return value;
}

/**
 * Run the page against TURN at 127.0.0.1:`port` (user, good password, and
 * a wrong one for the lone gathering peer); `connected` and `closed` run
 * when the page calls them. Checks what every run shares: relay candidates
 * only, both peers connected over a relay pair, every message intact.
 */
async function runPage(
  port: number,
  user: string,
  password: string,
  hooks: { connected(): void | Promise<void>; closed(): Promise<void> },
): Promise<Report> {
  const server = (credential: string) => [
    { urls: `turn:127.0.0.1:${port}`, username: user, credential },
  ];
  const report = await inChromium<Report>({
    html: HTML,
    scripts: { "/page.js": PAGE_SCRIPT },
    timeoutMs: 60_000,
    async handle(request) {
      const { pathname } = new URL(request.url);
      if (pathname === "/config") {
        return Response.json({ good: server(password), bad: server(WRONG_PASSWORD), sizes: SIZES });
      }
      if (pathname === "/connected") await hooks.connected();
      else if (pathname === "/closed") await hooks.closed();
      else return undefined;
      return new Response("ok");
    },
  });
  // A wrong password: Chromium is told 401 and has no relay candidate.
  deepStrictEqual(report.bad.candidates, [[]], "no candidate with a wrong password");
  ok(
    report.bad.errors[0]!.some((e) => e.code === 401),
    `Chromium saw no 401: ${JSON.stringify(report.bad.errors)}`,
  );
  for (const side of [0, 1]) {
    const candidates = report.candidates[side]!;
    ok(candidates.length > 0, `peer ${side} gathered no candidate`);
    for (const candidate of candidates) {
      ok(/ udp \d+ 127\.0\.0\.1 \d+ typ relay /.test(candidate), candidate);
    }
    deepStrictEqual(report.errors[side], [], `peer ${side}: ICE candidate errors`);
    strictEqual(report.states[side]!.at(-1), "connected");
  }
  deepStrictEqual(report.pair, { local: "relay", relayProtocol: "udp", remote: "relay" });
  ok(report.maxMessageSize >= 65_536, `maxMessageSize ${report.maxMessageSize}`);
  deepStrictEqual(report.sizes, [1, 1200, 65_536, report.maxMessageSize]);
  for (const [name, seed] of [["forward", 1], ["backward", 2]] as const) {
    const expected = await Promise.all(
      report.sizes.map((size, i) => sha256(message(seed, i, size))),
    );
    deepStrictEqual(report[name], expected, `${name} messages`);
  }
  return report;
}

/** Drops that a healthy run has none of (see `noPermission` below). */
function unexpectedDrops(drops: TurnServerStats["drops"]): Record<string, number> {
  // A peer's first connectivity check may reach a relay before that
  // relay's own client has made its permission (each side learns the
  // other's candidate at its own time): dropped as `noPermission`, as
  // coturn drops it, and ICE checks again.
  const { noPermission: _, ...rest } = drops;
  return Object.fromEntries(Object.entries(rest).filter(([, n]) => n !== 0));
}

Deno.test("Chromium WebRTC through the standalone TURN server: relay candidates, connected, 1 B to 256 KiB data-channel messages both ways, allocations freed on close", async () => {
  const turn = await serveTurnUdp({
    hostname: "127.0.0.1",
    port: 0,
    realm: "ptkit.test",
    users: { alice: "correct horse" },
    allowLoopbackPeers: true,
  });
  try {
    let live: TurnServerStats | undefined;
    let freed: TurnServerStats | undefined;
    await runPage(turn.addr.port, "alice", "correct horse", {
      connected: () => void (live = turn.stats()),
      closed: async () =>
        void (freed = await until(() => turn.stats(), (s) => s.allocations === 0)),
    });
    strictEqual(live?.allocations, 2, "one allocation per peer connection");
    ok(live.relayedToPeers > 0 && live.relayedToClients > 0, JSON.stringify(live));
    deepStrictEqual(unexpectedDrops(live.drops), {});
    // Chromium's Refresh with LIFETIME 0 on close deletes them.
    deepStrictEqual(
      [freed?.allocations, freed?.permissions, freed?.channels, freed?.reservations],
      [0, 0, 0, 0],
      "allocations left after close",
    );
    // The wrong password allocated nothing.
    strictEqual(freed?.allocationsTotal, 2);
    deepStrictEqual(unexpectedDrops(freed.drops), {});
  } finally {
    await turn.close();
  }
});

/** Parse `SMETHOD name addr ARGS:k=v,...` (no escaped characters in these values). */
function smethod(line: string): { address: string; args: Record<string, string> } {
  const [, , address, args = ""] = line.split(" ");
  const pairs = args.replace(/^ARGS:/, "").split(",").filter((p) => p !== "");
  return {
    address: address!,
    args: Object.fromEntries(
      pairs.map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]),
    ),
  };
}

for (const transport of ["plain", "obfs4"] as const) {
  Deno.test(`Chromium WebRTC through STUN mode over ${transport} to the embedded TURN server (-target turn): connected, data intact, allocations freed, nothing secret or alarming logged`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "ptkit_webrtc_" });
    const metricsPort = freePort();
    await using server = new PtProcess([
      ...["-server", "-transports", transport, "-mode", "STUN", "-target", "turn"],
      ...["-bindaddr", `${transport}-127.0.0.1:0`, "-allow", "loopback"],
      ...["-metrics", `127.0.0.1:${metricsPort}`, "-logLevel", "debug"],
      ...["-state", `${dir}/server`, "-exit-on-stdin-close"],
    ], {});
    const line = await server.waitFor(new RegExp(`^SMETHOD(-ERROR)? ${transport} `));
    ok(line.startsWith(`SMETHOD ${transport} `), line);
    await server.waitFor(/^SMETHODS DONE$/);
    const { address, args } = smethod(line);
    const { "turn-user": user, "turn-password": password, ...transportArgs } = args;
    ok(user !== undefined && password !== undefined, line);
    await using client = new PtProcess([
      ...["-client", "-transports", transport, "-mode", "STUN"],
      ...["-proxylistenaddr", "127.0.0.1:0", "-target", address],
      ...["-options", JSON.stringify(transport === "obfs4" ? transportArgs : {})],
      ...["-logLevel", "debug", "-state", `${dir}/client`, "-exit-on-stdin-close"],
    ], {});
    const { port } = await client.cmethod(transport, "STUN");
    const metrics = async () =>
      await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const turnDrops = (text: string) =>
      Object.fromEntries(
        ["malformed", "noAllocation", "noChannel", "oversize", "sendFailed", "rateLimited"]
          .map((reason) => [reason, sample(text, `ptkit_turn_dropped_total{reason="${reason}"}`)])
          .filter(([, n]) => n !== 0),
      );
    try {
      let live = "";
      let freed = "";
      await runPage(port, user, password, {
        connected: async () => void (live = await metrics()),
        closed: async () =>
          void (freed = await until(metrics, (t) => sample(t, "ptkit_turn_allocations") === 0)),
      });
      strictEqual(sample(live, "ptkit_turn_allocations"), 2, "one allocation per peer connection");
      deepStrictEqual(turnDrops(live), {});
      deepStrictEqual(
        ["allocations", "permissions", "channels"].map((s) => sample(freed, `ptkit_turn_${s}`)),
        [0, 0, 0],
        "allocations left after close",
      );
      strictEqual(sample(freed, "ptkit_turn_allocations_total"), 2, "the wrong password allocated");
      deepStrictEqual(turnDrops(freed), {});
    } finally {
      const outputs = [];
      for (const pt of [client, server]) {
        await pt.closeStdin();
        const { code, lines, stderr } = await pt.exit();
        strictEqual(code, 0, stderr);
        outputs.push(...lines, ...stderr.split("\n").filter((l) => l !== ""));
      }
      await Deno.remove(dir, { recursive: true });
      // The password goes out in the SMETHOD ARGS alone; the wrong one nowhere.
      deepStrictEqual(outputs.filter((l) => l.includes(password)), [line]);
      deepStrictEqual(outputs.filter((l) => l.includes(WRONG_PASSWORD)), []);
      deepStrictEqual(outputs.filter((l) => /^LOG SEVERITY=(warning|error)/.test(l)), []);
    }
  });
}
