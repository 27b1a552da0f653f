// Copyright the ptkit authors. MIT license.

// Child of idle_memory_test.ts (run with --v8-flags=--expose-gc): what an
// idle connection keeps outside the JS heap, once collected, in bytes per
// connection. `socks`: 200 connections through the client's SOCKS front end,
// each relayed after one byte of data to an end that never answers (its
// pending socket read holds a buffer: one per connection is expected).
// `dist`: 1000 obfs4 weighted distributions (a client's connection has two),
// each sampled once (`dist-reset`: the JS heap that 500 client
// distributions hold once the server's seed replaced their own). `relay`: the JS heap that 200 idle transport
// connections (a pass-through transport) relayed to a TCP connection hold.
// `session`: 500 obfs4 sessions (one per established connection, on each
// side), each having sent and received a packet (`session-heap`: the JS
// heap they hold). `burst`: 40 relays
// between TCP connections, each having moved 64 KiB each way, then idle.

import { SocksServer } from "../ipc/socks/_socks_server.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { WeightedDist } from "../transports/obfs4/_weighted_dist.ts";
import { TransportConn } from "../net/transport_conn.ts";
import { relay } from "../net/relay.ts";
import { Session } from "../transports/obfs4/_session.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";
import { createObfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";

const gc = (globalThis as unknown as { gc: () => void }).gc;
const collect = async () => {
  // Array buffers are freed after a collection, in later tasks.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};
const external = () => Deno.memoryUsage().external;

if (Deno.args[0] === "socks") {
  const N = 200;
  let relayed = 0;
  let allRelayed: () => void;
  const done = new Promise<void>((resolve) => allRelayed = resolve);
  const server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    connect: () =>
      Promise.resolve({
        readable: new ReadableStream<Uint8Array>(),
        writable: new WritableStream<Uint8Array>({
          write: () => {
            if (++relayed === N) allRelayed();
          },
        }),
        close: () => {},
      }),
  });
  const proxy = { hostname: "127.0.0.1", port: server.addr.port };
  const target = { hostname: "192.0.2.1", port: 80 };
  // One connection first, so that what a first connection loads is not counted.
  const warm = await socks5Connect(proxy, target);
  await collect();
  const before = external();
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < N - 1; i++) {
    const conn = await socks5Connect(proxy, target);
    await conn.write(new Uint8Array([i & 0xff]));
    conns.push(conn);
  }
  await warm.write(new Uint8Array([1]));
  await done;
  await collect();
  console.log(Math.round((external() - before) / (N - 1)));
  for (const conn of [warm, ...conns]) conn.close();
  await server.close();
} else if (Deno.args[0] === "dist") {
  const N = 1000;
  const warm = new WeightedDist(new Uint8Array(24), 0, 1448);
  warm.sample();
  await collect();
  const before = external();
  const dists: WeightedDist[] = [];
  for (let i = 0; i < N; i++) {
    const dist = new WeightedDist(new Uint8Array(24).fill(i & 0xff), 0, 1448);
    dist.sample();
    dists.push(dist);
  }
  await collect();
  console.log(Math.round((external() - before) / N));
  if (dists.length !== N) throw new Error("unreachable");
} else if (Deno.args[0] === "dist-reset") {
  // 500 client distributions (a table of their own, sampled once), each
  // then given the server's seed, as a client's length distribution is
  // once the server's seed arrives; the connection then stays idle.
  const N = 500;
  const seed = new Uint8Array(24).fill(7);
  const one = () => {
    const dist = WeightedDist.fresh((b) => crypto.getRandomValues(b), 0, 1448);
    dist.sample();
    dist.reset(seed);
    return dist;
  };
  const warm = one();
  warm.sample();
  await collect();
  const before = Deno.memoryUsage().heapUsed;
  const dists: WeightedDist[] = [];
  for (let i = 0; i < N; i++) dists.push(one());
  await collect();
  console.log(Math.round((Deno.memoryUsage().heapUsed - before) / N));
  if (dists.length !== N) throw new Error("unreachable");
} else if (Deno.args[0] === "relay") {
  const N = 200;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socketPair = async () => {
    const near = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    return [near, await listener.accept()];
  };
  const open: Deno.Conn[] = [];
  const relayed: Promise<unknown>[] = [];
  const one = async () => {
    const [peer, wire] = await socketPair();
    const [target, targetPeer] = await socketPair();
    const conn = new TransportConn(wire!, {
      encode: new TransformStream(),
      decode: new TransformStream(),
    });
    relayed.push(relay(conn, target!).catch(() => {}));
    // One byte each way, then silence.
    await peer!.write(new Uint8Array([1]));
    await targetPeer!.read(new Uint8Array(16));
    await targetPeer!.write(new Uint8Array([2]));
    await peer!.read(new Uint8Array(16));
    open.push(peer!, targetPeer!);
  };
  await one();
  await collect();
  const before = Deno.memoryUsage().heapUsed;
  for (let i = 1; i < N; i++) await one();
  await collect();
  console.log(Math.round((Deno.memoryUsage().heapUsed - before) / (N - 1)));
  for (const conn of open) conn.close();
  await Promise.all(relayed);
} else if (Deno.args[0] === "burst") {
  // Relays between TCP connections, each having moved 64 KiB each way in
  // one burst, then silence: what each holds outside the heap once idle.
  const N = 40;
  const BURST = 64 * 1024;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socketPair = async () => {
    const near = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    return [near, await listener.accept()] as const;
  };
  const readBurst = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(BURST);
    for (let got = 0; got < BURST;) {
      const n = await conn.read(buffer.subarray(got));
      if (n === null) throw new Error("Relay ended early");
      got += n;
    }
  };
  const writeBurst = async (conn: Deno.Conn, byte: number) => {
    const data = new Uint8Array(BURST).fill(byte);
    for (let sent = 0; sent < BURST;) sent += await conn.write(data.subarray(sent));
  };
  const open: Deno.Conn[] = [];
  const relayed: Promise<unknown>[] = [];
  const one = async () => {
    const [app, appPeer] = await socketPair();
    const [target, targetPeer] = await socketPair();
    relayed.push(relay(appPeer, target).catch(() => {}));
    await Promise.all([
      writeBurst(app, 1).then(() => readBurst(targetPeer)),
      writeBurst(targetPeer, 2).then(() => readBurst(app)),
    ]);
    open.push(app, targetPeer);
  };
  await one();
  await collect();
  const before = external();
  for (let i = 1; i < N; i++) await one();
  await collect();
  console.log(Math.round((external() - before) / (N - 1)));
  for (const conn of open) conn.close();
  await Promise.all(relayed);
} else if (Deno.args[0] === "obfs4") {
  // Both sides of an obfs4 connection in this process, each a
  // TransportConn relayed to a TCP connection, as main.ts's client and
  // server relay theirs; one byte each way, then silence.
  const N = 40;
  const transport = createObfs4({ keyPairWorker: false });
  const server = await transport.server({}, { local: new MemoryStore() });
  const client = await transport.client(server.clientOptions);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socketPair = async () => {
    const near = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    return [near, await listener.accept()] as const;
  };
  const open: Deno.Conn[] = [];
  const relayed: Promise<unknown>[] = [];
  const one = async () => {
    const [clientWire, serverWire] = await socketPair();
    const [app, appPeer] = await socketPair();
    const [target, targetPeer] = await socketPair();
    const clientConn = new TransportConn(clientWire, client.pair({}), { name: "obfs4" });
    const serverConn = new TransportConn(serverWire, server.pair(), { name: "obfs4" });
    relayed.push(relay(appPeer, clientConn).catch(() => {}));
    relayed.push(relay(serverConn, target).catch(() => {}));
    await app.write(new Uint8Array([1]));
    await targetPeer.read(new Uint8Array(16));
    await targetPeer.write(new Uint8Array([2]));
    await app.read(new Uint8Array(16));
    open.push(app, targetPeer);
  };
  await one();
  await collect();
  const before = Deno.memoryUsage().heapUsed;
  for (let i = 1; i < N; i++) await one();
  await collect();
  console.log(Math.round((Deno.memoryUsage().heapUsed - before) / (N - 1)));
  for (const conn of open) conn.close();
  await Promise.all(relayed);
  server.close?.();
} else if (Deno.args[0] === "session" || Deno.args[0] === "session-heap") {
  const N = Deno.args[0] === "session" ? 500 : 4000;
  const crypto = await loadWasmCrypto();
  const dist = new WeightedDist(new Uint8Array(24), 0, 1448);
  const common = { crypto, iatMode: 0 as const, lengthDist: dist, iatDist: dist };
  const a = new Uint8Array(72).fill(1);
  const b = new Uint8Array(72).fill(2);
  const pair = () => {
    const client = new Session({ ...common, sendKeys: a, receiveKeys: b, acceptSeed: true });
    const server = new Session({ ...common, sendKeys: b, receiveKeys: a, acceptSeed: false });
    const writes = client.encode(new Uint8Array([1, 2, 3]));
    if (server.decode(writes[0]!).length !== 3) throw new Error("Not decoded");
    return [client, server];
  };
  const held = Deno.args[0] === "session" ? external : () => Deno.memoryUsage().heapUsed;
  // Warm: what the first sessions compile (optimized code) is not counted.
  const warm = Array.from({ length: 200 }, pair).flat();
  await collect();
  const before = held();
  const sessions: Session[] = [];
  for (let i = 0; i < N / 2; i++) sessions.push(...pair());
  await collect();
  console.log(Math.round((held() - before) / N));
  if (sessions.length !== N || warm.length !== 400) throw new Error("unreachable");
} else {
  throw new TypeError(`Unknown case ${Deno.args[0]}`);
}
