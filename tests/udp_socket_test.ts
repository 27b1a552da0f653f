// Copyright the ptkit authors. MIT license.
// The UDP socket layer, and datagram sizes through it and transparent-UDP: the
// largest IPv4 datagram (65,507 bytes) crosses whole both ways; what cannot
// be carried is refused and counted, never truncated.

import type { HostPort } from "@ptkit/ptkit/net";
import { serveUdpClient, serveUdpServer, UdpSocket } from "@ptkit/ptkit/udp";
import { plain } from "@ptkit/ptkit/transports";
import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { appSocket, udpEcho, waitFor } from "./udp_test_utils.ts";
import { sendRawUdp } from "./raw_udp.ts";
import { openLibc, sockaddr } from "../net/_libc.ts";

const MAX_4 = 65_507;

/** A transparent-UDP client and server over `plain` to `target`; the client listens on `hostname`. */
async function plainPools(target: HostPort, hostname = "127.0.0.1") {
  const server = await serveUdpServer({
    transport: plain,
    config: {},
    hostname: "127.0.0.1",
    port: 0,
    target,
    framing: "length",
  });
  const client = await serveUdpClient({
    transport: plain,
    config: {},
    hostname,
    server: { port: server.addr.port },
    framing: "length",
  });
  return {
    server,
    client,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server.close();
    },
  };
}

/** Send `datagram` until a reply comes (loopback UDP may still drop); the reply. */
async function roundTrip(app: UdpSocket & { replies: Uint8Array[] }, datagram: Uint8Array) {
  const before = app.replies.length;
  for (let i = 0; i < 20 && app.replies.length === before; i++) {
    app.send(datagram);
    await waitFor(() => app.replies.length > before, "a reply", 1000).catch(() => {});
  }
  return app.replies[before];
}

Deno.test("UdpSocket sends and receives 65,507 bytes over IPv4 and 65,527 over IPv6 whole; one byte more is refused and counted", async () => {
  for (const [hostname, max] of [["127.0.0.1", MAX_4], ["::1", 65_527]] as const) {
    await using receiver = await UdpSocket.open({ hostname });
    const got: Uint8Array[] = [];
    receiver.onmessage = (data) => got.push(data.slice());
    await using sender = await UdpSocket.open({ connect: receiver.addr });
    strictEqual(sender.maxDatagram, max);
    const big = crypto.getRandomValues(new Uint8Array(max));
    for (let i = 0; i < 20 && got.length === 0; i++) {
      strictEqual(sender.send(big), true);
      await waitFor(() => got.length > 0, "the datagram", 1000).catch(() => {});
    }
    deepStrictEqual(got[0], big, `${max} bytes over ${hostname} arrive whole`);
    strictEqual(sender.send(new Uint8Array(max + 1)), false);
    strictEqual(sender.stats().drops.oversize, 1);
    strictEqual(receiver.stats().drops.truncated, 0);
  }
});

Deno.test("UdpSocket.send refuses a port that is not 1-65535 (70000 went to port 4464), with FFI or without", async () => {
  await using socket = await UdpSocket.open({ hostname: "127.0.0.1" });
  for (const port of [70_000, 65_536, 0, -1, 4464.5, NaN]) {
    throws(
      () => socket.send(new Uint8Array(1), { hostname: "127.0.0.1", port }),
      (e: Error) => e instanceof RangeError && e.message.includes(`invalid port ${port}`),
    );
  }
  strictEqual(socket.stats().datagramsSent, 0);
});

Deno.test("UdpSocket.open refuses a connect peer at port 0, which send refuses too: every datagram to it failed in the kernel", async () => {
  // Before: the socket opened, and each send() returned false, counted as
  // sendFailed ('errno 22' to onerror), with no word when it was made.
  for (const hostname of ["127.0.0.1", "::1"]) {
    await rejects(
      () => UdpSocket.open({ connect: { hostname, port: 0 } }),
      (e: Error) =>
        e instanceof RangeError &&
        e.message === "Invalid port 0 for open UDP socket: must be an integer in 1-65535",
    );
  }
  await using peer = await UdpSocket.open();
  await using socket = await UdpSocket.open({ connect: { hostname: "127.0.0.1", port: 65535 } });
  strictEqual(socket.send(new Uint8Array(1), peer.addr), true);
});

