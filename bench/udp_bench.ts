// Copyright the ptkit authors. MIT license.
// UDP section of `deno task bench`: datagrams per second and MB/s through
// transparent-UDP (serveUdpClient -> transport -> serveUdpServer) over plain
// and obfs4, against raw UDP loopback to the same echo server, at 64, 512 and
// 1400-byte datagrams. Echoed round trips with a window of outstanding
// datagrams, so the kernel's default socket buffers are not overrun.

import { serveUdpClient, serveUdpServer, UdpSocket } from "../udp/mod.ts";
import { plain } from "../transports/plain.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore, type Transport } from "../transports/mod.ts";

const COUNT = 20_000;
const WINDOW = 32;

/** Send COUNT datagrams of `size` to `port` with WINDOW outstanding; datagrams per second. */
async function echoRate(port: number, size: number): Promise<number> {
  const socket = await UdpSocket.open({ connect: { hostname: "127.0.0.1", port } });
  const payload = crypto.getRandomValues(new Uint8Array(size));
  let sent = 0;
  let received = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (sent < COUNT && sent - received < WINDOW) {
        sent++;
        socket.send(payload);
      }
    };
    // A lost datagram would stall the window: top it up after a quiet 200 ms.
    let idle = setTimeout(function kick() {
      received = Math.max(received, sent - WINDOW + 1);
      pump();
      idle = setTimeout(kick, 200);
    }, 200);
    socket.onmessage = () => {
      received++;
      if (received >= COUNT) {
        clearTimeout(idle);
        resolve();
      } else pump();
    };
    pump();
  });
  const seconds = (performance.now() - start) / 1000;
  await socket.close();
  return COUNT / seconds;
}

/** Run the UDP section. */
export async function udpBench(
  row: (name: string, value: number, unit: string, base: number) => void,
): Promise<void> {
  const echo = await UdpSocket.open();
  echo.onmessage = (data, from) => echo.send(data, from);
  const chains: [string, Transport, Record<string, string>][] = [
    ["plain", plain, {}],
    ["obfs4", obfs4, { "iat-mode": "0" }],
  ];
  const pools = [];
  for (const [name, transport, config] of chains) {
    const server = await serveUdpServer({
      transport,
      config,
      env: { local: new MemoryStore() },
      hostname: "127.0.0.1",
      port: 0,
      target: echo.addr,
      framing: "length",
    });
    const client = await serveUdpClient({
      transport,
      config: server.clientOptions,
      server: { hostname: "127.0.0.1", port: server.addr.port },
      framing: "length",
    });
    pools.push({ name, server, client });
  }
  try {
    console.log(
      `UDP echo round trips, ${COUNT} datagrams, ${WINDOW} outstanding (ratio to raw UDP loopback):`,
    );
    for (const size of [64, 512, 1400]) {
      const raw = await echoRate(echo.addr.port, size);
      row(`raw UDP, ${size} B`, raw, "dgram/s", raw);
      row(`raw UDP, ${size} B`, (raw * size) / 1e6, "MB/s", (raw * size) / 1e6);
      for (const { name, client } of pools) {
        const rate = await echoRate(client.addr.port, size);
        row(`transparent-UDP over ${name}, ${size} B`, rate, "dgram/s", raw);
        row(
          `transparent-UDP over ${name}, ${size} B`,
          (rate * size) / 1e6,
          "MB/s",
          (raw * size) / 1e6,
        );
      }
    }
  } finally {
    for (const { server, client } of pools) {
      await client.close();
      await server.close();
    }
    await echo.close();
  }
}
