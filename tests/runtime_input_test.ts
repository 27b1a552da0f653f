// Copyright the ptkit authors. MIT license.
// Bad input to the core: wrong chunk types, configurations that fail
// validation, addresses that do not parse. Each gives a clear TypeError,
// RangeError or SyntaxError naming the value, and nothing leaks (the
// resource sanitizer stays on).

import { deepStrictEqual, match, ok, rejects, strictEqual, throws } from "node:assert";
import { Connector, createConnector, HelperLimit } from "../client.ts";
import { ServerManager } from "../net/server_manager.ts";
import { tcpDialer } from "../net/net_conn.ts";
import { listen, proxy } from "../server.ts";
import { checkPort, formatHostPort, parseHostPort } from "../net/address.ts";
import { TransportConn, type TransportConnOptions } from "../net/transport_conn.ts";
import { TransportListener } from "../net/transport_listener.ts";
import { describe } from "../net/_chunk_io.ts";
import { acceptErrorLogger } from "../ipc/managed/_log.ts";
import {
  defineTransport,
  type GeneratedConfig,
  type HostPort,
  type IgnoredOption,
  layerTransports,
  type TransportEnvironment,
} from "../transports/mod.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { assertTransportName } from "../transports/_transport_name.ts";
import { plain } from "../transports/plain.ts";
import { createObfs4, obfs4 } from "../transports/obfs4/mod.ts";
import { createShadowsocks, shadowsocks } from "../transports/shadowsocks/mod.ts";
import { MemoryStore } from "../transports/mod.ts";
import { serveUdpClient, serveUdpServer, UdpSocket } from "../udp/mod.ts";
import { rot } from "./rot_transport.ts";
import { guarded, loopbackEnds } from "./_util.ts";

Deno.test("TransportConn rejects chunks that are not Uint8Array with a TypeError naming the type", async () => {
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(plain, {});
  for (const bad of ["text", 42, { length: 1 }, new ArrayBuffer(4), null]) {
    await using conn = await connector.dial({ port: listener.addr.port });
    await using accepted = await listener.accept();
    const writer = conn.writable.getWriter();
    await rejects(
      writer.write(bad as unknown as Uint8Array),
      (error: unknown) =>
        error instanceof TypeError && /chunk must be a Uint8Array, got /.test(error.message),
    );
    // The connection is ended with that error, and the peer sees it close.
    for await (const _ of accepted.readable) { /* drain until closed */ }
    ok(conn.error instanceof TypeError);
  }
});

Deno.test("TransportConn after close(): writes fail with Deno.errors.BadResource, as a Deno.Conn's do, and reads end", async () => {
  await using ends = await loopbackEnds(plain, {});
  await using conn = await ends.connector.dial({ port: ends.listener.addr.port });
  await using accepted = await ends.listener.accept();
  const writer = conn.writable.getWriter();
  const reader = conn.readable.getReader();
  conn.close();
  // Before, the write was taken (and its bytes dropped): it resolved.
  const [write, read] = await Promise.allSettled([
    writer.write(new Uint8Array([1])),
    reader.read(),
  ]);
  ok(write.status === "rejected", "the write after close() was taken");
  ok(
    write.reason instanceof Deno.errors.BadResource &&
      /Transport connection closed/.test(String(write.reason)),
    String(write.reason),
  );
  deepStrictEqual(read, { status: "fulfilled", value: { done: true, value: undefined } });
  // The peer sees the connection end, with nothing from the refused write.
  for await (const chunk of accepted.readable) ok(false, `the peer got ${chunk.length} bytes`);
});

Deno.test("TransportConn.close() settles a closeWrite() under way while the encoder holds a chunk: it rejects with BadResource, as writes do", async () => {
  // An encoder that holds its chunk (waiting for a peer's reply that never
  // comes, say): the flush behind it cannot finish, and close() must still
  // end the closeWrite() waiting for it, through writable.close() too.
  const stuck = defineTransport({
    name: "stuck",
    parseConfig: () => undefined,
    pair: () => ({
      encode: new TransformStream<Uint8Array, Uint8Array>({
        transform: () => new Promise(() => {}),
      }),
      decode: new TransformStream(),
    }),
  });
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(stuck, {});
  for (const how of ["closeWrite", "writable.close"]) {
    await using conn = await connector.dial({ port: listener.addr.port });
    await using _accepted = await listener.accept();
    const writer = conn.writable.getWriter();
    await writer.write(new Uint8Array([1]));
    const closing = how === "closeWrite" ? conn.closeWrite() : writer.close();
    closing.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 20));
    conn.close();
    await rejects(
      guarded(closing, `${how}() after close()`, 2000),
      (error: unknown) => error instanceof Deno.errors.BadResource,
      how,
    );
  }
});

Deno.test("A dialer that returns no connection fails the dial with a TypeError saying so, and TransportConn refuses a net or pair that is not one, naming what it got", async () => {
  const isNamed = (pattern: RegExp) => (error: unknown) =>
    error instanceof TypeError && pattern.test(error.message);
  // A dialer that forgot its return, or gave a connection's streams:
  // 'Cannot use 'in' operator...' before, or a dial that succeeded and
  // failed at the first read with 'net.read is not a function'.
  const streams = { readable: new ReadableStream(), writable: new WritableStream(), close() {} };
  for (const [returned, named] of [[undefined, "undefined"], [streams, "Object"]] as const) {
    const connector = await createConnector(plain, {}, {
      dialer: () => Promise.resolve(returned as unknown as Deno.Conn),
    });
    await rejects(
      connector.dial({ port: 1 }),
      isNamed(
        new RegExp(
          `^Cannot dial: the dialer returned ${named}, not a connection \\(read, write, closeWrite, close\\)$`,
        ),
      ),
    );
  }
  const pair = (await plain.client({})).pair({});
  throws(
    () => new TransportConn(null as unknown as Deno.Conn, pair),
    isNamed(/^Cannot wrap a transport connection: net must be a connection .* got null$/),
  );
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  using _peer = await listener.accept();
  throws(
    () => new TransportConn(tcp, null as unknown as typeof pair),
    isNamed(/must return \{ encode, decode \}, got null$/),
  );
});

Deno.test("TransportConn reports a transport that emits non-Uint8Array chunks", async () => {
  const broken = defineTransport({
    name: "broken",
    parseConfig: () => undefined,
    pair: () => ({
      encode: new TransformStream<Uint8Array, Uint8Array>({
        transform: (_chunk, c) => c.enqueue("oops" as unknown as Uint8Array),
      }),
      decode: new TransformStream(),
    }),
  });
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(broken, {});
  await using conn = await connector.dial({ port: listener.addr.port });
  await using _accepted = await listener.accept();
  const writer = conn.writable.getWriter();
  await writer.write(new Uint8Array([1])).catch(() => {});
  await conn.closed;
  ok(conn.error instanceof TypeError);
  match(
    String(conn.error),
    /Transport 'broken' encoder produced a chunk that is not a Uint8Array: string/,
  );
});

Deno.test("Messages about a chunk that is not a Uint8Array name its type and length, never its content", async () => {
  const secret = "SECRET-DATA";
  const leaky = defineTransport({
    name: "leaky",
    parseConfig: () => undefined,
    pair: () => ({
      encode: new TransformStream(),
      decode: new TransformStream<Uint8Array, Uint8Array>({
        transform: (_chunk, c) => c.enqueue(secret as unknown as Uint8Array),
      }),
    }),
  });
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(leaky, {});
  await using conn = await connector.dial({ port: listener.addr.port });
  await using accepted = await listener.accept();
  await accepted.writable.getWriter().write(new Uint8Array([1]));
  const read = await conn.readable.getReader().read().then(() => undefined, (e: unknown) => e);
  ok(read instanceof TypeError);
  strictEqual(
    read.message,
    "Transport 'leaky' decoder produced a chunk that is not a Uint8Array: string (11 characters)",
  );

  await using written = await connector.dial({ port: listener.addr.port });
  await using _peer = await listener.accept();
  const write = await written.writable.getWriter().write("str-SECRET" as unknown as Uint8Array)
    .then(() => undefined, (e: unknown) => e);
  ok(write instanceof TypeError);
  strictEqual(
    write.message,
    "Cannot write to transport connection: chunk must be a Uint8Array, got string (10 characters)",
  );

  // Every kind of value: the type (and a length), nothing of the value.
  class Secret {}
  Object.defineProperty(Secret, "name", { value: "SECRET DATA" });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const cases: [unknown, string][] = [
    [secret, "string (11 characters)"],
    [4242, "number"],
    [4242n, "bigint"],
    [true, "boolean"],
    [Symbol("SECRET"), "symbol"],
    [undefined, "undefined"],
    [null, "null"],
    [() => secret, "function"],
    [{ secret }, "Object"],
    [Object.create(null), "object"],
    [[secret, secret], "Array (2 items)"],
    [new ArrayBuffer(4), "ArrayBuffer (4 bytes)"],
    [new Uint16Array(3), "Uint16Array (6 bytes)"],
    [new Secret(), "object"],
    [revoked.proxy, "object"],
  ];
  for (const [value, expected] of cases) strictEqual(describe(value), expected);
});

