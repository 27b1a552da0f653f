// Copyright the ptkit authors. MIT license.

// What a TURN server's relayed socket holds for its life: an allocation
// each, by the thousand, mostly idle.

import dgram from "node:dgram";
import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { serveTurnUdp } from "../udp/turn/_udp_server.ts";
import { createUdpRelayFactory } from "../udp/turn/_udp_relay.ts";
import { UdpSocket } from "../udp/udp_socket.ts";
import { encodeChannelData } from "../udp/stun/_channel_data.ts";
import { StunAttr, StunMethod } from "../udp/stun/_constants.ts";
import { errorCode, Queue, StunTestClient } from "./turn_test_client.ts";

/** A STUN client on a UDP socket of its own toward the TURN server at `turn`. */
async function udpClient(hostname: string, turn: { port: number }) {
  const socket = await UdpSocket.open({ hostname });
  const inbox = new Queue<Uint8Array>();
  socket.onmessage = (data) => inbox.push(data.slice());
  const to = { hostname, port: turn.port };
  const client = new StunTestClient({ inbox, send: (bytes) => socket.send(bytes, to) });
  return { socket, inbox, client };
}

Deno.test("Idle relayed sockets past the first 128 hold no receive buffer of their own: 800 more take under 32 KB of resident memory each, and all still receive datagrams up to 65,507 bytes whole", async () => {
  // 72,871-76,411 bytes each before (Deno's receive held a 64 KiB buffer
  // per socket, resident), ~14,500 after: with FFI they wait through one
  // shared epoll and drain into the shared arena.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("./turn_relay_memory_main.ts", import.meta.url).pathname,
      "1000",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  const { perSocket, delivered, largest } = JSON.parse(new TextDecoder().decode(out.stdout));
  strictEqual(delivered, 1000);
  strictEqual(largest, 65_507);
  ok(perSocket < 32 * 1024, `${perSocket} resident bytes per relayed socket`);
});

Deno.test("A TURN allocation past the first 128 relayed sockets relays both ways through the shared wait, and its wait ends with the last socket", async () => {
  // 130 allocations of one client each (sourceQuota lifted: all from
  // 127.0.0.1); the last is relayed through the shared wait (it is not busy).
  const turn = await serveTurnUdp({
    hostname: "127.0.0.1",
    port: 0,
    realm: "pt.test",
    users: { u: "p" },
    allowLoopbackPeers: true,
    sourceQuota: Infinity,
  });
  const peer = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => peer.bind(0, "127.0.0.1", resolve));
  const sockets: { close(): Promise<void> }[] = [];
  try {
    let last;
    for (let i = 0; i < 130; i++) {
      const { socket, inbox, client } = await udpClient("127.0.0.1", turn.addr);
      sockets.push(socket);
      strictEqual(errorCode(await client.allocate()), 0);
      last = { inbox, client };
    }
    const { inbox, client } = last!;
    const peerAddress = { family: 4, address: "127.0.0.1", port: peer.address().port } as const;
    const echoed = new Promise<number>((resolve) =>
      peer.once("message", (message, from) => {
        peer.send(message, from.port, from.address);
        resolve(message.length);
      })
    );
    strictEqual(
      errorCode(
        await client.withPeer(StunMethod.ChannelBind, peerAddress, [
          { type: StunAttr.ChannelNumber, value: new Uint8Array([0x40, 0x01, 0, 0]) },
        ]),
      ),
      0,
    );
    const data = crypto.getRandomValues(new Uint8Array(1000));
    client.wire.send(encodeChannelData(0x4001, data));
    strictEqual(await echoed, 1000);
    const back = await inbox.pop();
    deepStrictEqual(back.subarray(4), data);
  } finally {
    for (const socket of sockets) await socket.close();
    peer.close();
    // Every relayed socket closes with the server; the shared wait's last
    // call returns then (the test's op sanitizer finds nothing pending).
    await turn.close();
  }
});

Deno.test("A busy relayed socket leaves the shared wait for a receive of its own without losing a datagram, 65,507 bytes whole after", async () => {
  const factory = createUdpRelayFactory({ ipv4: "127.0.0.1" });
  // The first 128 receive on their own from the start (udp_socket.ts, OWN_FIRST).
  const first = [];
  for (let i = 0; i < 128; i++) {
    first.push(...await factory.open({ family: 4, evenPort: false, reserveNext: false }));
  }
  const [relay] = await factory.open({ family: 4, evenPort: false, reserveNext: false });
  const sizes: number[] = [];
  let wanted = Promise.withResolvers<void>();
  let until = 0;
  relay!.onPacket = (data) => {
    sizes.push(data.length);
    if (sizes.length === until) wanted.resolve();
  };
  const peer = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => peer.bind(0, "127.0.0.1", resolve));
  try {
    // 600 in rounds of 50, each round waited for: it leaves the shared wait
    // after 256 (udp_socket.ts, PROMOTE_AFTER), in the middle of a round.
    for (let round = 0; round < 12; round++) {
      until += 50;
      wanted = Promise.withResolvers<void>();
      for (let i = 0; i < 50; i++) {
        peer.send(new Uint8Array(1 + (round * 50 + i) % 1000), relay!.address.port, "127.0.0.1");
      }
      await wanted.promise;
    }
    // (node:dgram's sends of one tick may leave in any order: none is lost.)
    deepStrictEqual(
      sizes.toSorted((a, b) => a - b),
      Array.from({ length: 600 }, (_, i) => 1 + i % 1000).toSorted((a, b) => a - b),
    );
    until += 1;
    wanted = Promise.withResolvers<void>();
    peer.send(new Uint8Array(65_507), relay!.address.port, "127.0.0.1");
    await wanted.promise;
    strictEqual(sizes.at(-1), 65_507);
  } finally {
    peer.close();
    relay!.close();
    for (const socket of first) socket.close();
  }
});
