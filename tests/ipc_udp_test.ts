// Copyright the ptkit authors. MIT license.
// main.ts in the datagram modes, from flags alone, with real peers:
// transparent-UDP over obfs4 to a UDP echo server; STUN mode with coturn's
// turnutils_uclient through obfs4 to Debian's turnserver (the UDP issue) and
// to the embedded TURN server (the TURN issue), each with turnutils_peer.

import dgram from "node:dgram";
import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { serveUdpClient, UdpSocket } from "../udp/mod.ts";
import { parseManagedConfig, type PtLine, runServer } from "../ipc/mod.ts";
import { plain } from "../transports/mod.ts";
import { waitFor } from "./udp_test_utils.ts";
import { StunAttr, StunMethod } from "../udp/stun/_constants.ts";
import { PtProcess } from "./ipc_util.ts";
import { bindingRequest, startCoturn, startTurnPeer, uclientLosesNothing } from "./turn_util.ts";
import { guarded } from "./_util.ts";
import { errorCode, Queue, relayedAddress, StunTestClient, type Wire } from "./turn_test_client.ts";

/** Parse `SMETHOD name addr ARGS:k=v,...` (no escapes in obfs4's values). */
function smethod(line: string): { port: number; args: Record<string, string> } {
  const [, , addr, args = ""] = line.split(" ");
  const pairs = args.replace(/^ARGS:/, "").split(",").filter((p) => p !== "");
  return {
    port: Number(addr!.split(":").pop()),
    args: Object.fromEntries(
      pairs.map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]),
    ),
  };
}

