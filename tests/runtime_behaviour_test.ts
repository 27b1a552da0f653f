// Copyright the ptkit authors. MIT license.
// Acceptance 2-5 of the core: half-close, backpressure, errors that end one
// connection only, exact stats.

import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert";
import { createConnector } from "../client.ts";
import { listen, proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { defineTransport } from "../transports/mod.ts";
import { CLOSE_GRACE, ConnectionLoop, ErrorDigest } from "../net/_accept_loop.ts";
import type { RelayEnd } from "../net/relay.ts";
import { rot } from "./rot_transport.ts";
import {
  echoServer,
  guarded,
  hashOf,
  hashReadable,
  pseudoRandomChunks,
  tcpServer,
  writeAll,
} from "./_util.ts";

Deno.test("TransportConn propagates half-close: the reply arrives after the client closes its write side", async () => {
  const target = tcpServer(async (conn) => {
    // Read to end of stream, then answer with what was received, reversed.
    const got: number[] = [];
    const buffer = new Uint8Array(1024);
    let n: number | null;
    while ((n = await conn.read(buffer)) !== null) got.push(...buffer.subarray(0, n));
    const reply = new Uint8Array(got.reverse());
    for (let i = 0; i < 100; i++) await conn.write(reply);
    await conn.closeWrite();
  });
  await using manager = await proxy(rot, { n: "5" }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: target.port },
  });
  const connector = await createConnector(rot, manager.clientOptions);
  await using conn = await connector.dial({ port: manager.addr.port });
  const writer = conn.writable.getWriter();
  await writer.write(new TextEncoder().encode("abc"));
  writer.releaseLock();
  await conn.closeWrite();
  const chunks: Uint8Array[] = [];
  for await (const chunk of conn.readable) chunks.push(chunk);
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  strictEqual(text, "cba".repeat(100));
  await manager.close();
  await target.close();
});

Deno.test("TransportConn half-close over listen: server sees end of stream, client gets the full reply", async () => {
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const server = (async () => {
    await using conn = await listener.accept();
    const received = await hashReadable(conn.readable); // ends only on the client's FIN
    await writeAll(conn.writable, pseudoRandomChunks(4 * 1024 * 1024, 9));
    return received.bytes;
  })();
  const connector = await createConnector(plain, {});
  await using conn = await connector.dial({ port: listener.addr.port });
  await writeAll(conn.writable, pseudoRandomChunks(1000, 8, 100));
  const reply = await hashReadable(conn.readable);
  strictEqual(await server, 1000);
  strictEqual(reply.digest(), hashOf(pseudoRandomChunks(4 * 1024 * 1024, 9)));
});

Deno.test("TransportConn honours backpressure: a stalled reader does not grow memory", async () => {
  // Measured in a fresh process, so garbage from other tests does not count.
  const probe = new URL("./backpressure_probe.ts", import.meta.url);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", probe.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(code, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(new TextDecoder().decode(stdout));
  strictEqual(result.received, 256 * 1024 * 1024);
  strictEqual(result.digestOk, true);
  ok(
    result.growthMiB < 64,
    `resident memory grew by ${result.growthMiB.toFixed(1)} MiB (limit 64)`,
  );
});

Deno.test("proxy reports a refused target by name and closes only that connection", async () => {
  // A port that refuses: bind, note the port, close. On 127.0.0.2: the
  // proxy below listens on 127.0.0.1 on a port of the kernel's choice, which
  // could be this one just closed (then it would be its own target).
  const closed = Deno.listen({ hostname: "127.0.0.2", port: 0 });
  const refusedPort = closed.addr.port;
  closed.close();
  const errors: unknown[] = [];
  await using manager = await proxy(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.2", port: refusedPort },
    onError: (error) => errors.push(error),
  });
  const connector = await createConnector(plain, {});
  await using conn = await connector.dial({ port: manager.addr.port });
  const chunks = [];
  for await (const chunk of conn.readable) chunks.push(chunk);
  strictEqual(chunks.length, 0);
  strictEqual(errors.length, 1);
  ok(errors[0] instanceof Deno.errors.ConnectionRefused, String(errors[0]));
  match(String(errors[0]), /refused/i);
  strictEqual(manager.stats().connectionsFailed, 1);
});