Deno.test("proxy fails a connection whose target function returns no connection with a TypeError at stage 'target', closing what it can", async () => {
  const errors: [unknown, string][] = [];
  let closedReturned = 0;
  const returns: unknown[] = [{}, { close: () => closedReturned++ }, undefined, "SECRET"];
  await using manager = await proxy(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: () => Promise.resolve(returns.shift() as never),
    onError: (error, stage) => errors.push([error, stage]),
  });
  const connector = await createConnector(plain, {});
  for (let i = 0; i < 4; i++) {
    await using conn = await connector.dial({ port: manager.addr.port });
    await conn.writable.getWriter().write(new Uint8Array([1]));
    // The server closes the connection: its reader sees the end.
    await conn.readable.getReader().read().catch(() => {});
  }
  while (errors.length < 4) await new Promise((resolve) => setTimeout(resolve, 10));
  const object = "an object that is neither a connection nor readable/writable streams";
  deepStrictEqual(
    errors.map(([error, stage]) => [error instanceof TypeError, String(error), stage]),
    [
      [true, `TypeError: Cannot relay: the target function returned ${object}`, "target"],
      [true, `TypeError: Cannot relay: the target function returned ${object}`, "target"],
      [
        true,
        "TypeError: Cannot relay: the target function returned undefined, not a connection",
        "target",
      ],
      [
        true,
        "TypeError: Cannot relay: the target function returned string, not a connection",
        "target",
      ],
    ],
  );
  strictEqual(closedReturned, 1);
});

/** A transport "made" whose pair() hands out `pairs` one by one, with its two sides. */
async function queuedTransport(pairs: unknown[]) {
  const made = defineTransport({
    name: "made",
    parseConfig: () => undefined,
    pair: () => pairs.shift() as never,
  });
  return { made, client: await made.client({}), server: await made.server({}) };
}

Deno.test("defineTransport refuses a pair() that returns no { encode, decode } with a TypeError naming what is missing", async () => {
  const pairs: unknown[] = [
    {},
    { encode: new TransformStream() },
    { encode: new TransformStream(), decode: {} },
    null,
    Promise.resolve({}),
  ];
  const expected = [
    "got no 'encode'",
    "got no 'decode'",
    "got a 'decode' that is not a TransformStream",
    "got null",
    "got a promise (pair() must not be async)",
  ];
  const { made, client, server } = await queuedTransport(pairs);
  for (const [i, tail] of expected.entries()) {
    const side = i % 2 === 0 ? () => client.pair({}) : () => server.pair();
    throws(side, (error: unknown) =>
      error instanceof TypeError &&
      error.message ===
        `Cannot make a 'made' connection: pair() must return { encode, decode }, ${tail}`);
  }
  // A dial fails before it connects.
  pairs.push({});
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(made, {});
  await rejects(connector.dial({ port: listener.addr.port }), /got no 'encode'/);
});

Deno.test("A free transport's pair refuses a malformed destination hostname naming its type, not its content", async () => {
  const free = defineTransport({
    name: "freeish",
    free: true,
    parseConfig: () => undefined,
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  });
  const client = await free.client({});
  for (
    const [hostname, got] of [
      [{ SECRET: "host" }, "object"],
      [["SECRET"], "object"],
      [42, "number"],
      ["", "an empty string"],
      [null, "null"],
    ] as const
  ) {
    throws(
      () => client.pair({}, { hostname: hostname as unknown as string, port: 1 }),
      (error: unknown) =>
        error instanceof TypeError && error.message ===
          `Cannot make a 'freeish' connection: invalid destination hostname: expected a non-empty string, got ${got}`,
    );
  }
});

Deno.test("createConnector and listen reject configurations that fail validation", async () => {
  await rejects(
    createConnector(rot, { n: "0" }),
    (e: unknown) => e instanceof RangeError && /n must be 1-255, got "0"/.test(e.message),
  );
  // Unknown keys are ignored and reported, never refused.
  const ignored: IgnoredOption[] = [];
  await createConnector(plain, { cert: "x" }, { env: { onIgnoredOption: (i) => ignored.push(i) } });
  deepStrictEqual(ignored, [{ transport: "plain", key: "cert" }]);
  await rejects(
    createConnector(plain, { n: 3 } as unknown as Record<string, string>),
    (e: unknown) =>
      e instanceof TypeError && /option 'n' must be a string, got number/.test(e.message),
  );
  await rejects(createConnector(plain, null as unknown as Record<string, string>), TypeError);
  await rejects(listen(rot, { n: "256" }, { hostname: "127.0.0.1", port: 0 }), RangeError);
  await rejects(
    listen(plain, {}, { hostname: "127.0.0.1", port: -1 }),
    (e: unknown) => e instanceof RangeError && /Invalid port -1 for listen/.test(e.message),
  );
});

Deno.test("Connector.dial rejects bad addresses and settings before connecting", async () => {
  const connector = await createConnector(rot, { n: "2" });
  await rejects(
    connector.dial({ port: 70000 }),
    (e: unknown) => e instanceof RangeError && /Invalid port 70000 for dial/.test(e.message),
  );
  await rejects(connector.dial({ port: 0 }), RangeError);
  await rejects(connector.dial({ port: "80" as unknown as number }), TypeError);
  await rejects(
    connector.dial({ hostname: "", port: 80 }),
    (e: unknown) => e instanceof TypeError && /invalid hostname ""/.test(e.message),
  );
  await rejects(
    connector.dial({ port: 1, settings: { x: 1 } as unknown as Record<string, string> }),
    TypeError,
  );
});

