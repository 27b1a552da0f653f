// Copyright the ptkit authors. MIT license.
// The library as a Deno developer uses it in their own tests: with Deno's
// op and resource sanitizers on, a listener and a connector closed the
// documented way leave nothing behind (no refill timer, no socket); bad
// options fail at once with the documented class; a TransportConn's
// readable cancel and closeWrite behave as a Deno.Conn's.

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { createConnector } from "../client.ts";
import { listen, proxy } from "../server.ts";
import {
  defineTransport,
  HandshakeError,
  layerTransports,
  plain,
  type Transport,
} from "../transports/mod.ts";
import { DestinationPolicy } from "../net/mod.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import {
  formatPtLine,
  parseManagedConfig,
  parsePtLine,
  runClient,
  runManagedProxy,
  runServer,
} from "../ipc/mod.ts";
import { guarded, loopbackEnds } from "./_util.ts";
import { runtimeCrypto, type TransportConn } from "../net/mod.ts";
import { MetricsRegistry } from "../net/metrics.ts";

// What the process keeps for its life (libsodium, libcrypto and libc
// through FFI: crypto, metrics, a listener's backlog) loads before the
// sanitized tests, as the README advises.
await runtimeCrypto();
new MetricsRegistry();
await (await listen(plain, {}, { hostname: "127.0.0.1", port: 0 })).close();

const sanitized = { sanitizeOps: true, sanitizeResources: true } as const;
const cases: [Transport, Record<string, string>][] = [
  [plain, {}],
  [obfs4, {}],
  [shadowsocks, { method: "chacha20-ietf-poly1305", password: "correct-horse-battery" }],
];

for (const [transport, config] of cases) {
  Deno.test({
    name: `${transport.name}: listen, dial, echo and close leave no timer or resource behind`,
    ...sanitized,
    fn: async () => {
      {
        await using ends = await loopbackEnds(transport, config);
        const { listener, connector } = ends;
        for (let i = 0; i < 2; i++) {
          await using conn = await connector.dial({
            port: listener.addr.port,
            ...(transport.free ? { destination: { hostname: "127.0.0.1", port: 9 } } : {}),
          });
          const writer = conn.writable.getWriter();
          await writer.write(new Uint8Array([1, 2, 3]));
          await using accepted = await listener.accept();
          const { value } = await accepted.readable.getReader().read();
          deepStrictEqual(value, new Uint8Array([1, 2, 3]));
          writer.releaseLock();
        }
      }
    },
  });
}

// A pair whose sides fail together, as obfs4's does: aborting one errors the other.
const entangled = defineTransport({
  name: "entangled",
  parseConfig: () => undefined,
  pair: () => {
    let encoder: TransformStreamDefaultController<Uint8Array> | undefined;
    let decoder: TransformStreamDefaultController<Uint8Array> | undefined;
    return {
      encode: new TransformStream({
        start: (c) => void (encoder = c),
        cancel: (reason) => decoder?.error(reason),
      }),
      decode: new TransformStream({
        start: (c) => void (decoder = c),
        cancel: (reason) => encoder?.error(reason),
      }),
    };
  },
});

for (
  const [transport, config] of [...cases, [entangled, {}] as [Transport, Record<string, string>]]
) {
  Deno.test({
    name:
      `${transport.name}: a dial whose signal is aborted (before or while it connects) rejects with the signal's reason, leaving nothing open`,
    ...sanitized,
    fn: async () => {
      await using ends = await loopbackEnds(transport, config);
      const { listener, connector } = ends;
      const destination = transport.free ? { destination: { hostname: "127.0.0.1", port: 9 } } : {};
      // Before, obfs4's never settled: the pair's two aborts, begun in one
      // tick, left the second pending when the first errored its side.
      const reason = new Error("the user gave up");
      await guarded(
        rejects(
          connector.dial({
            port: listener.addr.port,
            signal: AbortSignal.abort(reason),
            ...destination,
          }),
          (error) => error === reason,
        ),
        "a dial aborted before it began",
      );
      const during = new AbortController();
      const dialing = connector.dial({
        port: listener.addr.port,
        signal: during.signal,
        ...destination,
      });
      during.abort(reason);
      await guarded(
        dialing.then((conn) => conn.close(), (error) => strictEqual(error, reason)),
        "a dial aborted while it connected",
      );
    },
  });
}

