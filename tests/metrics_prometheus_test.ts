// Copyright the ptkit authors. MIT license.

// Acceptance: a real Prometheus (Debian `prometheus`, generated config on
// loopback, 1 s scrape interval) scrapes a ptkit obfs4 client and server
// (main.ts -metrics, the server with -workers 2, whose endpoint sums both
// processes) while 50 obfs4 connections and 20 probes run. Its HTTP
// query API must then count 50 ok connections on each side (the client
// counts SOCKS connections whose obfs4 handshake completed, the server
// connections that reached the ORPort) and the 20 probes as failed
// handshakes on the server; both expositions pass `promtool check metrics`;
// and neither the expositions nor anything the PTs printed holds a client
// address (the 127.0.0.x sources the connections came from) or a secret.

import { ok, strictEqual } from "node:assert";
import { PtProcess, readN } from "./ipc_util.ts";
import { startEcho } from "./obfs4_live_helpers.ts";
import { boundDial } from "../ipc/managed/_outbound_dialer.ts";
import { freePort, PrometheusServer, promtoolCheckMetrics } from "./metrics_util.ts";

const enc = new TextEncoder();
const APP_SOURCES = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"];
const PROBE_SOURCES = ["127.0.0.8", "127.0.0.9", "127.0.0.10", "127.0.0.11"];

/** SOCKS5 with tor's per-connection arguments (RFC 1929 user, `\0` password), then an echo. */
async function obfs4Echo(socksPort: number, source: string, args: string, bridgePort: number) {
  const conn = await boundDial({ hostname: "127.0.0.1", port: socksPort }, source) as Deno.Conn;
  try {
    await conn.write(new Uint8Array([5, 1, 2]));
    strictEqual((await readN(conn, 2))[1], 2);
    const user = enc.encode(args);
    await conn.write(new Uint8Array([1, user.length, ...user, 1, 0]));
    strictEqual((await readN(conn, 2))[1], 0, "SOCKS authentication");
    await conn.write(
      new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, bridgePort >> 8, bridgePort & 255]),
    );
    strictEqual((await readN(conn, 10))[1], 0, "SOCKS reply");
    const message = crypto.getRandomValues(new Uint8Array(3000));
    await conn.write(message);
    const echoed = await readN(conn, message.length);
    strictEqual(echoed.length, message.length, "echo length");
    ok(echoed.every((b, i) => b === message[i]), "echo through obfs4");
  } finally {
    conn.close();
  }
}

/** A probe: random bytes to the bridge, then hang up. */
async function probe(bridgePort: number, source: string): Promise<void> {
  const conn = await boundDial({ hostname: "127.0.0.1", port: bridgePort }, source) as Deno.Conn;
  await conn.write(crypto.getRandomValues(new Uint8Array(200)));
  conn.close();
}