Deno.test("listen and proxy refuse a hostname that is not a string, and dial a signal that is not an AbortSignal, with a TypeError naming them", async () => {
  // These failed with JavaScript's own 'hostname.includes is not a function'
  // (after the transport was configured) and 'signal?.throwIfAborted is not a
  // function'.
  for (const hostname of [1, true, ["127.0.0.1"]]) {
    const options = { hostname: hostname as unknown as string, port: 0 };
    await rejects(
      listen(plain, {}, options),
      (e: unknown) =>
        e instanceof TypeError &&
        /^Cannot listen: invalid hostname .*: must be a string$/.test(e.message),
    );
    await rejects(
      proxy(plain, {}, { ...options, target: { hostname: "127.0.0.1", port: 1 } }),
      (e: unknown) => e instanceof TypeError && /invalid hostname/.test(e.message),
    );
  }
  const connector = await createConnector(plain, {});
  for (const signal of ["stop", { aborted: false }, null]) {
    await rejects(
      connector.dial({ port: 1, signal: signal as unknown as AbortSignal }),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot dial: signal must be an AbortSignal, got ${
            signal === null ? "null" : typeof signal
          }`,
    );
  }
});

Deno.test("every listener (UdpSocket.open, serveUdpClient, serveUdpServer) names a hostname that is not a string, with a TypeError", async () => {
  // UdpSocket.open({ hostname: 5 }) and serveUdpClient({ hostname: 1, ... })
  // failed with JavaScript's 'hostname.includes is not a function'.
  const refused = (e: unknown) =>
    e instanceof TypeError &&
    /^Cannot listen: invalid hostname 5 \(number\): must be a string$/.test(e.message);
  const hostname = 5 as unknown as string;
  await rejects(UdpSocket.open({ hostname }), refused);
  await rejects(
    serveUdpClient({
      transport: plain,
      config: {},
      hostname,
      server: { port: 1 },
      framing: "length",
    }),
    refused,
  );
  await rejects(
    serveUdpServer({
      transport: plain,
      config: {},
      hostname,
      port: 0,
      target: { hostname: "127.0.0.1", port: 9 },
      framing: "length",
    }),
    refused,
  );
});

Deno.test("serveUdpServer names a target that is not { hostname, port }, and both pools and UdpSocket.open a peer hostname that is neither an IP address nor a host name, with a TypeError", async () => {
  // Before: serveUdpServer's target "127.0.0.1:9", null or 5 said 'invalid
  // target hostname undefined'; its target "a b" was looked up and failed
  // with a plain Error ('cannot resolve "a b" (proto error: unrecognized
  // char: )'); serveUdpClient took a server "a b", and every flow's dial
  // then failed.
  const server = { transport: plain, config: {}, port: 0, framing: "length" } as const;
  const notHostPort = (got: string) => (e: unknown) =>
    e instanceof TypeError &&
    e.message ===
      `Invalid target for serve UDP server: expected an object with hostname and port, got ${got}`;
  await rejects(
    serveUdpServer({ ...server, target: "127.0.0.1:9" as never }),
    notHostPort("string"),
  );
  await rejects(serveUdpServer({ ...server, target: null as never }), notHostPort("null"));
  const neither = (what: string) => (e: unknown) =>
    e instanceof TypeError &&
    e.message ===
      `Cannot ${what}: invalid hostname "a b": neither an IP address nor a host name`;
  const peer = { hostname: "a b", port: 9 };
  await rejects(serveUdpServer({ ...server, target: peer }), neither("serve UDP server"));
  await rejects(
    serveUdpClient({ transport: plain, config: {}, server: peer, framing: "length" }),
    neither("serve UDP client"),
  );
  await rejects(UdpSocket.open({ connect: peer }), neither("open UDP socket"));
});

Deno.test("serveUdpClient and serveUdpServer refuse an onError that is not a function, and serveUdpServer a localAddress that is not a string, with a TypeError naming them", async () => {
  // Before: onError: 5 was taken, and each failed flow printed 'The
  // serveUdpClient() onError callback threw' for JavaScript's own 'is not a
  // function'; localAddress: 5 was taken, and every flow failed to open its
  // socket ('invalid hostname 5').
  const client = { transport: plain, config: {}, server: { port: 1 }, framing: "length" } as const;
  const server = {
    transport: plain,
    config: {},
    port: 0,
    target: { hostname: "127.0.0.1", port: 9 },
    framing: "length",
  } as const;
  const cases: [() => Promise<unknown>, string][] = [
    [
      () => serveUdpClient({ ...client, onError: 5 as never }),
      "Cannot serve UDP client: onError must be a function, got number",
    ],
    [
      () => serveUdpServer({ ...server, onError: "log" as never }),
      "Cannot serve UDP server: onError must be a function, got string",
    ],
    [
      () => serveUdpServer({ ...server, localAddress: 5 as never }),
      "Cannot serve UDP server: localAddress must be a string, got number",
    ],
  ];
  for (const [serve, message] of cases) {
    await rejects(serve, (e: unknown) => e instanceof TypeError && e.message === message, message);
  }
});

Deno.test("createConnector, listen and proxy refuse a dialer or callback that is not a function, with a TypeError naming the option", async () => {
  // Each was taken: dial and every proxied connection then failed with
  // JavaScript's 'dialer is not a function', and a callback threw when it
  // was first called.
  const named = (what: string, name: string, type: string) => (e: unknown) =>
    e instanceof TypeError &&
    e.message === `Cannot ${what}: ${name} must be a function, got ${type}`;
  const bad = <T>(value: unknown) => value as T;
  await rejects(
    createConnector(plain, {}, { dialer: bad(5) }),
    named("create a connector", "dialer", "number"),
  );
  await rejects(
    createConnector(plain, {}, { onHelperLog: bad("log") }),
    named("create a connector", "onHelperLog", "string"),
  );
  await rejects(
    listen(plain, {}, { hostname: "127.0.0.1", port: 0, onAcceptError: bad(null) }),
    named("listen", "onAcceptError", "null"),
  );
  const target = { hostname: "127.0.0.1", port: 9 };
  await rejects(
    proxy(plain, {}, { hostname: "127.0.0.1", port: 0, target, dialer: bad("tcp") }),
    named("proxy", "dialer", "string"),
  );
  await rejects(
    proxy(plain, {}, { hostname: "127.0.0.1", port: 0, target, onError: bad({}) }),
    named("proxy", "onError", "object"),
  );
});

Deno.test("createObfs4 and createShadowsocks refuse null options and hooks that are not functions, with a TypeError naming them", () => {
  // null failed with JavaScript's 'Cannot read properties of null', and a
  // hook of another type (random: "x") was taken and failed at the first
  // connection.
  const bad = <T>(value: unknown) => value as T;
  throws(
    () => createObfs4(bad(null)),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot create an obfs4 transport: options must be an object, got null",
  );
  throws(
    () => createShadowsocks(bad(null)),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot create a Shadowsocks transport: options must be an object, got null",
  );
  throws(
    () => createShadowsocks({ random: bad("x") }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot create a Shadowsocks transport: random must be a function, got string",
  );
  throws(
    () => createObfs4({ probeCloseDelay: bad(30_000) }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot create an obfs4 transport: probeCloseDelay must be a function, got number",
  );
  // keyPairWorker: "false" was taken as true: the worker thread started.
  throws(
    () => createObfs4({ keyPairWorker: bad("false") }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot create an obfs4 transport: keyPairWorker must be a boolean, got string",
  );
  strictEqual(createObfs4({ keyPairWorker: false }).name, "obfs4");
  strictEqual(createObfs4().name, "obfs4");
  strictEqual(createShadowsocks({ now: () => 0 }).name, "shadowsocks");
});

Deno.test("HelperLimit refuses null options and a max that is not a number with a TypeError", () => {
  // null failed with 'Cannot read properties of null (reading 'max')', and
  // max: "3" said 'Invalid helper limit 3: must be a positive integer'.
  throws(
    () => new HelperLimit(null as unknown as { max?: number }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot make a helper limit: options must be an object, got null",
  );
  throws(
    () => new HelperLimit({ max: "3" as unknown as number }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Invalid helper limit: max must be a number, got string",
  );
  throws(() => new HelperLimit({ max: 0 }), RangeError);
  strictEqual(new HelperLimit().max, 8);
});

Deno.test("proxy rejects a malformed target", async () => {
  await rejects(
    proxy(plain, {}, { port: 0, target: { hostname: "127.0.0.1", port: 0 } }),
    (e: unknown) => e instanceof RangeError && /proxy target/.test(e.message),
  );
  await rejects(
    proxy(plain, {}, {
      port: 0,
      target: "127.0.0.1:80" as unknown as { hostname: string; port: number },
    }),
    TypeError,
  );
  // A name no connection can reach started a server whose every connection
  // then failed at stage "target" with Deno's URIError.
  await rejects(
    proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "a b", port: 9 },
    }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        `Cannot proxy: invalid target hostname "a b": expected an IP address or a host name of ASCII letters, digits, '.', '_' and '-'`,
  );
  // An IP literal (IPv6 with or without brackets) and a name still start.
  for (const hostname of ["::1", "[::1]", "localhost", "tor.example."]) {
    await (await proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname, port: 9 },
    })).close();
  }
});

Deno.test("parseHostPort parses and rejects addresses with the value in the message", () => {
  strictEqual(formatHostPort(parseHostPort("[::1]:9050")), "[::1]:9050");
  strictEqual(formatHostPort(parseHostPort("example.org:443")), "example.org:443");
  for (
    const bad of [
      "1.2.3",
      "",
      ":80",
      "host:",
      "host:port",
      "[::1]80",
      "::1:80",
      "[1.2.3.4]:80",
      "a b:1",
    ]
  ) {
    throws(
      () => parseHostPort(bad, "bridge address"),
      (e: unknown) =>
        e instanceof SyntaxError && e.message.startsWith("Cannot parse bridge address") &&
        e.message.includes(JSON.stringify(bad)),
    );
  }
  throws(() => parseHostPort("127.0.0.1:65536"), RangeError);
  throws(() => checkPort(1.5, "x"), RangeError);
});

Deno.test("formatHostPort refuses null, a hostname that is not a string and a port out of range with an error naming them, not JavaScript's own", () => {
  // null failed with 'Cannot destructure property 'hostname' of 'address' as it is null'.
  const format = (value: unknown) => () => formatHostPort(value as HostPort);
  throws(
    format(null),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Invalid address to format: expected an object with hostname and port, got null",
  );
  throws(format(undefined), /expected an object with hostname and port, got undefined/);
  throws(
    format({ hostname: 5, port: 80 }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Invalid address to format: hostname must be a string, got number",
  );
  throws(format({ hostname: "a" }), (e: unknown) => e instanceof TypeError && /port/.test(`${e}`));
  throws(format({ hostname: "a", port: 70000 }), /Invalid port 70000/);
  strictEqual(formatHostPort({ hostname: "::1", port: 0 }), "[::1]:0");
});

Deno.test("createConnector refuses caCerts that are no array of PEM certificates, and createConnector, listen and proxy an env that is no object, at once with a TypeError naming them", async () => {
  // ["garbage"] was taken and failed at the first WebTunnel dial; "x" only
  // after the transport was configured; env: "x" was taken silently.
  const secret = "garbage-not-a-certificate";
  const caCertsRefused = (expected: RegExp) => (e: unknown) =>
    e instanceof TypeError && expected.test(e.message) && !e.message.includes(secret);
  await rejects(
    createConnector(webtunnel, { url: "https://example.com/path" }, { caCerts: [secret] }),
    caCertsRefused(
      /^Cannot create a connector: caCerts\[0\] \(25 characters\) holds no PEM certificate: expected a -----BEGIN CERTIFICATE----- block$/,
    ),
  );
  await rejects(
    createConnector(plain, {}, { caCerts: "x" as unknown as string[] }),
    caCertsRefused(
      /^Cannot create a connector: caCerts must be an array of PEM strings, got string$/,
    ),
  );
  await rejects(
    createConnector(plain, {}, { caCerts: [PEM, 5] as unknown as string[] }),
    caCertsRefused(/caCerts\[1\] must be a PEM string, got number/),
  );
  // Checked before the transport is configured: none is made, none leaks.
  let configured = 0;
  const counted = defineTransport({
    name: "counted",
    parseConfig: () => configured++,
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  });
  await rejects(createConnector(counted, {}, { caCerts: ["x"] }), TypeError);
  strictEqual(configured, 0);
  await using connector = await createConnector(plain, {}, { caCerts: [PEM] });
  strictEqual(connector.name, "plain");
  for (const env of ["x", 5, null, [1]]) {
    const refused = (what: string) => (e: unknown) =>
      e instanceof TypeError &&
      new RegExp(`^Cannot ${what}: env must be an object, got `).test(e.message);
    await rejects(
      createConnector(plain, {}, { env: env as unknown as TransportEnvironment }),
      refused("create a connector"),
    );
    await rejects(
      listen(plain, {}, {
        hostname: "127.0.0.1",
        port: 0,
        env: env as unknown as TransportEnvironment,
      }),
      refused("listen"),
    );
    await rejects(
      proxy(plain, {}, {
        hostname: "127.0.0.1",
        port: 0,
        target: { hostname: "127.0.0.1", port: 9 },
        env: env as unknown as TransportEnvironment,
      }),
      refused("proxy"),
    );
  }
  await rejects(
    createConnector(plain, {}, { env: { onNotice: "log" } as unknown as TransportEnvironment }),
    /env\.onNotice must be a function, got string/,
  );
});

/** A certificate's shape (not a real one: nothing dials with it). */
const PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";

Deno.test("createConnector, listen and proxy refuse a helperDirectory, a reusePort or a helperLimit of the wrong type before the transport is configured, with a TypeError naming the option", async () => {
  // helperDirectory: 5 and reusePort: "yes" were taken silently; a
  // helperLimit of 5 was refused only after the transport's side was made
  // (and left open).
  let configured = 0;
  const counted = defineTransport({
    name: "counted",
    parseConfig: () => configured++,
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  });
  const named = (message: string) => (e: unknown) =>
    e instanceof TypeError && e.message === message;
  await rejects(
    createConnector(counted, {}, { helperDirectory: 5 as unknown as string }),
    named("Cannot create a connector: helperDirectory must be a string, got number"),
  );
  await rejects(
    createConnector(counted, {}, { helperLimit: 5 as unknown as HelperLimit }),
    named("Invalid helperLimit: expected a HelperLimit, got number"),
  );
  const at = { hostname: "127.0.0.1", port: 0 };
  for (const reusePort of ["yes", 1, 0, null]) {
    await rejects(
      listen(counted, {}, { ...at, reusePort: reusePort as unknown as boolean }),
      named(
        `Cannot listen: reusePort must be a boolean, got ${
          reusePort === null ? "null" : typeof reusePort
        }`,
      ),
    );
  }
  await rejects(
    listen(counted, {}, { ...at, helperDirectory: ["/tmp"] as unknown as string }),
    named("Cannot listen: helperDirectory must be a string, got object"),
  );
  await rejects(
    proxy(counted, {}, {
      ...at,
      target: { hostname: "127.0.0.1", port: 9 },
      reusePort: "x" as unknown as boolean,
    }),
    /reusePort must be a boolean, got string/,
  );
  strictEqual(configured, 0);
  await using listener = await listen(plain, {}, { ...at, reusePort: false });
  ok(listener.addr.port > 0);
});

Deno.test("defineTransport refuses a free member that is not a boolean with a TypeError naming it, not a bound transport made silently", () => {
  const definition = {
    name: "maybe_free",
    parseConfig: () => undefined,
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  };
  for (const free of ["yes", 1, null]) {
    throws(
      () => defineTransport({ ...definition, free: free as unknown as boolean }),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot define transport 'maybe_free': free must be a boolean, got ${
            free === null ? "null" : typeof free
          }`,
    );
  }
  strictEqual(defineTransport({ ...definition, free: true }).free, true);
  strictEqual(defineTransport({ ...definition, free: false }).free, undefined);
});

