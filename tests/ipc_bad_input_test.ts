// Copyright the ptkit authors. MIT license.
// Acceptance (c): malformed, truncated, oversized and hostile SOCKS input to
// main.ts. Each bad client only loses its own connection; afterwards a good
// connection still works and the process is still up.

import { deepStrictEqual } from "node:assert";
import { PtProcess, readAll, readN } from "./ipc_util.ts";

const bytes = (...parts: (number | number[] | Uint8Array)[]) =>
  new Uint8Array(parts.flatMap((p) => typeof p === "number" ? [p] : [...p]));

interface BadCase {
  name: string;
  /** Writes, in order; a `null` waits for the server's answer to arrive first. */
  send: (Uint8Array | null)[];
  /** The exact bytes the server sends before closing. */
  expect: Uint8Array;
}

const request = (atyp: number, addr: number[], cmd = 1) => bytes(5, cmd, 0, atyp, addr, 0, 80);
const cases: BadCase[] = [
  { name: "empty connection", send: [], expect: bytes() },
  { name: "truncated greeting", send: [bytes(5)], expect: bytes() },
  { name: "greeting missing methods", send: [bytes(5, 3, 0)], expect: bytes() },
  { name: "no methods", send: [bytes(5, 0)], expect: bytes(5, 0xff) },
  { name: "only unknown methods", send: [bytes(5, 2, 3, 0x81)], expect: bytes(5, 0xff) },
  {
    name: "HTTP instead of SOCKS",
    send: [new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")],
    // A page saying why, as tor's SOCKS port gives one.
    expect: new TextEncoder().encode(
      "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n" +
        "Content-Length: 116\r\n\r\nThis is a SOCKS5 proxy, not an HTTP proxy: set the " +
        "application's proxy to SOCKS5 (socks5h://HOST:PORT), or SOCKS4a.\n",
    ),
  },
  { name: "SOCKS version 6", send: [bytes(6, 1, 0)], expect: bytes() },
  {
    name: "request with version 4 after a SOCKS5 greeting",
    send: [bytes(5, 1, 0), null, bytes(4, 1, 0, 1, 127, 0, 0, 1, 0, 80)],
    expect: bytes(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "request with a reserved byte that is not 0",
    send: [bytes(5, 1, 0), null, bytes(5, 1, 0x30, 1, 127, 0, 0, 1, 0, 80)],
    expect: bytes(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "user/password with sub-version 2",
    send: [bytes(5, 1, 2), null, bytes(2, 1, 0x61, 1, 0)],
    expect: bytes(5, 2, 1, 1),
  },
  {
    name: "truncated user/password",
    send: [bytes(5, 1, 2), null, bytes(1, 200, 0x61)],
    expect: bytes(5, 2),
  },
  {
    name: "JSON length too large",
    send: [bytes(5, 1, 9), null, bytes(0x7f, 0xff, 0xff, 0xff)],
    expect: bytes(5, 9, 5, 0x10, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "unframed JSON that never ends",
    send: [bytes(5, 1, 0x80), null, bytes(0x7b, new Uint8Array(20000).fill(0x5b))],
    expect: bytes(5, 0x80, 5, 0x10, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "BIND command",
    send: [bytes(5, 1, 0), null, request(1, [127, 0, 0, 1], 2)],
    expect: bytes(5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "UDP ASSOCIATE command",
    send: [bytes(5, 1, 0), null, request(1, [127, 0, 0, 1], 3)],
    expect: bytes(5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "address type 5",
    send: [bytes(5, 1, 0), null, bytes(5, 1, 0, 5, 1, 2, 3, 4, 0, 80)],
    expect: bytes(5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "domain of length 0",
    send: [bytes(5, 1, 0), null, bytes(5, 1, 0, 3, 0, 0, 80)],
    expect: bytes(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "domain of length 255 that does not resolve",
    send: [bytes(5, 1, 0), null, request(3, [255, ...new Uint8Array(255).fill(0x61)])],
    expect: bytes(5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "domain with a NUL byte",
    send: [bytes(5, 1, 0), null, request(3, [3, 0x61, 0, 0x62])],
    expect: bytes(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "truncated request",
    send: [bytes(5, 1, 0), null, bytes(5, 1, 0, 1, 127, 0)],
    expect: bytes(5, 0),
  },
  {
    name: "port 0",
    send: [bytes(5, 1, 0), null, request(1, [127, 0, 0, 1]).map((b, i) => i >= 8 ? 0 : b)],
    expect: bytes(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    // Offering two methods, it cannot know which the answer picks.
    name: "greeting of two methods pipelined with the request",
    send: [bytes(5, 2, 0, 2, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80)],
    expect: bytes(),
  },
  {
    name: "request pipelined with data",
    send: [bytes(5, 1, 0), null, bytes(request(1, [127, 0, 0, 1]), 0x47, 0x45, 0x54)],
    expect: bytes(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "SOCKS4 user id without end",
    send: [bytes(4, 1, 0, 80, 127, 0, 0, 1, new Uint8Array(17000).fill(0x61))],
    expect: bytes(0, 0x5b, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "SOCKS4 BIND",
    send: [bytes(4, 2, 0, 80, 127, 0, 0, 1, 0)],
    expect: bytes(0, 0x5b, 0, 0, 0, 0, 0, 0),
  },
  {
    name: "SOCKS4a with a bad name",
    send: [bytes(4, 1, 0, 80, 0, 0, 0, 1, 0, 0x2f, 0x2f, 0)],
    expect: bytes(0, 0x5b, 0, 0, 0, 0, 0, 0),
  },
];

async function startPt(): Promise<{ pt: PtProcess; port: number; state: string }> {
  const state = await Deno.makeTempDir();
  const pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  return { pt, port: (await pt.cmethod("plain")).port, state };
}

/** A good SOCKS5 connection through plain to an echo service. */
async function assertGoodConnection(port: number): Promise<void> {
  using service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const p = service.addr.port;
  await conn.write(bytes(5, 1, 0));
  deepStrictEqual(await readN(conn, 2), bytes(5, 0));
  await conn.write(bytes(5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 255));
  using peer = await service.accept();
  deepStrictEqual((await readN(conn, 10))[1], 0);
  await conn.write(bytes(1, 2, 3));
  const got = await readN(peer, 3);
  await peer.write(got);
  deepStrictEqual(await readN(conn, 3), bytes(1, 2, 3));
}

Deno.test("main.ts SOCKS front end survives malformed input, one connection at a time", async () => {
  const { pt, port, state } = await startPt();
  await using _ = pt;
  for (const c of cases) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    let expectedSoFar = 0;
    for (const part of c.send) {
      if (part === null) {
        // Wait for the answer so far, so the next part is not pipelined.
        expectedSoFar = 2;
        deepStrictEqual(await readN(conn, 2), c.expect.subarray(0, 2), c.name);
        continue;
      }
      try {
        await conn.write(part);
      } catch {
        break; // The server already hung up.
      }
    }
    // End of input: a truncated message fails at once, not at the deadline.
    await conn.closeWrite().catch(() => {});
    const rest = await readAll(conn);
    deepStrictEqual(rest, c.expect.subarray(expectedSoFar), c.name);
  }
  await assertGoodConnection(port);
  await pt.closeStdin();
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  await Deno.remove(state, { recursive: true });
});

/**
 * A client's greeting and request sent at once, offering one method, to a
 * destination on `hostname`: each way is answered with that method and the
 * request's success, and bytes then reach the destination.
 */
async function checkPipelined(hostname: string): Promise<void> {
  const { pt, port, state } = await startPt();
  await using _ = pt;
  using service = Deno.listen({ hostname, port: 0 });
  const p = service.addr.port;
  const address = hostname.split(".").map(Number);
  const connect = bytes(5, 1, 0, 1, ...address, p >> 8, p & 255);
  for (
    const [name, first, answer] of [
      ["no authentication and the request", bytes(5, 1, 0, connect), bytes(5, 0)],
      [
        "user/password and the request",
        bytes(5, 1, 2, 1, 3, 0x78, 0x3d, 0x31, 1, 0, connect),
        bytes(5, 2, 1, 0),
      ],
    ] as const
  ) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(first);
    deepStrictEqual(await readN(conn, answer.length), answer, name);
    deepStrictEqual((await readN(conn, 10))[1], 0, name);
    using peer = await service.accept();
    await conn.write(bytes(7));
    deepStrictEqual(await readN(peer, 1), bytes(7), name);
  }
  await pt.closeStdin();
  const { code } = await pt.exit();
  deepStrictEqual(code, 0);
  await Deno.remove(state, { recursive: true });
}

Deno.test("main.ts SOCKS front end answers a client that sends its handshake's steps at once, offering one method (as obfs4proxy does)", async () => {
  // Before, each was closed without a reply (and without a log line).
  await checkPipelined("127.0.0.1");
});

Deno.test("main.ts SOCKS front end picks a pipelined greeting's method from the greeting alone, not from the request after it (bytes 0x09, 0x02, 0x80 in the destination)", async () => {
  // A destination whose address holds the JSON (0x09, 0x80) and
  // user/password (0x02) method numbers: the greeting offers 0x00 alone.
  // Before, the first was answered with method 0x09 (JSON settings) and
  // then 'settings too large' (0x10), the second with 0x09 too.
  await checkPipelined("127.9.2.128");
});

Deno.test("main.ts SOCKS front end closes a silent client at the handshake deadline", async () => {
  const { pt, port, state } = await startPt();
  await using _ = pt;
  using silent = await Deno.connect({ hostname: "127.0.0.1", port });
  using partial = await Deno.connect({ hostname: "127.0.0.1", port });
  await partial.write(bytes(5, 1));
  // Both are closed by the server (after 5 s): reads end instead of hanging.
  deepStrictEqual(await readAll(silent), bytes());
  deepStrictEqual(await readAll(partial), bytes());
  await assertGoodConnection(port);
  await pt.closeStdin();
  deepStrictEqual((await pt.exit()).code, 0);
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts SOCKS front end survives 1000 connections of random bytes", async () => {
  const { pt, port, state } = await startPt();
  await using _ = pt;
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const junk = new Uint8Array(Math.floor(random() * 700));
        crypto.getRandomValues(junk);
        // Half start like SOCKS so parsing goes deeper.
        if (junk.length > 2 && random() < 0.5) junk.set([5, 1, 0]);
        await conn.write(junk).catch(() => {});
        await conn.closeWrite().catch(() => {});
        await readAll(conn);
      } finally {
        conn.close();
      }
    }));
  }
  await assertGoodConnection(port);
  await pt.closeStdin();
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  await Deno.remove(state, { recursive: true });
});
