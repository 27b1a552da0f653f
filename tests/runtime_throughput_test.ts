// Copyright the ptkit authors. MIT license.
// Acceptance 1: 64 MiB each way, both directions at once, through `plain` and
// through a byte-changing transport, via dial + listen and via dial + proxy to
// a real TCP server; SHA-256 of what arrived equals what was sent.

import { deepStrictEqual, strictEqual } from "node:assert";
import { createConnector } from "../client.ts";
import { listen, proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import type { Transport } from "../transports/transport.ts";
import { rot } from "./rot_transport.ts";
import {
  connHash,
  connWriteAll,
  hashOf,
  hashReadable,
  pseudoRandomChunks,
  tcpServer,
  writeAll,
} from "./_util.ts";

const SIZE = 64 * 1024 * 1024;
const cases: [Transport, Record<string, string>][] = [[plain, {}], [rot, { n: "77" }]];

for (const [transport, config] of cases) {
  Deno.test(`dial + listen carries 64 MiB each way through ${transport.name}`, async () => {
    const up = hashOf(pseudoRandomChunks(SIZE, 1));
    const down = hashOf(pseudoRandomChunks(SIZE, 2));
    await using listener = await listen(transport, config, { hostname: "127.0.0.1", port: 0 });
    const connector = await createConnector(transport, listener.clientOptions);
    const serverSide = (async () => {
      await using conn = await listener.accept();
      const [received] = await Promise.all([
        hashReadable(conn.readable),
        writeAll(conn.writable, pseudoRandomChunks(SIZE, 2)),
      ]);
      return received;
    })();
    await using conn = await connector.dial({ port: listener.addr.port, settings: {} });
    const [received] = await Promise.all([
      hashReadable(conn.readable),
      writeAll(conn.writable, pseudoRandomChunks(SIZE, 1)),
    ]);
    const serverReceived = await serverSide;
    strictEqual(serverReceived.bytes, SIZE);
    strictEqual(serverReceived.digest(), up);
    strictEqual(received.bytes, SIZE);
    strictEqual(received.digest(), down);
    const stats = conn.stats();
    deepStrictEqual(
      [stats.appBytesWritten, stats.appBytesRead, stats.wireBytesWritten, stats.wireBytesRead],
      [SIZE, SIZE, SIZE, SIZE],
    );
  });

  Deno.test(`dial + proxy carries 64 MiB each way through ${transport.name} to a TCP server`, async () => {
    const up = hashOf(pseudoRandomChunks(SIZE, 3));
    const down = hashOf(pseudoRandomChunks(SIZE, 4));
    let targetReceived: Promise<string> | undefined;
    const target = tcpServer(async (conn) => {
      const received = connHash(conn);
      targetReceived = received.then((h) => `${h.bytes}:${h.digest()}`);
      await Promise.all([received, connWriteAll(conn, pseudoRandomChunks(SIZE, 4))]);
    });
    const manager = await proxy(transport, config, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: target.port },
    });
    try {
      const connector = await createConnector(transport, manager.clientOptions);
      await using conn = await connector.dial({ port: manager.addr.port });
      const [received] = await Promise.all([
        hashReadable(conn.readable),
        writeAll(conn.writable, pseudoRandomChunks(SIZE, 3)),
      ]);
      strictEqual(received.bytes, SIZE);
      strictEqual(received.digest(), down);
      strictEqual(await targetReceived, `${SIZE}:${up}`);
      await conn.closed;
    } finally {
      await manager.close();
      await target.close();
    }
    const stats = manager.stats();
    strictEqual(stats.connectionsAccepted, 1);
    strictEqual(stats.connectionsFailed, 0);
    strictEqual(stats.appBytesRead, SIZE);
    strictEqual(stats.appBytesWritten, SIZE);
  });
}
