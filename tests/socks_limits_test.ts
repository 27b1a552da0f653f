// Copyright the ptkit authors. MIT license.

// The SOCKS handshake's length bounds, each on its own: an oversized field
// is refused as soon as the bound is crossed (not when the client gives up
// or the handshake deadline passes), and what fits is accepted. A guard
// turns a missing bound into a failure instead of a hang.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { socksHandshake } from "../ipc/socks/_server_handshake.ts";
import { SocksReplyError } from "../ipc/socks/_reply.ts";
import { SocksServer } from "../ipc/socks/_socks_server.ts";
import { guarded } from "./_util.ts";

/**
 * Run socksHandshake on one end of a loopback TCP pair while the other end
 * sends `parts` (a `null` waits for the 2-byte method reply) and stays
 * open; returns the outcome and everything that came back.
 */
async function handshake(
  parts: (Uint8Array | null)[],
  options: { maxSettingsBytes?: number } = {},
): Promise<{ error?: SocksReplyError; settings?: Record<string, string>; reply: Uint8Array }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  using server = await listener.accept();
  const outcome = socksHandshake(server, options).then(
    (request) => ({ settings: request.settings as Record<string, string> }),
    (error) => ({ error: error as SocksReplyError }),
  );
  const reply: number[] = [];
  const buffer = new Uint8Array(64);
  for (const part of parts) {
    if (part !== null) {
      await client.write(part);
      continue;
    }
    while (reply.length < 2) {
      const n = await client.read(buffer);
      if (n === null) break;
      reply.push(...buffer.subarray(0, n));
    }
  }
  const result = await guarded(outcome, "socksHandshake to apply its bound");
  server.close();
  for (;;) {
    const n = await client.read(buffer).catch(() => null);
    if (n === null) break;
    reply.push(...buffer.subarray(0, n));
  }
  return { ...result, reply: new Uint8Array(reply) };
}

const REQUEST = [5, 1, 0, 1, 198, 51, 100, 7, 0, 80];
const json = (n: number) => new TextEncoder().encode(JSON.stringify({ k: "x".repeat(n - 8) }));

/**
 * A SOCKS5 client through the front end at `port`: no authentication, then
 * REQUEST; resolves with the socket once `replyLength` bytes of the reply
 * came (a domain-name reply is longer than an IPv4 one).
 */
async function socksConnect(
  port: number,
  replyLength: number,
): Promise<{ client: Deno.TcpConn; reply: Uint8Array }> {
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const reply = new Uint8Array(16);
  await client.write(new Uint8Array([5, 1, 0]));
  let got = 0;
  while (got < 2) got += (await client.read(reply.subarray(got)))!;
  await client.write(new Uint8Array(REQUEST));
  got = 0;
  while (got < replyLength) got += (await client.read(reply.subarray(got)))!;
  return { client, reply };
}

Deno.test("socksHandshake refuses length-prefixed JSON settings over maxSettingsBytes (reply 0x10) and takes what fits", async () => {
  for (const [size, refused] of [[100, false], [101, true]] as const) {
    const body = json(size);
    strictEqual(body.length, size);
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, size);
    const r = await handshake(
      [new Uint8Array([5, 1, 9]), null, head, body, new Uint8Array(REQUEST)],
      { maxSettingsBytes: 100 },
    );
    if (refused) {
      ok(r.error instanceof SocksReplyError, String(r.error));
      match(r.error.message, /exceeds 100/);
      deepStrictEqual([...r.reply.subarray(0, 4)], [5, 9, 5, 0x10]);
    } else {
      strictEqual(r.error, undefined);
      deepStrictEqual(r.settings, { k: "x".repeat(92) });
    }
  }
});

Deno.test("socksHandshake refuses a bare JSON object longer than maxSettingsBytes as soon as it is", async () => {
  // An object that never ends: refused once 100 bytes are in, not at the deadline.
  const endless = new Uint8Array(5000).fill(0x20);
  endless[0] = 0x7b;
  const r = await handshake([new Uint8Array([5, 1, 9]), null, endless], {
    maxSettingsBytes: 100,
  });
  ok(r.error instanceof SocksReplyError, String(r.error));
  match(r.error.message, /JSON longer than 100 bytes/);
  deepStrictEqual([...r.reply.subarray(0, 4)], [5, 9, 5, 0x10]);
  const fits = await handshake(
    [new Uint8Array([5, 1, 9]), null, json(100), new Uint8Array(REQUEST)],
    { maxSettingsBytes: 100 },
  );
  deepStrictEqual(fits.settings, { k: "x".repeat(92) });
});

Deno.test("socksHandshake refuses a SOCKS4 user ID that never ends once it passes the handshake bound", async () => {
  // maxSettingsBytes + 600 bytes of handshake at most.
  const r = await handshake(
    [new Uint8Array([4, 1, 0, 80, 198, 51, 100, 7]), new Uint8Array(800).fill(0x61)],
    { maxSettingsBytes: 100 },
  );
  ok(r.error instanceof SocksReplyError, String(r.error));
  match(r.error.message, /user ID longer than 691 bytes/);
  // Within the bound, a user ID is settings.
  const user = new TextEncoder().encode("k=" + "v".repeat(600));
  const fits = await handshake([
    new Uint8Array([4, 1, 0, 80, 198, 51, 100, 7]),
    user,
    new Uint8Array([0]),
  ], { maxSettingsBytes: 100 });
  deepStrictEqual(fits.settings, { k: "v".repeat(600) });
});

