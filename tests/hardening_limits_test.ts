// Copyright the ptkit authors. MIT license.
// Connection limits are per source as well as global (issue 11, acceptance
// 5): one source holding 4200 idle connections to an obfs4 bridge does not
// stop a good client from another source address (127.0.0.2); and the
// limits' rules, one by one, on the library's listener.

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { createConnector } from "../client.ts";
import { listen, proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { plain } from "../transports/plain.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { defineTransport } from "../transports/define_transport.ts";
import { parseSmethodArgs } from "../ipc/lines/_args.ts";
import { boundDial } from "../ipc/managed/_outbound_dialer.ts";
import { parseManagedConfig } from "../ipc/managed/config.ts";
import { runServer } from "../ipc/managed/server.ts";
import type { PtLine } from "../ipc/lines/pt_line.ts";
import { SocksServer } from "../ipc/socks/_socks_server.ts";
import { HANDSHAKE_GRACE, SourceLimiter } from "../net/source_limits.ts";
import { closeQuietly } from "../net/_accept_loop.ts";
import { TransportListener } from "../net/transport_listener.ts";
import type { TransportConn } from "../net/transport_conn.ts";
import { echoServer } from "./_util.ts";
import { MAIN, PtProcess } from "./ipc_util.ts";
import {
  holdConnections,
  prlimit,
  serverConnections,
  stopPt,
  udpEcho,
  within,
} from "./hardening_util.ts";
import type { Transport } from "../transports/transport.ts";
import type { Dialer } from "../net/net_conn.ts";
import type { HostPort } from "../net/address.ts";
import { serveUdpClient } from "../udp/client_pool.ts";
import { serveUdpServer } from "../udp/server_pool.ts";
import { UdpSocket } from "../udp/udp_socket.ts";

const KIB = crypto.getRandomValues(new Uint8Array(1024));

const tcp = (hostname: string, port = 1): Deno.NetAddr => ({ transport: "tcp", hostname, port });

Deno.test("one source holding 4200 idle connections does not lock a good client from another address out of an obfs4 bridge", async () => {
  const echo = echoServer();
  const dir = await Deno.makeTempDir({ prefix: "ptkit_limits_" });
  // Room for far more than the limits let one source hold.
  const pt = new PtProcess(
    [
      "--nofile=16384",
      MAIN,
      ...["-server", "-transports", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0"],
      ...["-orport", `127.0.0.1:${echo.port}`, "-state", dir, "-logLevel", "info"],
    ],
    {},
    { program: prlimit() },
  );
  try {
    const line = await pt.waitFor(/^SMETHOD(-ERROR)? obfs4 /);
    ok(line.startsWith("SMETHOD obfs4 "), line);
    const [, , addr, args = ""] = line.split(" ");
    const port = Number(addr!.split(":")[1]);
    const connector = await createConnector(obfs4, parseSmethodArgs(args), {
      dialer: (target) => boundDial(target, "127.0.0.2"),
    });
    const goodClient = async () => {
      await using conn = await connector.dial({ hostname: "127.0.0.1", port });
      strictEqual((conn.localAddr as Deno.NetAddr).hostname, "127.0.0.2");
      const writer = conn.writable.getWriter();
      await writer.write(KIB);
      const reader = conn.readable.getReader();
      const got: number[] = [];
      while (got.length < KIB.length) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`Echo ended after ${got.length} bytes`);
        got.push(...value);
      }
      deepStrictEqual(new Uint8Array(got), KIB);
    };

    await using holder = holdConnections(port, 4200, "127.0.0.1");
    const held = await holder.ready;
    strictEqual(held.connected + held.failed, 4200);
    // Right away (the bridge may be at its 4096 connections)...
    await within(30_000, "a good client while one source holds 4200 connections", goodClient);
    // ...and once the source's excess has waited its 2 s and was closed (as
    // the kernel counts it: the holder may believe in connections that the
    // kernel of a listener with a full queue dropped).
    const history: number[] = [];
    for (let i = 0; i < 60; i++) {
      await new Promise((resolve) => setTimeout(resolve, HANDSHAKE_GRACE / 2));
      history.push(await serverConnections(port, "127.0.0.1"));
      if (history.at(-1)! <= 64) break;
    }
    console.log(`connections from the source, every ${HANDSHAKE_GRACE / 2} ms: ${history}`);
    ok(history.at(-1)! <= 64, `one source still holds ${history.at(-1)} idle connections`);
    await within(30_000, "a good client after the grace period", goodClient);
    const final = await holder.close();
    strictEqual(final.connected + final.failed, 4200, JSON.stringify(final));
    await pt.waitFor(/maxHandshakesPerSource/);
  } finally {
    await stopPt(pt);
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A transport whose handshake never completes (an idle client, as the server sees it). */
const stalled = defineTransport({
  name: "stalled",
  parseConfig: () => undefined,
  pair: () => ({
    encode: new TransformStream(),
    decode: new TransformStream(),
    ready: new Promise<void>(() => {}),
  }),
});

/** Connect `count` times; returns the connections (the caller closes them). */
async function connectMany(port: number, count: number, source?: string): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) {
    conns.push(
      source === undefined
        ? await Deno.connect({ hostname: "127.0.0.1", port })
        : await boundDial({ hostname: "127.0.0.1", port }, source) as unknown as Deno.Conn,
    );
  }
  return conns;
}

/** Whether the server closed `conn` (reads end) within `ms`. */
async function closedByServer(conn: Deno.Conn, ms: number): Promise<boolean> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, ms);
  try {
    const n = await conn.read(new Uint8Array(1));
    return !timedOut && n === null;
  } catch {
    return !timedOut;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("listen(): a source's unfinished handshakes over the limit are closed once they waited, oldest first; other sources are served", async () => {
  const refused: string[] = [];
  await using listener = await listen(stalled, {}, {
    hostname: "127.0.0.1",
    port: 0,
    limits: { maxHandshakesPerSource: 3 },
    onAcceptError: (error) => refused.push(error.message),
  });
  const loop = (async () => {
    for await (const _ of listener) {
      // Counted by the listener.
    }
  })();
  const idle = await connectMany(listener.addr.port, 5);
  const other = await connectMany(listener.addr.port, 1, "127.0.0.2");
  try {
    // Over the limit, but young: nothing is closed yet (a flood of resets
    // from a good client's own address must not crowd it out).
    // (Asked until all six are accepted, within the grace period: on a
    // loaded machine the listener may take the last ones late.)
    for (let waited = 0; listener.connections.size < 6 && waited < HANDSHAKE_GRACE * 0.75;) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      waited += 20;
    }
    strictEqual(listener.connections.size, 6);
    // After the grace period the two oldest of that source are closed.
    const closed = await Promise.all(
      idle.map((conn) => closedByServer(conn, HANDSHAKE_GRACE + 1500)),
    );
    deepStrictEqual(closed, [true, true, false, false, false]);
    strictEqual(await closedByServer(other[0]!, 100), false);
    ok(refused.some((m) => m.includes("maxHandshakesPerSource")), JSON.stringify(refused));
  } finally {
    // Also on failure: open connections would hold the listener's close.
    for (const conn of [...idle, ...other]) closeQuietly(conn);
  }
  listener.close();
  await loop;
});

