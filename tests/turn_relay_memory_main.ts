// Copyright the ptkit authors. MIT license.

// Run by tests/turn_relay_memory_test.ts (`deno run -A`): opens N relayed
// sockets as a TURN server's allocations do, sends each a datagram from
// node:dgram (through the kernel, as a peer on another host would), one
// of them 65,507 bytes, and prints what they took as JSON: resident bytes
// per socket, datagrams delivered, and the largest delivered.

import dgram from "node:dgram";
import { createUdpRelayFactory } from "../udp/turn/_udp_relay.ts";
import type { TurnRelaySocket } from "../udp/turn/_turn_server.ts";

const n = Number(Deno.args[0] ?? 1000);
const rss = () =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1]) * 1024;
const factory = createUdpRelayFactory({ ipv4: "127.0.0.1" });
// The first 200 before: the first 128 receive on their own, as the
// fastest path (udp_socket.ts, OWN_FIRST), and what every socket shares
// (the libc bindings, the receive arena, the wait) is made by then.
const first = 200;
const sockets: TurnRelaySocket[] = [];
for (let i = 0; i < first; i++) {
  sockets.push(...await factory.open({ family: 4, evenPort: false, reserveNext: false }));
}
await new Promise((resolve) => setTimeout(resolve, 100));
const before = rss();
for (let i = first; i < n; i++) {
  sockets.push(...await factory.open({ family: 4, evenPort: false, reserveNext: false }));
}
await new Promise((resolve) => setTimeout(resolve, 100));
const after = rss();
let delivered = 0;
let largest = 0;
const all = Promise.withResolvers<void>();
for (const socket of sockets) {
  socket.onPacket = (data) => {
    delivered++;
    largest = Math.max(largest, data.length);
    if (delivered === n) all.resolve();
  };
}
const peer = dgram.createSocket("udp4");
await new Promise<void>((resolve) => peer.bind(0, "127.0.0.1", resolve));
for (const [i, socket] of sockets.entries()) {
  // The first and the last get the largest datagram.
  const size = i === 0 || i === n - 1 ? 65_507 : 100;
  await new Promise<void>((resolve, reject) =>
    peer.send(
      new Uint8Array(size),
      socket.address.port,
      "127.0.0.1",
      (e) => e ? reject(e) : resolve(),
    )
  );
}
await all.promise;
console.log(
  JSON.stringify({ perSocket: Math.round((after - before) / (n - 1)), delivered, largest }),
);
peer.close();
for (const socket of sockets) socket.close();