Deno.test("UdpSocket.send refuses a hostname that is neither an IP address nor a host name with a TypeError, and sends to a name", async () => {
  // Before: send returned true, and Deno's "URIError: invalid host 'a b':
  // invalid char found in FQDN" came later to onerror (sendFailed).
  await using peer = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got = new Promise<number>((resolve) => peer.onmessage = (data) => resolve(data[0]!));
  await using socket = await UdpSocket.open({ hostname: "127.0.0.1" });
  const errors: Error[] = [];
  socket.onerror = (error) => errors.push(error);
  for (const hostname of ["a b", "", "host:80"]) {
    throws(
      () => socket.send(new Uint8Array(1), { hostname, port: peer.addr.port }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message.startsWith(
          `Cannot send UDP datagram: invalid hostname ${JSON.stringify(hostname)}`,
        ),
      hostname,
    );
  }
  strictEqual(
    socket.send(new Uint8Array([7]), { hostname: "localhost", port: peer.addr.port }),
    true,
  );
  strictEqual(await got, 7);
  deepStrictEqual([errors.length, socket.stats().drops.sendFailed], [0, 0]);
});

Deno.test("transparent-UDP carries a 65,507-byte datagram whole both ways", async () => {
  await using echo = await udpEcho();
  await using pools = await plainPools(echo.addr);
  const { server, client } = pools;
  await using app = await appSocket(client.addr);
  const big = crypto.getRandomValues(new Uint8Array(MAX_4));
  deepStrictEqual(await roundTrip(app, big), big);
  deepStrictEqual(echo.received.at(-1), big);
  strictEqual(client.stats().bytesToTunnel >= MAX_4, true);
  strictEqual(Object.values(client.stats().drops).reduce((a, b) => a + b), 0);
  strictEqual(Object.values(server.stats().drops).reduce((a, b) => a + b), 0);
});

Deno.test("transparent-UDP refuses a datagram over maxDatagram with a counted drop, both ways", async () => {
  // Over IPv6 a UDP datagram may hold 65,527 bytes: one more than the
  // default maxDatagram (65,507) reaches the pools and is dropped there.
  await using target = await UdpSocket.open({ hostname: "::1" });
  const atTarget: Uint8Array[] = [];
  target.onmessage = (data, from) => {
    atTarget.push(data.slice());
    // The target answers every datagram with one too large to carry, then a small one.
    target.send(new Uint8Array(MAX_4 + 1), from);
    target.send(new Uint8Array([1]), from);
  };
  await using pools = await plainPools(target.addr, "::1");
  const { server, client } = pools;
  await using app = await appSocket(client.addr);
  strictEqual(app.send(new Uint8Array(MAX_4 + 1)), true);
  await waitFor(() => client.stats().drops.oversize === 1, "the client's oversize drop");
  deepStrictEqual(await roundTrip(app, new Uint8Array([7])), new Uint8Array([1]));
  await waitFor(() => server.stats().drops.oversize >= 1, "the server's oversize drop");
  strictEqual(
    atTarget.every((d) => d.byteLength === 1),
    true,
    "nothing oversize reached the target",
  );
  strictEqual(app.replies.every((d) => d.byteLength === 1), true, "nothing truncated came back");
});

Deno.test("UdpSocket.sendMany is send for each datagram in order: the same results, counts and drops, to a connected peer or an address", async () => {
  await using receiver = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got: number[] = [];
  receiver.onmessage = (data) => got.push(data.length === 0 ? -1 : data[0]! | (data[1]! << 8));
  const datagram = (i: number, size = 200) => {
    const d = new Uint8Array(size);
    d[0] = i & 0xff;
    d[1] = i >> 8;
    return d;
  };
  for (const connected of [true, false]) {
    got.length = 0;
    await using sender = await UdpSocket.open(connected ? { connect: receiver.addr } : {});
    const to = connected ? undefined : { hostname: "127.0.0.1", port: receiver.addr.port };
    // 70 datagrams (more than one system call takes), one too large in the
    // middle, one empty, one of 65,507 bytes; the last one not counted.
    const batch = Array.from({ length: 72 }, (_, i) => datagram(i));
    batch[5] = new Uint8Array(MAX_4 + 1);
    batch[6] = new Uint8Array(0);
    batch[40] = datagram(40, MAX_4);
    const results: boolean[] = [];
    strictEqual(sender.sendMany(batch, 71, to, results), 70);
    deepStrictEqual(results, batch.slice(0, 71).map((_, i) => i !== 5));
    await waitFor(() => got.length === 70, "the datagrams", 5000);
    deepStrictEqual(got, [...Array(71).keys()].filter((i) => i !== 5).map((i) => i === 6 ? -1 : i));
    const stats = sender.stats();
    strictEqual(stats.datagramsSent, 70);
    strictEqual(stats.bytesSent, 68 * 200 + MAX_4);
    strictEqual(stats.drops.oversize, 1);
    // As send: what is not bytes is a TypeError once it is reached, after what came before went.
    throws(
      () => sender.sendMany([datagram(1), "x" as unknown as Uint8Array], 2, to),
      (e: Error) => e instanceof TypeError && e.message.includes("got string"),
    );
    strictEqual(sender.stats().datagramsSent, 71);
    if (!connected) {
      throws(
        () => sender.sendMany([datagram(1), datagram(2)], 2, { hostname: "127.0.0.1", port: 0 }),
        RangeError,
      );
    }
    await sender.close();
    strictEqual(sender.sendMany([datagram(1), datagram(2)], 2, to), 0);
    strictEqual(sender.stats().drops.closed, 2);
  }
});

Deno.test("UdpSocket.sendMany delivers runs of one size (one UDP_SEGMENT message each with FFI) as the same datagrams, byte for byte and in order", async () => {
  await using receiver = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got: Uint8Array[] = [];
  receiver.onmessage = (data) => got.push(data.slice());
  await using sender = await UdpSocket.open({ connect: receiver.addr });
  // Runs that a shorter datagram ends, one an empty one breaks, one a longer
  // one follows, a run past 64 KiB together, one that fills a whole call.
  const sizes = [
    ...[64, 64, 64, 10, 64, 64, 0, 0, 64, 5, 5, 6, 1400, 1400, 1399, 1400, 1, 1],
    ...Array(8).fill(9000),
    ...Array(40).fill(100),
  ];
  const batch = sizes.map((size, i) => {
    const d = new Uint8Array(size);
    for (let k = 0; k < size; k++) d[k] = (i * 7 + k) & 0xff;
    return d;
  });
  const results: boolean[] = [];
  strictEqual(sender.sendMany(batch, batch.length, undefined, results), batch.length);
  strictEqual(results.every((ok) => ok), true);
  await waitFor(() => got.length === batch.length, "the datagrams", 5000);
  deepStrictEqual(got.map((d) => d.byteLength), sizes);
  deepStrictEqual(got, batch);
  strictEqual(sender.stats().datagramsSent, batch.length);
  strictEqual(sender.stats().bytesSent, sizes.reduce((a, b) => a + b, 0));
});

Deno.test("UdpSocket hands each datagram of every drain its own bytes: same-size datagrams in the same arena slots, drain after drain, and other sizes between them", async () => {
  // With FFI a drain delivers views of a receive arena shared by the
  // process's sockets, a slot per datagram, and a slot's view is handed out
  // again to a datagram of its length: each datagram must still read as
  // its own bytes, never another's, nor a length of another.
  await using receiver = await UdpSocket.open({ hostname: "127.0.0.1" });
  await using other = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got: Uint8Array[] = [];
  const gotOther: Uint8Array[] = [];
  receiver.onmessage = (data) => got.push(data.slice());
  other.onmessage = (data) => gotOther.push(data.slice());
  // Bound to the wildcard address, so that its datagrams go through the
  // kernel (not handed over within the process) and queue there.
  await using sender = await UdpSocket.open({ hostname: "0.0.0.0" });
  strictEqual(receiver.batched, openLibc() !== null);
  const sent: Uint8Array[] = [];
  const sentOther: Uint8Array[] = [];
  let serial = 0;
  const datagram = (size: number) => {
    const d = new Uint8Array(size);
    const n = serial++;
    for (let k = 0; k < size; k++) d[k] = (n * 31 + k * 7) & 0xff;
    if (size >= 2) {
      d[0] = n & 0xff;
      d[1] = n >> 8;
    }
    return d;
  };
  for (let round = 0; round < 40; round++) {
    // Bursts of one size (every slot reused as it was), then sizes that
    // change from slot to slot and from drain to drain, and a second
    // socket's datagrams through the same arena in between.
    const sizes = round % 4 === 0
      ? Array.from({ length: 1 + (round % 7) * 9 }, (_, i) => [64, 65, 1, 0, 64][i % 5]!)
      : Array(1 + (round * 13) % 60).fill(round % 3 === 0 ? 512 : 64);
    for (const size of sizes) {
      const d = datagram(size);
      sent.push(d);
      sender.send(d, receiver.addr);
    }
    const d = datagram(64);
    sentOther.push(d);
    sender.send(d, other.addr);
    await waitFor(
      () => got.length === sent.length && gotOther.length === sentOther.length,
      `round ${round}'s datagrams`,
      5000,
    );
  }
  // The first datagram that differs, named briefly (a diff of them all is huge).
  const differs = (a: Uint8Array[], b: Uint8Array[]) =>
    b.findIndex((d, i) => a[i]?.byteLength !== d.byteLength || a[i]!.some((x, k) => x !== d[k]));
  strictEqual(differs(got, sent), -1, "every datagram as sent");
  strictEqual(differs(gotOther, sentOther), -1, "the other socket's datagrams as sent");
});

Deno.test("UdpSocket.sendMany still delivers every datagram where the kernel refuses a run as one UDP_SEGMENT message (a socket with SO_NO_CHECK)", async () => {
  await using receiver = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got: Uint8Array[] = [];
  receiver.onmessage = (data) => got.push(data.slice());
  await using sender = await UdpSocket.open({ connect: receiver.addr });
  strictEqual(sender.batched, true, "run with --allow-ffi");
  // The kernel refuses UDP GSO (EINVAL) on a socket that sends without checksums.
  const libc = Deno.dlopen("libc.so.6", {
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  });
  try {
    const fd = openLibc()!.findUdpSocket(
      sockaddr(new Uint8Array([127, 0, 0, 1]), sender.addr.port),
    );
    strictEqual(
      libc.symbols.setsockopt(fd, 1, 11, /* SOL_SOCKET, SO_NO_CHECK */ new Int32Array([1]), 4),
      0,
    );
  } finally {
    libc.close();
  }
  // Sizes no other test sends in runs: the refusal is remembered per size.
  const sizes = [30_001, 30_001, 30_000, 30_001, 30_001, 7];
  const batch = sizes.map((size, i) => new Uint8Array(size).fill(i + 1));
  for (let round = 0; round < 2; round++) {
    got.length = 0;
    const results: boolean[] = [];
    strictEqual(sender.sendMany(batch, batch.length, undefined, results), batch.length);
    strictEqual(results.every((ok) => ok), true);
    await waitFor(() => got.length === batch.length, "the datagrams", 5000);
    deepStrictEqual(got, batch);
  }
  strictEqual(sender.stats().datagramsSent, 2 * batch.length);
  strictEqual(sender.stats().drops.sendFailed, 0);
});

Deno.test("UdpSocket's buffers pass net.core.rmem_max up to 4 MiB where the process may (CAP_NET_ADMIN), else stop at it", async () => {
  // Stock Linux caps SO_RCVBUF at 212,992 bytes: a few hundred datagrams, a
  // 0.2 s pause of a busy TURN server. A turnutils_uclient run in CI lost 4
  // datagrams of 10,000 so. Root forces the buffer past the cap.
  const rmemMax = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1]!;
  const netAdmin = (BigInt(`0x${capEff}`) & (1n << 12n)) !== 0n;
  for (const asked of [Infinity, 16 * 1024 * 1024, 1024 * 1024, 100_000]) {
    await using socket = await UdpSocket.open({ bufferSize: asked });
    const capped = 2 * Math.min(asked, rmemMax);
    const expected = netAdmin ? Math.max(capped, 2 * Math.min(asked, 4 * 1024 * 1024)) : capped;
    strictEqual(
      socket.bufferSize,
      expected,
      `asked ${asked}, rmem_max ${rmemMax}, CAP_NET_ADMIN ${netAdmin}`,
    );
  }
});