Deno.test("TransportConn errors name the cause: peer reset and a throwing decoder; 20 others complete", async () => {
  const echo = echoServer();
  await using manager = await proxy(rot, { n: "9" }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  const connector = await createConnector(rot, manager.clientOptions);

  // 20 well-behaved connections, 1 MiB each way, running meanwhile.
  const good = Array.from({ length: 20 }, async (_, i) => {
    await using conn = await connector.dial({ port: manager.addr.port });
    const [echoed] = await Promise.all([
      hashReadable(conn.readable),
      writeAll(conn.writable, pseudoRandomChunks(1024 * 1024, 100 + i, 4096)),
    ]);
    strictEqual(echoed.digest(), hashOf(pseudoRandomChunks(1024 * 1024, 100 + i, 4096)));
  });

  // A peer that resets: it closes with unread data, so the kernel sends RST.
  const resetter = tcpServer(async (conn) => {
    await new Promise((resolve) => setTimeout(resolve, 100));
    conn.close();
  });
  const resetConnector = await createConnector(plain, {});
  const resetConn = await resetConnector.dial({ port: resetter.port });
  const resetWriter = resetConn.writable.getWriter();
  const resetError = await (async () => {
    try {
      for (let i = 0; i < 1000; i++) await resetWriter.write(new Uint8Array(65536));
      for await (const _ of resetConn.readable) { /* drain */ }
    } catch (error) {
      return error;
    }
  })();
  ok(
    resetError instanceof Deno.errors.ConnectionReset ||
      resetError instanceof Deno.errors.BrokenPipe,
    `expected a reset, got ${resetError}`,
  );
  match(String(resetError), /reset|broken pipe/i);
  resetConn.close();
  await resetter.close();

  // A transport whose decoder throws on bad input.
  const poisoned = await createConnector(rot, { n: "9", poison: "0" });
  await using bad = await poisoned.dial({ port: manager.addr.port });
  const badWriter = bad.writable.getWriter();
  await badWriter.write(new Uint8Array([1, 2, 0, 3]));
  await rejects(
    (async () => {
      for await (const _ of bad.readable) { /* read until the poison byte is echoed */ }
    })(),
    (error: unknown) => error instanceof SyntaxError && /poison byte 0x0/.test(error.message),
  );
  await bad.closed;
  ok(bad.error instanceof SyntaxError);

  await Promise.all(good);
  await manager.close();
  await echo.close();
});

Deno.test("A connection whose decoder throws errors its writable at once (writer.closed rejects, a pipe into it ends), as README says, not at the next write", async () => {
  // Before: writer.closed stayed pending until the application wrote
  // again, and a pipeTo from a quiet source into the writable never ended.
  const boom = new RangeError("decoder boom");
  const failing = defineTransport({
    name: "failing",
    parseConfig: () => undefined,
    pair: () => ({
      encode: new TransformStream(),
      decode: new TransformStream({
        transform() {
          throw boom;
        },
      }),
    }),
  });
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  await using connector = await createConnector(failing, {});
  for (const use of ["writer", "pipe"] as const) {
    await using conn = await connector.dial({ port: listener.addr.port });
    await using accepted = await listener.accept();
    const ended = use === "writer"
      ? conn.writable.getWriter().closed
      : new ReadableStream<Uint8Array>().pipeTo(conn.writable); // a source that sends nothing yet
    const outcome = ended.then(() => "resolved", (e: unknown) => e);
    const writer = accepted.writable.getWriter();
    await writer.write(new Uint8Array([1])); // the decoder throws on it
    await conn.closed;
    strictEqual(conn.error, boom);
    strictEqual(await outcome, boom, use);
  }
});

Deno.test("TransportConn.stats and ServerStats count exact bytes", async () => {
  await using listener = await listen(rot, { n: "1" }, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(rot, listener.clientOptions);
  await using conn = await connector.dial({ port: listener.addr.port });
  await using accepted = await listener.accept();
  const server = (async () => {
    const received = await hashReadable(accepted.readable);
    await writeAll(accepted.writable, pseudoRandomChunks(12345, 2, 1000));
    return received.bytes;
  })();
  await writeAll(conn.writable, pseudoRandomChunks(777777, 1, 5000));
  const reply = await hashReadable(conn.readable);
  strictEqual(await server, 777777);
  strictEqual(reply.bytes, 12345);
  const { startTime, ...counts } = conn.stats();
  ok(startTime <= Date.now() && startTime > Date.now() - 60_000);
  deepStrictEqual(counts, {
    appBytesWritten: 777777,
    appBytesRead: 12345,
    wireBytesWritten: 777777,
    wireBytesRead: 12345,
  });
  await accepted.closed;
  const stats = listener.stats();
  strictEqual(stats.connectionsAccepted, 1);
  strictEqual(stats.connectionsOpen, 0);
  strictEqual(stats.appBytesRead, 777777);
  strictEqual(stats.appBytesWritten, 12345);
  strictEqual(stats.wireBytesRead, 777777);
  strictEqual(stats.wireBytesWritten, 12345);
});

Deno.test("ServerManager.close resolves at once when a target function ignores its signal; the connection is closed, and what the function returns later too", async () => {
  const late = Promise.withResolvers<RelayEnd>();
  const called = Promise.withResolvers<AbortSignal>();
  const manager = await proxy(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: (_conn, { signal }) => {
      called.resolve(signal);
      return late.promise;
    },
  });
  const connector = await createConnector(plain, {});
  await using conn = await connector.dial({ port: manager.addr.port });
  await conn.writable.getWriter().write(new Uint8Array([1]));
  const signal = await called.promise;
  const started = Date.now();
  await manager.close();
  ok(Date.now() - started < CLOSE_GRACE, `close() took ${Date.now() - started} ms`);
  ok(signal.aborted);
  // The server closed the connection: the client reads its end.
  const read = await conn.readable.getReader().read().catch(() => ({ done: true }));
  ok(read.done);
  let lateClosed = false;
  late.resolve({
    readable: new ReadableStream(),
    writable: new WritableStream(),
    close: () => lateClosed = true,
  });
  await new Promise((resolve) => setTimeout(resolve, 0));
  ok(lateClosed, "an end returned after close() is closed");
});

Deno.test("ConnectionLoop.close stops waiting for a service that ignores its signal after CLOSE_GRACE, closing its connection; a drain under way resolves too", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = Promise.withResolvers<void>();
  const loop = new ConnectionLoop(listener, {
    serve: () => {
      served.resolve();
      return new Promise<void>(() => {}); // Never settles, whatever happens.
    },
  });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await served.promise;
  strictEqual(loop.connections.size, 1);
  const draining = loop.drain();
  const started = Date.now();
  await Promise.all([loop.close(), draining]);
  const took = Date.now() - started;
  ok(took >= CLOSE_GRACE - 50 && took < CLOSE_GRACE + 1000, `close() took ${took} ms`);
  strictEqual(loop.connections.size, 0);
  // The server side was closed: the client reads its end.
  strictEqual(await client.read(new Uint8Array(1)).catch(() => null), null);
  client.close();
});