Deno.test("MemoryStore refuses a key or value that is not a string with a TypeError naming it (a rejection), never storing it", async () => {
  // set("k", 5) stored a number, which get("k") gave back where a string goes.
  const store = new MemoryStore();
  await rejects(
    store.set("k", 5 as unknown as string),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot store a value: value must be a string, got number",
  );
  strictEqual(await store.get("k"), undefined);
  await rejects(
    store.set("k", undefined as unknown as string),
    /value must be a string, got undefined/,
  );
  await rejects(store.set(5 as unknown as string, "v"), /key must be a string, got number/);
  await rejects(
    store.get(null as unknown as string),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot read a stored value: key must be a string, got null",
  );
  await store.set("k", "v");
  strictEqual(await store.get("k"), "v");
});

Deno.test("TransportConn and TransportListener refuse a handshakeTimeout, a name, an onAcceptError or options of the wrong type when made, with an error naming them", async () => {
  // A handshakeTimeout of -1 was checked only for a pair with a handshake
  // (a listener failed each such connection as it came), an onAcceptError
  // of 5 failed at the first accept error, null options with
  // 'Cannot read properties of null'.
  const side = await plain.server({});
  type ConnOptions = ConstructorParameters<typeof TransportListener>[3];
  type ListenerOptions = ConstructorParameters<typeof TransportListener>[4];
  const cases: [ConnOptions, ListenerOptions, RegExp][] = [
    [
      { handshakeTimeout: -1 },
      {},
      /^RangeError: Cannot make a transport listener: invalid handshakeTimeout -1/,
    ],
    [
      { handshakeTimeout: "5" as unknown as number },
      {},
      /^TypeError: Cannot make a transport listener: handshakeTimeout must be a number, got string$/,
    ],
    [{ name: 5 as unknown as string }, {}, /name must be a string, got number/],
    [null as unknown as ConnOptions, {}, /options must be an object, got null/],
    [{}, null as unknown as ListenerOptions, /options must be an object, got null/],
    [
      {},
      { onAcceptError: 5 as unknown as () => void },
      /^TypeError: Cannot make a transport listener: onAcceptError must be a function, got number$/,
    ],
  ];
  for (const [connOptions, options, expected] of cases) {
    using tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    throws(() => new TransportListener(tcp, side, "plain", connOptions, options), expected);
  }
  using tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using net = await Deno.connect({ hostname: "127.0.0.1", port: tcp.addr.port });
  using _peer = await tcp.accept();
  for (
    const [options, error] of [
      [{ handshakeTimeout: -1 }, RangeError],
      [{ name: 5 }, TypeError],
      [null, TypeError],
    ] as const
  ) {
    throws(
      () => new TransportConn(net, side.pair(), options as unknown as TransportConnOptions),
      (e: unknown) =>
        e instanceof error &&
        /^Cannot wrap a transport connection: /.test(`${(e as Error).message}`),
    );
  }
});