Deno.test("UdpSocket relaying between sockets of one process keeps each sender's order", async () => {
  // A sends to B, B relays every datagram to C (as a TURN server relays
  // between two of its allocations); with FFI, B and C are drained right
  // after each send. Nothing overtakes what came before it.
  await using c = await UdpSocket.open({ bufferSize: 8 * 1024 * 1024 });
  const got: number[] = [];
  c.onmessage = (data) => got.push(data[0]! | (data[1]! << 8));
  await using b = await UdpSocket.open({ bufferSize: 8 * 1024 * 1024 });
  b.onmessage = (data) => b.send(data, c.addr);
  await using a = await UdpSocket.open({ connect: b.addr });
  const total = 3000;
  for (let i = 0; i < total; i++) {
    const datagram = new Uint8Array(200);
    datagram[0] = i & 0xff;
    datagram[1] = i >> 8;
    a.send(datagram);
    // Bursts of 50, so that kernel buffers left at their default (no FFI) hold them.
    if (i % 50 === 49) {
      await waitFor(() => got.length === i + 1, `datagram ${i} at C`, 2000).catch(() => {});
    }
  }
  ok(got.length > total * 0.9, `most datagrams arrive (${got.length})`);
  for (let i = 1; i < got.length; i++) {
    ok(got[i - 1]! < got[i]!, `datagram ${got[i]} after ${got[i - 1]}`);
  }
});

