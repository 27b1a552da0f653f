// Copyright the ptkit authors. MIT license.
// Acceptance: coturn's turnutils_uclient over TCP (Debian package "coturn") against
// serveTurnStream, i.e. STUN-framed byte streams ending in the embedded TURN server.

import { freeUdpPort } from "./turn_util.ts";
import { requireBinary } from "./ipc_util.ts";
import { ok, strictEqual } from "node:assert";
import { createUdpRelayFactory } from "../udp/turn/_udp_relay.ts";
import { serveTurnStream } from "../udp/turn/_stream_server.ts";
import { TurnServer } from "../udp/turn/_turn_server.ts";

Deno.test("serveTurnStream passes turnutils_uclient over TCP with 0 lost packets", async () => {
  requireBinary("turnutils_uclient", "coturn");
  requireBinary("turnutils_peer", "coturn");
  const server = new TurnServer({
    realm: "pt.test",
    users: { u: "p" },
    relay: createUdpRelayFactory({ ipv4: "127.0.0.1" }),
    allowLoopbackPeers: true,
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      const remote = conn.remoteAddr;
      sessions.push(
        serveTurnStream(server, conn, {
          remoteAddress: { family: 4, address: remote.hostname, port: remote.port },
        }).finally(() => {
          try {
            conn.close();
          } catch { /* already closed */ }
        }),
      );
    }
  })();
  const peerPort = await freeUdpPort();
  const peer = new Deno.Command("turnutils_peer", {
    args: ["-L", "127.0.0.1", "-p", String(peerPort)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const common = ["-n", "300", "-m", "4", "-l", "170", "-u", "u", "-w", "p"];
  const port = String(listener.addr.port);
  const runs: [string, string[]][] = [
    ["TCP, peerless channels", ["-t", "-y", "-c", ...common]],
    ["TCP, Send/Data indications", ["-t", "-y", "-c", "-s", ...common]],
    ["TCP, echo peer", ["-t", "-c", "-e", "127.0.0.1", "-r", String(peerPort), ...common]],
  ];
  try {
    const results = await Promise.all(runs.map(([, args]) =>
      new Deno.Command("turnutils_uclient", {
        args: [...args, "-p", port, "127.0.0.1"],
        stdin: "null",
      }).output()
    ));
    results.forEach((result, i) => {
      const output = new TextDecoder().decode(result.stdout) +
        new TextDecoder().decode(result.stderr);
      const [name] = runs[i]!;
      const summary = output.match(/Total lost packets \d+ \([^)]*\)/)?.[0] ??
        output.slice(-800);
      strictEqual(result.code, 0, `${name}: exited ${result.code}: ${summary}`);
      ok(/Total lost packets 0 \(/.test(output), `${name}: ${summary}`);
    });
  } finally {
    peer.kill("SIGTERM");
    await peer.status;
    listener.close();
    await accepting.catch(() => {});
    await Promise.all(sessions);
    strictEqual(server.stats().allocations, 0, "closed streams leave no allocation behind");
    server.close();
  }
});