Deno.test("listen(): at maxConnections the source over its handshake limit makes room; maxConnectionsPerSource refuses", async () => {
  await using listener = await listen(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    limits: { maxConnections: 4, maxHandshakesPerSource: 1, maxConnectionsPerSource: 2 },
  });
  const loop = (async () => {
    for await (const _ of listener) {
      // Held open by the listener's own accounting until the peer closes.
    }
  })();
  // plain finishes its handshake at once: the 3rd from one source is refused.
  const [a1, a2, a3] = await connectMany(listener.addr.port, 3);
  ok(!(await closedByServer(a1!, 300)));
  ok(!(await closedByServer(a2!, 100)));
  ok(await closedByServer(a3!, 1000));
  for (const conn of [a1!, a2!, a3!]) closeQuietly(conn);
  listener.close();
  await loop;

  // Global limit with a stalled transport: source A holds 4 unfinished
  // handshakes; a client from B still gets in, and A's oldest is closed.
  await using stalledListener = await listen(stalled, {}, {
    hostname: "127.0.0.1",
    port: 0,
    limits: { maxConnections: 4, maxHandshakesPerSource: 1 },
  });
  const stalledLoop = (async () => {
    for await (const _ of stalledListener) {
      // Counted by the listener.
    }
  })();
  const fromA = await connectMany(stalledListener.addr.port, 4);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const [fromB] = await connectMany(stalledListener.addr.port, 1, "127.0.0.2");
  ok(await closedByServer(fromA[0]!, 1000), "A's oldest connection stayed open");
  ok(!(await closedByServer(fromB!, 300)), "B's connection was closed");
  for (const conn of [...fromA, fromB!]) closeQuietly(conn);
  stalledListener.close();
  await stalledLoop;
});

