// Copyright the ptkit authors. MIT license.
// No connection can end a listener (issue 11, acceptance 1): for every kind
// of listener, 200 connections reset before they are accepted (RST while the
// server is stopped, or while this process is blocked), then a good
// connection works and the server is still alive.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { plain } from "../transports/plain.ts";
import type { Transport } from "../transports/transport.ts";
import { listen, proxy } from "../server.ts";
import { listenExtOrPort } from "../ipc/adapter/mod.ts";
import { extOrPortHandshake } from "../ipc/extorport/_client.ts";
import { readCookieFile } from "../ipc/extorport/_safe_cookie.ts";
import { echoServer } from "./_util.ts";
import {
  goodClient,
  node,
  readExactly,
  resetConnections,
  udpEcho,
  whileStopped,
  within,
  withPt,
} from "./hardening_util.ts";

const RESETS = 200;
const encoder = new TextEncoder();

/**
 * Start main.ts with `args`, stop it, reset 200 connections to the port its
 * `pattern` line names, let it go on, and check that it logged the failed
 * accepts and serves `good`.
 */
function afterResets(
  args: string[],
  pattern: RegExp,
  good: (port: number) => Promise<void>,
): Promise<void> {
  return withPt(args, pattern, async (pt, port) => {
    const flood = await whileStopped(pt.child.pid, () => resetConnections(port, RESETS));
    strictEqual(flood.connected, RESETS);
    await within(
      30_000,
      "the LOG line of the failed accepts",
      () => pt.waitFor(/accept failed: .*os error 107/),
    );
    await within(30_000, "a good connection", () => good(port));
    await within(30_000, "another good connection", () => good(port));
  });
}

Deno.test("transparent-TCP server: 200 resets before accept, then a good connection", async () => {
  const echo = echoServer();
  try {
    await afterResets(
      ["-server", "-transports", "plain", "-orport", `127.0.0.1:${echo.port}`],
      /^SMETHOD plain /,
      goodClient.echo,
    );
  } finally {
    await echo.close();
  }
});

Deno.test("transparent-TCP client: 200 resets before accept, then a good connection", async () => {
  const echo = echoServer();
  try {
    await afterResets(
      ["-client", "-transports", "plain", "-mode", "transparent-TCP"]
        .concat(["-target", `127.0.0.1:${echo.port}`]),
      /^CMETHOD plain /,
      goodClient.echo,
    );
  } finally {
    await echo.close();
  }
});

Deno.test("SOCKS client: 200 resets before accept, then a good connection", async () => {
  const echo = echoServer();
  try {
    await afterResets(
      ["-client", "-transports", "plain"],
      /^CMETHOD plain /,
      (port) => goodClient.socks(port, echo.port),
    );
  } finally {
    await echo.close();
  }
});

Deno.test("free mode, server and client: 200 resets before accept on each, then a good connection", async () => {
  const echo = echoServer();
  try {
    await afterResets(
      ["-server", "-transports", "plain", "-target", "socks", "-allow", "loopback"],
      /^SMETHOD plain /,
      (serverPort) =>
        afterResets(
          ["-client", "-transports", "plain", "-free", "-target", `127.0.0.1:${serverPort}`],
          /^CMETHOD plain /,
          (port) => goodClient.socks(port, echo.port),
        ),
    );
  } finally {
    await echo.close();
  }
});

Deno.test("transparent-UDP server: 200 resets before accept, then a good connection", async () => {
  await using echo = await udpEcho();
  await afterResets(
    ["-server", "-transports", "plain", "-mode", "transparent-UDP"]
      .concat(["-target", `127.0.0.1:${echo.addr.port}`]),
    /^SMETHOD plain /,
    goodClient.datagram,
  );
});

Deno.test("STUN server: 200 resets before accept, then a good connection", async () => {
  await using echo = await udpEcho();
  await afterResets(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", `127.0.0.1:${echo.addr.port}`],
    /^SMETHOD plain /,
    goodClient.stunEcho,
  );
});

Deno.test("TURN over TCP (STUN mode, embedded TURN server): 200 resets before accept, then a good connection", async () => {
  await afterResets(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn"],
    /^SMETHOD plain /,
    goodClient.turn,
  );
});