Deno.test("UdpSocket between two sockets of one process: the receiver gets the bytes from the sender's address, writable around them, counted on both; two that answer each other at once still let timers run", async () => {
  await using a = await UdpSocket.open({ hostname: "127.0.0.1" });
  await using b = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got: { data: number[]; from: string; key: number | string; before: number }[] = [];
  b.onmessage = (data, from) => {
    // RECEIVE_HEADROOM (4) bytes before and after are the receiver's to write.
    const around = new Uint8Array(data.buffer, data.byteOffset - 4, data.byteLength + 8);
    const before = around[3]!;
    around.fill(0xee, 0, 4);
    around.fill(0xee, data.byteLength + 4);
    got.push({ data: [...data], from: `${from.hostname}:${from.port}`, key: from.key, before });
  };
  const datagram = new Uint8Array([1, 2, 3, 4, 5]);
  ok(a.send(datagram, b.addr));
  ok(a.send(datagram.subarray(1, 3), b.addr));
  await waitFor(() => got.length === 2, "both datagrams");
  deepStrictEqual(got.map((g) => g.data), [[1, 2, 3, 4, 5], [2, 3]]);
  deepStrictEqual(got.map((g) => g.from), Array(2).fill(`127.0.0.1:${a.addr.port}`));
  strictEqual(got[0]!.key, a.addr.key);
  deepStrictEqual(datagram, new Uint8Array([1, 2, 3, 4, 5]), "the sender's bytes are untouched");
  strictEqual(a.stats().datagramsSent, 2);
  strictEqual(a.stats().bytesSent, 7);
  strictEqual(b.stats().datagramsReceived, 2);
  strictEqual(b.stats().bytesReceived, 7);
  // Two sockets that answer each other at once: no unbounded recursion, and
  // a timer due at once runs while they go on.
  let rounds = 0;
  a.onmessage = (data) => void (rounds++, a.send(data, b.addr));
  b.onmessage = (data) => void (rounds++, b.send(data, a.addr));
  const atTimer = new Promise<number>((resolve) => setTimeout(() => resolve(rounds), 0));
  a.send(datagram, b.addr);
  const first = await atTimer;
  await waitFor(() => rounds > first + 100, "more rounds after the timer");
  a.onmessage = b.onmessage = undefined;
});

