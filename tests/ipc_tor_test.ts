// Copyright the ptkit authors. MIT license.
// Acceptance (f): Debian tor launches main.ts as its ClientTransportPlugin
// and bootstraps through it: tor client -> main.ts (plain, SOCKS) -> ptkit
// proxy (in this process) -> a second tor running as a bridge relay.

import { ok } from "node:assert";
import { proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { requireBinary } from "./ipc_util.ts";
import { freePort, ptLeftovers, startBridgeTor, startClientTor, type Tor } from "./tor_util.ts";

// What the process keeps for its life (libc through FFI, for a listener's
// backlog) loads before the sanitized test, as the README advises.
await (await proxy(plain, {}, {
  hostname: "127.0.0.1",
  port: 0,
  target: { hostname: "127.0.0.1", port: 9 },
}))
  .close();

Deno.test({
  name: "main.ts bootstraps Debian tor through a plain bridge",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    const torBinary = requireBinary("tor", "tor");
    const dir = await Deno.makeTempDir({ prefix: "ptkit_tor_" });
    const orPort = freePort();
    const bridge = await startBridgeTor(torBinary, dir, orPort, ["Log notice stdout"]);
    let client: Tor | undefined;
    await using front = await proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: orPort },
    });
    try {
      await bridge.waitFor(/Opening OR listener on 127\.0\.0\.1:[0-9]+|Bootstrapped 100%/, 60000);
      client = await startClientTor(torBinary, dir, "plain", `plain 127.0.0.1:${front.addr.port}`, [
        "Log notice stdout",
        "Log info file " + `${dir}/client.info.log`,
      ]);
      const line = await client.waitFor(
        /Bootstrapped (1[0-9]|[2-9][0-9]|100)% \([a-z_]+\)/,
        120000,
      );
      console.log(`client tor: ${line}`);
      ok(front.stats().connectionsAccepted >= 1, "tor did not go through the ptkit proxy");
      // Tor's info log shows it spoke to main.ts with the expected lines.
      const info = await Deno.readTextFile(`${dir}/client.info.log`);
      ok(/Got a line from managed proxy '.*main\.ts': \(VERSION 1\)/.test(info), info);
      ok(/CMETHOD plain socks5 127\.0\.0\.1:[0-9]+/.test(info));
    } finally {
      await client?.stop();
      await bridge.stop();
    }
    // Tor closed main.ts's stdin on exit; main.ts must be gone.
    const left = await ptLeftovers(`${dir}/client/pt_state`);
    ok(left.length === 0, `main.ts outlived tor: ${left}`);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("the tests' tor bridge asks only loopback for its consensus, never the public Tor network", async () => {
  // A bridge relay fetches the consensus from the directory authorities and
  // fallbacks built into tor: public addresses, which a test run here must
  // never reach. startBridgeTor names one authority on loopback instead.
  const torBinary = requireBinary("tor", "tor");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_tor_loopback_" });
  const bridge = await startBridgeTor(torBinary, dir, freePort(), ["Log info stdout"]);
  try {
    await bridge.waitFor(/Downloading consensus from \S+ using/, 60000);
  } finally {
    await bridge.stop();
  }
  const sources = [...bridge.log.matchAll(/Downloading consensus from (\S+) using/g)].map((m) =>
    m[1]!
  );
  ok(sources.length > 0);
  for (const source of sources) ok(source.startsWith("127.0.0.1:"), `asked ${source}`);
  await Deno.remove(dir, { recursive: true });
});