Deno.test("assertTransportName and layerTransports refuse bad names and layer keys", async () => {
  for (const bad of ["", "1abc", "a-b", "a b", "é"]) {
    throws(() => assertTransportName(bad), TypeError);
  }
  throws(() => layerTransports("x", []), TypeError);
  // The messages name the layers (they said only 'two layers share a name').
  throws(
    () => layerTransports("x", [rot, plain, plain]),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot layer transport 'x': layers 1 and 2 share the name 'plain' (give one another, as { ...plain, name: 'outer' })",
  );
  throws(
    () => layerTransports("x", [plain, shadowsocks]),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot layer transport 'x': layer 1 ('shadowsocks') is free; only the first (innermost) layer may be",
  );
  const stacked = layerTransports("stack", [rot, plain]);
  const ignored: IgnoredOption[] = [];
  await stacked.client({ n: "3", "plain.x": "1" }, { onIgnoredOption: (i) => ignored.push(i) });
  deepStrictEqual(ignored, [
    { transport: "stack", key: "n" },
    { transport: "stack", key: "plain.x" },
  ]);
  await rejects(Promise.resolve().then(() => stacked.client({ "rot_by_N.n": "0" })), RangeError);
});

Deno.test("layerTransports generates a configuration when every layer can: each layer's, under its prefix, which the stack takes as it is", async () => {
  const stacked = layerTransports("ss_obfs4", [shadowsocks, obfs4]);
  strictEqual(typeof stacked.generateConfig, "function");
  const config = await stacked.generateConfig!();
  deepStrictEqual(Object.keys(config.client).sort(), [
    "obfs4.cert",
    "obfs4.iat-mode",
    "shadowsocks.key",
    "shadowsocks.method",
  ]);
  deepStrictEqual(Object.keys(config.server).sort(), [
    "obfs4.drbg-seed",
    "obfs4.iat-mode",
    "obfs4.node-id",
    "obfs4.private-key",
    "shadowsocks.key",
    "shadowsocks.method",
  ]);
  // Every key is one the stack knows, and the two halves match: a dial
  // through it reaches the destination the client named.
  const ignored: IgnoredOption[] = [];
  const env = { onIgnoredOption: (i: IgnoredOption) => ignored.push(i) };
  await using listener = await listen(stacked, config.server, {
    hostname: "127.0.0.1",
    port: 0,
    env,
  });
  await using connector = await createConnector(stacked, config.client, { env });
  await using conn = await connector.dial({
    port: listener.addr.port,
    destination: { hostname: "192.0.2.1", port: 80 },
  });
  await conn.writable.getWriter().write(new Uint8Array([1, 2, 3]));
  await using accepted = await listener.accept();
  deepStrictEqual(await accepted.destination, { hostname: "192.0.2.1", port: 80 });
  deepStrictEqual(ignored, []);
  // A stack with a layer that generates nothing generates nothing.
  strictEqual(layerTransports("ss_plain", [shadowsocks, plain]).generateConfig, undefined);
});

Deno.test("defineTransport refuses a serverKeepAlive the kernel would refuse, with a RangeError naming it", async () => {
  const define = (serverKeepAlive: number) =>
    defineTransport({
      name: "kept",
      parseConfig: () => undefined,
      serverKeepAlive,
      pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
    });
  // Each of these left accepted sockets without keepalive, silently
  // (setsockopt refused 0 and out-of-range values; 0.5 and NaN became 0).
  for (const bad of [0, -15, 0.5, NaN, Infinity, 32768, 1e12]) {
    throws(
      () => define(bad),
      (e) => e instanceof RangeError && e.message.includes(`invalid serverKeepAlive ${bad}`),
    );
  }
  for (const good of [1, 15, 32767]) {
    strictEqual((await define(good).server({})).keepAlive, good);
  }
});

Deno.test("defineTransport refuses a definition without parseConfig or pair, or with members of the wrong type, at once with a TypeError naming the member", async () => {
  const streams = () => ({ encode: new TransformStream(), decode: new TransformStream() });
  const define = (definition: Record<string, unknown>) => () =>
    defineTransport(
      { name: "made", ...definition } as unknown as Parameters<
        typeof defineTransport
      >[0],
    );
  // Each of these was accepted and failed at the first client(), server()
  // or pair() with JavaScript's 'definition.pair is not a function', or
  // (a string for an array of keys) was spread into its letters.
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ pair: streams }, /'made': parseConfig must be a function, got undefined/],
    [{ parseConfig: () => 0 }, /'made': pair must be a function, got undefined/],
    [{ parseConfig: () => 0, pair: streams, close: "yes" }, /close must be a function, got string/],
    [
      { parseConfig: () => 0, pair: streams, optionKeys: { client: "tag", server: ["tag"] } },
      /optionKeys\.client is string/,
    ],
    [{ parseConfig: () => 0, pair: streams, optionKeys: null }, /optionKeys must be .*got null/],
    [
      { parseConfig: () => 0, pair: streams, serverKeepAlive: "15" },
      /serverKeepAlive must be a number of seconds, got string/,
    ],
  ];
  for (const [definition, message] of cases) {
    throws(define(definition), (e) => e instanceof TypeError && message.test(e.message));
  }
  throws(
    () => defineTransport(null as unknown as Parameters<typeof defineTransport>[0]),
    (e) => e instanceof TypeError && /definition must be an object, got null/.test(e.message),
  );
  // A complete definition still works, optional members left out.
  const made = define({
    parseConfig: () => 0,
    pair: streams,
    optionKeys: { client: [], server: [] },
  })();
  ok((await made.client({})).pair({}).encode instanceof TransformStream);
});