Deno.test("A proxy() onError or onAcceptError callback that throws is printed once on the console; the server goes on", async () => {
  // On 127.0.0.2: the proxy below listens on 127.0.0.1 on a port of the
  // kernel's choice, which could be this one just closed (then it would be
  // its own target).
  const closed = Deno.listen({ hostname: "127.0.0.2", port: 0 });
  const refusedPort = closed.addr.port;
  closed.close();
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => printed.push(args);
  try {
    let calls = 0;
    await using manager = await proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.2", port: refusedPort },
      onError: () => {
        calls++;
        throw new Error("application bug");
      },
    });
    const connector = await createConnector(plain, {});
    for (let i = 0; i < 3; i++) {
      await using conn = await connector.dial({ port: manager.addr.port });
      for await (const _ of conn.readable) { /* until the server closes it */ }
    }
    while (calls < 3) await new Promise((resolve) => setTimeout(resolve, 10));
    strictEqual(manager.stats().connectionsFailed, 3);
    strictEqual(printed.length, 1);
    strictEqual(
      printed[0]![0],
      "The proxy() onError callback threw; the server goes on, and later throws are not reported:",
    );
    match(String(printed[0]![1]), /application bug/);

    printed.length = 0;
    const digest = new ErrorDigest(() => {
      throw new Error("log bug");
    }, 3);
    for (let i = 0; i < 3; i++) digest.add("kind", new Error("refused"));
    digest.stop();
    strictEqual(printed.length, 1);
    match(String(printed[0]![0]), /^The onAcceptError callback threw/);
  } finally {
    console.error = consoleError;
  }
});