Deno.test("createConnector and listen refuse a handshakeTimeout that is not a positive number a timer can hold (30 days would fire at once); a closed connector dials nothing", async () => {
  for (const bad of [-5, 0, NaN, Infinity, 30 * 86_400_000]) {
    await rejects(
      createConnector(plain, {}, { handshakeTimeout: bad }),
      (e) =>
        e instanceof RangeError &&
        /Cannot create a connector: invalid handshakeTimeout/.test(e.message),
    );
    await rejects(
      listen(plain, {}, { hostname: "127.0.0.1", port: 0, handshakeTimeout: bad }),
      (e) => e instanceof RangeError && /Cannot listen: invalid handshakeTimeout/.test(e.message),
    );
  }
  using server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(plain, {});
  await connector.close();
  await rejects(
    connector.dial({ port: server.addr.port }),
    (e) => e instanceof Deno.errors.BadResource && /connector is closed/.test(e.message),
  );
});

/** A plain connection over loopback: both ends, closed with the listener. */
async function plainConnection() {
  const listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(plain, {});
  const conn = await connector.dial({ port: listener.addr.port });
  const accepted = await listener.accept();
  return {
    conn,
    accepted,
    async [Symbol.asyncDispose]() {
      conn.close();
      accepted.close();
      await listener.close();
    },
  };
}

Deno.test({
  name:
    "TransportConn: cancelling the readable stops reading; writing goes on and the peer's later bytes fail nothing",
  ...sanitized,
  fn: async () => {
    await using ends = await plainConnection();
    const { conn, accepted } = ends;
    await conn.readable.cancel();
    const back = accepted.writable.getWriter();
    await back.write(new Uint8Array([1, 2, 3]));
    back.releaseLock();
    await new Promise((resolve) => setTimeout(resolve, 50));
    strictEqual(conn.error, undefined);
    const writer = conn.writable.getWriter();
    await writer.write(new Uint8Array([4]));
    writer.releaseLock();
    deepStrictEqual((await accepted.readable.getReader().read()).value, new Uint8Array([4]));
  },
});

Deno.test({
  name: "TransportConn: closeWrite works while the application holds a writer; later writes fail",
  ...sanitized,
  fn: async () => {
    await using ends = await plainConnection();
    const { conn, accepted } = ends;
    const writer = conn.writable.getWriter();
    await writer.write(new Uint8Array([7]));
    await conn.closeWrite();
    const reader = accepted.readable.getReader();
    deepStrictEqual((await reader.read()).value, new Uint8Array([7]));
    deepStrictEqual(await reader.read(), { value: undefined, done: true });
    await rejects(writer.write(new Uint8Array([8])), TypeError);
    // Reading goes on: the other side still writes.
    const back = accepted.writable.getWriter();
    await back.write(new Uint8Array([9]));
    deepStrictEqual((await conn.readable.getReader().read()).value, new Uint8Array([9]));
    back.releaseLock();
  },
});

Deno.test({
  name:
    "TransportConn: closeWrite called twice (with a writer held and without) resolves every time, as Deno.Conn's does",
  ...sanitized,
  fn: async () => {
    await using ends = await plainConnection();
    const { conn, accepted } = ends;
    // Before, the second call rejected with "The stream is closed or errored".
    await Promise.all([conn.closeWrite(), conn.closeWrite()]);
    await conn.closeWrite();
    const held = accepted.writable.getWriter();
    await accepted.closeWrite();
    await accepted.closeWrite();
    held.releaseLock();
    deepStrictEqual(await accepted.readable.getReader().read(), { value: undefined, done: true });
    deepStrictEqual(await conn.readable.getReader().read(), { value: undefined, done: true });
  },
});

Deno.test({
  name:
    "TransportConn: writes made before closeWrite (not awaited, queued behind each other) all go out before the shut",
  ...sanitized,
  fn: async () => {
    await using ends = await plainConnection();
    const { conn, accepted } = ends;
    const writer = conn.writable.getWriter();
    const writes = [1, 2, 3, 4, 5].map((n) => writer.write(new Uint8Array(n * 1000).fill(n)));
    await conn.closeWrite();
    await Promise.all(writes);
    let received = 0;
    for await (const chunk of accepted.readable) received += chunk.length;
    strictEqual(received, 15_000);
    strictEqual(conn.stats().appBytesWritten, 15_000);
  },
});

Deno.test({
  name:
    "TransportConn and TransportListener take `using`, as Deno.Conn and Deno.Listener do: leaving the block closes them",
  ...sanitized,
  fn: async () => {
    const listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
    const connector = await createConnector(plain, {});
    let kept: { conn: TransportConn; accepted: TransportConn } | undefined;
    {
      // A type error before: no [Symbol.dispose].
      using conn = await connector.dial({ port: listener.addr.port });
      using accepted = await listener.accept();
      kept = { conn, accepted };
    }
    await guarded(kept.conn.closed, "the dialed connection to close");
    await guarded(kept.accepted.closed, "the accepted connection to close");
    {
      using _listener = listener;
    }
    await rejects(listener.accept(), Deno.errors.BadResource);
  },
});

