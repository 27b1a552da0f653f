// Copyright the ptkit authors. MIT license.
// No connection can end a listener (issue 11, acceptance 1): for every kind
// of listener, 200 connections reset before they are accepted (RST while the
// server is stopped, or while this process is blocked), then a good
// connection works and the server is still alive.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { plain } from "../transports/plain.ts";
import { listen, proxy } from "../server.ts";
import { UdpSocket } from "../udp/mod.ts";
import { listenExtOrPort } from "../ipc/adapter/extorport_server.ts";
import { extOrPortHandshake } from "../ipc/ext_orport.ts";
import { readAuthCookie } from "../ipc/auth_cookie.ts";
import { socks5Connect } from "../ipc/socks_client.ts";
import { echoServer } from "./_util.ts";
import { PtProcess } from "./ipc_util.ts";
import { bindingRequest } from "./turn_util.ts";
import { resetConnections, tcpEcho, whileStopped, within } from "./hardening_util.ts";

const RESETS = 200;
const encoder = new TextEncoder();

/** A UDP echo server. */
async function udpEcho(): Promise<UdpSocket> {
  const socket = await UdpSocket.open();
  socket.onmessage = (data, from) => void socket.send(data, from).catch(() => {});
  return socket;
}

/** Read exactly `n` bytes (or fail). */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    const got = await conn.read(out.subarray(offset));
    if (got === null) throw new Error(`Connection ended after ${offset} of ${n} bytes`);
    offset += got;
  }
  return out;
}

/** A SOCKS5 CONNECT through `port` to `target`, then an echo of `text`. */
async function socksEcho(port: number, target: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await socks5Connect(conn, { hostname: "127.0.0.1", port: target });
    await conn.write(encoder.encode(text));
    return new TextDecoder().decode(await readExactly(conn, text.length));
  } finally {
    conn.close();
  }
}

/**
 * Start main.ts with `args` (and -logLevel info), stop it, reset 200
 * connections to the port its `pattern` line names, let it go on, and check
 * that it logged the failed accepts and serves `good`.
 */
async function afterResets(
  args: string[],
  pattern: RegExp,
  good: (port: number) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_hardening_" });
  await using pt = new PtProcess([...args, "-state", dir, "-logLevel", "info"], {});
  try {
    const line = await pt.waitFor(pattern);
    await pt.waitFor(/^(CMETHODS|SMETHODS) DONE$/);
    const port = Number(line.split(" ").find((w) => /:[0-9]+$/.test(w))!.split(":").pop());
    const flood = await whileStopped(pt.child.pid, () => resetConnections(port, RESETS));
    strictEqual(flood.connected, RESETS);
    await within(
      30_000,
      "the LOG line of the failed accepts",
      () => pt.waitFor(/accept failed: .*os error 107/),
    );
    await within(30_000, "a good connection", () => good(port));
    await within(30_000, "another good connection", () => good(port));
  } finally {
    await pt.closeStdin();
    pt.child.kill("SIGTERM");
    const { code, stderr } = await pt.exit();
    ok(!stderr.includes("panicked"), stderr);
    strictEqual(code, 0, stderr);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("transparent-TCP server: 200 resets before accept, then a good connection", async () => {
  const echo = echoServer();
  try {
    await afterResets(
      ["-server", "-transports", "plain", "-orport", `127.0.0.1:${echo.port}`],
      /^SMETHOD plain /,
      async (port) =>
        deepStrictEqual(await tcpEcho(port, encoder.encode("hi")), encoder.encode("hi")),
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
      async (port) =>
        deepStrictEqual(await tcpEcho(port, encoder.encode("hi")), encoder.encode("hi")),
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
      async (port) => strictEqual(await socksEcho(port, echo.port, "hello"), "hello"),
    );
  } finally {
    await echo.close();
  }
});

Deno.test("free mode, server and client: 200 resets before accept on each, then a good connection", async () => {
  const echo = echoServer();
  const dir = await Deno.makeTempDir({ prefix: "ptkit_hardening_" });
  try {
    await using server = new PtProcess([
      ...["-server", "-transports", "plain", "-target", "socks", "-allow", "loopback"],
      ...["-state", dir, "-logLevel", "info"],
    ], {});
    const line = await server.waitFor(/^SMETHOD plain /);
    const serverPort = Number(line.split(" ")[2]!.split(":")[1]);
    const flood = await whileStopped(
      server.child.pid,
      () => resetConnections(serverPort, RESETS),
    );
    strictEqual(flood.connected, RESETS);
    await within(
      30_000,
      "the LOG line of the failed accepts",
      () => server.waitFor(/accept failed/),
    );
    await afterResets(
      ["-client", "-transports", "plain", "-free", "-target", `127.0.0.1:${serverPort}`],
      /^CMETHOD plain /,
      async (port) => strictEqual(await socksEcho(port, echo.port, "free"), "free"),
    );
    await server.closeStdin();
    server.child.kill("SIGTERM");
    strictEqual((await server.exit()).code, 0);
  } finally {
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("transparent-UDP server: 200 resets before accept, then a good connection", async () => {
  await using echo = await udpEcho();
  await afterResets(
    ["-server", "-transports", "plain", "-mode", "transparent-UDP"]
      .concat(["-target", `127.0.0.1:${echo.addr.port}`]),
    /^SMETHOD plain /,
    async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new Uint8Array([0, 3, 7, 8, 9]));
      deepStrictEqual(await readExactly(conn, 5), new Uint8Array([0, 3, 7, 8, 9]));
    },
  );
});

Deno.test("STUN server: 200 resets before accept, then a good connection", async () => {
  await using echo = await udpEcho();
  await afterResets(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", `127.0.0.1:${echo.addr.port}`],
    /^SMETHOD plain /,
    async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const request = bindingRequest();
      await conn.write(request);
      deepStrictEqual(await readExactly(conn, request.length), request);
    },
  );
});

Deno.test("TURN over TCP (STUN mode, embedded TURN server): 200 resets before accept, then a good connection", async () => {
  await afterResets(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn"],
    /^SMETHOD plain /,
    async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const request = bindingRequest();
      await conn.write(request);
      const reply = await readExactly(conn, 20);
      // A Binding success response with the request's transaction id.
      deepStrictEqual([reply[0], reply[1]], [0x01, 0x01]);
      deepStrictEqual(reply.subarray(8, 20), request.subarray(8, 20));
    },
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
    deepStrictEqual(
      await tcpEcho(manager.addr.port, encoder.encode("proxied")),
      encoder.encode("proxied"),
    );
  } finally {
    await echo.close();
  }
});

Deno.test("ExtORPort server: 200 resets before accept, then a good connection", async () => {
  await using server = await listenExtOrPort();
  const cookie = await readAuthCookie(server.cookieFile);
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
