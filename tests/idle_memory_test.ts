// Copyright the ptkit authors. MIT license.

// What an idle connection holds outside the JS heap (issue 12: resident
// memory with 1000 idle obfs4 connections): nothing a connection is done
// with stays referenced for its life.

import { ok, strictEqual } from "node:assert";

/** Bytes per connection held outside the heap (tests/idle_memory_main.ts). */
async function heldPerConnection(
  what: "socks" | "dist" | "dist-reset" | "relay" | "session" | "session-heap" | "obfs4" | "burst",
): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./idle_memory_main.ts", import.meta.url).pathname,
      what,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

Deno.test("An idle connection through the SOCKS front end holds one read buffer, not the 2 KiB its watch read used too", async () => {
  // 4096 before: the watch read's buffer stayed referenced beside the relay's.
  const held = await heldPerConnection("socks");
  ok(held < 3 * 1024, `${held} bytes per idle connection held outside the heap`);
});

Deno.test("obfs4 weighted distributions share their pool of random numbers", async () => {
  // 1024 before: each distribution (two per client connection) kept 256 of its own.
  const held = await heldPerConnection("dist");
  ok(held < 256, `${held} bytes per distribution held outside the heap`);
});

Deno.test("A client's obfs4 length distribution drops its own table once the server's seed replaces it", async () => {
  // 1,909-1,960 bytes of heap per distribution before (Deno 2.9.6), 428-435
  // after: the table drawn for the client's own seed stayed until the next
  // sample, so an idle connection kept it for its life.
  const held = await heldPerConnection("dist-reset");
  ok(held < 1024, `${held} bytes of heap per distribution`);
});

Deno.test("A relayed transport connection is read and written without making its public streams", async () => {
  // 34,762 bytes of heap per idle relayed connection before (Deno 2.9.6),
  // 30,138 after: the readable and writable, their controllers, queues,
  // readers, writers and promises, which the relay only passed chunks
  // through.
  const held = await heldPerConnection("relay");
  ok(held < 32 * 1024, `${held} bytes of heap per idle relayed transport connection`);
});

Deno.test("obfs4 sessions share the buffer packets are laid out in", async () => {
  // 1686 bytes per session outside the heap before: 1430 of them its own
  // scratch buffer, kept for the connection's life.
  const held = await heldPerConnection("session");
  ok(held < 1024, `${held} bytes per session held outside the heap`);
});

Deno.test("An obfs4 session keeps its keys, nonces and SipHash states in a buffer per codec", async () => {
  // 3,181-3,183 bytes of heap per session before (Deno 2.9.6), 2,182-2,184 after: each
  // of its two codecs kept five small arrays with a buffer of their own
  // (the secretbox key, the nonce, the length DRBG's SipHash state, tail
  // and scratch), each buffer an object on the heap and a backing store
  // outside it (RSS per session, 20,000 sessions: 8,016 before, 5,655 after).
  const held = await heldPerConnection("session-heap");
  ok(held < 2.75 * 1024, `${held} bytes of heap per obfs4 session`);
});

Deno.test("An idle obfs4 connection runs its pair's transforms without TransformStreams", async () => {
  // Heap per idle obfs4 connection, both sides in one process (two
  // TransportConns, each relayed to a TCP connection, six sockets):
  // 85,000 bytes before (Deno 2.9.6), 64,500 after: each side's pair made
  // two TransformStreams, whose readers, writers, queues and promises an
  // idle connection kept.
  const held = await heldPerConnection("obfs4");
  ok(held < 72 * 1024, `${held} bytes of heap per idle obfs4 connection (both sides)`);
});

Deno.test("A relay left idle after a burst holds its pending reads' buffers, not its last chunks", async () => {
  // 77,824 bytes per relay before: besides the two pending reads' 16 KiB
  // buffers, each direction's pump kept the last chunk it had written
  // while it waited for the next (up to a read's size, 256 KiB).
  const held = await heldPerConnection("burst");
  ok(held <= 2 * 16 * 1024 + 1024, `${held} bytes per idle relay held outside the heap`);
});