Deno.test("UdpSocket under a flood gives timers and other I/O a turn while datagrams are queued", async () => {
  // With FFI a wake-up drained the kernel's queue while recvmmsg returned
  // full batches: a sender as fast as the process kept it there, and a
  // 5 s flood of STUN Binding requests from one client froze a TURN
  // server's process for 5 s. Now a wake-up takes at most 16 batches (512
  // datagrams), and the rest come after timers and other I/O.
  await using receiver = await UdpSocket.open({ hostname: "127.0.0.1", port: 0 });
  // On the wildcard address, so that its datagrams go through the kernel
  // (one bound to 127.0.0.1 hands them over directly).
  await using sender = await UdpSocket.open({ hostname: "0.0.0.0", port: 0 });
  await using other = await UdpSocket.open({ hostname: "127.0.0.1", port: 0 });
  let delivered = 0;
  receiver.onmessage = () => void delivered++;
  let atOther = -1;
  other.onmessage = () => atOther = delivered;
  // A timer that is due (Deno runs a 0 ms timer a millisecond on), and,
  // after the flood, a datagram for another socket.
  let atTimer = -1;
  setTimeout(() => atTimer = delivered, 0);
  const due = performance.now() + 3;
  while (performance.now() < due) {
    // Wait until the timer is due.
  }
  // Queued in the kernel before the receiver runs: sends with FFI are synchronous.
  const datagram = new Uint8Array(20);
  let sent = 0;
  for (let i = 0; i < 2048; i++) if (sender.send(datagram, receiver.addr)) sent++;
  sender.send(new Uint8Array(1), other.addr);
  ok(sent > 1024, `${sent} datagrams queued`);
  await waitFor(
    () => atTimer >= 0 && atOther >= 0 && receiver.stats().datagramsReceived === sent,
    "every datagram",
  );
  // Before: 2,048 (all of them) delivered before the timer ran. Now at most
  // the hand-off's drain and one wake-up's: 512 + 1 + 512.
  ok(atTimer <= 1025, `${atTimer} of ${sent} delivered before a due timer ran`);
  ok(atOther <= 1025, `${atOther} of ${sent} delivered before another socket's datagram`);
});

