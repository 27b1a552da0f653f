// Copyright the ptkit authors. MIT license.
// The far ends of the UDP end-to-end tests, run as their own process (as a
// real Client App and Server App would be): a UDP echo server and a set of
// application sockets.
//
// Protocol on stdio, one line each: prints the echo server's port; reads a
// JSON job {port, senders, total, window, seed}; sends `total` datagrams
// from `senders` sockets to 127.0.0.1:port with at most `window` outstanding
// per socket, checks every reply (same bytes, same order), prints a JSON
// report; then exits when stdin closes, printing how many datagrams it echoed.

import { Buffer } from "node:buffer";
import { UdpSocket } from "../udp/udp_socket.ts";

interface Job {
  port: number;
  senders: number;
  total: number;
  window: number;
  seed: number;
}

function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// 4 MiB kernel buffers, as a real server would configure (needs --allow-ffi,
// see UdpSocket.bufferSize).
const BUFFER = 4 * 1024 * 1024;
const echo = await UdpSocket.open({ hostname: "127.0.0.1", bufferSize: BUFFER });
let echoed = 0;
echo.onmessage = (data, from) => {
  echoed++;
  echo.send(data, from);
};
console.log(echo.addr.port);

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
let buffered = "";
while (!buffered.includes("\n")) {
  const { value, done } = await lines.read();
  if (done) Deno.exit(0);
  buffered += value;
}
const job: Job = JSON.parse(buffered.slice(0, buffered.indexOf("\n")));
const random = prng(job.seed);
const perSender = job.total / job.senders;
let bytes = 0;
const plans = Array.from({ length: job.senders }, () =>
  Array.from({ length: perSender }, () => {
    // Sizes 1..1472, and about 1 in 100 up to 65,507.
    const size = random() < 0.01
      ? 1473 + Math.floor(random() * (65_507 - 1472))
      : 1 + Math.floor(random() * 1472);
    const datagram = new Uint8Array(size);
    crypto.getRandomValues(datagram.subarray(0, Math.min(size, 65_536)));
    bytes += size;
    return datagram;
  }));

const results = await Promise.all(plans.map(async (datagrams, index) => {
  const app = await UdpSocket.open({
    connect: { hostname: "127.0.0.1", port: job.port },
    bufferSize: BUFFER,
  });
  try {
    return await new Promise<string>((resolve) => {
      let sent = 0;
      let received = 0;
      let stalled: ReturnType<typeof setTimeout> | undefined;
      const watchdog = () => {
        clearTimeout(stalled);
        // A hang guard: no reply at all for 20 s means datagrams were lost.
        stalled = setTimeout(
          () => resolve(`sender ${index}: ${perSender - received} datagrams never came back`),
          20_000,
        );
      };
      const fill = () => {
        while (sent < perSender && sent - received < job.window) {
          if (!app.send(datagrams[sent++]!)) {
            resolve(`sender ${index}: ${JSON.stringify(app.stats())}`);
          }
        }
      };
      app.onmessage = (data) => {
        const expected = datagrams[received];
        if (expected === undefined || Buffer.compare(data, expected) !== 0) {
          clearTimeout(stalled);
          resolve(
            `sender ${index}: reply ${received} (${data.byteLength} bytes) is not datagram ${received} (${expected?.byteLength} bytes)`,
          );
          return;
        }
        received++;
        if (received === perSender) {
          clearTimeout(stalled);
          resolve("ok");
          return;
        }
        watchdog();
        fill();
      };
      watchdog();
      fill();
    });
  } finally {
    await app.close();
  }
}));
console.log(JSON.stringify({ results, bytes }));

while (true) {
  const { done } = await lines.read();
  if (done) break;
}
await echo.close();
console.log(echoed);