Deno.test("listen(): 200 resets before accept, then accept() and for await get the good connection", async () => {
  const errors: [string, number][] = [];
  await using listener = await listen(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    onAcceptError: (error, count) => errors.push([error.message, count]),
  });
  // Nothing accepts before all are reset: this process is blocked meanwhile.
  strictEqual(
    (await resetConnections(listener.addr.port, RESETS, { sync: true })).connected,
    RESETS,
  );
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  strictEqual((conn.remoteAddr as Deno.NetAddr).port, (client.localAddr as Deno.NetAddr).port);
  ok(errors.length >= 1 && /os error 107/.test(errors[0]![0]), JSON.stringify(errors));
  conn.close();
  client.close();

  strictEqual(
    (await resetConnections(listener.addr.port, RESETS, { sync: true })).connected,
    RESETS,
  );
  const second = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  for await (const accepted of listener) {
    const port = (accepted.remoteAddr as Deno.NetAddr).port;
    strictEqual(port, (second.localAddr as Deno.NetAddr).port);
    accepted.close();
    break;
  }
  second.close();
  strictEqual(listener.stats().connectionsAccepted, 2);
});

Deno.test("proxy(): 200 resets before accept, then a good connection", async () => {
  const echo = echoServer();
  try {
    await using manager = await proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: echo.port },
    });
    await resetConnections(manager.addr.port, RESETS, { sync: true });
    await goodClient.echo(manager.addr.port);
  } finally {
    await echo.close();
  }
});

Deno.test("ExtORPort server: 200 resets before accept, then a good connection", async () => {
  await using server = await listenExtOrPort();
  const cookie = await readCookieFile(server.cookieFile);
  await resetConnections(server.addr.port, RESETS, { sync: true });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const [, request] = await Promise.all([
    extOrPortHandshake(conn, { cookie, transport: "plain" }),
    server.accept().then(async (request) => ({ request, app: await request.accept() })),
  ]);
  strictEqual(request.request.transport, "plain");
  await conn.write(encoder.encode("data"));
  deepStrictEqual(await readExactly(request.app, 4), encoder.encode("data"));
  request.app.close();
});

/** A transport whose server never settles a handshake: it holds every connection, as a probe delay does. */
const stalling: Transport = {
  name: "stalling",
  client: () => {
    throw new TypeError("Cannot dial the stalling transport");
  },
  server: () => ({
    clientOptions: {},
    pair: () => ({
      encode: new TransformStream<Uint8Array, Uint8Array>(),
      decode: new TransformStream<Uint8Array, Uint8Array>({ transform: () => {} }),
      ready: new Promise<void>(() => {}),
    }),
  }),
};

Deno.test("a connection reset while its transport holds the handshake is freed at once, and close() ends the held ones", async () => {
  await using manager = await proxy(stalling, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: 9 },
  });
  const { port } = manager.addr;
  // 20 clients send a few bytes once accepted, then reset (SO_LINGER 0).
  const script = `
    const net = require("node:net");
    let left = 20;
    for (let i = 0; i < 20; i++) {
      const socket = net.connect(${port}, "127.0.0.1", () => {
        socket.write("probe");
        setTimeout(() => { socket.resetAndDestroy(); if (--left === 0) console.log("reset"); }, 300);
      });
      socket.on("error", () => {});
    }
  `;
  const output = await new Deno.Command(node(), { args: ["-e", script], stdout: "piped" }).output();
  strictEqual(new TextDecoder().decode(output.stdout).trim(), "reset");
  await within(5_000, "the reset connections to be freed", async () => {
    while (manager.stats().connectionsOpen > 0) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
  strictEqual(manager.stats().connectionsAccepted, 20);
  // Held connections (a probe delay) end when the server closes, at once.
  const held = await Promise.all(
    Array.from({ length: 5 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  await within(5_000, "5 held connections to be accepted", async () => {
    while (manager.stats().connectionsOpen < 5) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
  await within(3_000, "close() with 5 connections held", () => manager.close());
  for (const conn of held) {
    strictEqual(await conn.read(new Uint8Array(1)).catch(() => null), null);
    conn.close();
  }
});
