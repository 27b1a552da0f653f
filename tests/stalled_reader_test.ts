// Copyright the ptkit authors. MIT license.

// A client that never reads what its server relays to it, from a target
// that floods: the server's relay stalls, and holds what it read before it
// stalled. Its reads were sized by how many sockets were open when they
// started, so the chunks of stalled relays added up as more opened (red
// team, session 48: 200 such obfs4 connections held 70 MB outside the
// server's heap, 20 of them 20 MB). What stalled relays hold is counted,
// and reads past a budget are small.

import { ok } from "node:assert";
import { writeFull } from "../net/conn_io.ts";
import { rawSession } from "./obfs4_wire_helpers.ts";

/** A target that writes to each connection as fast as it is read, until closed. */
function startFlood(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const chunk = new Uint8Array(65536).fill(7);
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        try {
          for (;;) await writeFull(conn, chunk);
        } catch {
          // Closed.
        }
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    close() {
      listener.close();
      for (const conn of conns) conn.close();
    },
  };
}

Deno.test("obfs4 server: 200 clients that never read, their target flooding, hold bounded memory; another client still gets bytes", async () => {
  const flood = startFlood();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./stalled_reader_main.ts", import.meta.url).pathname,
      String(flood.port),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const line = async (): Promise<string> => {
    for (;;) {
      const end = text.indexOf("\n");
      if (end >= 0) {
        const value = text.slice(0, end);
        text = text.slice(end + 1);
        return value;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error("The server ended");
      text += value;
    }
  };
  const stdin = child.stdin.getWriter();
  const kept = async () => {
    await stdin.write(new Uint8Array(1));
    return Number(await line());
  };
  const conns: Deno.Conn[] = [];
  try {
    const { port, cert } = JSON.parse(await line());
    // One first, so that the baseline includes the code paths.
    conns.push((await rawSession(port, cert)).conn);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const before = await kept();
    for (let i = 0; i < 200; i++) conns.push((await rawSession(port, cert)).conn);
    // Until every relay has filled what it can (the socket buffers, then
    // the relay's stages).
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const grown = (await kept()) - before;
    console.log(
      `200 stalled connections: +${(grown / 2 ** 20).toFixed(1)} MiB kept after a full GC`,
    );
    // 76 MiB before (heap 6, outside it 70); about 24 after.
    ok(grown < 40 * 2 ** 20, `200 stalled connections keep ${grown} bytes`);
    // Another client still gets its target's bytes.
    const late = await rawSession(port, cert);
    conns.push(late.conn);
    const buffer = new Uint8Array(65536);
    let received = 0;
    while (received < 100_000) {
      const n = await late.conn.read(buffer);
      ok(n !== null, "the server closed a new connection");
      received += n;
    }
  } finally {
    for (const conn of conns) conn.close();
    await stdin.close();
    await child.status;
    await lines.cancel().catch(() => {});
    flood.close();
  }
});