Deno.test("Prometheus scrapes a ptkit obfs4 client and server: 50 ok each side, 20 probes as failed handshakes, no address or secret", async () => {
  const echo = startEcho();
  const serverState = await Deno.makeTempDir({ prefix: "ptkit-metrics-server-" });
  const clientState = await Deno.makeTempDir({ prefix: "ptkit-metrics-client-" });
  const serverMetrics = freePort();
  const clientMetrics = freePort();
  try {
    await using server = new PtProcess([
      "-server",
      "-transports",
      "obfs4",
      "-orport",
      `127.0.0.1:${echo.addr.port}`,
      "-state",
      serverState,
      "-workers",
      "2",
      "-metrics",
      `127.0.0.1:${serverMetrics}`,
      "-logLevel",
      "debug",
    ], { TOR_PT_MANAGED_TRANSPORT_VER: "1" });
    const smethod = await server.waitFor(/^SMETHOD(-ERROR)? obfs4 /);
    // Two processes share the port (SO_REUSEPORT spreads the 70 connections
    // from 10 sources over both): the endpoint must report their sum.
    await server.waitFor(/^LOG SEVERITY=info MESSAGE="Worker 2 of 2: serving"$/);
    const match = /^SMETHOD obfs4 127\.0\.0\.1:([0-9]+) ARGS:(.*)$/.exec(smethod);
    ok(match !== null, smethod);
    const bridgePort = Number(match[1]);
    const args = match[2]!.split(",").map((kv) => kv.replace(/\\(.)/g, "$1")).join(";");
    await server.waitFor(/^SMETHODS DONE$/);

    await using client = new PtProcess([
      "-client",
      "-transports",
      "obfs4",
      "-state",
      clientState,
      "-metrics",
      `127.0.0.1:${clientMetrics}`,
      "-logLevel",
      "debug",
    ], { TOR_PT_MANAGED_TRANSPORT_VER: "1" });
    const socks = await client.cmethod("obfs4");

    await using prometheus = await PrometheusServer.start([
      `127.0.0.1:${serverMetrics}`,
      `127.0.0.1:${clientMetrics}`,
    ]);

    // 50 obfs4 connections (10 at a time) and 20 probes, interleaved.
    const work: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      work.push(probe(bridgePort, PROBE_SOURCES[i % PROBE_SOURCES.length]!));
    }
    for (let batch = 0; batch < 5; batch++) {
      await Promise.all(
        Array.from(
          { length: 10 },
          (_, i) =>
            obfs4Echo(socks.port, APP_SOURCES[(batch + i) % APP_SOURCES.length]!, args, bridgePort),
        ),
      );
    }
    await Promise.all(work);

    const value = async (promql: string) => {
      const result = await prometheus.query(promql);
      return result.length === 1 ? result[0]!.value : undefined;
    };
    const queries = {
      serverOk: 'sum(ptkit_connections_total{outcome="ok",side="server",transport="obfs4"})',
      clientOk: 'sum(ptkit_connections_total{outcome="ok",side="client",transport="obfs4"})',
      probes:
        'sum(ptkit_connections_total{side="server",outcome=~"handshake_failed|probe_delay_closed|replay_refused"})',
      accepted: 'sum(ptkit_connections_accepted_total{side="server"})',
      replies: 'sum(ptkit_socks_replies_total{code="0x00"})',
    };
    let seen: Record<string, number | undefined> = {};
    const deadline = Date.now() + 60_000;
    for (;;) {
      seen = {};
      for (const [key, promql] of Object.entries(queries)) seen[key] = await value(promql);
      if (
        seen.serverOk === 50 && seen.clientOk === 50 && seen.probes === 20 &&
        seen.accepted === 70 && seen.replies === 50
      ) break;
      if (Date.now() > deadline) {
        throw new Error(
          `Prometheus never saw the counts: ${JSON.stringify(seen)}; targets ${
            JSON.stringify(await prometheus.targets())
          }`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    console.log(`Prometheus query API: ${JSON.stringify(seen)}`);
    const health = await prometheus.targets();
    strictEqual(health.length, 2);
    ok(health.every((t) => t.health === "up"), JSON.stringify(health));
    const handshakes = await value(
      'sum(ptkit_handshake_duration_seconds_count{side="server",transport="obfs4"})',
    );
    strictEqual(handshakes, 50, "one handshake duration per ok server connection");

    const expositions = await Promise.all([serverMetrics, clientMetrics].map(async (port) => {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      strictEqual(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
      return await response.text();
    }));
    for (const text of expositions) await promtoolCheckMetrics(text);

    // Everything printed and exposed, scanned for client addresses and secrets.
    await server.closeStdin();
    await client.closeStdin();
    server.child.kill("SIGTERM");
    client.child.kill("SIGTERM");
    const serverOut = await server.exit();
    const clientOut = await client.exit();
    const status = clientOut.lines.filter((l) => l.startsWith("STATUS TRANSPORT=obfs4 "));
    strictEqual(
      status.filter((l) =>
        l === `STATUS TRANSPORT=obfs4 ADDRESS=127.0.0.1:${bridgePort} CONNECT=Success`
      )
        .length,
      50,
      status.join("\n"),
    );

    const state = JSON.parse(await Deno.readTextFile(`${serverState}/obfs4_state.json`));
    const secrets: string[] = [state["private-key"], state["drbg-seed"], state["node-id"]]
      .filter((s): s is string => typeof s === "string" && s.length > 8);
    ok(secrets.length === 3, "the server's state holds its keys");
    const cert = /cert=([^;]+)/.exec(args)![1]!;
    const printed = [
      ...expositions,
      serverOut.stdout,
      serverOut.stderr,
      ...serverOut.lines.filter((l) => !l.startsWith("SMETHOD obfs4 ")),
      clientOut.stdout,
      clientOut.stderr,
      ...clientOut.lines,
    ].join("\n");
    for (const address of [...APP_SOURCES, ...PROBE_SOURCES]) {
      ok(
        !new RegExp(`${address.replaceAll(".", "\\.")}(?![0-9])`).test(printed),
        `${address} printed`,
      );
    }
    for (const secret of [...secrets, cert]) {
      ok(!printed.includes(secret), "a secret was printed");
      ok(!printed.includes(secret.slice(0, 16)), "part of a secret was printed");
    }
  } finally {
    await echo.close();
    await Deno.remove(serverState, { recursive: true }).catch(() => {});
    await Deno.remove(clientState, { recursive: true }).catch(() => {});
  }
});
