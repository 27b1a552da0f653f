// Copyright the ptkit authors. MIT license.

import { obfs4 } from "../transports/obfs4/mod.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import { MemoryStore, type TransportEnvironment } from "../transports/mod.ts";
import { serveUdpClient, serveUdpServer, type UdpPoolStats } from "@ptkit/ptkit/udp";
import { UDP_DROP_REASONS } from "../udp/udp_stats.ts";
import { plain } from "@ptkit/ptkit/transports";
import type { Transport } from "@ptkit/ptkit/transports";
import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { scramble, udpReceiveBufferErrors } from "./udp_test_utils.ts";

const TOTAL = 10_000;
const SENDERS = 4;
const WINDOW = 64;

function noDrops(stats: UdpPoolStats): void {
  deepStrictEqual(stats.drops, Object.fromEntries(UDP_DROP_REASONS.map((r) => [r, 0])));
}

/** Line reader over a child's stdout. */
function lineReader(stream: ReadableStream<Uint8Array>): () => Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("UDP peer process ended early");
      buffered += value;
    }
    const line = buffered.slice(0, buffered.indexOf("\n"));
    buffered = buffered.slice(line.length + 1);
    return line;
  };
}

async function echoThrough(
  transport: Transport,
  seed: number,
  serverConfig: Record<string, string> = {},
  env: TransportEnvironment = {},
  clientSecrets: Record<string, string> = {},
): Promise<void> {
  // Without larger kernel buffers than Linux's default (212,992 bytes),
  // 256 datagrams in flight overflow a socket's receive queue whatever reads
  // it; Deno can raise them only through FFI (see UdpSocket.bufferSize).
  strictEqual(
    Deno.permissions.querySync({ name: "ffi" }).state,
    "granted",
    "The UDP end-to-end tests need --allow-ffi to raise UDP socket buffers",
  );
  // The applications and the echo server run in their own process, as real
  // ones would; this process runs only the two pools.
  const peer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-ffi",
      new URL("./udp_peer.ts", import.meta.url).pathname,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const readLine = lineReader(peer.stdout);
  const stdin = peer.stdin.getWriter();
  const kernelDropsBefore = udpReceiveBufferErrors();
  try {
    const echoPort = Number(await readLine());
    await using server = await serveUdpServer({
      transport,
      config: serverConfig,
      env,
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: echoPort },
      framing: "length",
    });
    await using client = await serveUdpClient({
      transport,
      config: { ...server.clientOptions, ...clientSecrets },
      server: { port: server.addr.port },
      framing: "length",
    });
    ok(client.udpBufferSize !== undefined, "the client's UDP buffers were raised");
    const job = { port: client.addr.port, senders: SENDERS, total: TOTAL, window: WINDOW, seed };
    await stdin.write(new TextEncoder().encode(JSON.stringify(job) + "\n"));
    const report = JSON.parse(await readLine()) as { results: string[]; bytes: number };
    const diagnosis = `kernel UDP receive-buffer drops meanwhile: ${
      udpReceiveBufferErrors() - kernelDropsBefore
    }; client ${JSON.stringify(client.stats())}; server ${JSON.stringify(server.stats())}`;
    deepStrictEqual(report.results, Array(SENDERS).fill("ok"), diagnosis);
    const clientStats = client.stats();
    const serverStats = server.stats();
    strictEqual(clientStats.flowsOpened, SENDERS);
    strictEqual(serverStats.flowsOpened, SENDERS);
    for (const stats of [clientStats, serverStats]) {
      strictEqual(stats.datagramsToTunnel, TOTAL);
      strictEqual(stats.datagramsFromTunnel, TOTAL);
      strictEqual(stats.bytesToTunnel, report.bytes);
      strictEqual(stats.bytesFromTunnel, report.bytes);
      noDrops(stats);
    }
    deepStrictEqual(
      client.flows().map((f) => f.datagramsToTunnel),
      Array(SENDERS).fill(TOTAL / SENDERS),
    );
    await stdin.close();
    strictEqual(Number(await readLine()), TOTAL, "datagrams the echo server echoed");
  } finally {
    await stdin.close().catch(() => {});
    await peer.stdout.cancel().catch(() => {});
    await peer.status;
  }
}

Deno.test("serveUdpClient and serveUdpServer echo 10,000 datagrams in order over plain", async () => {
  await echoThrough(plain, 1);
});

Deno.test("serveUdpClient and serveUdpServer echo 10,000 datagrams in order over a byte-changing transport", async () => {
  await echoThrough(scramble, 2);
});

Deno.test("serveUdpClient and serveUdpServer echo 10,000 datagrams in order over obfs4", async () => {
  await echoThrough(obfs4, 3, { "iat-mode": "0" }, { local: new MemoryStore() });
});

Deno.test("serveUdpClient and serveUdpServer echo 10,000 datagrams in order over Shadowsocks, a free transport", async () => {
  // The client names no destination of its own: the bound server relays to its UDP target.
  const config = { method: "aes-128-gcm", password: "udp-test-password" };
  await echoThrough(shadowsocks, 4, config, {}, config);
});

// A server whose target is on another host (a VPN or DNS server, not
// loopback): its flow sockets bound 127.0.0.1, from which the kernel sends
// nothing off the machine (EINVAL), so every datagram was dropped as
// udpSendFailed. 198.51.100.1 (TEST-NET-2) stands for the remote target;
// the datagram only has to leave.
Deno.test("transparent-UDP server sends to a target on another host", async () => {
  const { default: dgram } = await import("node:dgram");
  const probe = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.send(
        new Uint8Array([0]),
        9,
        "198.51.100.1",
        (error) => error ? reject(error) : resolve(),
      );
    });
  } catch (error) {
    throw new Error(`This test needs a route to 198.51.100.1 (a default route): ${error}`);
  } finally {
    probe.close();
  }
  const { UdpSocket } = await import("../udp/udp_socket.ts");
  await using server = await serveUdpServer({
    transport: plain,
    config: {},
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "198.51.100.1", port: 9 },
    framing: "length",
  });
  await using client = await serveUdpClient({
    transport: plain,
    config: {},
    server: { port: server.addr.port },
    framing: "length",
  });
  await using app = await UdpSocket.open({ connect: client.addr });
  app.send(new Uint8Array([1, 2, 3]));
  for (let i = 0; i < 500; i++) {
    const stats = server.stats();
    if (stats.datagramsFromTunnel + stats.drops.udpSendFailed > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const stats = server.stats();
  strictEqual(stats.drops.udpSendFailed, 0, JSON.stringify(stats.drops));
  strictEqual(stats.datagramsFromTunnel, 1);
});
