// Copyright the ptkit authors. MIT license.

// STUN mode against real coturn: turnutils_uclient -> serveUdpClient (STUN
// framing) -> plain -> serveUdpServer -> turnserver -> turnutils_peer.

import { serveUdpClient, serveUdpServer } from "@ptkit/ptkit/udp";
import { startCoturn, startTurnPeer, uclientLosesNothing } from "./turn_util.ts";
import { plain } from "@ptkit/ptkit/transports";
import { ok, strictEqual } from "node:assert";

Deno.test("STUN mode carries coturn's turnutils_uclient through turnserver to turnutils_peer with 0 lost packets", async () => {
  await using coturn = await startCoturn();
  await using peer = await startTurnPeer();
  {
    await using server = await serveUdpServer({
      transport: plain,
      config: {},
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: coturn.port },
      framing: "stun",
    });
    await using client = await serveUdpClient({
      transport: plain,
      config: server.clientOptions,
      server: { port: server.addr.port },
      framing: "stun",
    });
    await uclientLosesNothing([
      ...["-c", "-X", "-e", "127.0.0.1", "-r", String(peer.port)],
      ...["-n", "200", "-m", "4", "-l", "500", "-z", "5", "-u", "u", "-w", "p"],
    ], client.addr.port);

    const stats = client.stats();
    ok(stats.flowsOpened >= 4, `one flow per uclient session, got ${stats.flowsOpened}`);
    ok(stats.datagramsToTunnel >= 800 && stats.datagramsFromTunnel >= 800);
    strictEqual(stats.drops.invalid, 0);
    strictEqual(Object.values(stats.drops).reduce((a, b) => a + b), 0);
    strictEqual(server.stats().flowsClosed.framingError, 0);
  }
});