/**
 * Four stalled handshakes from 127.0.0.1, then one from 127.0.0.2 (over
 * maxHandshakesPerSource 1 of maxConnections 4): the oldest of the first
 * is closed, reported once to onAcceptError and never as a failure.
 */
async function reportedOnceForLimit(
  port: number,
  failures: string[],
  acceptErrors: string[],
): Promise<void> {
  const fromA = await connectMany(port, 4);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const [fromB] = await connectMany(port, 1, "127.0.0.2");
  ok(await closedByServer(fromA[0]!, 1000), "A's oldest connection stayed open");
  for (let i = 0; i < 100 && acceptErrors.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // Give a wrong report time to come.
  await new Promise((resolve) => setTimeout(resolve, 200));
  deepStrictEqual(failures, []);
  ok(acceptErrors.some((m) => m.includes("maxHandshakesPerSource")), acceptErrors.join("\n"));
  for (const conn of [...fromA, fromB!]) closeQuietly(conn);
}

Deno.test("proxy(): a connection its own limits closed in the handshake is reported once, as closed for the limit, not as a failed handshake", async () => {
  // Found as a remote attacker holding idle obfs4 handshakes from many
  // addresses: each one the limits closed was logged twice, the second time
  // as 'connection failed in the handshake: Transport connection closed'.
  const failures: string[] = [];
  const acceptErrors: string[] = [];
  await using manager = await proxy(stalled, {}, {
    hostname: "127.0.0.1",
    port: 0,
    limits: { maxConnections: 4, maxHandshakesPerSource: 1 },
    target: () => {
      throw new Error("not reached: no handshake ends");
    },
    onError: (error, stage) => failures.push(`${stage}: ${(error as Error).message}`),
    onAcceptError: (error) => acceptErrors.push(error.message),
  });
  await reportedOnceForLimit(manager.addr.port, failures, acceptErrors);
});

Deno.test("serveUdpServer(): a connection its limits closed in the handshake is not reported as a failed flow", async () => {
  const failures: string[] = [];
  const acceptErrors: string[] = [];
  await using pool = await serveUdpServer({
    transport: stalled,
    config: {},
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: 9 },
    framing: "length",
    limits: { maxConnections: 4, maxHandshakesPerSource: 1 },
    onError: (error) => failures.push((error as Error).message),
    onAcceptError: (error) => acceptErrors.push(error.message),
  });
  await reportedOnceForLimit(pool.addr.port, failures, acceptErrors);
});

Deno.test("SocksServer: a SOCKS handshake its limits closed is not reported as a failed handshake", async () => {
  const failures: string[] = [];
  const acceptErrors: string[] = [];
  const tcpListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new SocksServer(tcpListener, {
    connect: () => Promise.reject(new Error("unused")),
    limits: { maxConnections: 4, maxHandshakesPerSource: 1 },
    onError: (error, stage) => failures.push(`${stage}: ${(error as Error).message}`),
    onAcceptError: (error) => acceptErrors.push(error.message),
  });
  await reportedOnceForLimit(server.addr.port, failures, acceptErrors);
  await server.close();
});