Deno.test("a UDP target name that does not resolve is an error naming it, in sentence case", async () => {
  // .invalid never resolves (RFC 6761).
  await rejects(
    serveUdpServer({
      transport: plain,
      config: {},
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "nosuch.invalid", port: 53 },
      framing: "length",
    }),
    // No address, or the name servers' failure where DNS cannot be reached: named either way.
    /^Error: Cannot serve UDP server: cannot resolve "nosuch\.invalid" \(.+\)$/,
  );
  await rejects(
    UdpSocket.open({ connect: { hostname: "nosuch.invalid", port: 53 } }),
    /^Error: Cannot open UDP socket: cannot resolve "nosuch\.invalid" \(.+\)$/,
  );
});

Deno.test("UdpSocket.open refuses null options and a connect that is not { hostname, port } with a TypeError naming the option", async () => {
  // Before: "Cannot read properties of null (reading 'connect')", and for
  // connect "127.0.0.1:53" a RangeError blaming the port.
  await rejects(
    () => UdpSocket.open(null as unknown as undefined),
    (e: Error) =>
      e instanceof TypeError &&
      e.message === "Cannot open UDP socket: options must be an object, got null",
  );
  await rejects(
    () => UdpSocket.open({ connect: "127.0.0.1:53" as unknown as HostPort }),
    (e: Error) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot open UDP socket: connect must be an object { hostname, port }, got string (12 characters)",
  );
  await rejects(
    () => UdpSocket.open({ connect: null as unknown as HostPort }),
    (e: Error) => e instanceof TypeError && e.message.includes("connect must be an object"),
  );
});

