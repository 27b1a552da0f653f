// Copyright the ptkit authors. MIT license.
// Acceptance: coturn's turnutils_uclient over TCP (Debian package "coturn") against
// serveTurnStream, i.e. STUN-framed byte streams ending in the embedded TURN server.

import dgram from "node:dgram";
import { ok, strictEqual } from "node:assert";
import { createUdpRelayFactory, serveTurnStream, TurnServer } from "../udp/turn/mod.ts";

async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

function requireBinary(name: string): void {
  try {
    new Deno.Command(name, { args: ["-h"], stdout: "null", stderr: "null" }).outputSync();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${name} is missing: install the Debian package "coturn"`);
    }
    throw error;
  }
}

Deno.test("serveTurnStream passes turnutils_uclient over TCP with 0 lost packets", async () => {
  requireBinary("turnutils_uclient");
  requireBinary("turnutils_peer");
  const server = new TurnServer({
    realm: "pt.test",
    users: { u: "p" },
    relay: createUdpRelayFactory({ ipv4: "127.0.0.1" }),
    allowLoopbackPeers: true,
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      const remote = conn.remoteAddr;
      sessions.push(
        serveTurnStream(server, conn, {
          remoteAddress: { family: 4, address: remote.hostname, port: remote.port },
        }).finally(() => {
          try {
            conn.close();
          } catch { /* already closed */ }
        }),
      );
    }
  })();
  const peerPort = await freeUdpPort();
  const peer = new Deno.Command("turnutils_peer", {
    args: ["-L", "127.0.0.1", "-p", String(peerPort)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const common = ["-n", "300", "-m", "4", "-l", "170", "-u", "u", "-w", "p"];
  const port = String(listener.addr.port);
  const runs: [string, string[]][] = [
    ["TCP, peerless channels", ["-t", "-y", "-c", ...common]],
    ["TCP, Send/Data indications", ["-t", "-y", "-c", "-s", ...common]],
    ["TCP, echo peer", ["-t", "-c", "-e", "127.0.0.1", "-r", String(peerPort), ...common]],
  ];
  try {
    const results = await Promise.all(runs.map(([, args]) =>
      new Deno.Command("turnutils_uclient", {
        args: [...args, "-p", port, "127.0.0.1"],
        stdin: "null",
      }).output()
    ));
    results.forEach((result, i) => {
      const output = new TextDecoder().decode(result.stdout) +
        new TextDecoder().decode(result.stderr);
      const [name] = runs[i]!;
      const summary = output.match(/Total lost packets \d+ \([^)]*\)/)?.[0] ??
        output.slice(-800);
      strictEqual(result.code, 0, `${name}: exited ${result.code}: ${summary}`);
      ok(/Total lost packets 0 \(/.test(output), `${name}: ${summary}`);
    });
  } finally {
    peer.kill("SIGTERM");
    await peer.status;
    listener.close();
    await accepting.catch(() => {});
    await Promise.all(sessions);
    strictEqual(server.stats().allocations, 0, "closed streams leave no allocation behind");
    server.close();
  }
});
