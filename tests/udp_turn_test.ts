// Copyright the ptkit authors. MIT license.

// STUN mode against real coturn: turnutils_uclient -> serveUdpClient (STUN
// framing) -> plain -> serveUdpServer -> turnserver -> turnutils_peer.

import { serveUdpClient, serveUdpServer, UdpSocket } from "@ptkit/ptkit/udp";
import { plain } from "@ptkit/ptkit/transports/plain";
import { ok, strictEqual } from "node:assert";

async function which(binary: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      await Deno.stat(`${dir}/${binary}`);
      return true;
    } catch {
      // Not here.
    }
  }
  return false;
}

async function freeUdpPort(): Promise<number> {
  const socket = await UdpSocket.open();
  const port = socket.addr.port;
  await socket.close();
  return port;
}

/** Send `request` until `port` answers (a hang guard, not a timing check). */
async function waitForUdp(port: number, request: Uint8Array, what: string): Promise<void> {
  await using probe = await UdpSocket.open({ connect: { hostname: "127.0.0.1", port } });
  let answered = false;
  probe.onmessage = () => answered = true;
  for (let i = 0; i < 300 && !answered; i++) {
    await probe.send(request).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  ok(answered, `${what} did not answer on 127.0.0.1:${port}`);
}

function bindingRequest(): Uint8Array {
  const message = new Uint8Array(20);
  const view = new DataView(message.buffer);
  view.setUint16(0, 0x0001);
  view.setUint32(4, 0x2112a442);
  crypto.getRandomValues(message.subarray(8));
  return message;
}

Deno.test("STUN mode carries coturn's turnutils_uclient through turnserver to turnutils_peer with 0 lost packets", async () => {
  for (const binary of ["turnserver", "turnutils_uclient", "turnutils_peer"]) {
    ok(await which(binary), `${binary} not found: install the Debian package 'coturn'`);
  }
  const dir = await Deno.makeTempDir({ prefix: "ptkit_turn_" });
  const turnPort = await freeUdpPort();
  const peerPort = await freeUdpPort();
  const relayBase = 40_000 + Math.floor(Math.random() * 200) * 100;
  await Deno.writeTextFile(
    `${dir}/turnserver.conf`,
    [
      "listening-ip=127.0.0.1",
      `listening-port=${turnPort}`,
      "relay-ip=127.0.0.1",
      `min-port=${relayBase}`,
      `max-port=${relayBase + 99}`,
      "lt-cred-mech",
      "user=u:p",
      "realm=pt.test",
      "allow-loopback-peers",
      "no-cli",
      "no-tls",
      "no-dtls",
      "no-tcp",
      "no-tcp-relay",
      "no-multicast-peers",
      `userdb=${dir}/turndb`,
      `pidfile=${dir}/turnserver.pid`,
      `log-file=${dir}/turnserver.log`,
      "simple-log",
      "no-stdout-log",
      "",
    ].join("\n"),
  );
  const turnserver = new Deno.Command("turnserver", {
    args: ["-c", `${dir}/turnserver.conf`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const peer = new Deno.Command("turnutils_peer", {
    args: ["-L", "127.0.0.1", "-p", String(peerPort)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForUdp(turnPort, bindingRequest(), "turnserver");
    await waitForUdp(peerPort, new Uint8Array([1]), "turnutils_peer");

    await using server = await serveUdpServer({
      transport: plain,
      config: {},
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: turnPort },
      framing: "stun",
    });
    await using client = await serveUdpClient({
      transport: plain,
      config: server.clientOptions,
      server: { port: server.addr.port },
      framing: "stun",
    });
    const uclient = await new Deno.Command("turnutils_uclient", {
      args: [
        ...["-c", "-X", "-e", "127.0.0.1", "-r", String(peerPort)],
        ...["-n", "200", "-m", "4", "-l", "500", "-z", "5"],
        ...["-u", "u", "-w", "p", "-p", String(client.addr.port), "127.0.0.1"],
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const output = new TextDecoder().decode(uclient.stdout) +
      new TextDecoder().decode(uclient.stderr);
    const lost = output.match(/Total lost packets (\d+)/);
    ok(lost, `turnutils_uclient printed no result (exit ${uclient.code}):\n${output.slice(-2000)}`);
    strictEqual(uclient.code, 0, output.slice(-2000));
    strictEqual(Number(lost[1]), 0, output.slice(-2000));

    const stats = client.stats();
    ok(stats.flowsOpened >= 4, `one flow per uclient session, got ${stats.flowsOpened}`);
    ok(stats.datagramsToTunnel >= 800 && stats.datagramsFromTunnel >= 800);
    strictEqual(stats.drops.invalid, 0);
    strictEqual(Object.values(stats.drops).reduce((a, b) => a + b), 0);
    strictEqual(server.stats().flowsClosed.framingError, 0);
  } finally {
    turnserver.kill("SIGTERM");
    peer.kill("SIGTERM");
    await Promise.all([turnserver.status, peer.status]);
    await Deno.remove(dir, { recursive: true });
  }
});