Deno.test({
  name:
    "TransportListener: accept() called again while one waits (two accept loops) queues behind it: each gets its own connection, and no accept error is reported",
  ...sanitized,
  fn: async () => {
    // Before, the second call met Deno's 'Busy: Another accept task is
    // ongoing', reported to onAcceptError (and counted), then retried at once
    // a hundred times and every 100 ms after.
    const errors: string[] = [];
    await using listener = await listen(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      onAcceptError: (error) => errors.push(`${error.name}: ${error.message}`),
    });
    const accepting = [listener.accept(), listener.accept()] as const;
    await new Promise((resolve) => setTimeout(resolve, 50));
    const connector = await createConnector(plain, {});
    await using first = await connector.dial({ port: listener.addr.port });
    await using second = await connector.dial({ port: listener.addr.port });
    const [a, b] = await guarded(Promise.all(accepting), "both accepts");
    ok(a !== b);
    a.close();
    b.close();
    deepStrictEqual(errors, []);
    strictEqual(listener.stats().connectionsAccepted, 2);
    void first;
    void second;
  },
});

Deno.test("A transport whose name is not a C identifier is refused by listen, createConnector and runManagedProxy", async () => {
  const bad = { ...plain, name: "my-pt" } as Transport;
  await rejects(
    listen(bad, {}, { hostname: "127.0.0.1", port: 0 }),
    (e) =>
      e instanceof TypeError && /Cannot listen: invalid transport name "my-pt"/.test(e.message),
  );
  await rejects(createConnector(bad, {}), TypeError);
  await rejects(
    runManagedProxy({
      args: ["-client", "-transports", "my-pt"],
      registry: new Map([["my-pt", bad]]),
      process: false,
      stdout: () => {},
    }),
    TypeError,
  );
  // Offered under another name (an alias): fine.
  strictEqual(
    await runManagedProxy({
      args: ["-ptversion", "3", "-client", "-transports", "alias"],
      registry: new Map([["alias", plain]]),
      process: false,
      stdout: () => {},
    }),
    78,
  );
});

Deno.test('runManagedProxy refuses options of the wrong type at once with a TypeError naming them: process "no" would watch the application\'s own signals and stdin', async () => {
  // Before: null failed with "Cannot read properties of null", getEnv: "x"
  // with "readEnv is not a function", stdout: "x" with "this[#stdout] is not
  // a function", and process: "no", signal: "x" or stdin: "x" were taken
  // (process "no" as true: SIGTERM, SIGINT and stdin handlers installed in
  // the embedding application).
  const base = { args: ["-ptversion", "3", "-client", "-transports", "plain"], stdout: () => {} };
  const cases: [Record<string, unknown> | null, string][] = [
    [null, "options must be an object, got null"],
    [{ ...base, getEnv: "x" }, "getEnv must be a function, got string"],
    [{ ...base, stdout: "x" }, "stdout must be a function, got string"],
    [{ ...base, stderr: 5 }, "stderr must be a function, got number"],
    [{ ...base, process: "no" }, "process must be a boolean, got string"],
    [{ ...base, process: false, signal: "x" }, "signal must be an AbortSignal, got string"],
    [{ ...base, process: false, stdin: "x" }, "stdin must be a ReadableStream, got string"],
    [{ ...base, process: false, command: 5 }, "command must be a string, got number"],
    [{ ...base, process: false, registry: [] }, "registry must be a Map of transports, got object"],
  ];
  for (const [options, message] of cases) {
    await rejects(
      runManagedProxy(options as unknown as Parameters<typeof runManagedProxy>[0]),
      (e: unknown) =>
        e instanceof TypeError && e.message === `Cannot run the managed proxy: ${message}`,
      message,
    );
  }
  strictEqual(await runManagedProxy({ ...base, process: false }), 78);
});

