// Copyright the ptkit authors. MIT license.
// A Node.js program the hardening tests run (Deno cannot set SO_LINGER, Node
// can: socket.resetAndDestroy() closes with SO_LINGER {on, 0}, i.e. RST).
//
//   node conn_flood.mjs reset HOST PORT COUNT [INFLIGHT]
//     COUNT connections, each reset as soon as it is connected.
//   node conn_flood.mjs flood HOST PORT MS [INFLIGHT]
//     the same as fast as this machine manages, for MS milliseconds.
//   node conn_flood.mjs hold HOST PORT COUNT [LOCAL_ADDRESS]
//     COUNT connections held open (sending nothing) until stdin closes; prints
//     a "ready" line once each is connected or closed, and a "status" line
//     for each line read on stdin.
//
// The last line printed is a JSON summary: connected, failed, closed (by the
// server), open, ms.

import net from "node:net";
import process from "node:process";

const [mode, host, portText, amountText, extra] = process.argv.slice(2);
const port = Number(portText);
const amount = Number(amountText);
const started = Date.now();
const counts = { connected: 0, failed: 0, closed: 0, open: 0 };

function summary() {
  return JSON.stringify({ ...counts, ms: Date.now() - started });
}

if (mode === "reset" || mode === "flood") {
  const inflight = Number(extra ?? 100);
  const deadline = mode === "flood" ? started + amount : Infinity;
  let begun = 0;
  let ended = 0;
  const more = () => mode === "flood" ? Date.now() < deadline : begun < amount;
  const one = () => {
    begun++;
    const socket = net.connect({ host, port });
    socket.on("connect", () => {
      counts.connected++;
      socket.resetAndDestroy();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      ended++;
      if (more()) one();
      else if (ended === begun) console.log(summary());
    });
  };
  for (let i = 0; i < inflight && more(); i++) one();
} else if (mode === "hold") {
  const sockets = [];
  let settled = 0;
  const settle = () => {
    if (++settled === amount) {
      // Give the server a moment to close what it refuses.
      setTimeout(() => console.log(`ready ${summary()}`), 500);
    }
  };
  // At most 256 connects at a time, so that the listen queue never
  // overflows (the kernel would drop what does not fit).
  let begun = 0;
  const one = () => {
    if (begun >= amount) return;
    begun++;
    const socket = net.connect({ host, port, ...(extra ? { localAddress: extra } : {}) });
    let connected = false;
    socket.on("connect", () => {
      connected = true;
      counts.connected++;
      counts.open++;
      settle();
      one();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      if (!connected) {
        counts.failed++;
        settle();
        one();
        return;
      }
      counts.open--;
      counts.closed++;
    });
    sockets.push(socket);
  };
  for (let i = 0; i < 256; i++) one();
  process.stdin.on("data", (data) => {
    for (const byte of data) if (byte === 0x0a) console.log(`status ${summary()}`);
  });
  process.stdin.on("end", () => {
    console.log(summary());
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  });
} else {
  console.error(`Unknown mode ${mode}`);
  process.exit(2);
}
