// Copyright the ptkit authors. MIT license.

// A relay between a socket and an obfs4 transport connection reuses its
// buffers: the socket is read into spare buffers, each given back once the
// encoder took it; the encoder's writes go back once sent; and the decoded
// chunks go back once the relay wrote them to the socket. A buffer lent to
// two uses at once would mix their bytes: every byte must arrive, in order,
// both ways at once, on two connections sharing the process's spares.

import { strictEqual } from "node:assert";
import { relay } from "../net/relay.ts";
import { TransportConn } from "../net/transport_conn.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";

/** Two connected loopback sockets. */
async function socketPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return [a, b];
}

async function sha256(parts: Uint8Array[]): Promise<string> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Send `total` random bytes in writes of 1 byte to 300 KiB; then the end of stream. */
async function send(conn: Deno.TcpConn, total: number): Promise<string> {
  const sent: Uint8Array[] = [];
  for (let left = total; left > 0;) {
    const size = Math.min(left, 1 + Math.floor(Math.random() ** 2 * 300 * 1024));
    const chunk = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(chunk.subarray(i, i + 65536));
    sent.push(chunk);
    for (let at = 0; at < size;) at += await conn.write(chunk.subarray(at));
    left -= size;
  }
  await conn.closeWrite();
  return await sha256(sent);
}

/** Everything read until the end of stream, with reads of varying sizes. */
async function receive(conn: Deno.TcpConn): Promise<string> {
  const got: Uint8Array[] = [];
  for (;;) {
    const buffer = new Uint8Array(1 + Math.floor(Math.random() * 256 * 1024));
    const n = await conn.read(buffer);
    if (n === null) return await sha256(got);
    got.push(buffer.slice(0, n));
  }
}

Deno.test("relay between sockets and obfs4 transport connections carries every byte in order both ways on two connections at once (reused buffers)", async () => {
  const server = await obfs4.server({}, { local: new MemoryStore() });
  const client = await obfs4.client(server.clientOptions);
  const one = async () => {
    const [app, appEnd] = await socketPair();
    const [clientWire, serverWire] = await socketPair();
    const [targetEnd, target] = await socketPair();
    const clientConn = new TransportConn(clientWire, client.pair({}), { name: "obfs4" });
    const serverConn = new TransportConn(serverWire, server.pair(), { name: "obfs4" });
    const size = 6 * 1024 * 1024;
    // The relays' failure (a handshake that fails) fails the test at once.
    const [up, down, upGot, downGot] = await Promise.all([
      send(app, size),
      send(target, size),
      receive(target),
      receive(app),
      relay(appEnd, clientConn),
      relay(serverConn, targetEnd),
    ]);
    strictEqual(upGot, up, "the bytes sent up");
    strictEqual(downGot, down, "the bytes sent down");
    app.close();
    target.close();
  };
  await Promise.all([one(), one()]);
});
