// Copyright the ptkit authors. MIT license.
// Interop with shadowsocks-libev 3.3.5 (Debian `shadowsocks-libev`), each
// method: ss-local -> ptkit's Shadowsocks server -> target, and ptkit's
// client -> ss-server -> target, 32 MiB each way with SHA-256 compared; and
// curl through ss-local's SOCKS5 and ptkit's server to an HTTP server.

import { deepStrictEqual, ok } from "node:assert";
import { createConnector } from "../client.ts";
import { createShadowsocks, shadowsocks } from "../transports/shadowsocks/mod.ts";
import { CountingHttpServer, curl } from "./cli_util.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { connStreams } from "./obfs4_live_helpers.ts";
import {
  exchange,
  exchangeTarget,
  expectedHash,
  METHODS,
  ptkitServer,
  startSsLibev,
} from "./shadowsocks_util.ts";

const SIZE = 32 * 1024 * 1024;
const PASSWORD = "ptkit-interop-password";
const fromClient = expectedHash(SIZE, 1);
const fromTarget = expectedHash(SIZE, 2);

for (const method of METHODS) {
  Deno.test(`shadowsocks ${method}: ss-local -> ptkit server -> target, 32 MiB each way`, async () => {
    const target = exchangeTarget(SIZE);
    const errors: unknown[] = [];
    await using server = await ptkitServer({ method, password: PASSWORD }, {
      onError: (e) => errors.push(e),
    });
    await using local = await startSsLibev("ss-local", {
      method,
      password: PASSWORD,
      server: server.addr.port,
    });
    const conn = await socks5Connect({ hostname: "127.0.0.1", port: local.port }, {
      hostname: "127.0.0.1",
      port: target.port,
    });
    try {
      const got = await exchange(connStreams(conn), SIZE, 1);
      deepStrictEqual(got, { bytes: SIZE, sha256: fromTarget }, local.output());
      deepStrictEqual(await target.received[0], { bytes: SIZE, sha256: fromClient });
    } finally {
      conn.close();
      await target.close();
    }
    deepStrictEqual(target.received.length, 1);
    ok(errors.every((e) => !/tag|salt|chunk/.test(String(e))), String(errors));
  });

  Deno.test(`shadowsocks ${method}: ptkit client -> ss-server -> target, 32 MiB each way`, async () => {
    const target = exchangeTarget(SIZE);
    await using ssServer = await startSsLibev("ss-server", { method, password: PASSWORD });
    const connector = await createConnector(shadowsocks, { method, password: PASSWORD });
    const conn = await connector.dial({
      port: ssServer.port,
      destination: { hostname: "127.0.0.1", port: target.port },
    });
    try {
      const got = await exchange(conn, SIZE, 1);
      deepStrictEqual(got, { bytes: SIZE, sha256: fromTarget }, ssServer.output());
      deepStrictEqual(await target.received[0], { bytes: SIZE, sha256: fromClient });
    } finally {
      conn.close();
      await conn.closed;
      await target.close();
    }
  });
}

Deno.test("shadowsocks: curl through ss-local's SOCKS5 and ptkit's server to an HTTP server", async () => {
  await using http = new CountingHttpServer("hello through shadowsocks\n");
  await using server = await ptkitServer({ method: "chacha20-ietf-poly1305", password: PASSWORD });
  await using local = await startSsLibev("ss-local", {
    method: "chacha20-ietf-poly1305",
    password: PASSWORD,
    server: server.addr.port,
  });
  // A name travels unresolved: ptkit's server resolves "localhost".
  const result = await curl([
    "--socks5-hostname",
    `127.0.0.1:${local.port}`,
    `http://localhost:${http.port}/`,
  ]);
  deepStrictEqual(result.out, "hello through shadowsocks\n", result.err + local.output());
  deepStrictEqual(http.connections, 1);
});

Deno.test("shadowsocks: a key from generateConfig() works as ss-server's --key (URL-safe base64, as ss-libev requires)", async () => {
  // Bytes 0xfb encode as '+/v7...' in standard base64, which ss-libev's
  // --key refuses ('It requires a 32-byte key encoded with URL-safe Base64').
  const transport = createShadowsocks({ random: (bytes) => bytes.fill(0xfb) });
  const { client, server } = await transport.generateConfig!();
  deepStrictEqual(client, server);
  const { method, key } = server as { method: string; key: string };
  ok(/^[A-Za-z0-9_-]+=*$/.test(key), `not URL-safe base64: ${key}`);
  const target = exchangeTarget(1024);
  await using ssServer = await startSsLibev("ss-server", { method, key });
  const conn = await (await createConnector(shadowsocks, client)).dial({
    port: ssServer.port,
    destination: { hostname: "127.0.0.1", port: target.port },
  });
  try {
    deepStrictEqual(
      await exchange(conn, 1024, 1),
      { bytes: 1024, sha256: expectedHash(1024, 2) },
      ssServer.output(),
    );
  } finally {
    conn.close();
    await conn.closed;
    await target.close();
  }
});

Deno.test("shadowsocks half-close: through ptkit's server the reply after the client's end of stream arrives; ss-server closes both ways at it (as the README says)", async () => {
  // A target that answers once its client's request has ended (as a
  // client that shuts down its sending side before the answer expects).
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echoing = (async () => {
    for await (const conn of listener) {
      (async () => {
        // conn.read, not conn.readable, whose end would close the socket.
        const buffer = new Uint8Array(1024);
        let length = 0;
        for (let n; (n = await conn.read(buffer.subarray(length))) !== null;) length += n;
        await conn.write(buffer.subarray(0, length));
      })().catch(() => {}).finally(() => {
        try {
          conn.close();
        } catch {
          // Closed.
        }
      });
    }
  })().catch(() => {});
  const method = "chacha20-ietf-poly1305";
  // Send "request", end the stream, read until the server closes.
  const ask = async (port: number): Promise<string> => {
    const connector = await createConnector(shadowsocks, { method, password: PASSWORD });
    await using conn = await connector.dial({
      port,
      destination: { hostname: "127.0.0.1", port: listener.addr.port },
    });
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode("request"));
    await writer.close();
    let text = "";
    for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) text += chunk;
    return text;
  };
  try {
    {
      await using server = await ptkitServer({ method, password: PASSWORD });
      deepStrictEqual(await ask(server.addr.port), "request");
    }
    {
      await using ssServer = await startSsLibev("ss-server", { method, password: PASSWORD });
      // shadowsocks-libev 3.3.5 has no half-close: at the first end of
      // stream it closes both connections, and the answer never comes back.
      deepStrictEqual(await ask(ssServer.port), "", ssServer.output());
    }
  } finally {
    listener.close();
    await echoing;
  }
});