Deno.test("SourceLimiter: sources are IPv4 addresses and IPv6 /64s; limits are validated", () => {
  const limiter = new SourceLimiter({ maxHandshakesPerSource: 1, maxConnectionsPerSource: 1 });
  const admit = (hostname: string) => {
    const admission = limiter.admit(tcp(hostname), () => {});
    if (admission instanceof RangeError) return admission;
    admission.handshaken();
    return "ok";
  };
  strictEqual(admit("2001:db8:1:2::1"), "ok");
  ok(admit("2001:db8:1:2:ffff::9") instanceof RangeError, "same /64");
  strictEqual(admit("2001:db8:1:3::1"), "ok");
  strictEqual(admit("192.0.2.1"), "ok");
  ok(admit("::ffff:192.0.2.1") instanceof RangeError, "IPv4-mapped counts as IPv4");
  const refusal = admit("192.0.2.1") as RangeError;
  ok(!refusal.message.includes("192.0.2.1"), refusal.message);
  limiter.close();
  for (const bad of [0, -1, 1.5, NaN]) {
    throws(() => new SourceLimiter({ maxConnections: bad }), RangeError);
  }
  new SourceLimiter({ maxConnections: Infinity }).close();
});

Deno.test("SocksServer and listen() reject invalid limits with a RangeError and close the listener", async () => {
  await rejects(
    listen(plain, {}, { hostname: "127.0.0.1", port: 0, limits: { maxHandshakesPerSource: 0 } }),
    RangeError,
  );
  const tcpListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  throws(
    () =>
      new SocksServer(tcpListener, {
        connect: () => Promise.reject(new Error("unused")),
        limits: { maxConnections: -1 },
      }),
    RangeError,
  );
  await rejects(tcpListener.accept(), Deno.errors.BadResource);
});

Deno.test("SourceLimiter: a connection handshaken from a reported client address counts against that source, not the front's", () => {
  const limiter = new SourceLimiter({ maxConnectionsPerSource: 2 });
  const front = (client?: string) => {
    const admission = limiter.admit(tcp("127.0.0.1"), () => {});
    if (admission instanceof RangeError) return admission;
    const refused = admission.handshaken(client === undefined ? undefined : tcp(client));
    return refused ?? admission;
  };
  // Five clients behind one front: the front's address is no ceiling.
  const clients = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8:0:1::1"];
  const admitted = clients.map((client) => front(client));
  ok(admitted.every((a) => !(a instanceof RangeError)), String(admitted));
  // One client through the front is held to its own limit.
  ok(!(front("192.0.2.1") instanceof RangeError));
  const refused = front("192.0.2.1");
  ok(refused instanceof RangeError, "a third connection from 192.0.2.1 was admitted");
  ok(!refused.message.includes("192.0.2.1"), refused.message);
  // Another address in the same /64 is the same source.
  ok(!(front("2001:db8::2") instanceof RangeError));
  ok(front("2001:db8::3") instanceof RangeError, "a /64 holds 2");
  // Released slots free the reported source.
  (admitted[0] as { release(): void }).release();
  ok(!(front("192.0.2.1") instanceof RangeError), "192.0.2.1 got its slot back");
  // Without a report, the front's own address counts as before.
  ok(!(front() instanceof RangeError));
  ok(!(front() instanceof RangeError));
  ok(front() instanceof RangeError, "the front's own connections are limited");
  limiter.close();
});

Deno.test("SourceLimiter: a full listener with no source over its handshake limit closes the oldest handshake that waited 2 s", async () => {
  const limiter = new SourceLimiter({ maxConnections: 4, maxHandshakesPerSource: 2 });
  const closed: string[] = [];
  const admit = (hostname: string, name: string) =>
    limiter.admit(tcp(hostname), () => closed.push(name));
  // Two sources, each at (not over) its handshake limit, fill the listener.
  for (const [host, names] of [["192.0.2.1", ["a1", "a2"]], ["192.0.2.2", ["b1"]]] as const) {
    for (const name of names) ok(!(admit(host, name) instanceof RangeError));
  }
  await new Promise((resolve) => setTimeout(resolve, HANDSHAKE_GRACE + 100));
  ok(!(admit("192.0.2.2", "b2") instanceof RangeError));
  // Full: each newcomer takes the place of a handshake that waited 2 s, the
  // oldest of the source with the most; once all left are fresh, refused.
  ok(!(admit("192.0.2.3", "c1") instanceof RangeError));
  deepStrictEqual(closed, ["a1"]);
  ok(!(admit("192.0.2.4", "d1") instanceof RangeError));
  deepStrictEqual(closed, ["a1", "b1"]);
  ok(!(admit("192.0.2.5", "e1") instanceof RangeError));
  deepStrictEqual(closed, ["a1", "b1", "a2"]);
  ok(admit("192.0.2.6", "f1") instanceof RangeError, "a fresh handshake was closed");
  deepStrictEqual(closed, ["a1", "b1", "a2"]);
  limiter.close();
});

