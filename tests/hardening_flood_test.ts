// Copyright the ptkit authors. MIT license.
// A flood of reset-before-accept connections cannot take a bridge offline
// (issue 11, acceptance 2): while Node.js resets connections to an obfs4
// bridge (main.ts -server) as fast as this machine manages for 10 s, a good
// obfs4 client completes its handshake and a 1 KiB echo within 2 s, and
// within 1 s once the flood is over. The same for the client side's SOCKS
// front end. These bounds are the acceptance criteria; they are
// loose on purpose (a good client takes milliseconds on an idle machine).

import { deepStrictEqual, ok } from "node:assert";
import { createConnector } from "../client.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { parseSmethodArgs } from "../ipc/lines/_args.ts";
import { socks5Connect } from "../ipc/socks/_client.ts";
import { readExactly } from "../net/mod.ts";
import { echoServer } from "./_util.ts";
import { PtProcess } from "./ipc_util.ts";
import { floodResets, stopPt, within } from "./hardening_util.ts";

const FLOOD_MS = 10_000;
const KIB = crypto.getRandomValues(new Uint8Array(1024));

/** Start an obfs4 bridge in front of `orport`; returns it, its port and cert. */
async function bridge(dir: string, orport: number) {
  const pt = new PtProcess([
    ...["-server", "-transports", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0"],
    ...["-orport", `127.0.0.1:${orport}`, "-state", dir, "-logLevel", "info"],
  ], {});
  const line = await pt.waitFor(/^SMETHOD(-ERROR)? obfs4 /);
  ok(line.startsWith("SMETHOD obfs4 "), line);
  await pt.waitFor(/^SMETHODS DONE$/);
  const [, , addr, args = ""] = line.split(" ");
  return { pt, port: Number(addr!.split(":")[1]), options: parseSmethodArgs(args) };
}

/**
 * Run `attempt` every `period` ms while `flood` runs, each within `bound`
 * ms; then once more within `after` ms. Returns the times taken.
 */
async function duringFlood(
  flood: Promise<unknown>,
  attempt: () => Promise<void>,
  bounds: { period: number; during: number; after: number },
): Promise<{ during: number[]; after: number }> {
  let flooding = true;
  const ended = flood.finally(() => flooding = false);
  const during: number[] = [];
  await new Promise((resolve) => setTimeout(resolve, 300));
  while (flooding) {
    during.push(await within(bounds.during, "a good connection during the flood", attempt));
    await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, bounds.period))]);
  }
  await ended;
  const after = await within(bounds.after, "a good connection after the flood", attempt);
  return { during, after };
}

Deno.test("an obfs4 bridge serves good clients during and after a 10 s flood of resets", async () => {
  const echo = echoServer();
  const dir = await Deno.makeTempDir({ prefix: "ptkit_flood_" });
  const { pt, port, options } = await bridge(dir, echo.port);
  try {
    const connector = await createConnector(obfs4, options);
    const attempt = async () => {
      await using conn = await connector.dial({ hostname: "127.0.0.1", port });
      const writer = conn.writable.getWriter();
      await writer.write(KIB);
      await writer.close(); // The echo server answers, then ends its side too.
      deepStrictEqual(new Uint8Array(await new Response(conn.readable).arrayBuffer()), KIB);
    };
    await attempt(); // Warm up: modules, crypto.
    const flood = floodResets(port, FLOOD_MS);
    const times = await duringFlood(flood, attempt, { period: 500, during: 2000, after: 1000 });
    const summary = await flood;
    console.log(
      `flood: ${summary.connected} resets in ${summary.ms} ms ` +
        `(${Math.round(summary.connected / summary.ms * 1000)}/s); good clients during: ` +
        `${times.during.map((t) => Math.round(t)).join(", ")} ms; after: ${
          Math.round(times.after)
        } ms`,
    );
    ok(summary.connected > 1000, `only ${summary.connected} connections in the flood`);
    ok(times.during.length >= 5, `only ${times.during.length} good clients during the flood`);
  } finally {
    const lines = await stopPt(pt);
    // The flood is in the log, digested: a few lines, not one per connection.
    ok(lines.some((l) => /accept failed: .*times since the last report/.test(l)), `${lines}`);
    ok(lines.length < 200, `${lines.length} lines`);
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an obfs4 client's SOCKS front end serves good clients during and after a flood of resets", async () => {
  const echo = echoServer();
  const dir = await Deno.makeTempDir({ prefix: "ptkit_flood_" });
  const server = await bridge(`${dir}/server`, echo.port);
  const client = new PtProcess([
    ...["-client", "-transports", "obfs4", "-state", `${dir}/client`],
    ...["-options", JSON.stringify(server.options)],
  ], {});
  try {
    const socks = await client.cmethod("obfs4");
    const attempt = async () => {
      using conn = await Deno.connect(socks);
      await socks5Connect(conn, { hostname: "127.0.0.1", port: server.port });
      await conn.write(KIB);
      deepStrictEqual(await readExactly(conn, KIB.length), KIB);
    };
    await attempt();
    const flood = floodResets(socks.port, FLOOD_MS / 2);
    const times = await duringFlood(flood, attempt, { period: 500, during: 2000, after: 1000 });
    const summary = await flood;
    console.log(
      `flood: ${summary.connected} resets in ${summary.ms} ms; good clients during: ` +
        `${times.during.map((t) => Math.round(t)).join(", ")} ms; after: ${
          Math.round(times.after)
        } ms`,
    );
    ok(summary.connected > 500, `only ${summary.connected} connections in the flood`);
  } finally {
    for (const pt of [client, server.pt]) await stopPt(pt);
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});