Deno.test("runClient and runServer refuse a configuration of the other side and options of the wrong type at once, with a TypeError naming them", async () => {
  // Before: null options failed destructuring 'emit', emit: "x" with 'emit
  // is not a function', runServer given a client configuration with
  // 'reading 'kind'', and runClient given a server configuration started
  // SOCKS front ends; dialer: "x", reusePort: "no", onListening: "x",
  // local: "x" and metrics: {} were taken.
  const state = await Deno.makeTempDir();
  try {
    const client = parseManagedConfig(["-client", "-transports", "plain", "-state", state]);
    const server = parseManagedConfig([
      ...["-server", "-transports", "plain", "-orport", "127.0.0.1:9", "-state", state],
    ]);
    if (client.kind !== "client" || server.kind !== "server") throw new Error("not parsed");
    const emit = () => {};
    type Run = (config: unknown, options: unknown) => Promise<unknown>;
    const sides: [Run, unknown, unknown, string][] = [
      [runClient as Run, client, server, "run the client side"],
      [runServer as Run, server, client, "run the server side"],
    ];
    for (const [run, own, other, what] of sides) {
      const cases: [unknown, unknown, string][] = [
        [
          other,
          { emit },
          `config must be a ${
            what.split(" ")[2]
          } configuration from parseManagedConfig, got kind "${(other as { kind: string }).kind}"`,
        ],
        [
          null,
          { emit },
          "config must be a " + what.split(" ")[2] +
          " configuration from parseManagedConfig, got null",
        ],
        [own, null, "options must be an object, got null"],
        [own, {}, "emit must be a function, got undefined"],
        [own, { emit: "x" }, "emit must be a function, got string"],
        [own, { emit, dialer: "x" }, "dialer must be a function, got string"],
        [own, { emit, onListening: "x" }, "onListening must be a function, got string"],
        [own, { emit, reusePort: "no" }, "reusePort must be a boolean, got string"],
        [own, { emit, registry: [] }, "registry must be a Map of transports, got object"],
        [own, { emit, local: "x" }, "local must be an object, got string"],
        [own, { emit, metrics: {} }, "metrics must be made by new MetricsRegistry()"],
      ];
      for (const [config, options, message] of cases) {
        await rejects(
          run(config, options),
          (e: unknown) => e instanceof TypeError && e.message === `Cannot ${what}: ${message}`,
          `${what}: ${message}`,
        );
      }
      const lines: string[] = [];
      const running = await run(own, { emit: (line: { type: string }) => lines.push(line.type) });
      await (running as { close(): Promise<void> }).close();
      ok(lines.includes(what === "run the client side" ? "CMETHODS-DONE" : "SMETHODS-DONE"));
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test({
  name:
    "runClient and runServer whose emit throws still return the running side (the throw printed once on the console), so its listeners can be closed; runManagedProxy's stdout likewise",
  ...sanitized,
  fn: async () => {
    // Before: a throw from emit at the CMETHOD line was caught as the
    // transport's failure, the CMETHOD-ERROR emit threw again, and
    // runClient rejected with the application's error while its SOCKS
    // listener stayed open with no handle to close it (a leaked TCP
    // listener); runServer reported SMETHOD-ERROR for a transport it served.
    const state = await Deno.makeTempDir();
    const printed: unknown[][] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => printed.push(args);
    try {
      const client = parseManagedConfig(["-client", "-transports", "plain", "-state", state]);
      const server = parseManagedConfig([
        ...["-server", "-transports", "plain", "-bindaddr", "plain-127.0.0.1:0"],
        ...["-orport", "127.0.0.1:9", "-state", state],
      ]);
      if (client.kind !== "client" || server.kind !== "server") throw new Error("not parsed");
      const sides = [["runClient", runClient, client], ["runServer", runServer, server]] as const;
      for (const [name, run, config] of sides) {
        printed.length = 0;
        const types: string[] = [];
        const boom = new Error("emit boom");
        const running =
          await (run as (c: unknown, o: unknown) => Promise<{ close(): Promise<void> }>)(
            config,
            {
              emit: (line: { type: string }) => {
                types.push(line.type);
                throw boom;
              },
            },
          );
        await running.close();
        ok(!types.some((type) => type.endsWith("-ERROR")), `${name}: ${types}`);
        deepStrictEqual(printed.length, 1, name);
        ok(String(printed[0]![0]).includes(`${name}() emit`), String(printed[0]![0]));
        strictEqual(printed[0]![1], boom);
      }
      // runManagedProxy's stdout likewise: the client's CMETHOD line threw,
      // and tor would have read CMETHOD-ERROR for a SOCKS port that serves.
      printed.length = 0;
      const stop = new AbortController();
      const lines: string[] = [];
      const exit = await runManagedProxy({
        args: ["-ptversion", "1", "-client", "-transports", "plain", "-state", state],
        getEnv: () => undefined,
        process: false,
        signal: stop.signal,
        stdout: (line) => {
          lines.push(line);
          if (line === "CMETHODS DONE\n") stop.abort();
          if (line.startsWith("CMETHOD ")) throw new Error("stdout boom");
        },
      });
      strictEqual(exit, 0);
      ok(!lines.some((line) => line.startsWith("CMETHOD-ERROR")), lines.join(""));
      deepStrictEqual(printed.length, 1);
      ok(String(printed[0]![0]).includes("runManagedProxy() stdout"), String(printed[0]![0]));
    } finally {
      console.error = consoleError;
      await Deno.remove(state, { recursive: true });
    }
  },
});

// formatPtLine, parsePtLine and parseManagedConfig given what their types
// forbid (a JavaScript caller, a cast): the documented class, a message
// naming what is wrong, never a value that may be secret; never a line
// that could not be read back.
const LOCAL = { hostname: "127.0.0.1", port: 1080 };
const badIpcInput: [string, () => unknown, typeof TypeError | typeof SyntaxError, RegExp][] = [
  [
    "formatPtLine, an unknown type",
    () => formatPtLine({ type: "FOO" } as never),
    TypeError,
    /^Cannot format PT line: unknown type "FOO"$/,
  ],
  [
    "formatPtLine(null)",
    () => formatPtLine(null as never),
    TypeError,
    /^Cannot format PT line: expected an object, got null$/,
  ],
  [
    'formatPtLine, CMETHOD transport "a b"',
    () => formatPtLine({ type: "CMETHOD", transport: "a b", mode: "socks5", address: LOCAL }),
    TypeError,
    /^Cannot format CMETHOD line: invalid transport name "a b"$/,
  ],
  [
    "formatPtLine, SMETHOD transport with a tab",
    () => formatPtLine({ type: "SMETHOD", transport: "a\tb", address: LOCAL, args: {} }),
    TypeError,
    /^Cannot format SMETHOD line: invalid transport name "a\?b"$/,
  ],
  [
    "formatPtLine, CMETHOD-ERROR transport with a newline",
    () => formatPtLine({ type: "CMETHOD-ERROR", transport: "a\nb", message: "x" }),
    TypeError,
    /^Cannot format CMETHOD-ERROR line: invalid transport name "a\?b"$/,
  ],
  [
    'formatPtLine, CMETHOD mode "so cks"',
    () => formatPtLine({ type: "CMETHOD", transport: "obfs4", mode: "so cks", address: LOCAL }),
    TypeError,
    /invalid mode "so cks"$/,
  ],
  [
    'formatPtLine, CMETHOD host "a b"',
    () =>
      formatPtLine({
        type: "CMETHOD",
        transport: "obfs4",
        mode: "socks5",
        address: { hostname: "a b", port: 1 },
      }),
    TypeError,
    /^Cannot format CMETHOD line: invalid address "a b" port 1/,
  ],
  [
    'formatPtLine, VERSION "1 2"',
    () => formatPtLine({ type: "VERSION", version: "1 2" }),
    TypeError,
    /invalid version "1 2"$/,
  ],
  [
    'formatPtLine, LOG severity "a b"',
    () => formatPtLine({ type: "LOG", severity: "a b", message: "x" }),
    TypeError,
    /invalid severity "a b"$/,
  ],
  [
    'formatPtLine, STATUS field name "X Y"',
    () => formatPtLine({ type: "STATUS", transport: "obfs4", fields: { "X Y": "1" } }),
    TypeError,
    /invalid field name "X Y"$/,
  ],
  [
    "formatPtLine, an ARGS value not a string",
    () =>
      formatPtLine({
        type: "SMETHOD",
        transport: "obfs4",
        address: LOCAL,
        args: { cert: ["SecretCertMark"] } as never,
      }),
    TypeError,
    /^Cannot format SMETHOD line: the value of ARGS key "cert" must be a string, got array$/,
  ],
  [
    "parsePtLine(5)",
    () => parsePtLine(5 as never),
    TypeError,
    /^Cannot parse PT line: expected a string, got number$/,
  ],
  [
    "parsePtLine, a bad keyword",
    () => parsePtLine("A\x01 B"),
    SyntaxError,
    /^Cannot parse PT line: invalid keyword/,
  ],
  [
    'parseManagedConfig("x", {}, {})',
    () => parseManagedConfig("x" as never, {}, {}),
    TypeError,
    /^Invalid args for parseManagedConfig: expected an array of strings, got string$/,
  ],
  [
    "parseManagedConfig, env null",
    () => parseManagedConfig([], null as never),
    TypeError,
    /^Invalid env for parseManagedConfig: expected an object of strings, got null$/,
  ],
  [
    "parseManagedConfig, a variable not a string",
    () =>
      parseManagedConfig([], { TOR_PT_PROXY: ["socks5://u:SecretCertMark@127.0.0.1:9"] } as never),
    TypeError,
    /^Invalid env TOR_PT_PROXY for parseManagedConfig: expected a string, got array$/,
  ],
  [
    "parseManagedConfig, options null",
    () => parseManagedConfig([], {}, null as never),
    TypeError,
    /^Invalid options for parseManagedConfig: expected an object, got null$/,
  ],
];
for (const [name, call, type, message] of badIpcInput) {
  Deno.test(`IPC line and configuration functions refuse bad input: ${name}`, () => {
    throws(call, (e) => {
      ok(e instanceof type, `${(e as Error).constructor.name}: ${(e as Error).message}`);
      ok(message.test(e.message), e.message);
      ok(!e.message.includes("SecretCertMark"), e.message);
      return true;
    });
  });
}

Deno.test("formatPtLine still writes what its types allow", () => {
  strictEqual(
    formatPtLine({ type: "CMETHOD", transport: "obfs4", mode: "socks5", address: LOCAL }),
    "CMETHOD obfs4 socks5 127.0.0.1:1080",
  );
  strictEqual(formatPtLine({ type: "unknown", keyword: "X-NEW" }), "X-NEW");
  // The name a parent asked for is written as it is when it is one word.
  strictEqual(
    formatPtLine({ type: "CMETHOD-ERROR", transport: "*", message: "no such transport" }),
    "CMETHOD-ERROR * no such transport",
  );
  strictEqual(
    formatPtLine({ type: "STATUS", transport: undefined, fields: { TYPE: "version" } }),
    "STATUS TYPE=version",
  );
});

Deno.test("listen refuses a malformed host name with a TypeError naming it", async () => {
  for (const hostname of ["bad host", "", "::zz"]) {
    await rejects(
      listen(plain, {}, { hostname, port: 0 }),
      (e) => e instanceof TypeError && e.message.startsWith("Cannot listen on "),
      hostname,
    );
  }
});

Deno.test({
  name: "obfs4: a closed side's spare key pair timer is cleared, and no new one starts",
  ...sanitized,
  fn: async () => {
    const { KeyPairReserve } = await import("../transports/obfs4/_keypair_reserve.ts");
    const reserve = new KeyPairReserve(await runtimeCrypto(), { size: 2 });
    reserve.take();
    reserve.refillAfter(60_000);
    reserve.close();
    reserve.refillAfter(60_000);
    strictEqual(reserve.spares, 0);
  },
});

Deno.test({
  name: "Connector.dial gives up when its signal aborts; a connection made too late is closed",
  ...sanitized,
  fn: async () => {
    using server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let late: Deno.TcpConn | undefined;
    let release = () => {};
    const held = new Promise<void>((resolve) => release = resolve);
    const connector = await createConnector(plain, {}, {
      dialer: async (address) => {
        await held;
        return late = await Deno.connect({ hostname: "127.0.0.1", port: address.port });
      },
    });
    const controller = new AbortController();
    const dialing = connector.dial({ port: server.addr.port, signal: controller.signal });
    const reason = new Error("gave up");
    controller.abort(reason);
    await rejects(dialing, (e) => e === reason);
    release();
    using accepted = await server.accept();
    // The late connection was closed: the server sees its end.
    deepStrictEqual(await accepted.read(new Uint8Array(1)), null);
    ok(late !== undefined);
    await rejects(connector.dial({ port: server.addr.port, signal: AbortSignal.abort(reason) }));
  },
});

Deno.test("layerTransports: closing a stacked listener or connector closes every layer's side, even after one throws", async () => {
  const closed: string[] = [];
  const layer = (name: string, fails = false) =>
    defineTransport<string>({
      name,
      parseConfig: () => name,
      pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
      close: (_config, role) => {
        closed.push(`${name} ${role}`);
        if (fails) throw new Error(`${name} failed to close`);
      },
    });
  const stacked = layerTransports("stacked", [layer("inner", true), layer("outer")]);
  const listener = await listen(stacked, {}, { hostname: "127.0.0.1", port: 0 });
  throws(() => listener.close(), /inner failed to close/);
  deepStrictEqual(closed, ["inner server", "outer server"]);
  const connector = await createConnector(stacked, {});
  await rejects(connector.close(), /inner failed to close/);
  deepStrictEqual(closed.slice(2), ["inner client", "outer client"]);
});

/**
 * A layer whose side takes a moment to make (as obfs4's server makes its
 * identity keys) and holds a timer until it is closed; its closes are
 * recorded in `closed` ("slow server", "slow client").
 */
function slowLayer(closed: string[]): Transport {
  let late: ReturnType<typeof setTimeout> | undefined;
  return defineTransport<string>({
    name: "slow",
    parseConfig: async (_config, role) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      late = setTimeout(() => {}, 60_000);
      return role;
    },
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
    close: (_config, role) => {
      closed.push(`slow ${role}`);
      clearTimeout(late);
    },
  });
}

Deno.test({
  name:
    "layerTransports: when one layer refuses its configuration, the layers already configured are closed and nothing is left running",
  ...sanitized,
  fn: async () => {
    const closed: string[] = [];
    const slow = slowLayer(closed);
    const picky = defineTransport<number>({
      name: "picky",
      parseConfig: (config) => {
        throw new RangeError(`Invalid n ${JSON.stringify(config.n)}`);
      },
      pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
    });
    const stacked = layerTransports("stacked", [picky, slow]);
    await rejects(
      listen(stacked, { "picky.n": "0" }, { hostname: "127.0.0.1", port: 0 }),
      (e) =>
        e instanceof RangeError &&
        e.message ===
          "Cannot configure transport 'stacked': its layer 'picky' refused its options: Invalid n \"0\"",
    );
    deepStrictEqual(closed, ["slow server"]);
    await rejects(createConnector(stacked, { "picky.n": "0" }), RangeError);
    deepStrictEqual(closed, ["slow server", "slow client"]);
  },
});

Deno.test({
  name:
    "layerTransports: a layer written by hand that refuses by throwing at once (not a rejected promise) still gets the layers before it closed",
  ...sanitized,
  fn: async () => {
    const closed: string[] = [];
    const slow = slowLayer(closed);
    // Not async: its refusal is a throw, as plain JavaScript writes it.
    const refuse = (): never => {
      throw new RangeError("Invalid n");
    };
    const brittle = { name: "brittle", client: refuse, server: refuse } as unknown as Transport;
    const stacked = layerTransports("stacked", [slow, brittle]);
    await rejects(
      listen(stacked, {}, { hostname: "127.0.0.1", port: 0 }),
      (e) =>
        e instanceof RangeError &&
        e.message.endsWith(
          "its layer 'brittle' refused its options: Invalid n",
        ),
    );
    deepStrictEqual(closed, ["slow server"]);
    await rejects(createConnector(stacked, {}), RangeError);
    deepStrictEqual(closed, ["slow server", "slow client"]);
  },
});

Deno.test("Connector.close: a transport close hook that throws still leaves the connector closed", async () => {
  const failing = defineTransport<string>({
    name: "failing",
    parseConfig: () => "x",
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
    close: () => {
      throw new Error("hook failed");
    },
  });
  using server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connector = await createConnector(failing, {});
  await rejects(connector.close(), /hook failed/);
  await rejects(
    connector.dial({ port: server.addr.port }),
    (e) => e instanceof Deno.errors.BadResource && /connector is closed/.test(e.message),
  );
  // Once closed, closing again does nothing.
  await connector.close();
});

Deno.test("HandshakeError refuses a reason it does not know with a TypeError naming it and the accepted ones", () => {
  for (const reason of ["slow", "Timeout", "", 5, null, undefined, {}]) {
    throws(
      () => new HandshakeError(reason as HandshakeError["reason"], "x"),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message.startsWith("Cannot make HandshakeError: unknown reason ") &&
        error.message.endsWith("expected one of failed, probe-delay, replay, timeout"),
      String(reason),
    );
  }
  throws(
    () => new HandshakeError("slow" as HandshakeError["reason"], "x"),
    /unknown reason "slow"/,
  );
  for (const reason of ["failed", "probe-delay", "replay", "timeout"] as const) {
    strictEqual(new HandshakeError(reason, "x").reason, reason);
  }
});

Deno.test("DestinationPolicy.refusal refuses a port that is not an integer in 0-65535, naming it", () => {
  const policy = DestinationPolicy.parse("192.168.1.5:8080");
  for (const port of [-1, 65536, 1.5, NaN, Infinity]) {
    throws(
      () => policy.refusal("192.168.1.5", port),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.startsWith(`Invalid port ${port} for destination policy refusal`),
      String(port),
    );
  }
  throws(() => policy.refusal("192.168.1.5", "8080" as unknown as number), TypeError);
  strictEqual(policy.refusal("192.168.1.5", 8080), undefined);
  strictEqual(policy.refusal("192.168.1.5", 0), "private");
  strictEqual(policy.refusal("192.168.1.5", 65535), "private");
});

Deno.test("proxy() rejects to its caller when it cannot listen (port in use, address not this host's, unknown host), and says nothing to onAcceptError", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  for (
    const [hostname, port, error] of [
      ["127.0.0.1", busy.addr.port, Deno.errors.AddrInUse],
      ["203.0.113.9", 0, Deno.errors.AddrNotAvailable],
      ["no-such-host.invalid", 0, Error],
    ] as const
  ) {
    const acceptErrors: Error[] = [];
    await rejects(
      proxy(plain, {}, {
        hostname,
        port,
        target: { hostname: "127.0.0.1", port: 9 },
        onAcceptError: (e) => acceptErrors.push(e),
      }),
      (thrown: unknown) => thrown instanceof error && /^Cannot listen on /.test(thrown.message),
      hostname,
    );
    deepStrictEqual(acceptErrors, [], hostname);
  }
});

Deno.test("every function, class and constant an entry point of deno.json exports has a runnable @example (ManagedConfigError and ExtOrPortRequest had none, ExtOrPortServer and PtClientTransport only `ts ignore` ones)", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  ) as { exports: Record<string, string> };
  const lacking: string[] = [];
  for (const [entry, file] of Object.entries(config.exports)) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["doc", "--json", new URL(`../${file}`, import.meta.url).pathname],
      stdout: "piped",
      stderr: "piped",
    }).output();
    strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    const doc = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      nodes: Record<string, {
        symbols: {
          name: string;
          declarations: {
            kind: string;
            jsDoc?: { tags?: { kind: string; doc?: string }[] };
          }[];
        }[];
      }>;
    };
    for (const node of Object.values(doc.nodes)) {
      for (const symbol of node.symbols) {
        for (const declaration of symbol.declarations) {
          if (declaration.kind === "interface" || declaration.kind === "typeAlias") continue;
          const examples = (declaration.jsDoc?.tags ?? []).filter((tag) => tag.kind === "example");
          // A fence of ts or js with nothing after it runs under deno test --doc.
          if (!examples.some((tag) => /```(?:ts|js)\s*\n/.test(tag.doc ?? ""))) {
            lacking.push(`${entry}: ${symbol.name}`);
          }
        }
      }
    }
  }
  deepStrictEqual(lacking, []);
});

Deno.test("an obfs4 server asked for a key pair worker in a program without --allow-read makes its key pairs on the main thread, with no uncaught worker error on stderr", async () => {
  // Found as a Deno developer (h41lib): `deno run --allow-net app.ts`
  // serving obfs4 printed `error: Uncaught (in worker "") Requires read
  // access to ".../_keypair_worker.ts"` (Deno prints it however the
  // Worker's error is handled), though the handshake worked and the exit
  // code was 0. The runtime's crypto now offers no worker to a process
  // that may not read its modules.
  const dir = await Deno.makeTempDir({ prefix: "ptkit_noread_" });
  try {
    await Deno.writeTextFile(
      `${dir}/app.ts`,
      `import { createConnector, listen } from "@ptkit/ptkit";
import { createObfs4 } from "@ptkit/ptkit/transports/obfs4";
// The worker is the library user's choice (main.ts starts none).
const obfs4 = createObfs4({ keyPairWorker: true });
await using listener = await listen(obfs4, {}, { hostname: "127.0.0.1", port: 0 });
const connector = await createConnector(obfs4, listener.clientOptions);
(async () => {
  for await (const conn of listener) conn.readable.pipeTo(conn.writable).catch(() => {});
})();
await using conn = await connector.dial({ hostname: "127.0.0.1", port: listener.addr.port });
const writer = conn.writable.getWriter();
await writer.write(new Uint8Array([5]));
const { value } = await conn.readable.getReader().read();
console.log("echo", value?.[0]);
// The key pair reserve's refill (and the worker's start, had it one) come after the first handshake.
await new Promise((resolve) => setTimeout(resolve, 1000));
await writer.close().catch(() => {});
`,
    );
    const config = new URL("../deno.json", import.meta.url).pathname;
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--no-prompt", "--config", config, `${dir}/app.ts`],
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const err = new TextDecoder().decode(stderr);
    strictEqual(new TextDecoder().decode(stdout).trim(), "echo 5", err);
    strictEqual(code, 0, err);
    ok(!/Uncaught|Requires read access/.test(err), err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
