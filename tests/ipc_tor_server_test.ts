// Copyright the ptkit authors. MIT license.
// Acceptance 1: Debian tor is the parent on both sides. A tor bridge relay
// runs main.ts as its ServerTransportPlugin with `ExtORPort auto`; a tor
// client runs main.ts as its ClientTransportPlugin and bootstraps through
// it. Done for plain and for obfs4 (the cert comes from the bridge's
// SMETHOD ARGS and matches obfs4_bridgeline.txt).

import { deepStrictEqual, ok } from "node:assert";
import { MAIN, requireBinary } from "./ipc_util.ts";
import {
  assertCleanTorRun,
  freePort,
  startBridgeTor,
  startClientTor,
  type Tor,
} from "./tor_util.ts";
import { parseSmethodArgs } from "../ipc/lines/_args.ts";

// Workers: the server's default (the CPUs) for plain, one process and two
// (`-workers 2` on the torrc exec line, which tor passes on) for obfs4.
for (
  const [transport, workers] of [["plain", ""], ["obfs4", "1"], ["obfs4", "2"]] as const
) {
  Deno.test({
    name: `main.ts serves a Debian tor bridge over ${transport} via the Extended ORPort${
      workers === "" ? "" : `, -workers ${workers}`
    }`,
    fn: async () => {
      const torBinary = requireBinary("tor", "tor");
      const dir = await Deno.makeTempDir({ prefix: `ptkit_torsrv_${transport}_` });
      const orPort = freePort();
      const ptPort = freePort();
      const bridge = await startBridgeTor(torBinary, dir, orPort, [
        "ExtORPort auto",
        `ServerTransportPlugin ${transport} exec ${
          Deno.env.get("PTKIT_WRAP") ?? MAIN
        } -logLevel info${workers === "" ? "" : ` -workers ${workers}`}`,
        `ServerTransportListenAddr ${transport} 127.0.0.1:${ptPort}`,
        "Log info stdout",
      ]);
      let client: Tor | undefined;
      try {
        await bridge.waitFor(
          new RegExp(`Registered server transport '${transport}' at '127\\.0\\.0\\.1:${ptPort}'`),
          60000,
        );
        if (workers === "2") await bridge.waitFor(/Worker 2 of 2: serving/, 60000);
        const bridgeInfo = bridge.log;
        // tor takes the version report (it warns about malformed ones).
        ok(bridgeInfo.includes("(STATUS TRANSPORT=ptkit TYPE=version IMPLEMENTATION=ptkit"));
        ok(!/STATUS (message|TYPE=version line)/.test(bridgeInfo), bridgeInfo);
        const smethod = new RegExp(
          `\\(SMETHOD ${transport} 127\\.0\\.0\\.1:${ptPort}( ARGS:[^)]*)?\\)`,
        )
          .exec(bridgeInfo);
        ok(smethod, `no SMETHOD line in the bridge's log:\n${bridgeInfo}`);
        let bridgeArgs = "";
        if (transport === "obfs4") {
          const args = parseSmethodArgs(smethod[1]!.trim());
          ok(args.cert && args["iat-mode"] === "0", smethod[0]);
          const file = await Deno.readTextFile(`${dir}/bridge/pt_state/obfs4_bridgeline.txt`);
          ok(file.includes(`cert=${args.cert} iat-mode=0`), file);
          // tor writes the finished line (address, port, fingerprint) itself,
          // once it has built its descriptor: wait for the file.
          let finished = "";
          for (let i = 0; i < 600 && !finished.includes(args.cert!); i++) {
            finished = await Deno.readTextFile(`${dir}/bridge/bridgelines`).catch(() => "");
            if (!finished.includes(args.cert!)) await new Promise((r) => setTimeout(r, 100));
          }
          ok(
            new RegExp(
              `^Bridge obfs4 127\\.0\\.0\\.1:${ptPort} [0-9A-F]{40} cert=${
                args.cert!.replace(/[+/]/g, "\\$&")
              } iat-mode=0$`,
              "m",
            ).test(finished),
            finished,
          );
          bridgeArgs = ` cert=${args.cert} iat-mode=0`;
        } else {
          deepStrictEqual(smethod[1], undefined, "plain has no ARGS");
        }
        client = await startClientTor(
          torBinary,
          dir,
          transport,
          `${transport} 127.0.0.1:${ptPort}${bridgeArgs}`,
        );
        const line = await client.waitFor(
          /Bootstrapped (2[5-9]|[3-9][0-9]|100)% \([a-z_]+\)/,
          120000,
        );
        console.log(`${transport} client tor: ${line}`);
        if (Deno.env.get("PTKIT_DEBUG")) console.log(client.log);
        // The bridge's PT authenticated to the Extended ORPort with the cookie
        // (its LOG line, which tor logs as `Managed proxy "...": ...`).
        await bridge.waitFor(
          new RegExp(`${transport}: Extended ORPort authenticated, connection accepted`),
          30000,
        );
      } finally {
        await client?.stop();
        await bridge.stop();
      }
      ok(/Extended ORPort authenticated, connection accepted/.test(bridge.log));
      await assertCleanTorRun(bridge, dir);
    },
  });
}

Deno.test("Debian tor shows a bridge operator why main.ts could not start (an ENV-ERROR), at warning or above, not only 'failed the configuration protocol'", async () => {
  // tor (transports.c, handle_proxy_line) prints an ENV-ERROR's message only
  // when it comes before VERSION; where pt-spec puts it, after VERSION (as
  // goptlib does), tor says only that the PT "failed the configuration
  // protocol" and logs the line itself at info. Found live: a pt_state that
  // is a file, or -workers 0 on the exec line.
  const torBinary = requireBinary("tor", "tor");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_torsrv_enverror_" });
  const bridge = await startBridgeTor(torBinary, dir, freePort(), [
    "ExtORPort auto",
    `ServerTransportPlugin obfs4 exec ${MAIN} -workers 0`,
    `ServerTransportListenAddr obfs4 127.0.0.1:${freePort()}`,
    "Log notice stdout",
  ]);
  try {
    await bridge.waitFor(/failed the configuration protocol/, 60000);
    await bridge.waitFor(/terminated with status code 64/, 30000);
    ok(
      /\[(warn|err)\] Managed proxy "[^"]*main\.ts": Invalid -workers "0": expected a whole number from 1 to 256/
        .test(bridge.log),
      bridge.log,
    );
  } finally {
    await bridge.stop();
  }
  await assertCleanTorRun(bridge, dir);
});