Deno.test("socksHandshake refuses a SOCKS4a host name over 255 bytes", async () => {
  const head = new Uint8Array([4, 1, 0, 80, 0, 0, 0, 1, 0]);
  const r = await handshake([head, new Uint8Array(300).fill(0x61), new Uint8Array([0])]);
  ok(r.error instanceof SocksReplyError, String(r.error));
  match(r.error.message, /host name longer than 255 bytes/);
  const fits = await handshake([head, new Uint8Array(255).fill(0x61), new Uint8Array([0])]);
  strictEqual(fits.error, undefined, String(fits.error));
});

Deno.test("SocksServer closes a client that does not finish its handshake after handshakeTimeout", async () => {
  const errors: unknown[] = [];
  const server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    connect: () => Promise.reject(new Error("no destination in this test")),
    handshakeTimeout: 100,
    onError: (error) => errors.push(error),
  });
  try {
    using silent = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    using partial = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await partial.write(new Uint8Array([5, 1]));
    for (const conn of [silent, partial]) {
      const closed = conn.read(new Uint8Array(16)).then((n) => n, () => null);
      strictEqual(await guarded(closed, "the server to close the connection"), null);
    }
    strictEqual(errors.length, 2);
  } finally {
    await server.close();
  }
});

function match(text: string, pattern: RegExp): void {
  ok(pattern.test(text), `${JSON.stringify(text)} does not match ${pattern}`);
}

Deno.test("SocksServer hands the application's first write on whole, not its first byte alone (a 1-byte first chunk marked every ptkit client)", async () => {
  // The end the relay writes to records each chunk it is given: a
  // transport makes one record of each (Shadowsocks: one AEAD chunk, 35
  // bytes on the wire for one byte), where ss-local sends the first read whole.
  const chunks: number[] = [];
  let gotAll: () => void = () => {};
  const all = new Promise<void>((resolve) => gotAll = resolve);
  const server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    connect: () =>
      Promise.resolve({
        readable: new ReadableStream<Uint8Array>(),
        writable: new WritableStream<Uint8Array>({
          write: (chunk) => {
            chunks.push(chunk.length);
            if (chunks.reduce((a, b) => a + b, 0) >= 1000) gotAll();
          },
        }),
        close: () => {},
      }),
  });
  try {
    const opened = await socksConnect(server.addr.port, 10);
    using client = opened.client;
    strictEqual(opened.reply[1], 0);
    await client.write(new Uint8Array(1000).fill(0x16));
    await guarded(all, "the relay to hand on the 1000 bytes");
    deepStrictEqual(chunks, [1000]);
  } finally {
    await server.close();
  }
});

Deno.test("socksHandshake answers a SOCKS4 user ID or SOCKS4a host name over its bound with reply 0x5b, naming the field and the bound", async () => {
  const user = await handshake(
    [new Uint8Array([4, 1, 0, 80, 198, 51, 100, 7]), new Uint8Array(800).fill(0x61)],
    { maxSettingsBytes: 100 },
  );
  ok(user.error instanceof SocksReplyError, String(user.error));
  strictEqual(
    user.error.message,
    "Cannot parse SOCKS4 request: user ID longer than 691 bytes",
  );
  strictEqual(user.error.code, 0x10);
  deepStrictEqual([...user.reply], [0, 0x5b, 0, 0, 0, 0, 0, 0]);
  const head = new Uint8Array([4, 1, 0, 80, 0, 0, 0, 1, 0]);
  const name = await handshake([head, new Uint8Array(300).fill(0x61), new Uint8Array([0])]);
  ok(name.error instanceof SocksReplyError, String(name.error));
  strictEqual(
    name.error.message,
    "Cannot parse SOCKS4a request: host name longer than 255 bytes",
  );
  deepStrictEqual([...name.reply], [0, 0x5b, 0, 0, 0, 0, 0, 0]);
});

Deno.test("SocksServer closes each client socket once: no Deno BadResource thrown and caught per relayed connection (its error object, stack included, cost every connection CPU and garbage)", async () => {
  // Deno's close of a socket closed already throws BadResource; the relay
  // closed the client's socket, then the accept loop closed it again.
  // The class of the sockets Deno.listen accepts, and the prototype with close().
  let proto: { close(this: Deno.Conn): void } | null;
  {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    using _accepted = await listener.accept();
    proto = Object.getPrototypeOf(conn);
    while (proto !== null && !Object.hasOwn(proto, "close")) proto = Object.getPrototypeOf(proto);
  }
  const owner = proto!;
  const close = owner.close;
  let threw = 0;
  owner.close = function (this: Deno.Conn) {
    try {
      close.call(this);
    } catch (error) {
      if (error instanceof Deno.errors.BadResource) threw++;
      throw error;
    }
  };
  let ended: () => void = () => {};
  const end = new Promise<void>((resolve) => ended = resolve);
  const server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    connect: () =>
      Promise.resolve({
        readable: new ReadableStream<Uint8Array>({
          start: (c) => {
            c.enqueue(new Uint8Array([7]));
            c.close();
          },
        }),
        writable: new WritableStream<Uint8Array>(),
        close: () => ended(),
      }),
  });
  try {
    for (let i = 0; i < 3; i++) {
      const { client, reply } = await socksConnect(server.addr.port, 11);
      strictEqual(reply[1], 0);
      strictEqual(reply[10], 7);
      client.close();
      await guarded(end, "the relay to end");
      ended = () => {};
      // The accept loop's end runs after the relay's.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    strictEqual(server.connections, 0);
    strictEqual(threw, 0);
  } finally {
    owner.close = close;
    await server.close();
  }
});