/** Start a server and a client main.ts in a datagram mode; returns both and the client port. */
async function chain(
  mode: "transparent-UDP" | "STUN",
  serverTarget: string,
  extraServer: string[] = [],
  serverEnv: Record<string, string> = {},
  bindHost = "127.0.0.1",
) {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_udp_ipc_" });
  // Port 0 everywhere: the PTs pick free ports and report them.
  const server = new PtProcess([
    ...["-server", "-transports", "obfs4", "-mode", mode],
    ...["-bindaddr", `obfs4-${bindHost}:0`, "-target", serverTarget],
    ...["-state", `${dir}/server`, "-exit-on-stdin-close", ...extraServer],
  ], serverEnv);
  const line = await server.waitFor(/^SMETHOD(-ERROR)? obfs4 /);
  ok(line.startsWith("SMETHOD obfs4 "), line);
  await server.waitFor(/^SMETHODS DONE$/);
  const { port: serverPort, args } = smethod(line);
  const client = new PtProcess([
    ...["-client", "-transports", "obfs4", "-mode", mode],
    ...["-proxylistenaddr", "127.0.0.1:0", "-target", `127.0.0.1:${serverPort}`],
    ...["-options", JSON.stringify({ cert: args.cert, "iat-mode": args["iat-mode"] })],
    ...["-state", `${dir}/client`, "-exit-on-stdin-close"],
  ], {});
  const { port: clientPort } = await client.cmethod("obfs4", mode);
  return {
    args,
    port: clientPort,
    async close() {
      for (const pt of [client, server]) {
        await pt.closeStdin();
        strictEqual((await pt.exit()).code, 0);
      }
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("main.ts transparent-UDP over obfs4 from flags alone echoes datagrams back to each sender", async () => {
  await using echo = await UdpSocket.open();
  echo.onmessage = (data, from) => echo.send(data, from);
  const pts = await chain("transparent-UDP", `127.0.0.1:${echo.addr.port}`);
  try {
    const senders = await Promise.all(
      [1, 2].map(() => UdpSocket.open({ connect: { hostname: "127.0.0.1", port: pts.port } })),
    );
    // Lockstep, each datagram resent after a quiet second (UDP may drop; the
    // 10,000-datagram test of the pools covers bulk delivery): every reply
    // must come back to its own sender, intact. Up to 30 sends (a hang
    // guard): the first datagram waits for the flow's obfs4 handshake
    // between two PT processes, which a loaded machine can take seconds for.
    const results = await Promise.all(senders.map(async (socket, s) => {
      const got: number[] = [];
      let waiting: ((data: Uint8Array) => void) | undefined;
      socket.onmessage = (data) => waiting?.(data.slice());
      for (let i = 0; i < 100; i++) {
        const datagram = new Uint8Array(100 + i * 13).fill(s);
        datagram[0] = i & 0xff;
        datagram[1] = i >> 8;
        let reply: Uint8Array | undefined;
        for (let attempt = 0; attempt < 30 && reply === undefined; attempt++) {
          const answered = new Promise<Uint8Array | undefined>((resolve) => {
            const timer = setTimeout(() => resolve(undefined), 1000);
            waiting = (data) => {
              if (data[0]! + 256 * data[1]! !== i) return; // a late duplicate
              clearTimeout(timer);
              resolve(data);
            };
          });
          await socket.send(datagram);
          reply = await answered;
        }
        ok(reply !== undefined, `sender ${s}: datagram ${i} never came back`);
        deepStrictEqual(reply, datagram);
        got.push(i);
      }
      await socket.close();
      return got;
    }));
    for (const got of results) deepStrictEqual(got, Array.from({ length: 100 }, (_, i) => i));
  } finally {
    await pts.close();
  }
});

Deno.test("main.ts STUN mode over obfs4 carries turnutils_uclient through Debian turnserver: 0 lost", async () => {
  await using coturn = await startCoturn();
  await using peer = await startTurnPeer();
  const pts = await chain("STUN", `127.0.0.1:${coturn.port}`);
  try {
    const common = ["-n", "200", "-m", "4", "-l", "170", "-u", "u", "-w", "p"];
    const echo = ["-e", "127.0.0.1", "-r", String(peer.port), "-X"];
    await uclientLosesNothing([...echo, ...common], pts.port); // channels
    await uclientLosesNothing(["-s", ...echo, ...common], pts.port); // Send/Data indications
  } finally {
    await pts.close();
  }
});

Deno.test("main.ts STUN mode over obfs4 ends in the embedded TURN server: turnutils_uclient to turnutils_peer, 0 lost", async () => {
  await using peer = await startTurnPeer();
  const pts = await chain("STUN", "turn", ["-allow", "loopback"]);
  try {
    const user = pts.args["turn-user"]!;
    const password = pts.args["turn-password"]!;
    ok(user && password, "generated TURN credentials are in the SMETHOD ARGS");
    const common = ["-n", "200", "-m", "4", "-l", "170", "-u", user, "-w", password];
    const echo = ["-e", "127.0.0.1", "-r", String(peer.port), "-X"];
    await uclientLosesNothing([...echo, ...common], pts.port); // channels
    await uclientLosesNothing(["-s", ...echo, ...common], pts.port); // Send/Data indications
    await uclientLosesNothing(["-D", ...echo, ...common], pts.port); // padded ChannelData
  } finally {
    await pts.close();
  }
});

Deno.test("main.ts STUN mode's embedded TURN server refuses loopback and private peers unless -allow names them", async () => {
  const peers = [
    { family: 4, address: "127.0.0.1", port: 9 },
    { family: 4, address: "10.0.0.1", port: 9 },
    { family: 4, address: "8.8.8.8", port: 9 },
  ] as const;
  for (
    const [allow, expected] of [[[], [403, 403, 0]], [["-allow", "loopback,private"], [
      0,
      0,
      0,
    ]]] as const
  ) {
    const pts = await chain("STUN", "turn", [...allow]);
    await using turn = await turnClient(pts);
    const c = turn.client;
    strictEqual(errorCode(await c.allocate()), 0);
    const codes: number[] = [];
    for (const peer of peers) {
      codes.push(errorCode(await c.withPeer(StunMethod.CreatePermission, peer)));
    }
    deepStrictEqual(codes, [...expected], `-allow ${allow[1] ?? "(none)"}`);
  }
});

Deno.test("main.ts STUN mode with the embedded TURN server keeps its generated password across restarts, and refuses a state file it did not write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_turn_state_" });
  const start = async () => {
    const server = new PtProcess([
      ...["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn"],
      ...["-bindaddr", "plain-127.0.0.1:0", "-state", dir, "-exit-on-stdin-close"],
    ], {});
    await server.waitFor(/^SMETHODS DONE$/);
    await server.closeStdin();
    const { lines, stderr } = await server.exit();
    // SMETHOD-ERROR goes to stderr when main.ts runs by hand.
    return [...lines, ...stderr.split("\n")].find((l) => /^SMETHOD(-ERROR)? plain /.test(l)) ?? "";
  };
  try {
    const first = smethod(await start()).args;
    const second = smethod(await start()).args;
    ok(/^[0-9a-f]{24}$/.test(first["turn-password"] ?? ""), JSON.stringify(first));
    deepStrictEqual(second, first);
    await Deno.writeTextFile(`${dir}/turnPassword`, "not-mine\n");
    const refused = await start();
    ok(refused.startsWith("SMETHOD-ERROR plain ") && refused.includes("turnPassword"), refused);
    ok(!refused.includes("not-mine"), refused);
    deepStrictEqual(await Deno.readTextFile(`${dir}/turnPassword`), "not-mine\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts transparent-UDP server sends to its target from TOR_PT_OUTBOUND_BIND_ADDRESS_V4, and from nowhere else", async () => {
  const address = Deno.networkInterfaces().find((i) =>
    i.family === "IPv4" && !i.address.startsWith("127.")
  )?.address;
  ok(address !== undefined, "This test needs a non-loopback IPv4 address");
  await using echo = await UdpSocket.open({ hostname: address });
  const senders: string[] = [];
  echo.onmessage = (data, from) => {
    senders.push(from.hostname);
    echo.send(data, from);
  };
  // 203.0.113.77 (TEST-NET-3) is never an address of this machine.
  for (const bind of [address, "203.0.113.77"]) {
    const pts = await chain("transparent-UDP", `${address}:${echo.addr.port}`, [], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_OUTBOUND_BIND_ADDRESS_V4: bind,
    });
    try {
      await using app = await UdpSocket.open({
        connect: { hostname: "127.0.0.1", port: pts.port },
      });
      let replies = 0;
      app.onmessage = () => void replies++;
      // Through the bound address, up to 50 sends (20 s, a hang guard): the
      // first datagram waits for the flow's obfs4 handshake between the two
      // PTs, which took over 2 s (the 5 sends of before) on a loaded machine.
      const sends = bind === address ? 50 : 5;
      for (let i = 0; i < sends && replies === 0; i++) {
        app.send(new Uint8Array([i]));
        await new Promise((resolve) => setTimeout(resolve, 400));
      }
      if (bind === address) {
        ok(replies > 0, "no reply through the bound address");
        deepStrictEqual([...new Set(senders)], [address]);
      } else {
        strictEqual(replies, 0, "a datagram left from another address than the bind address");
      }
    } finally {
      await pts.close();
    }
  }
  deepStrictEqual([...new Set(senders)], [address]);
});

Deno.test("main.ts STUN mode's embedded TURN server relays from TOR_PT_OUTBOUND_BIND_ADDRESS_V4", async () => {
  // A non-loopback address of this machine: the relays' source, and the relayed address given.
  const address = Deno.networkInterfaces().find((i) =>
    i.family === "IPv4" && !i.address.startsWith("127.")
  )?.address;
  if (address === undefined) throw new Error("This test needs a non-loopback IPv4 address");
  const pts = await chain("STUN", "turn", [], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_OUTBOUND_BIND_ADDRESS_V4: address,
  });
  await using turn = await turnClient(pts);
  const allocated = await turn.client.allocate();
  strictEqual(errorCode(allocated), 0);
  // Before, the relay was bound to the transport's listen address (127.0.0.1).
  strictEqual(relayedAddress(allocated).address, address);
});

Deno.test("main.ts STUN mode's embedded TURN server on [::] keeps relaying IPv4 with TOR_PT_OUTBOUND_BIND_ADDRESS_V6, and relays IPv6 from that address", async () => {
  const address = Deno.networkInterfaces().find((i) =>
    i.family === "IPv6" && i.scopeid === 0 && i.address !== "::1" && !i.address.startsWith("fe80")
  )?.address;
  if (address === undefined) throw new Error("This test needs a non-loopback IPv6 address");
  const pts = await chain("STUN", "turn", [], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_OUTBOUND_BIND_ADDRESS_V6: address,
  }, "[::]");
  await using turn = await turnClient(pts);
  // Unasked, IPv4 (RFC 8656), as on [::] without the variable. Before, the
  // IPv6 outbound address made the relay IPv6-only.
  const ipv4 = await turn.client.allocate();
  strictEqual(errorCode(ipv4), 0);
  strictEqual(relayedAddress(ipv4).family, 4);
  // IPv6, asked for from another source (another flow), comes from the outbound address.
  await using socket = await UdpSocket.open({ connect: { hostname: "127.0.0.1", port: pts.port } });
  const inbox = new Queue<Uint8Array>();
  socket.onmessage = (data) => inbox.push(data.slice());
  const wire = { inbox, send: (bytes: Uint8Array) => void socket.send(bytes) };
  await flowOpen(wire);
  const second = new StunTestClient(wire, pts.args["turn-user"]!, pts.args["turn-password"]!);
  const ipv6 = await second.allocate([
    { type: StunAttr.RequestedAddressFamily, value: new Uint8Array([2, 0, 0, 0]) },
  ]);
  strictEqual(errorCode(ipv6), 0);
  strictEqual(relayedAddress(ipv6).family, 6);
  strictEqual(relayedAddress(ipv6).address, address);
});

