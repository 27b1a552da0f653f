// Copyright the ptkit authors. MIT license.

// The adapter driving Debian's obfs4proxy, against ptkit's own obfs4, both
// directions, and obfs4proxy's server side in front of the adapter's
// Extended ORPort server.

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { launchClient, launchServer, listenExtOrPort } from "../ipc/adapter/mod.ts";
import { writeCookieFile } from "../ipc/extorport/_safe_cookie.ts";
import { echoTransfer, startEcho } from "./obfs4_live_helpers.ts";
import { requireBinary } from "./ipc_util.ts";

const MiB = 1024 * 1024;
const OBFS4PROXY = () => requireBinary("obfs4proxy", "obfs4proxy");

Deno.test("launchClient drives obfs4proxy to a ptkit obfs4 server: 8 MiB each way intact", async () => {
  const echo = startEcho();
  const server = await proxy(obfs4, {}, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
    target: { hostname: "127.0.0.1", port: echo.addr.port },
  });
  try {
    await using pt = await launchClient({ path: OBFS4PROXY(), transports: ["obfs4"] });
    strictEqual(pt.version, "1");
    const transport = pt.transports.get("obfs4")!;
    strictEqual(transport.mode, "socks5");
    const connector = await transport.connector({
      cert: server.clientOptions.cert!,
      "iat-mode": server.clientOptions["iat-mode"]!,
    });
    strictEqual(connector.name, "obfs4");
    const conn = await connector.dial({ hostname: "127.0.0.1", port: server.addr.port });
    const result = await echoTransfer(conn, 8 * MiB);
    strictEqual(result.receivedBytes, 8 * MiB);
    strictEqual(result.received, result.sent);
    await conn.closed;
    conn.close();
    strictEqual(server.stats().connectionsAccepted, 1);
    // Arguments obfs4proxy rejects: the dial fails with its SOCKS reply.
    await rejects(
      transport.dial({ hostname: "127.0.0.1", port: server.addr.port }, { cert: "short" }),
      /SOCKS5 reply 0x01|refused the transport arguments/,
    );
  } finally {
    await server.close();
    await echo.close();
  }
});

Deno.test("launchServer puts obfs4proxy in front of a service; ptkit's obfs4 client moves 8 MiB each way", async () => {
  const echo = startEcho();
  try {
    await using pt = await launchServer({
      path: OBFS4PROXY(),
      transports: ["obfs4"],
      orport: { hostname: "127.0.0.1", port: echo.addr.port },
      transportOptions: { obfs4: { "iat-mode": "0" } },
    });
    const transport = pt.transports.get("obfs4")!;
    strictEqual(transport.address.hostname, "127.0.0.1");
    deepStrictEqual(Object.keys(transport.clientOptions).sort(), ["cert", "iat-mode"]);
    const connector = await createConnector(obfs4, transport.clientOptions);
    const conn = await connector.dial({ ...transport.address });
    const result = await echoTransfer(conn, 8 * MiB);
    strictEqual(result.receivedBytes, 8 * MiB);
    strictEqual(result.received, result.sent);
    await conn.closed;
    conn.close();
    // The state directory holds obfs4proxy's keys.
    ok((await Deno.readTextFile(`${pt.stateDir}/obfs4_state.json`)).includes("node-id"));
  } finally {
    await echo.close();
  }
});

Deno.test("launchServer keeps its SMETHOD port when obfs4proxy is relaunched", async () => {
  const echo = startEcho();
  try {
    await using pt = await launchServer({
      path: OBFS4PROXY(),
      transports: ["obfs4"],
      orport: { hostname: "127.0.0.1", port: echo.addr.port },
      restart: { initialDelay: 50 },
    });
    const before = pt.transports.get("obfs4")!;
    const ready = new Promise((resolve) => pt.addEventListener("ready", resolve, { once: true }));
    Deno.kill(pt.pid!, "SIGKILL");
    await ready;
    const after = pt.transports.get("obfs4")!;
    deepStrictEqual(after.address, before.address);
    // Same state directory, so the same identity.
    strictEqual(after.clientOptions.cert, before.clientOptions.cert);
    const conn = await (await createConnector(obfs4, after.clientOptions)).dial({
      ...after.address,
    });
    const result = await echoTransfer(conn, 4096);
    strictEqual(result.received, result.sent);
    await conn.closed;
    conn.close();
  } finally {
    await echo.close();
  }
});