/** The message `UdpSocket.send("s3cret", to)` throws, or what it returned, in this process. */
const SEND_STRING = `
  import { UdpSocket } from ${JSON.stringify(new URL("../udp/mod.ts", import.meta.url).href)};
  await using socket = await UdpSocket.open({ hostname: "127.0.0.1" });
  const to = { hostname: "127.0.0.1", port: 9 };
  const results = [];
  for (const data of ["s3cret", [1, 2], new ArrayBuffer(2), null]) {
    try {
      results.push("returned " + socket.send(data, to));
    } catch (error) {
      results.push(error.constructor.name + ": " + error.message);
    }
  }
  console.log(JSON.stringify({ batched: socket.batched, results }));
`;

Deno.test("UdpSocket.send refuses data that is not a Uint8Array with a TypeError naming its type, never its content, with FFI or without", async () => {
  // Before: "Invalid FFI buffer type" with FFI; without, `true` (and the
  // string was sent as what Deno made of it).
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, SEND_STRING);
    for (const ffi of [true, false]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--no-prompt",
          "--unstable-net",
          "--allow-net",
          ...(ffi ? ["--allow-ffi"] : []),
          file,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
      const { batched, results } = JSON.parse(new TextDecoder().decode(out.stdout));
      strictEqual(batched, ffi);
      const refused = (type: string) =>
        `TypeError: Cannot send UDP datagram: data must be a Uint8Array, got ${type}`;
      deepStrictEqual(results, [
        refused("string (6 characters)"),
        refused("Array (2 items)"),
        refused("ArrayBuffer (2 bytes)"),
        refused("null"),
      ]);
      ok(!results.join().includes("s3cret"));
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("UdpSocket's docs link only what @ptkit/ptkit/udp exports (onmessage linked RECEIVE_HEADROOM, which it does not)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", new URL("../udp/mod.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  const doc = JSON.parse(text) as {
    nodes: Record<string, { symbols: { name: string }[] }>;
  };
  const exported = new Set(
    Object.values(doc.nodes).flatMap((node) => node.symbols.map((symbol) => symbol.name)),
  );
  const linked = new Set(
    [...text.matchAll(/@link(?:code)? ([A-Za-z_$][\w$]*)/g)].map((m) => m[1]!),
  );
  ok(linked.has("UdpSocket"));
  deepStrictEqual([...linked].filter((name) => !exported.has(name)), []);
});

Deno.test("UdpSocket: an onmessage or onerror callback that throws ends nothing: printed once on the console, the socket goes on receiving", async () => {
  // Before, an onerror that threw escaped the receive loop or the send queue
  // ('Uncaught Error', the process ended), and an onmessage that threw
  // without an onerror went unseen.
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => printed.push(args);
  try {
    await using a = await UdpSocket.open({ hostname: "127.0.0.1" });
    let received = 0;
    a.onmessage = () => {
      received++;
      throw new Error("onmessage fault");
    };
    await using b = await UdpSocket.open({ connect: a.addr });
    b.send(new Uint8Array([1]));
    await waitFor(() => received === 1, "the first datagram");
    b.send(new Uint8Array([2]));
    await waitFor(() => received === 2, "the second datagram");
    a.onerror = () => {
      throw new Error("onerror fault");
    };
    b.send(new Uint8Array([3]));
    // A send that fails: an IPv6 receiver from an IPv4 socket.
    a.send(new Uint8Array([4]), { hostname: "::1", port: 9 });
    await waitFor(() => received === 3 && a.stats().drops.sendFailed === 1, "the failed send");
    b.send(new Uint8Array([5]));
    await waitFor(() => received === 4, "a datagram after the throws");
    deepStrictEqual(
      printed.map((args) => [String(args[0]), String(args[1])]),
      [
        [
          "The UdpSocket onmessage callback threw; the server goes on, and later throws are not reported:",
          "Error: onmessage fault",
        ],
        [
          "The UdpSocket onerror callback threw; the server goes on, and later throws are not reported:",
          "Error: onerror fault",
        ],
      ],
    );
  } finally {
    console.error = consoleError;
  }
});

// A datagram from port 0 cannot be answered (a forged source, as an
// attacker's raw socket sends): the transparent-UDP client dialed a bridge
// connection for one and then logged a warning per flow. Dropped and
// counted where every UDP user receives.
Deno.test("UdpSocket drops a datagram from port 0 (counted as fromPortZero), delivers the others", async () => {
  await using socket = await UdpSocket.open({ hostname: "127.0.0.1" });
  const got: string[] = [];
  socket.onmessage = (data, from) => got.push(`${new TextDecoder().decode(data)}:${from.port}`);
  sendRawUdp(socket.addr.port, 0, new TextEncoder().encode("forged"));
  sendRawUdp(socket.addr.port, 4242, new TextEncoder().encode("real"));
  await waitFor(() => got.length > 0, "the datagram from port 4242", 2000);
  deepStrictEqual(got, ["real:4242"]);
  strictEqual(socket.stats().drops.fromPortZero, 1);
  strictEqual(socket.stats().datagramsReceived, 1);
});

Deno.test("UdpSocket.open and send refuse a port that is not a number with a TypeError naming its type, as listen and serveUdpClient do (a RangeError said 'got 5' for \"5\")", async () => {
  await rejects(
    () => UdpSocket.open({ hostname: "127.0.0.1", port: "5" as unknown as number }),
    (e: Error) =>
      e instanceof TypeError &&
      e.message === "Invalid port for open UDP socket: expected a number, got string",
  );
  await rejects(
    () => UdpSocket.open({ connect: { hostname: "127.0.0.1", port: "53" as unknown as number } }),
    (e: Error) => e instanceof TypeError && e.message.endsWith("expected a number, got string"),
  );
  await rejects(
    () => UdpSocket.open({ hostname: "127.0.0.1", port: 70_000 }),
    (e: Error) =>
      e instanceof RangeError &&
      e.message === "Invalid port 70000 for open UDP socket: must be an integer in 0-65535",
  );
  await using socket = await UdpSocket.open({ hostname: "127.0.0.1" });
  throws(
    () => socket.send(new Uint8Array(1), { hostname: "127.0.0.1", port: "9" as unknown as number }),
    (e: Error) =>
      e instanceof TypeError &&
      e.message === "Cannot send UDP datagram: port must be a number, got string",
  );
  // A hostname of another type returned true and failed later in the kernel.
  throws(
    () => socket.send(new Uint8Array(1), { hostname: 5 as unknown as string, port: 9 }),
    (e: Error) =>
      e instanceof TypeError &&
      e.message === "Cannot send UDP datagram: hostname must be a string, got number",
  );
  strictEqual(socket.stats().datagramsSent, 0);
  strictEqual(socket.stats().drops.sendFailed, 0);
});
