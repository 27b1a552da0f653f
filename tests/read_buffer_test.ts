// Copyright the ptkit authors. MIT license.

// A socket's read buffer grows while reads fill it (up to 256 KiB). The read
// that waits on an idle connection must not hold such a buffer: a client that
// sends a burst on each of its connections and then idles would hold 256 KiB
// of the server's memory per connection (red team, round 9: 1000 plain
// connections, 1 MiB each then idle, held 288 MB).

import { ok, strictEqual } from "node:assert";
import { connSink, connSource } from "../net/_chunk_io.ts";
import type { NetConn } from "../net/net_conn.ts";

/**
 * A socket whose reads fill the given fractions of the buffer handed to them,
 * one per read; after the last, a read waits (its buffer's size recorded).
 */
function scriptedConn(fractions: number[]): { conn: NetConn; sizes: number[]; end: () => void } {
  const sizes: number[] = [];
  let end!: () => void;
  const ended = new Promise<null>((resolve) => end = () => resolve(null));
  const addr = { transport: "tcp", hostname: "127.0.0.1", port: 1 } as const;
  const conn: NetConn = {
    read(p) {
      sizes.push(p.length);
      const fraction = fractions.shift();
      if (fraction === undefined) return ended;
      return Promise.resolve(Math.max(1, Math.floor(p.length * fraction)));
    },
    write: (p) => Promise.resolve(p.length),
    closeWrite: () => Promise.resolve(),
    close: () => end(),
    localAddr: addr,
    remoteAddr: addr,
  };
  return { conn, sizes, end };
}

/**
 * The others ended: a new socket's reads grow to 256 KiB again. Then `busy`
 * and it end, and `source` (reading `busy`) with them.
 */
async function readsFullAgain(
  busy: ReturnType<typeof scriptedConn>,
  source: ReturnType<typeof connSource>,
): Promise<void> {
  const again = scriptedConn([1, 1, 1, 1, 1]);
  const later = connSource(again.conn, 16 * 1024);
  for (let i = 0; i < 5; i++) ok((await later.read())!.length > 0);
  strictEqual(Math.max(...again.sizes), 256 * 1024);
  busy.end();
  again.end();
  strictEqual(await source.read(), null);
  strictEqual(await later.read(), null);
}

Deno.test("connSource: after a burst, the read that waits on an idle connection holds at most 16 KiB", async () => {
  // Full reads grow the buffer to 256 KiB; the burst ends with a read that
  // fills 60% of it (more than half: handed over as it is).
  const { conn, sizes, end } = scriptedConn([1, 1, 1, 1, 1, 0.6]);
  const source = connSource(conn, 16 * 1024);
  for (let i = 0; i < 6; i++) ok((await source.read())!.length > 0);
  strictEqual(Math.max(...sizes), 256 * 1024, "the burst's reads grew to 256 KiB");
  const waiting = source.read();
  await Promise.resolve();
  ok(sizes.at(-1)! <= 16 * 1024, `the waiting read holds ${sizes.at(-1)} bytes`);
  end();
  strictEqual(await waiting, null);
});

Deno.test("connSource: a burst after an idle wait is read with the buffer it had grown to", async () => {
  // The wait's (small) read fills: the data is flowing again, and the next
  // read takes 256 KiB at once.
  const { conn, sizes, end } = scriptedConn([1, 1, 1, 1, 1, 0.6, 1, 1]);
  const source = connSource(conn, 16 * 1024);
  for (let i = 0; i < 8; i++) ok((await source.read())!.length > 0);
  strictEqual(sizes.at(-1), 256 * 1024);
  end();
  strictEqual(await source.read(), null);
});

Deno.test("connSource: a buffer kept from a short read is not reused by the read that waits when it is over 16 KiB", async () => {
  // A full 16 KiB read grows the buffer to 64 KiB; the next fills 45% of it
  // (under half: copied out, and the buffer kept for reuse). The socket is
  // drained, so the next read most likely waits: it must not wait on the
  // kept 64 KiB buffer.
  const { conn, sizes, end } = scriptedConn([1, 0.45]);
  const source = connSource(conn, 16 * 1024);
  for (let i = 0; i < 2; i++) ok((await source.read())!.length > 0);
  strictEqual(sizes.at(-1), 64 * 1024, "the short read had a 64 KiB buffer");
  const waiting = source.read();
  await Promise.resolve();
  ok(sizes.at(-1)! <= 16 * 1024, `the waiting read holds ${sizes.at(-1)} bytes`);
  end();
  strictEqual(await waiting, null);
});

Deno.test("connSource: with many sockets open, reads share a 16 MiB budget, and get it back as they end", async () => {
  // A relay whose one end stops reading holds a few chunks of a read's size:
  // at 256 KiB each, a thousand such connections held over a gigabyte.
  const open = Array.from({ length: 1000 }, () => scriptedConn([]));
  const waiting = open.map(({ conn }) => connSource(conn).read());
  const busy = scriptedConn([1, 1, 1, 1, 1, 1, 1]);
  const source = connSource(busy.conn, 16 * 1024);
  for (let i = 0; i < 7; i++) ok((await source.read())!.length > 0);
  strictEqual(Math.max(...busy.sizes), 16 * 1024, "1001 sockets share 16 MiB: 16 KiB each");
  for (const { end } of open) end();
  for (const read of waiting) strictEqual(await read, null);
  await readsFullAgain(busy, source);
});