Deno.test("SourceLimiter: at a full listener, a source over its own per-source limit is refused without closing anyone's handshake", () => {
  const limiter = new SourceLimiter({
    maxConnections: 4,
    maxConnectionsPerSource: 1,
    maxHandshakesPerSource: 8,
  });
  const closed: string[] = [];
  const a = limiter.admit(tcp("192.0.2.1"), () => closed.push("a1"));
  ok(!(a instanceof RangeError));
  a.handshaken();
  // Three clients behind one address, their handshakes under way.
  for (const name of ["b1", "b2", "b3"]) {
    ok(!(limiter.admit(tcp("198.51.100.7"), () => closed.push(name)) instanceof RangeError));
  }
  for (let i = 0; i < 3; i++) {
    const refused = limiter.admit(tcp("192.0.2.1"), () => closed.push("a-new"));
    ok(refused instanceof RangeError && /maxConnectionsPerSource/.test(refused.message));
  }
  deepStrictEqual(closed, []);
  limiter.close();
});

Deno.test("SourceLimiter: a full listener held by sources past their handshake gives a newcomer from another source a place, up to a fair share", () => {
  const limiter = new SourceLimiter({ maxConnections: 4 });
  const closed: string[] = [];
  const admit = (hostname: string, name: string) => {
    const admission = limiter.admit(tcp(hostname), () => closed.push(name));
    if (!(admission instanceof RangeError)) admission.handshaken();
    return admission;
  };
  // One authenticated source holds every slot.
  for (const name of ["a1", "a2", "a3", "a4"]) {
    ok(!(admit("192.0.2.1", name) instanceof RangeError));
  }
  // Another source's client takes the place of the oldest.
  ok(!(admit("198.51.100.7", "b1") instanceof RangeError));
  deepStrictEqual(closed, ["a1"]);
  ok(!(admit("198.51.100.7", "b2") instanceof RangeError));
  deepStrictEqual(closed, ["a1", "a2"]);
  // Two each now: no more swapping.
  ok(admit("198.51.100.7", "b3") instanceof RangeError);
  ok(admit("192.0.2.1", "a5") instanceof RangeError);
  deepStrictEqual(closed, ["a1", "a2"]);
  limiter.close();
});

Deno.test("SourceLimiter: sources that keep their connections young cannot take the place of another address's slow handshake, nor refuse a new address", async () => {
  const limiter = new SourceLimiter({ maxConnections: 4, maxHandshakesPerSource: 2 });
  const closed: string[] = [];
  const admit = (hostname: string, name: string) =>
    limiter.admit(tcp(hostname), () => closed.push(name));
  // A good client whose handshake a busy server has not finished in 2 s.
  ok(!(admit("198.51.100.9", "good") instanceof RangeError));
  await new Promise((resolve) => setTimeout(resolve, HANDSHAKE_GRACE + 100));
  // Attackers fill the rest, and keep reconnecting: theirs are all young.
  for (const [host, name] of [["192.0.2.1", "a1"], ["192.0.2.1", "a2"], ["192.0.2.2", "b1"]]) {
    ok(!(admit(host!, name!) instanceof RangeError));
  }
  ok(admit("192.0.2.2", "b2") instanceof RangeError, "an attacker took a slot");
  ok(admit("192.0.2.1", "a3") instanceof RangeError, "an attacker took a slot");
  deepStrictEqual(closed, [], "the good client's handshake was closed");
  // A new address still gets in, in place of the youngest source's oldest.
  ok(!(admit("203.0.113.5", "new") instanceof RangeError));
  deepStrictEqual(closed, ["a1"]);
  limiter.close();
});

/** `plain` with a handshake: a server connection is ready at its first byte. */
const gated: Transport = {
  name: "gated",
  client: () => ({
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  }),
  server: () => ({
    clientOptions: {},
    pair: () => {
      let open!: () => void;
      const ready = new Promise<void>((resolve) => open = resolve);
      return {
        encode: new TransformStream<Uint8Array, Uint8Array>(),
        decode: new TransformStream<Uint8Array, Uint8Array>({
          transform: (chunk, controller) => {
            open();
            controller.enqueue(chunk);
          },
        }),
        ready,
      };
    },
  }),
};