Deno.test("ExtOrPortServer accepts obfs4proxy's connections with transport and client address; wrong cookie fails", async () => {
  const errors: Error[] = [];
  await using ext = await listenExtOrPort({ onError: (e) => errors.push(e) });
  await using pt = await launchServer({
    path: OBFS4PROXY(),
    transports: ["obfs4"],
    extorport: ext,
  });
  const transport = pt.transports.get("obfs4")!;
  const connector = await createConnector(obfs4, transport.clientOptions);

  // Accepted: bytes flow both ways through obfs4proxy and the ExtORPort.
  {
    const conn = await connector.dial({ ...transport.address });
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode("ping"));
    const request = await ext.accept();
    strictEqual(request.transport, "obfs4");
    const local = conn.localAddr as Deno.NetAddr;
    deepStrictEqual(request.remoteAddr, { hostname: "127.0.0.1", port: local.port });
    const app = await request.accept();
    const buffer = new Uint8Array(4);
    let got = 0;
    while (got < 4) {
      const n = await app.read(buffer.subarray(got));
      if (n === null) break;
      got += n;
    }
    strictEqual(new TextDecoder().decode(buffer), "ping");
    await app.write(new TextEncoder().encode("pong"));
    const { value } = await conn.readable.getReader().read();
    strictEqual(new TextDecoder().decode(value), "pong");
    app.close();
    conn.close();
  }

  // Denied: obfs4proxy drops the client.
  {
    const conn = await connector.dial({ ...transport.address });
    await conn.writable.getWriter().write(new Uint8Array([1]));
    const request = await ext.accept();
    await request.deny();
    const read = await conn.readable.getReader().read().catch(() => ({ done: true }));
    strictEqual(read.done, true);
    conn.close();
  }

  // A wrong cookie (obfs4proxy re-reads the file per connection): authentication fails.
  {
    await writeCookieFile(ext.cookieFile, new Uint8Array(32).fill(7));
    const conn = await connector.dial({ ...transport.address });
    await conn.writable.getWriter().write(new Uint8Array([1]));
    const read = await conn.readable.getReader().read().catch(() => ({ done: true }));
    strictEqual(read.done, true);
    conn.close();
    while (errors.length === 0) await new Promise((r) => setTimeout(r, 20));
    strictEqual(ext.authFailures, 1);
    deepStrictEqual(errors.length, 1);
    ok(/cookie mismatch/.test(errors[0]!.message), errors[0]!.message);
    ok(!errors[0]!.message.includes("127.0.0.1"), "no client address in errors");
  }
});

Deno.test("launchServer with a relative stateDir and cookie file and another cwd: obfs4proxy uses the directory and file the application named", async () => {
  const home = Deno.cwd();
  const base = await Deno.makeTempDir({ prefix: "ptkit_relative_" });
  await Deno.mkdir(`${base}/elsewhere`);
  Deno.chdir(base);
  try {
    await using ext = await listenExtOrPort({ cookieFile: "cookie" });
    await using pt = await launchServer({
      path: OBFS4PROXY(),
      transports: ["obfs4"],
      extorport: ext,
      stateDir: "state",
      cwd: `${base}/elsewhere`,
    });
    strictEqual(pt.stateDir, `${base}/state`);
    // The identity is where the application looks for it, not under the PT's cwd.
    ok((await Deno.stat(`${base}/state/obfs4_state.json`)).isFile);
    await rejects(Deno.stat(`${base}/elsewhere/state`), Deno.errors.NotFound);
    // obfs4proxy reads the cookie the ExtORPort server wrote: a client gets through.
    const transport = pt.transports.get("obfs4")!;
    const conn = await (await createConnector(obfs4, transport.clientOptions)).dial({
      ...transport.address,
    });
    await conn.writable.getWriter().write(new Uint8Array([1]));
    const first = await Promise.race([
      ext.accept(),
      conn.readable.getReader().read().then(() => "client connection closed", () => "failed"),
    ]);
    ok(typeof first !== "string", `${first}`);
    await first.deny();
    conn.close();
  } finally {
    Deno.chdir(home);
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("launchClient gives obfs4proxy an upstream proxy URI written with a trailing slash (new URL() writes one for http) without it", async () => {
  // Found as a library user (h42lib): parseUpstreamProxy takes
  // 'socks5://127.0.0.1:1080/' and 'http://127.0.0.1:8080/' (as goptlib's
  // getProxyURL does), and the adapter passed it on as it was: obfs4proxy
  // and lyrebird answer 'PROXY-ERROR proxy URI has a path defined', so the
  // launch failed on a URI the adapter had accepted.
  for (const uri of ["socks5://127.0.0.1:1080/", new URL("http://127.0.0.1:8080").href]) {
    await using pt = await launchClient({ path: OBFS4PROXY(), transports: ["obfs4"], proxy: uri });
    deepStrictEqual([...pt.transports.keys()], ["obfs4"]);
  }
});
