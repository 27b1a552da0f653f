// Copyright the ptkit authors. MIT license.

// The adapter launching ptkit's own main.ts and Debian's snowflake-client,
// and dialing through main.ts with PT 1.0 and PT 2.0 arguments.

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { launchClient, type LaunchClientOptions } from "../ipc/adapter/mod.ts";
import { socks5Connect } from "../ipc/socks/_client.ts";
import { SocksReplyError } from "../ipc/socks/_reply.ts";
import { parseTorArgs } from "../ipc/lines/_args.ts";
import { echoTransfer, startEcho } from "./obfs4_live_helpers.ts";
import { MAIN, requireBinary } from "./ipc_util.ts";

/** ptkit's main.ts, exec'd by path as tor does. */
function ptkitMain(extra: Partial<LaunchClientOptions> = {}): LaunchClientOptions {
  return { path: MAIN, transports: ["plain", "obfs4"], ...extra };
}

Deno.test("launchClient launches ptkit's main.ts and reports its CMETHOD lines", async () => {
  await using pt = await launchClient(ptkitMain());
  strictEqual(pt.version, "2");
  deepStrictEqual([...pt.transports.keys()].sort(), ["obfs4", "plain"]);
  for (const transport of pt.transports.values()) {
    strictEqual(transport.mode, "socks5");
    strictEqual(transport.address!.hostname, "127.0.0.1");
    ok(transport.address!.port > 0);
  }
});

Deno.test("launchClient passes an upstream proxy to main.ts, which answers PROXY DONE", async () => {
  await using pt = await launchClient(
    ptkitMain({ transports: ["plain"], proxy: "socks5://127.0.0.1:1080" }),
  );
  deepStrictEqual([...pt.transports.keys()], ["plain"]);
});

Deno.test("launchClient launches snowflake-client and reports its CMETHOD line", async () => {
  await using pt = await launchClient({
    path: requireBinary("snowflake-client", "snowflake-client"),
    transports: ["snowflake"],
  });
  strictEqual(pt.version, "1");
  deepStrictEqual([...pt.transports.keys()], ["snowflake"]);
  strictEqual(pt.transports.get("snowflake")!.mode, "socks5");
});

for (
  const [label, options] of [
    ["PT 2.0 JSON (draft 1 framing)", { versions: ["1", "2"] }],
    ["PT 2.0 JSON with a length prefix", { versions: ["2"], jsonLengthPrefix: true }],
    ["PT 1.0 user/password", { versions: ["1"] }],
  ] as const
) {
  Deno.test(`PtClientTransport dials through main.ts's obfs4 with ${label}`, async () => {
    const echo = startEcho();
    const server = await proxy(obfs4, {}, {
      hostname: "127.0.0.1",
      port: 0,
      env: { local: new MemoryStore() },
      target: { hostname: "127.0.0.1", port: echo.addr.port },
    });
    try {
      await using pt = await launchClient(ptkitMain(options));
      strictEqual(pt.version, (options.versions as readonly string[]).includes("2") ? "2" : "1");
      const connector = await pt.transports.get("obfs4")!.connector(server.clientOptions);
      const conn = await connector.dial({ hostname: "127.0.0.1", port: server.addr.port });
      const result = await echoTransfer(conn, 1024 * 1024);
      strictEqual(result.received, result.sent);
      await conn.closed;
      conn.close();
      // The same through per-connection settings.
      const bare = await pt.transports.get("obfs4")!.connector();
      const conn2 = await bare.dial({
        hostname: "127.0.0.1",
        port: server.addr.port,
        settings: server.clientOptions,
      });
      const result2 = await echoTransfer(conn2, 1000);
      strictEqual(result2.received, result2.sent);
      await conn2.closed;
      conn2.close();
      // Arguments the transport refuses (a malformed cert; over 255 bytes
      // with the unknown key: split with PT 1.0) reach main.ts intact, which
      // answers 0x13 "invalid keys".
      const args = { ...server.clientOptions, cert: "not-a-cert", note: "x;y\\z".repeat(50) };
      const error = await pt.transports.get("obfs4")!.dial(
        { hostname: "127.0.0.1", port: echo.addr.port },
        args,
      ).then(() => undefined, (e) => e);
      ok(error instanceof SocksReplyError, String(error));
      ok(/SOCKS5 reply 0x13/.test(error.message), error.message);
    } finally {
      await server.close();
      await echo.close();
    }
  });
}

/** Dial through a SOCKS5 port with PT 1.0 arguments, as a client PT's transports do. */
async function dialWith(port: number, settings: Record<string, string>): Promise<void> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await socks5Connect(conn, { hostname: "127.0.0.1", port: 1 }, {
    settings,
    peer: "PT SOCKS5 port",
  });
}

Deno.test("the SOCKS5 client sends over 255 bytes of PT 1.0 arguments split into the password", async () => {
  // A SOCKS server that records the RFC 1929 message, then refuses.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen = (async () => {
    using conn = await listener.accept();
    const buffer = new Uint8Array(1024);
    let total = 0;
    const readMore = async () => {
      const n = await conn.read(buffer.subarray(total));
      if (n === null) throw new Error("closed");
      total += n;
    };
    while (total < 3) await readMore();
    deepStrictEqual([...buffer.subarray(0, 3)], [5, 1, 2]);
    await conn.write(new Uint8Array([5, 2]));
    total = 0;
    while (total < 2 || total < 3 + buffer[1]!) await readMore();
    const ulen = buffer[1]!;
    while (total < 3 + ulen + buffer[2 + ulen]!) await readMore();
    const plen = buffer[2 + ulen]!;
    const user = new TextDecoder().decode(buffer.subarray(2, 2 + ulen));
    const pass = new TextDecoder().decode(buffer.subarray(3 + ulen, 3 + ulen + plen));
    await conn.write(new Uint8Array([1, 1]));
    return { user, pass };
  })();
  const args = { a: "x;y".repeat(100), "b=c": "\\" };
  await rejects(
    dialWith(listener.addr.port, args),
    /refused the transport arguments/,
  );
  const { user, pass } = await seen;
  strictEqual(user.length, 255);
  deepStrictEqual(parseTorArgs(user + pass), args);
  await rejects(
    dialWith(listener.addr.port, { a: "x".repeat(600) }),
    RangeError,
  );
});
