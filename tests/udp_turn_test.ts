// Copyright the ptkit authors. MIT license.

// STUN mode against real coturn: turnutils_uclient -> serveUdpClient (STUN
// framing) -> plain -> serveUdpServer -> turnserver -> turnutils_peer.

import { serveUdpClient, serveUdpServer, UdpSocket } from "@ptkit/ptkit/udp";
import { errorCode, lifetimeOf, Queue, StunTestClient } from "./turn_test_client.ts";
import { ManualClock } from "./udp_test_utils.ts";
import { StunAttr, StunMethod } from "../udp/stun/_constants.ts";
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

Deno.test("STUN mode keeps a quiet flow holding a TURN allocation open for the allocation's lifetime, not the idle timeout", async () => {
  await using coturn = await startCoturn();
  const clientClock = new ManualClock();
  const serverClock = new ManualClock();
  await using server = await serveUdpServer({
    transport: plain,
    config: {},
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: coturn.port },
    framing: "stun",
    idleTimeout: 1000,
    clock: serverClock,
  });
  await using client = await serveUdpClient({
    transport: plain,
    config: server.clientOptions,
    server: { port: server.addr.port },
    framing: "stun",
    idleTimeout: 1000,
    clock: clientClock,
  });
  await using app = await UdpSocket.open({ connect: client.addr });
  const inbox = new Queue<Uint8Array>();
  app.onmessage = (data) => inbox.push(data.slice());
  const turn = new StunTestClient({ send: (bytes) => app.send(bytes), inbox });
  const allocated = await turn.allocate();
  strictEqual(errorCode(allocated), 0);
  const lifetime = lifetimeOf(allocated) * 1000;
  ok(lifetime > 1000, `coturn's lifetime ${lifetime} ms is past the idle timeout`);
  const advance = (ms: number) => {
    clientClock.advance(ms);
    serverClock.advance(ms);
  };

  // Quiet past the idle timeout: the allocation lives on, and so do both flows.
  advance(1001);
  strictEqual(client.stats().flowsOpen, 1, "the client's flow is open past the idle timeout");
  strictEqual(server.stats().flowsOpen, 1, "the server's flow is open past the idle timeout");
  advance(lifetime - 1002);
  strictEqual(client.stats().flowsClosed.idle + server.stats().flowsClosed.idle, 0);
  // A Refresh through the same flows finds the allocation (437 on another source).
  const refreshed = await turn.authed(StunMethod.Refresh);
  strictEqual(errorCode(refreshed), 0);
  const renewed = lifetimeOf(refreshed) * 1000;
  strictEqual(client.stats().flowsOpened, 1);
  strictEqual(server.stats().flowsOpened, 1);

  // Past the renewed lifetime with nothing said, the flows close.
  advance(renewed - 1);
  strictEqual(client.stats().flowsOpen + server.stats().flowsOpen, 2);
  advance(1);
  strictEqual(client.stats().flowsClosed.idle, 1);
  strictEqual(server.stats().flowsClosed.idle, 1);
});

Deno.test("STUN mode: a Refresh with LIFETIME 0 ends the hold, and the idle timeout applies again", async () => {
  await using coturn = await startCoturn();
  const clock = new ManualClock();
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
    idleTimeout: 1000,
    clock,
  });
  await using app = await UdpSocket.open({ connect: client.addr });
  const inbox = new Queue<Uint8Array>();
  app.onmessage = (data) => inbox.push(data.slice());
  const turn = new StunTestClient({ send: (bytes) => app.send(bytes), inbox });
  strictEqual(errorCode(await turn.allocate()), 0);
  clock.advance(1001);
  strictEqual(client.stats().flowsOpen, 1);
  const deleted = await turn.authed(StunMethod.Refresh, [
    { type: StunAttr.Lifetime, value: new Uint8Array(4) },
  ]);
  strictEqual(errorCode(deleted), 0);
  clock.advance(1000);
  strictEqual(client.stats().flowsClosed.idle, 1);
});