Deno.test("A client pair whose ready rejects before its network connection is made (at once, or when a failed dial aborts its streams) ends no process: the error reaches the caller", async () => {
  // Before, the rejection had no handler until the TransportConn was made
  // after the connect: Deno ended the process with 'Uncaught (in promise)'.
  const refusedAtOnce = defineTransport({
    name: "refused_at_once",
    parseConfig: () => undefined,
    pair: () => ({
      encode: new TransformStream<Uint8Array, Uint8Array>(),
      decode: new TransformStream<Uint8Array, Uint8Array>(),
      ready: Promise.reject(new RangeError("Handshake refused at once")),
    }),
  });
  // A pair that fails as a whole: aborting its decoder (what a failed dial
  // does) rejects its ready.
  const failsWhole = defineTransport({
    name: "fails_whole",
    parseConfig: () => undefined,
    pair: () => {
      const { promise: ready, reject } = Promise.withResolvers<void>();
      const decode = new TransformStream<Uint8Array, Uint8Array>();
      const writable = new WritableStream<Uint8Array>({
        write: (chunk) => {
          const writer = decode.writable.getWriter();
          return writer.write(chunk).finally(() => writer.releaseLock());
        },
        abort: (reason) => {
          reject(reason);
          return decode.writable.abort(reason);
        },
      });
      return {
        encode: new TransformStream<Uint8Array, Uint8Array>(),
        decode: { readable: decode.readable, writable },
        ready,
      };
    },
  });
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const conn = await (await createConnector(refusedAtOnce, {})).dial({ port: listener.addr.port });
  await rejects(conn.ready, /Handshake refused at once/);
  conn.close();
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  await rejects(
    (await createConnector(failsWhole, {})).dial({ port }),
    Deno.errors.ConnectionRefused,
  );
  // An unhandled rejection is reported once the event loop turns.
  await new Promise((resolve) => setTimeout(resolve, 50));
});

Deno.test("A custom transport whose ready waits for the peer's first byte fails its handshake at once when the peer closes first, on both sides, not at the 120 s deadline", async () => {
  // Before, ready stayed pending until handshakeTimeout (120 s by default):
  // the decoder saw the end of stream but nothing settled ready.
  const firstByte = defineTransport({
    name: "first_byte",
    parseConfig: () => undefined,
    pair: () => {
      let heard!: () => void;
      const ready = new Promise<void>((resolve) => heard = resolve);
      const decode = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          heard();
          controller.enqueue(chunk);
        },
      });
      return { encode: new TransformStream(), decode, ready };
    },
  });
  await using listener = await listen(firstByte, {}, { hostname: "127.0.0.1", port: 0 });
  // Server side: a peer that connects and closes at once.
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  tcp.close();
  const accepted = await listener.accept();
  const serverSide = await guarded(
    accepted.ready.then(() => "resolved", (error: Error) => error.message),
    "the server side's ready",
  );
  match(
    serverSide,
    /Transport 'first_byte' handshake failed: the peer closed the connection before the handshake finished/,
  );
  // Client side: a server that accepts and closes at once.
  const silent = tcpServer((conn) => Promise.resolve(conn.close()));
  const connector = await createConnector(firstByte, {});
  const dialed = await connector.dial({ port: silent.port });
  const clientSide = await guarded(
    dialed.ready.then(() => "resolved", (error: Error) => error.message),
    "the client side's ready",
  );
  match(
    clientSide,
    /Transport 'first_byte' handshake failed: the peer closed the connection before the handshake finished/,
  );
  await dialed.closed;
  await silent.close();
});