Deno.test("connSource: a cancelled or failed socket gives its share back", async () => {
  const cancelled = Array.from({ length: 600 }, () => connSource(scriptedConn([]).conn));
  for (const source of cancelled) source.cancel(new Error("gone"));
  const failing: NetConn = {
    ...scriptedConn([]).conn,
    read: () => Promise.reject(new Error("reset")),
  };
  const failed = Array.from({ length: 600 }, () => connSource(failing));
  for (const source of failed) await source.read().catch(() => {});
  const busy = scriptedConn([1, 1, 1, 1, 1]);
  const source = connSource(busy.conn, 16 * 1024);
  for (let i = 0; i < 5; i++) ok((await source.read())!.length > 0);
  strictEqual(Math.max(...busy.sizes), 256 * 1024);
  busy.end();
  strictEqual(await source.read(), null);
});

Deno.test("connSource with reuse: a chunk given back carries a later read, and is lent to one read at a time", async () => {
  // Reads that fill 75% of their 12 KiB buffer keep that size (a size no
  // other test's reads take, so the process's spares of it start empty).
  const { conn, end } = scriptedConn([0.75, 0.75, 0.75, 0.75, 0.75]);
  const source = connSource(conn, 12 * 1024, true);
  const first = (await source.read())!;
  strictEqual(first.buffer.byteLength, 12 * 1024);
  // Given back twice (a caller's mistake): kept once.
  source.release(first);
  source.release(first);
  const second = (await source.read())!;
  const third = (await source.read())!;
  strictEqual(second.buffer, first.buffer, "the given back buffer is read into again");
  ok(third.buffer !== second.buffer, "a buffer given back twice is lent to two reads");
  // A buffer the source did not lend (still its owner's) is not taken.
  const foreign = new Uint8Array(12 * 1024);
  source.release(foreign);
  source.release(second);
  const fourth = (await source.read())!;
  const fifth = (await source.read())!;
  ok(
    fourth.buffer !== foreign.buffer && fifth.buffer !== foreign.buffer,
    "a foreign buffer was read into",
  );
  ok(fourth.buffer === second.buffer || fifth.buffer === second.buffer);
  end();
  strictEqual(await source.read(), null);
});

Deno.test("connSource: chunks that readers hold count against an 8 MiB budget; reads past it are small, and grow again once they are let go", async () => {
  // 40 relays whose sink stalled (session 48): each holds the 256 KiB chunk
  // it read last, and does not read again. 40 sockets alone leave reads at
  // 256 KiB.
  const stalled = Array.from({ length: 40 }, () => scriptedConn([1, 1, 1, 1, 1]));
  const sources = stalled.map(({ conn }) => connSource(conn, 16 * 1024));
  const held: Uint8Array[] = [];
  for (const source of sources) {
    for (let i = 0; i < 4; i++) await source.read(); // 16, 64, 256, 256 KiB.
    held.push((await source.read())!);
  }
  ok(held.slice(0, 20).every((chunk) => chunk.length === 256 * 1024), "the first 20 read 256 KiB");
  ok(held.at(-1)!.length <= 32 * 1024, `the 40th read ${held.at(-1)!.length} bytes`);
  const busy = scriptedConn([1, 1, 1, 1, 1]);
  const source = connSource(busy.conn, 16 * 1024);
  for (let i = 0; i < 5; i++) ok((await source.read())!.length > 0);
  ok(Math.max(...busy.sizes) <= 32 * 1024, `a busy socket read ${Math.max(...busy.sizes)} bytes`);
  // The stalled readers ask for more (their chunks are let go), then end.
  for (const [i, source] of sources.entries()) {
    const next = source.read();
    stalled[i]!.end();
    await next;
  }
  await readsFullAgain(busy, source);
});

Deno.test("connSink: a write the socket has not taken counts against the budget of what is held until it is taken", async () => {
  // 40 relays whose peer stopped reading: each one's 256 KiB write waits.
  const takes: (() => void)[] = [];
  const addr = { transport: "tcp", hostname: "127.0.0.1", port: 1 } as const;
  const stuck: NetConn = {
    ...scriptedConn([]).conn,
    write: (p) => new Promise((resolve) => takes.push(() => resolve(p.length))),
    localAddr: addr,
    remoteAddr: addr,
  };
  const writes = Array.from(
    { length: 40 },
    () => connSink(stuck).write(new Uint8Array(256 * 1024)),
  );
  const busy = scriptedConn([1, 1, 1, 1, 1]);
  const source = connSource(busy.conn, 16 * 1024);
  for (let i = 0; i < 5; i++) ok((await source.read())!.length > 0);
  ok(Math.max(...busy.sizes) <= 16 * 1024, `a busy socket read ${Math.max(...busy.sizes)} bytes`);
  for (const take of takes) take();
  await Promise.all(writes);
  await readsFullAgain(busy, source);
});