/** A UDP server pool of `transport` on loopback relaying to `target`, with `maxFlows`. */
function udpServer(transport: Transport, target: HostPort, maxFlows: number) {
  return serveUdpServer({
    transport,
    config: {},
    hostname: "127.0.0.1",
    port: 0,
    target,
    framing: "length",
    maxFlows,
  });
}

Deno.test("UDP server: connections still in their handshake take no flow slot, so idle ones cannot keep a client out", async () => {
  await using echo = await udpEcho();
  await using server = await udpServer(gated, echo.addr, 2);
  const idle = await Promise.all(
    Array.from(
      { length: 6 },
      () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    ),
  );
  try {
    await new Promise((resolve) => setTimeout(resolve, 200));
    await using client = await serveUdpClient({
      transport: gated,
      config: {},
      server: { port: server.addr.port },
      framing: "length",
    });
    await using app = await UdpSocket.open({ connect: client.addr });
    const reply = new Promise<Uint8Array>((resolve) => app.onmessage = (data) => resolve(data));
    app.send(new Uint8Array([1, 2, 3]));
    deepStrictEqual(
      await Promise.race([reply, new Promise((r) => setTimeout(() => r("no echo"), 5000))]),
      new Uint8Array([1, 2, 3]),
    );
  } finally {
    for (const conn of idle) conn.close();
  }
});

Deno.test("UDP server at maxFlows: a source with fewer flows takes the place of the idlest flow of the source with the most, one with as many its own idlest", async () => {
  await using echo = await udpEcho();
  await using server = await udpServer(plain, echo.addr, 2);
  const pool = (dialer?: Dialer) =>
    serveUdpClient({
      transport: plain,
      config: {},
      server: { port: server.addr.port },
      framing: "length",
      ...(dialer === undefined ? {} : { dialer }),
    });
  await using greedy = await pool();
  await using other = await pool((target) => boundDial(target, "127.0.0.2"));
  const echoed = async (to: HostPort, byte: number) => {
    const app = await UdpSocket.open({ connect: to });
    const reply = new Promise<Uint8Array>((resolve) => app.onmessage = (data) => resolve(data));
    app.send(new Uint8Array([byte]));
    const got = await Promise.race([reply, new Promise((r) => setTimeout(() => r("none"), 3000))]);
    return { app, got };
  };
  // 127.0.0.1 takes both slots; its first flow is then the idlest.
  const first = await echoed(greedy.addr, 1);
  await using _first = first.app;
  deepStrictEqual(first.got, new Uint8Array([1]));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const second = await echoed(greedy.addr, 2);
  await using _second = second.app;
  deepStrictEqual(second.got, new Uint8Array([2]));
  // 127.0.0.2 holds none: it is served, in place of the first flow.
  const third = await echoed(other.addr, 3);
  await using _third = third.app;
  deepStrictEqual(third.got, new Uint8Array([3]));
  strictEqual(server.stats().flowsClosed.evicted, 1);
  strictEqual(server.stats().flowsOpen, 2);
  // Now one each: a new flow from 127.0.0.1 takes the place of its own
  // idlest flow (as a NAT table does; it was refused before, so a client
  // whose resolver used a fresh port per query was locked out until its old
  // flows idled out), not 127.0.0.2's.
  const fourth = await echoed(greedy.addr, 4);
  await using _fourth = fourth.app;
  deepStrictEqual(fourth.got, new Uint8Array([4]));
  strictEqual(server.stats().connectionsRejected, 0);
  strictEqual(server.stats().flowsClosed.evicted, 2);
  const again = new Promise<Uint8Array>((resolve) => third.app.onmessage = (data) => resolve(data));
  third.app.send(new Uint8Array([5]));
  deepStrictEqual(await again, new Uint8Array([5]));
  // A source holding none, while nobody holds two more, is refused.
  await using stranger = await pool((target) => boundDial(target, "127.0.0.3"));
  const fifth = await echoed(stranger.addr, 6);
  await using _fifth = fifth.app;
  strictEqual(fifth.got, "none");
  strictEqual(server.stats().connectionsRejected, 1);
  strictEqual(server.stats().flowsClosed.evicted, 2);
});

