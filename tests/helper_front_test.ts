// Copyright the ptkit authors. MIT license.
// The runtime's listener in front of a server helper (sshd), against a
// stand-in helper on loopback.

import { deepStrictEqual as assertEquals } from "node:assert";
import { HelperFront } from "../net/_helper_front.ts";

/** Read until end of stream (or a reset), returning the text read. */
async function readAll(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(1024);
  let text = "";
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return text;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch {
    return text;
  }
}

Deno.test("HelperFront: a connection the helper ended before its client authenticated is closed, not kept half-open", async () => {
  // A helper that sends its banner and hangs up at once, as sshd does at
  // LoginGraceTime or after failed logins.
  const helper = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const helperDone = (async () => {
    for await (const conn of helper) {
      await conn.write(new TextEncoder().encode("SSH-2.0-stand-in\r\n")).catch(() => {});
      conn.close();
    }
  })();
  // Room for one connection: one kept open after the helper ended it
  // refuses the next from its source.
  const front = new HelperFront(
    Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    { hostname: "127.0.0.1", port: helper.addr.port },
    { limits: { maxConnections: 1 } },
  );
  const held: Deno.Conn[] = [];
  try {
    // The first client reads the banner and the end of stream, and keeps
    // its own side open (never sends its end of stream).
    const first = await Deno.connect({ hostname: "127.0.0.1", port: front.addr.port });
    held.push(first);
    assertEquals(await readAll(first), "SSH-2.0-stand-in\r\n");
    // A later client from the same source gets the helper's banner (a few
    // tries: the first one's place is given back as its relay ends).
    let served = false;
    for (let attempt = 0; attempt < 20 && !served; attempt++) {
      const next = await Deno.connect({ hostname: "127.0.0.1", port: front.addr.port });
      held.push(next);
      served = (await readAll(next)).startsWith("SSH-2.0-stand-in");
      if (!served) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assertEquals(served, true, "the connection the helper ended still holds its place");
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
    await front.close();
    helper.close();
    await helperDone.catch(() => {});
  }
});