Deno.test("main.ts -mode STUN -target turn ends a connection idle for -udpidletimeout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_udp_ipc_" });
  const server = new PtProcess([
    ...["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn"],
    ...["-bindaddr", "plain-127.0.0.1:0", "-udpidletimeout", "1"],
    ...["-state", dir, "-exit-on-stdin-close"],
  ], {});
  try {
    const { port } = smethod(await server.waitFor(/^SMETHOD plain /));
    await server.waitFor(/^SMETHODS DONE$/);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(bindingRequest());
      const answer = new Uint8Array(256);
      ok((await conn.read(answer) ?? 0) >= 20, "the Binding answer");
      // Then nothing either way: the server ends the connection (the flag
      // was ignored with -target turn; this read never returned).
      strictEqual(await guarded(conn.read(answer), "the idle connection's end"), null);
    } finally {
      conn.close();
    }
  } finally {
    await server.closeStdin();
    strictEqual((await server.exit()).code, 0);
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Send STUN Binding requests on `wire`, one every 500 ms, until one is
 * answered (60 at most, a hang guard): the flow's obfs4 connection through
 * the chain is then open. StunTestClient sends each request once and waits
 * 10 s for its answer, and a new flow's first datagram waits for a handshake
 * between two PT processes, which a loaded machine took longer for ('No
 * packet within 10000 ms' at the first Allocate).
 */
async function flowOpen(wire: Wire): Promise<void> {
  for (let i = 0; i < 60; i++) {
    wire.send(bindingRequest());
    // Answers to earlier sends that come later are set aside by the
    // client's requests (another transaction id).
    if (await wire.inbox.pop(500).then(() => true, () => false)) return;
  }
  throw new Error("No answer to 60 STUN Binding requests through the chain in 30 s");
}

/**
 * A TURN client (its user and password from the SMETHOD ARGS) on a UDP
 * socket of its own, toward the STUN-mode chain `pts`; disposing of it
 * closes the socket, then the chain.
 */
async function turnClient(pts: Awaited<ReturnType<typeof chain>>) {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const inbox = new Queue<Uint8Array>();
  socket.on("message", (msg: Uint8Array) => inbox.push(new Uint8Array(msg)));
  const wire = { inbox, send: (b: Uint8Array) => socket.send(b, pts.port, "127.0.0.1") };
  await flowOpen(wire);
  const client = new StunTestClient(wire, pts.args["turn-user"]!, pts.args["turn-password"]!);
  return {
    client,
    async [Symbol.asyncDispose]() {
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      await pts.close();
    },
  };
}

Deno.test("STUN mode's embedded TURN server at maxConnectionsPerSource: a new flow from the source takes the place of its idlest, not refused by the listener", async () => {
  // Before, the listener refused the connection and its datagram was lost
  // ('Connection refused: 2 connections past their handshake open from one
  // source'): the client at its maxFlows closes its idlest flow and dials
  // the new one at once, racing that close to the server (the race
  // serveUdpServer settled for transparent-UDP and STUN to a UDP target).
  const dir = await Deno.makeTempDir({ prefix: "ptkit_turn_flows_" });
  const config = parseManagedConfig([
    ...["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn", "-state", dir],
  ]);
  if (config.kind !== "server") throw new Error("not a server");
  const lines: PtLine[] = [];
  const running = await runServer(config, {
    emit: (line) => lines.push(line),
    limits: { maxConnectionsPerSource: 2 },
  });
  const listening = lines.find((line) => line.type === "SMETHOD");
  ok(listening?.type === "SMETHOD", JSON.stringify(lines));
  const apps: UdpSocket[] = [];
  try {
    await using client = await serveUdpClient({
      transport: plain,
      config: listening.args,
      server: { port: listening.address.port },
      framing: "stun",
      maxFlows: 2,
    });
    for (let i = 0; i < 4; i++) {
      const app = await UdpSocket.open({ connect: client.addr });
      apps.push(app);
      let answers = 0;
      app.onmessage = () => answers++;
      app.send(bindingRequest());
      await waitFor(() => answers === 1, `app ${i}'s Binding answer`, 10_000);
    }
    strictEqual(client.stats().flowsClosed.evicted, 2);
    deepStrictEqual(
      lines.filter((line) => line.type === "LOG" && /refused/.test(line.message)),
      [],
    );
  } finally {
    for (const app of apps) await app.close();
    await running.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// RFC 3489 (classic STUN) Binding requests carry no magic cookie; legacy
// SIP phones send them. main.ts turn answers them, but STUN mode refused
// them as a framing error at the client, so they never reached the
// embedded TURN server (counted as an invalid drop).
Deno.test("main.ts STUN mode carries an RFC 3489 Binding request (no magic cookie) to the embedded TURN server and its answer back", async () => {
  const pts = await chain("STUN", "turn");
  const socket = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    const inbox = new Queue<Uint8Array>();
    socket.on("message", (msg: Uint8Array) => inbox.push(new Uint8Array(msg)));
    const request = new Uint8Array(20);
    request[1] = 0x01;
    request.set(crypto.getRandomValues(new Uint8Array(16)), 4);
    socket.send(request, pts.port, "127.0.0.1");
    const answer = await inbox.pop();
    deepStrictEqual([...answer.subarray(0, 2)], [0x01, 0x01]); // Binding success response
    deepStrictEqual([...answer.subarray(4, 20)], [...request.subarray(4, 20)]);
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    await pts.close();
  }
});