Deno.test("UDP server behind a front on loopback (WebTunnel): flows count X-Forwarded-For's client, so one client cannot take every flow", async () => {
  await using echo = await udpEcho();
  const path = "/s3cret-udp";
  await using server = await serveUdpServer({
    transport: webtunnel,
    config: { url: `https://localhost${path}` },
    hostname: "127.0.0.1",
    port: 0,
    target: echo.addr,
    framing: "length",
    maxFlows: 2,
  });
  const conns: Deno.Conn[] = [];
  const open = async (client: string) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    conns.push(conn);
    const head = `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n` +
      `Upgrade: websocket\r\nX-Forwarded-For: ${client}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    const n = await conn.read(new Uint8Array(4096));
    ok(n !== null && n > 0, "the upgrade was answered");
  };
  try {
    await open("192.0.2.1");
    await open("192.0.2.1");
    // Another client through the same front: it takes the place of one of
    // the first client's flows instead of being refused.
    await open("192.0.2.2");
    for (let i = 0; i < 100 && server.stats().flowsClosed.evicted === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    strictEqual(server.stats().flowsClosed.evicted, 1);
    strictEqual(server.stats().connectionsRejected, 0);
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
});

Deno.test("listen(): the accept queue is as long as the kernel allows (somaxconn), not Deno's 511", async () => {
  const somaxconn = Number((await Deno.readTextFile("/proc/sys/net/core/somaxconn")).trim());
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  let out;
  try {
    out = await new Deno.Command("ss", {
      args: ["-ltnH", `sport = :${listener.addr.port}`],
    }).output();
  } catch (error) {
    throw new Error("ss is missing: install the Debian package iproute2", { cause: error });
  }
  // Listening sockets: State Recv-Q Send-Q (the backlog) Local Peer.
  const backlog = Number(new TextDecoder().decode(out.stdout).trim().split(/\s+/)[2]);
  strictEqual(backlog, Math.min(somaxconn, 65535));
});

Deno.test("server: a connection closed while its ORPort or Extended ORPort dial is under way gives that dial up (a silent tor holds no socket outside the limits)", async () => {
  // Found by the DoS helper: with tor's ORPort silent (its accept queue
  // full), a dial takes about two minutes (SYN retries). A connection that
  // the limits closed to make room, or whose client reset it, went on
  // dialing, one socket each, outside every limit: free mode's destinations
  // were given up when their connection closed, the fixed targets were not.
  const dir = await Deno.makeTempDir({ prefix: "ptkit_dial_" });
  const cookieFile = `${dir}/cookie`;
  await Deno.writeFile(
    cookieFile,
    new Uint8Array([
      ...new TextEncoder().encode("! Extended ORPort Auth Cookie !\n"),
      ...crypto.getRandomValues(new Uint8Array(32)),
    ]),
  );
  try {
    for (
      const target of [
        ["-orport", "127.0.0.1:9"],
        ["-extorport", "127.0.0.1:9", "-authcookie", cookieFile],
      ]
    ) {
      const config = parseManagedConfig([
        "-server",
        "-transports",
        "plain",
        ...target,
        "-state",
        dir,
      ]);
      ok(config.kind === "server");
      // A dialer as silent as a full accept queue: it ends only when aborted.
      const dials: AbortSignal[] = [];
      let dialed = () => {};
      const dialer: Dialer = (_target, _settings, options) => {
        dials.push(options!.signal!);
        dialed();
        return new Promise((_resolve, reject) =>
          options!.signal!.addEventListener("abort", () => reject(options!.signal!.reason))
        );
      };
      const dialsReach = (count: number) =>
        new Promise<void>((resolve) => {
          dialed = () => dials.length >= count && resolve();
          dialed();
        });
      const lines: PtLine[] = [];
      const running = await runServer(config, {
        emit: (line) => lines.push(line),
        dialer,
        limits: { maxConnections: 2 },
      });
      const smethod = lines.find((line) => line.type === "SMETHOD");
      ok(smethod?.type === "SMETHOD", JSON.stringify(lines));
      const conns = await connectMany(smethod.address.port, 2);
      await within(10_000, `two dials (${target[0]})`, () => dialsReach(2));
      // The listener is full: a newcomer from another source takes the
      // place of the oldest connection of the source holding the most.
      conns.push(...await connectMany(smethod.address.port, 1, "127.0.0.2"));
      await within(10_000, `the third dial (${target[0]})`, () => dialsReach(3));
      await within(
        10_000,
        `the closed connection's dial given up (${target[0]})`,
        // The two connections' dials may start in either order (the
        // cookie is read first): the closed one's is one of them.
        () =>
          new Promise<void>((resolve) => {
            for (const dial of dials.slice(0, 2)) {
              if (dial.aborted) resolve();
              dial.addEventListener("abort", () => resolve());
            }
          }),
      );
      deepStrictEqual(
        dials.map((dial) => dial.aborted).filter(Boolean).length,
        1,
        "not exactly the closed connection's dial was given up",
      );
      // Its log line is the limit's, which closed it: it does not blame
      // tor's port, nor is it reported a second time as a failed connection.
      const logs = () =>
        lines.flatMap((line) => line.type === "LOG" ? [line.message] : []).join("\n");
      await within(10_000, `the closed connection's log line (${target[0]})`, async () => {
        while (!/a newcomer from another took its place/.test(logs())) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      ok(!/cannot connect to the|connection failed/.test(logs()), logs());
      for (const conn of conns) closeQuietly(conn);
      await running.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TransportListener out of descriptors (EMFILE) below maxConnections: the source holding the most gives up its oldest, and the next connection is accepted", async () => {
  // Found by the DoS helper: a low `ulimit -n` runs out before
  // maxConnections, and the listener only backed off, so one source
  // holding every descriptor locked every other out until it left.
  using inner = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let a1Closed = false;
  let exhausted = false;
  const emfile = () =>
    Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
  const wrapper = {
    addr: inner.addr,
    // Out of descriptors until A's oldest connection is closed.
    accept: () => exhausted && !a1Closed ? Promise.reject(emfile()) : inner.accept(),
    close: () => inner.close(),
  } as unknown as Deno.TcpListener;
  const reports: string[] = [];
  const listener = new TransportListener(wrapper, await plain.server({}), "plain", {}, {
    onAcceptError: (error) => reports.push(error.message),
  });
  const fromA = await connectMany(inner.addr.port, 3);
  const accepted = [];
  for (let i = 0; i < 3; i++) {
    const conn = await listener.accept();
    await conn.ready;
    accepted.push(conn);
  }
  accepted[0]!.closed.then(() => a1Closed = true);
  exhausted = true;
  const [fromB] = await connectMany(inner.addr.port, 1, "127.0.0.2");
  let b: TransportConn | undefined;
  await within(10_000, "B's connection accepted", async () => b = await listener.accept());
  strictEqual((b!.remoteAddr as Deno.NetAddr).hostname, "127.0.0.2");
  strictEqual(a1Closed, true, "A's oldest connection is open");
  ok(reports.some((message) => /ran out of file descriptors/.test(message)), reports.join("\n"));
  for (const conn of [...fromA, fromB!]) closeQuietly(conn);
  for (const conn of [...accepted, b!]) conn.close();
  listener.close();
});

Deno.test("SourceLimiter.makeRoom: a source holding two or more gives up its oldest; one connection per source is kept", () => {
  const limiter = new SourceLimiter();
  const closed: string[] = [];
  const admit = (hostname: string, name: string) => {
    const slot = limiter.admit(tcp(hostname), () => closed.push(name));
    ok(!(slot instanceof RangeError));
    slot.handshaken();
  };
  admit("192.0.2.1", "a1");
  admit("192.0.2.2", "b1");
  admit("192.0.2.2", "b2");
  admit("192.0.2.2", "b3");
  strictEqual(limiter.makeRoom(), true);
  strictEqual(limiter.makeRoom(), true);
  deepStrictEqual(closed, ["b1", "b2"]);
  // Each source holds one: nobody is closed for a newcomer that may be anyone.
  strictEqual(limiter.makeRoom(), false);
  deepStrictEqual(closed, ["b1", "b2"]);
  limiter.close();
});