Deno.test("transport timer options a timer cannot hold (too large, negative, NaN) are refused with a RangeError naming them, not turned into a 1 ms deadline, and one that is no number with a TypeError naming its type", async () => {
  // 2 ** 40 was meant as "very long": Node's timers warned TimeoutOverflowWarning
  // and fired after 1 ms, dropping every Shadowsocks client / failing every obfs4 dial.
  const bad: unknown[] = [2 ** 40, 2 ** 31, -1, 0, NaN, Infinity];
  for (const value of bad) {
    throws(
      () => createShadowsocks({ drainTimeout: value as number }),
      (e: Error) => e instanceof RangeError && e.message.includes(`invalid drainTimeout ${value}`),
    );
    for (const name of ["clientHandshakeTimeout", "serverHandshakeTimeout"]) {
      throws(
        () => createObfs4({ [name]: value as number }),
        (e: Error) => e instanceof RangeError && e.message.includes(`invalid ${name} ${value}`),
      );
    }
  }
  // "60000" was a RangeError saying 'invalid drainTimeout a string', where a
  // limit of the wrong type is a TypeError ('maxConnections must be a number').
  for (const [value, type] of [["60000", "string"], [null, "null"], [60n, "bigint"]] as const) {
    throws(
      () => createShadowsocks({ drainTimeout: value as unknown as number }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot create a Shadowsocks transport: drainTimeout must be a number, got ${type}`,
    );
    throws(
      () => createObfs4({ clientHandshakeTimeout: value as unknown as number }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message.endsWith(`: clientHandshakeTimeout must be a number, got ${type}`),
    );
    await rejects(
      listen(plain, {}, {
        hostname: "127.0.0.1",
        port: 0,
        handshakeTimeout: value as unknown as number,
      }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `Cannot listen: handshakeTimeout must be a number, got ${type}`,
    );
    await rejects(
      createConnector(plain, {}, { handshakeTimeout: value as unknown as number }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `Cannot create a connector: handshakeTimeout must be a number, got ${type}`,
    );
  }
  for (const ttlMs of [-1, 0, NaN, Infinity]) {
    throws(
      () => createShadowsocks({ replayFilter: { ttlMs } }),
      (e: Error) =>
        e instanceof RangeError && e.message.includes(`invalid replay filter ttlMs ${ttlMs}`),
    );
  }
  for (const maxEntries of [1, 0, -5, 2.5, NaN]) {
    throws(
      () => createShadowsocks({ replayFilter: { maxEntries } }),
      (e: Error) =>
        e instanceof RangeError &&
        e.message.includes(`invalid replay filter maxEntries ${maxEntries}`),
    );
  }
  // Good values still go.
  createShadowsocks({ drainTimeout: 2 ** 31 - 1, replayFilter: { ttlMs: 2 ** 40, maxEntries: 2 } });
  createObfs4({ clientHandshakeTimeout: 1, serverHandshakeTimeout: 2 ** 31 - 1 });
  // A probeCloseDelay answering a delay no timer holds fails the server's configuration.
  const server = createObfs4({ probeCloseDelay: () => 2 ** 40 });
  await rejects(
    Promise.resolve().then(() => server.server({}, { local: new MemoryStore() })),
    (e: Error) => e instanceof RangeError && e.message.includes("invalid probeCloseDelay result"),
  );
});

Deno.test("a free transport's destination no server takes (a space, an IPv6 zone, a bracket left open) is refused by dial with a TypeError; an internationalized name goes as punycode", async () => {
  await using ends = await loopbackEnds(shadowsocks, {
    method: "chacha20-ietf-poly1305",
    password: "correct-horse-battery",
  });
  const { listener, connector } = ends;
  // Before, each was sent: the server (as ss-server) found no valid request
  // and held the connection as a probe's, silently, until the client gave up.
  for (const hostname of ["a b", "[::1", "fe80::1%eth0", "host/path", "", "x".repeat(256)]) {
    await rejects(
      connector.dial({ port: listener.addr.port, destination: { hostname, port: 80 } }),
      (e: Error) =>
        e instanceof TypeError && /Cannot dial: the destination's hostname/.test(e.message) &&
        (hostname === "" || !e.message.includes(hostname)),
      JSON.stringify(hostname),
    );
  }
  for (
    const [hostname, sent] of [
      ["bücher.example", "xn--bcher-kva.example"],
      ["[2001:db8::1]", "2001:db8::1"],
      ["example.com", "example.com"],
    ]
  ) {
    await using conn = await connector.dial({
      port: listener.addr.port,
      destination: { hostname: hostname!, port: 443 },
    });
    const writer = conn.writable.getWriter();
    await writer.write(new Uint8Array([1]));
    writer.releaseLock();
    await using accepted = await listener.accept();
    deepStrictEqual(await accepted.destination, { hostname: sent, port: 443 });
  }
});

Deno.test("a free transport's destination port out of range is refused by dial with a RangeError that names it and the range a destination takes, 1-65535", async () => {
  await using ends = await loopbackEnds(shadowsocks, {
    method: "chacha20-ietf-poly1305",
    password: "correct-horse-battery",
  });
  const { listener, connector } = ends;
  // 70000 said 'must be an integer in 0-65535', a range whose 0 the same
  // dial then refused ('invalid destination port 0: expected 1-65535').
  for (const port of [70000, 0, -1, 1.5, NaN]) {
    await rejects(
      connector.dial({ port: listener.addr.port, destination: { hostname: "example.com", port } }),
      (e: Error) =>
        e instanceof RangeError &&
        e.message ===
          `Invalid port ${port} for the dial destination: must be an integer in 1-65535`,
      String(port),
    );
  }
  strictEqual(listener.stats().connectionsAccepted, 0);
});

Deno.test("a hand-written transport whose pair() returns no streams fails its dial and its accepted connections with a TypeError saying so (not 'reading writable'), and the server goes on", async () => {
  const broken = {
    name: "handmade",
    client: () => ({ pair: () => ({}) }),
    server: () => ({ pair: () => ({ encode: new TransformStream() }) }),
  } as unknown as Parameters<typeof listen>[0];
  await using listener = await listen(broken, {}, { hostname: "127.0.0.1", port: 0 });
  await using connector = await createConnector(broken, {});
  await rejects(
    connector.dial({ port: listener.addr.port }),
    (e: Error) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot make a 'handmade' connection: pair() must return { encode, decode }, got no 'encode'",
  );
  // The server's side: each such connection is closed; accept() goes on.
  const accepting = listener.accept().then(() => "accepted", () => "closed");
  for (let i = 0; i < 2; i++) {
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    strictEqual(await guarded(raw.read(new Uint8Array(1)), "the server's close"), null);
    raw.close();
  }
  await listener.close();
  strictEqual(await accepting, "closed");
});

Deno.test("listen() refuses a hand-written server side whose keepAlive the kernel would refuse, closing it and listening on nothing", async () => {
  for (const bad of [0, -1, 0.5, NaN, 32768]) {
    let closed = 0;
    const handWritten = {
      name: "handmade",
      client: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
      server: () => ({
        keepAlive: bad,
        pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
        close: () => {
          closed++;
        },
      }),
    } as unknown as Parameters<typeof listen>[0];
    // Before, the value went to setsockopt, which refused it: served without keepalive, silently.
    await rejects(
      listen(handWritten, {}, { hostname: "127.0.0.1", port: 0 }),
      (e: Error) => e instanceof RangeError && e.message.includes(`invalid keepAlive ${bad}`),
    );
    strictEqual(closed, 1);
  }
});

Deno.test("defineTransport reports an unknown per-connection setting once per dial, also when it plans the connection", async () => {
  const seen: string[] = [];
  const planned = defineTransport({
    name: "planned",
    optionKeys: { client: ["via"], server: [] },
    parseConfig: () => undefined,
    connection: (_config, destination, settings) => {
      seen.push(Object.keys(settings).join());
      return { hostname: destination.hostname, port: destination.port };
    },
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  });
  await using listener = await listen(planned, {}, { hostname: "127.0.0.1", port: 0 });
  const ignored: IgnoredOption[] = [];
  await using connector = await createConnector(planned, {}, {
    env: { onIgnoredOption: (i) => ignored.push(i) },
  });
  await using conn = await connector.dial({
    port: listener.addr.port,
    settings: { via: "x", bogus: "1" },
  });
  await using _accepted = await listener.accept();
  ok(conn.stats().startTime > 0);
  // The plan sees only the keys it knows.
  deepStrictEqual(seen, ["via"]);
  // Reported twice before: once for the plan, once for the pair.
  deepStrictEqual(ignored, [{ transport: "planned", key: "bogus" }]);
});

Deno.test("proxy closes a connection whose handshake never completes, after handshakeTimeout", async () => {
  const stuck = defineTransport({
    name: "stuck",
    parseConfig: () => undefined,
    pair: () => ({
      encode: new TransformStream(),
      decode: new TransformStream(),
      ready: new Promise<void>(() => {}), // never settles
    }),
  });
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let targetConnections = 0;
  const accepting = (async () => {
    for await (const conn of target) {
      targetConnections++;
      conn.close();
    }
  })();
  const errors: unknown[] = [];
  const manager = await proxy(stuck, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: target.addr.port },
    handshakeTimeout: 200,
    onError: (error) => errors.push(error),
  });
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: manager.addr.port });
  strictEqual(await tcp.read(new Uint8Array(8)), null); // closed by the server
  tcp.close();
  await manager.close();
  target.close();
  await accepting;
  strictEqual(targetConnections, 0);
  strictEqual(errors.length, 1);
  match(String(errors[0]), /Transport 'stuck' handshake did not complete within 200 ms/);
});

Deno.test("TransportConn sets no handshake deadline of its own for a pair that holds probes (Shadowsocks), 120 s for others, and a given one for both", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const delays: number[] = [];
  const realSetTimeout = globalThis.setTimeout;
  try {
    // The deadlines each TransportConn arms, as timers of 100 ms or more.
    const deadlines = async (
      pair: Parameters<typeof newConn>[1],
      options: { handshakeTimeout?: number } = {},
    ) => {
      const [net] = await Promise.all([
        Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
        listener.accept().then((c) => conns.push(c)),
      ]);
      conns.push(net);
      delays.length = 0;
      const conn = newConn(net, pair, options);
      conn.ready.catch(() => {});
      const armed = delays.filter((ms) => ms >= 100);
      conn.close();
      return armed;
    };
    globalThis.setTimeout = ((f: () => void, ms?: number) => {
      delays.push(ms ?? 0);
      return realSetTimeout(f, ms);
    }) as typeof setTimeout;
    const never = () => new Promise<void>(() => {});
    const plainPair = () => ({
      encode: new TransformStream<Uint8Array, Uint8Array>(),
      decode: new TransformStream<Uint8Array, Uint8Array>(),
      ready: never(),
    });
    // Not a fresh literal: the property is checked at run time, not by type.
    const held = () => ({ ...plainPair(), holdsProbes: true });
    deepStrictEqual(await deadlines(plainPair()), [120_000]);
    deepStrictEqual(await deadlines(held()), []);
    deepStrictEqual(await deadlines(held(), { handshakeTimeout: 500 }), [500]);
  } finally {
    globalThis.setTimeout = realSetTimeout;
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // Closed by its TransportConn.
      }
    }
    listener.close();
  }
});

function newConn(
  net: Deno.Conn,
  pair: ConstructorParameters<typeof TransportConn>[1],
  options: ConstructorParameters<typeof TransportConn>[2],
): TransportConn {
  return new TransportConn(net, pair, options);
}

Deno.test("TransportListener, Connector and ServerManager refuse a listener, side, name, dialer, address or callback of the wrong type when made, with an error naming it, as listen, createConnector and proxy do", async () => {
  // Before, each took them silently: a bad side or dialer failed at the
  // first connection with JavaScript's own error ('this.#side.pair is not a
  // function'), a bad name went into every message, a ServerManager's stats
  // or close of another type failed when called.
  const server = await plain.server({});
  const client = await plain.client({});
  using tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  type Listener = ConstructorParameters<typeof TransportListener>[0];
  type Side = ConstructorParameters<typeof TransportListener>[1];
  const listenerCases: [() => unknown, RegExp][] = [
    [
      () => new TransportListener(null as unknown as Listener, server, "plain"),
      /^TypeError: Cannot make a transport listener: listener must be a Deno\.Listener \(accept, close, addr\), got null$/,
    ],
    [
      () => new TransportListener(tcp, {} as unknown as Side, "plain"),
      /^TypeError: Cannot make a transport listener: side must be a ServerTransport \(from transport\.server\(\)\), got an object without pair\(\)$/,
    ],
    [
      () => new TransportListener(tcp, server, "no good"),
      /^TypeError: Cannot make a transport listener: invalid transport name "no good": must match/,
    ],
    [
      () => new TransportListener(tcp, server, "plain", {}, { limits: { maxConnections: 0 } }),
      /^RangeError: Cannot make a transport listener: invalid maxConnections 0/,
    ],
  ];
  type ClientSide = ConstructorParameters<typeof Connector>[1];
  type Dialer = ConstructorParameters<typeof Connector>[2];
  const connectorCases: [() => unknown, RegExp][] = [
    [
      () => new Connector("plain", null as unknown as ClientSide, tcpDialer),
      /^TypeError: Cannot make a connector: side must be a ClientTransport \(from transport\.client\(\)\), got null$/,
    ],
    [
      () => new Connector("plain", client, "tcp" as unknown as Dialer),
      /^TypeError: Cannot make a connector: dialer must be a function, got string$/,
    ],
    [
      () => new Connector(5 as unknown as string, client, tcpDialer),
      /^TypeError: Cannot make a connector: invalid transport name 5: must match/,
    ],
    [
      () => new Connector("plain", client, tcpDialer, { handshakeTimeout: -1 }),
      /^RangeError: Cannot make a connector: invalid handshakeTimeout -1/,
    ],
    [
      () => new Connector("plain", client, tcpDialer, {}, [], { onHelperLog: 5 as never }),
      /^TypeError: Cannot make a connector: onHelperLog must be a function, got number$/,
    ],
  ];
  const stats = () => ({}) as never;
  const close = () => Promise.resolve();
  const addr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
  const managerCases: [() => unknown, RegExp][] = [
    [
      () => new ServerManager(null as unknown as Deno.NetAddr, {}, stats, close),
      /^TypeError: Invalid addr of a server manager: expected an object with hostname and port, got null$/,
    ],
    [
      () => new ServerManager(addr, "x" as never, stats, close),
      /^TypeError: Cannot make a server manager: clientOptions must be an object, got string$/,
    ],
    [
      () => new ServerManager(addr, {}, undefined as never, close),
      /^TypeError: Cannot make a server manager: stats must be a function, got undefined$/,
    ],
    [
      () => new ServerManager(addr, {}, stats, null as never),
      /^TypeError: Cannot make a server manager: close must be a function, got null$/,
    ],
    [
      () => new ServerManager(addr, {}, stats, close, 5 as never),
      /^TypeError: Cannot make a server manager: drain must be a function, got number$/,
    ],
    [
      () => new ServerManager(addr, {}, stats, close, close, { hostname: 5 as never, port: 1 }),
      /^TypeError: Invalid bridgeAddress: hostname must be a string, got number$/,
    ],
    [
      () => new ServerManager(addr, {}, stats, close, close, { hostname: "a", port: 0 }),
      /^RangeError: Invalid port 0 for bridgeAddress: must be an integer in 1-65535$/,
    ],
  ];
  const unthrown: string[] = [];
  for (const [make, expected] of [...listenerCases, ...connectorCases, ...managerCases]) {
    try {
      const made = make();
      unthrown.push(`${expected}: made`);
      if (made instanceof TransportListener || made instanceof Connector) {
        await Promise.resolve(made.close()).catch(() => {});
      }
    } catch (error) {
      if (!expected.test(`${error}`)) unthrown.push(`${expected}: ${error}`);
    }
  }
  deepStrictEqual(unthrown, []);
  server.close?.();
  client.close?.();
});

Deno.test("Connector.dial refuses a hostname that is neither an IP address nor a host name with a TypeError naming it, and dials an internationalized one by its punycode form", async () => {
  const connector = await createConnector(plain, {});
  // Deno.connect threw a URIError for these ('invalid host ... invalid char
  // found in FQDN', 'empty label found in FQDN'), not the TypeError every
  // other bad dial argument gives.
  for (
    const hostname of ["a b", "a/b", "x@y", "a\tb", "a..b", ".", "a:b", "a%b", "x".repeat(300)]
  ) {
    await rejects(
      connector.dial({ hostname, port: 9 }),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message.startsWith(`Cannot dial: invalid hostname ${JSON.stringify(hostname)}:`),
      JSON.stringify(hostname),
    );
  }
  // Names Deno looks up (or IP literals) go on to the dial: a refused
  // connection or a failed lookup, never a TypeError.
  for (const hostname of ["bücher.invalid", "a_b.invalid", "localhost.", "::1", "[::1]"]) {
    await rejects(
      connector.dial({ hostname, port: 9 }),
      (e: unknown) => !(e instanceof TypeError) && !(e instanceof URIError),
      JSON.stringify(hostname),
    );
  }
});

Deno.test("listen refuses a hostname that is neither an IP address nor a host name (a port in it: 'localhost:80') with a TypeError naming it, as a dial's is checked", async () => {
  // Deno's URIError ('invalid char found in FQDN') came after the name put
  // in brackets, as if it were IPv6: 'Cannot listen on [localhost:80]:0'.
  for (const hostname of ["localhost:80", "127.0.0.1:80", "a b", "a..b", ""]) {
    await rejects(
      listen(plain, {}, { hostname, port: 0 }),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot listen on ${
            JSON.stringify(hostname)
          }: invalid hostname: neither an IP address nor a host name`,
      JSON.stringify(hostname),
    );
  }
  // IP literals and names still listen.
  for (const hostname of ["127.0.0.1", "::1", "localhost"]) {
    const listener = await listen(plain, {}, { hostname, port: 0 });
    listener.close();
  }
});

Deno.test("listen and the UDP pools refuse a limit that is not a number with a TypeError naming its type (a RangeError said 'invalid maxConnections 5' for \"5\")", async () => {
  await rejects(
    listen(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      limits: { maxConnections: "5" as unknown as number },
    }),
    (e: Error) =>
      e instanceof TypeError &&
      e.message === "Cannot listen: maxConnections must be a number, got string",
  );
  for (const name of ["maxFlows", "queueDatagrams", "queueBytes", "sendBufferBytes"]) {
    await rejects(
      serveUdpClient({
        transport: plain,
        config: {},
        server: { port: 9 },
        framing: "length",
        [name]: "5",
      }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `Cannot serve UDP client: ${name} must be a number, got string`,
    );
  }
});

Deno.test("A pair whose ready, destination or clientAddress is not a promise is refused with a TypeError naming it, on both sides", async () => {
  const pairs: unknown[] = [];
  const { made, client, server } = await queuedTransport(pairs);
  const streams = () => ({ encode: new TransformStream(), decode: new TransformStream() });
  const cases: [string, unknown][] = [
    ["ready", true],
    ["destination", { hostname: "127.0.0.1", port: 1 }],
    ["clientAddress", 5],
    ["ready", null],
  ];
  for (const [i, [key, value]] of cases.entries()) {
    pairs.push({ ...streams(), [key]: value });
    const side = i % 2 === 0 ? () => client.pair({}) : () => server.pair();
    const got = value === null ? "null" : typeof value;
    throws(side, (error: unknown) =>
      error instanceof TypeError &&
      error.message ===
        `Cannot make a 'made' connection: pair()'s '${key}' must be a promise, got ${got}`);
  }
  // A dial fails before it connects, with that message, not 'ready.then is not a function'
  // from the first write.
  pairs.push({ ...streams(), ready: true });
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(made, {});
  await rejects(
    connector.dial({ port: listener.addr.port }),
    /pair\(\)'s 'ready' must be a promise, got boolean/,
  );
  // A pair without them, or with promises, is taken.
  pairs.push({ ...streams(), ready: Promise.resolve(), clientAddress: undefined });
  ok(client.pair({}).ready instanceof Promise);
});

Deno.test("A server pair() that throws reaches onAcceptError naming the transport, and the managed proxy logs it as a warning, not an info 'accept failed'", async () => {
  const thrower = defineTransport({
    name: "thrower",
    parseConfig: () => undefined,
    pair: (_config, role) => {
      if (role === "server") throw new Error("no state for this connection");
      return { encode: new TransformStream(), decode: new TransformStream() };
    },
  });
  const errors: Error[] = [];
  await using listener = await listen(thrower, {}, {
    hostname: "127.0.0.1",
    port: 0,
    onAcceptError: (error) => errors.push(error),
  });
  const accepting = listener.accept().catch(() => {});
  const socket = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  // The server closes it, and accepts on.
  strictEqual(await socket.read(new Uint8Array(1)), null);
  socket.close();
  strictEqual(errors.length, 1);
  strictEqual(
    errors[0]!.message,
    "Cannot make a 'thrower' connection: pair() threw: no state for this connection",
  );
  strictEqual((errors[0]!.cause as Error).message, "no state for this connection");
  const lines: [string, string][] = [];
  acceptErrorLogger((severity, message) => lines.push([severity, message]), "thrower")(
    errors[0]!,
    1,
  );
  deepStrictEqual(lines, [[
    "warning",
    "thrower: Cannot make a 'thrower' connection: pair() threw: no state for this connection",
  ]]);
  listener.close();
  await accepting;
});

Deno.test("defineTransport refuses clientOptions() that do not return an object of strings when the server side is configured, not at the client", async () => {
  const returning = (value: unknown) =>
    defineTransport({
      name: "offering",
      parseConfig: () => 5,
      clientOptions: () => value as never,
      pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
    });
  const cases: [unknown, string][] = [
    [{ k: 5 }, "option 'k' as a number, not a string"],
    [undefined, "undefined, not an object of strings"],
    [null, "null, not an object of strings"],
    ["k=5", "string, not an object of strings"],
  ];
  for (const [value, tail] of cases) {
    await rejects(
      async () => await returning(value).server({}),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message === `Cannot configure transport 'offering': clientOptions() returned ${tail}`,
    );
    await rejects(
      listen(returning(value), {}, { hostname: "127.0.0.1", port: 0 }),
      /clientOptions\(\) returned/,
    );
  }
  // Strings are taken as they are.
  deepStrictEqual((await returning({ k: "5" }).server({})).clientOptions, { k: "5" });
});

Deno.test("defineTransport checks what generateConfig() returns: { client, server }, each an object of strings, naming what is not", async () => {
  // Before: { client: { k: 5 } } was handed on as it was (failing only when
  // a side was configured with it), undefined was returned as the
  // configuration, and a layered stack failed with JavaScript's 'Cannot
  // convert undefined or null to object'.
  const generating = (generateConfig: () => unknown) =>
    defineTransport({
      name: "gen_t",
      parseConfig: () => undefined,
      pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
      generateConfig: generateConfig as () => GeneratedConfig,
    });
  const what = "Cannot generate a configuration for transport 'gen_t': generateConfig() returned";
  const cases: [unknown, string][] = [
    [undefined, `${what} undefined, not { client, server }`],
    [{ client: {} }, `${what} server undefined, not an object of strings`],
    [{ client: { k: 5 }, server: {} }, `${what} client option 'k' as a number, not a string`],
  ];
  for (const [generated, message] of cases) {
    const refused = (e: unknown) => e instanceof TypeError && e.message === message;
    throws(() => generating(() => generated).generateConfig!(), refused, message);
    await rejects(
      async () => await generating(() => Promise.resolve(generated)).generateConfig!(),
      refused,
    );
    await rejects(
      async () =>
        await layerTransports("stack", [generating(() => generated), obfs4]).generateConfig!(),
      refused,
    );
  }
  deepStrictEqual(
    generating(() => ({ client: { k: "1" }, server: { k: "1" } })).generateConfig!(),
    { client: { k: "1" }, server: { k: "1" } },
  );
});

Deno.test("A server pair's destination that is not a host and port is refused by the runtime with an error naming the transport, not looked up or read", async () => {
  const reported: unknown[] = [];
  const carrier = defineTransport({
    name: "carrier",
    free: true,
    parseConfig: () => undefined,
    pair: (_config, role) => ({
      encode: new TransformStream(),
      decode: new TransformStream(),
      ...(role === "server" ? { destination: Promise.resolve(reported.shift() as HostPort) } : {}),
    }),
  });
  await using listener = await listen(carrier, {}, { hostname: "127.0.0.1", port: 0 });
  const cases: [unknown, RegExp][] = [
    [
      { hostname: "a b", port: 80 },
      /^TypeError: Transport 'carrier' reported a malformed destination: Cannot relay: the destination's hostname \(3 bytes\) is neither/,
    ],
    [
      { hostname: "127.0.0.1", port: 99999 },
      /^RangeError: Transport 'carrier' reported a malformed destination: Invalid port 99999 for the relay destination/,
    ],
    [
      // Port 0 went on to the dial, which failed with 'Cannot connect the
      // destination: RangeError' (ss-local passes a SOCKS request's port 0 on).
      { hostname: "127.0.0.1", port: 0 },
      /^RangeError: Transport 'carrier' reported a malformed destination: Invalid port 0 for the relay destination: must be an integer in 1-65535$/,
    ],
    [
      null,
      /^TypeError: Transport 'carrier' reported a malformed destination: Cannot relay: destination must be an object with hostname and port, got null$/,
    ],
  ];
  for (const [value, expected] of cases) {
    reported.push(value);
    using socket = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    await using conn = await listener.accept();
    const error = await conn.destination!.then(() => undefined, (e: unknown) => e);
    ok(error instanceof Error, `${value}: resolved`);
    match(`${error.name}: ${error.message}`, expected);
    socket.close();
  }
  // A good one comes through unchanged.
  reported.push({ hostname: "example.com", port: 443 });
  using socket = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await using conn = await listener.accept();
  deepStrictEqual(await conn.destination, { hostname: "example.com", port: 443 });
  socket.close();
});
