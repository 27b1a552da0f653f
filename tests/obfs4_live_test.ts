// Copyright the ptkit authors. MIT license.

// Live interop with Debian's obfs4proxy 0.0.14 over loopback, both directions.

import { ok, strictEqual } from "node:assert";
import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { createObfs4, obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import {
  connStreams,
  echoTransfer,
  freePort,
  startEcho,
  startObfs4proxy,
} from "./obfs4_live_helpers.ts";
import { socks5Connect } from "./obfs4_socks5.ts";

const MiB = 1024 * 1024;

function parseArgs(field: string): Record<string, string> {
  ok(field.startsWith("ARGS:"), `no ARGS in ${field}`);
  return Object.fromEntries(
    field.slice(5).split(",").map((kv) => kv.split("=", 2) as [string, string]).map((
      [k, v],
    ) => [k, v ?? ""]),
  );
}

async function withObfs4proxyServer(
  iatMode: string,
  run: (port: number, args: Record<string, string>, stateDir: string) => Promise<void>,
  stateDir?: string,
) {
  const echo = startEcho();
  const dir = stateDir ?? await Deno.makeTempDir({ prefix: "ptkit_obfs4_" });
  const port = freePort();
  const pt = await startObfs4proxy({
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${port}`,
    TOR_PT_SERVER_TRANSPORT_OPTIONS: `obfs4:iat-mode=${iatMode}`,
    TOR_PT_ORPORT: `127.0.0.1:${echo.addr.port}`,
    TOR_PT_STATE_LOCATION: dir,
  });
  try {
    await run(port, parseArgs(pt.method[1]!), dir);
  } finally {
    await pt.stop();
    await echo.close();
    if (stateDir === undefined) await Deno.remove(dir, { recursive: true });
  }
}

for (const [mode, size] of [["0", 32 * MiB], ["1", MiB], ["2", MiB / 4]] as const) {
  Deno.test(`obfs4 client moves ${size / 1024} KiB each way through obfs4proxy server, iat-mode ${mode}`, async () => {
    await withObfs4proxyServer(mode, async (port, args) => {
      strictEqual(args["iat-mode"], mode);
      const connector = await createConnector(obfs4, { cert: args.cert!, "iat-mode": mode });
      const conn = await connector.dial({ hostname: "127.0.0.1", port });
      const start = performance.now();
      const result = await echoTransfer(conn, size);
      const seconds = (performance.now() - start) / 1000;
      console.log(`iat-mode ${mode}: ${(2 * size / MiB / seconds).toFixed(1)} MiB/s (both ways)`);
      strictEqual(result.receivedBytes, size);
      strictEqual(result.received, result.sent);
      await conn.closed;
      conn.close();
      // A few short connections.
      for (let i = 0; i < 5; i++) {
        const short = await connector.dial({ hostname: "127.0.0.1", port });
        const r = await echoTransfer(short, 1 + i * 777);
        strictEqual(r.received, r.sent);
        await short.closed;
      }
    });
  });
}

async function withPtkitServer(
  config: Record<string, string>,
  store: MemoryStore,
  run: (port: number, cert: string, iatMode: string) => Promise<void>,
) {
  const echo = startEcho();
  const manager = await proxy(obfs4, config, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: store },
    target: { hostname: "127.0.0.1", port: echo.addr.port },
  });
  try {
    await run(manager.addr.port, manager.clientOptions.cert!, manager.clientOptions["iat-mode"]!);
  } finally {
    await manager.close();
    await echo.close();
  }
}

async function viaObfs4proxyClient(
  port: number,
  cert: string,
  iatMode: string,
  sizes: number[],
) {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_obfs4c_" });
  const pt = await startObfs4proxy({
    TOR_PT_CLIENT_TRANSPORTS: "obfs4",
    TOR_PT_STATE_LOCATION: dir,
  });
  try {
    strictEqual(pt.method[0], "socks5");
    const [host, socksPort] = pt.method[1]!.split(":");
    for (const size of sizes) {
      const conn = await socks5Connect(
        { hostname: host!, port: Number(socksPort) },
        { hostname: "127.0.0.1", port },
        { username: `cert=${cert};iat-mode=${iatMode}`, password: "\0" },
      );
      try {
        const start = performance.now();
        const result = await echoTransfer(connStreams(conn), size);
        const seconds = (performance.now() - start) / 1000;
        if (size >= MiB) {
          console.log(
            `iat-mode ${iatMode}: ${(2 * size / MiB / seconds).toFixed(1)} MiB/s (both ways)`,
          );
        }
        strictEqual(result.receivedBytes, size);
        strictEqual(result.received, result.sent);
      } finally {
        conn.close();
      }
    }
  } finally {
    await pt.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const [mode, size] of [["0", 32 * MiB], ["1", MiB], ["2", MiB / 4]] as const) {
  Deno.test(`obfs4 server moves ${size / 1024} KiB each way from obfs4proxy client, iat-mode ${mode}`, async () => {
    await withPtkitServer({ "iat-mode": mode }, new MemoryStore(), async (port, cert, iat) => {
      strictEqual(iat, mode);
      await viaObfs4proxyClient(port, cert, mode, [size, 1, 100, 5000, 70_000]);
    });
  });
}

Deno.test("obfs4 server started on obfs4proxy's state accepts obfs4proxy clients with the old bridge line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_obfs4s_" });
  try {
    let oldArgs: Record<string, string> = {};
    await withObfs4proxyServer("0", async (port, args) => {
      oldArgs = args;
      const connector = await createConnector(obfs4, { cert: args.cert!, "iat-mode": "0" });
      const conn = await connector.dial({ hostname: "127.0.0.1", port });
      const result = await echoTransfer(conn, 1000);
      strictEqual(result.received, result.sent);
      await conn.closed;
      // The legacy bridge arguments name the same keys.
      const state = JSON.parse(await Deno.readTextFile(`${dir}/obfs4_state.json`));
      const legacy = await createConnector(obfs4, {
        "node-id": state["node-id"],
        "public-key": state["public-key"],
        "iat-mode": "0",
      });
      const conn2 = await legacy.dial({ hostname: "127.0.0.1", port });
      const result2 = await echoTransfer(conn2, 3000);
      strictEqual(result2.received, result2.sent);
      await conn2.closed;
    }, dir);
    const store = new MemoryStore();
    await store.set("obfs4_state.json", await Deno.readTextFile(`${dir}/obfs4_state.json`));
    const line = await Deno.readTextFile(`${dir}/obfs4_bridgeline.txt`);
    ok(line.includes(`cert=${oldArgs.cert}`));
    await withPtkitServer({}, store, async (port, cert) => {
      strictEqual(cert, oldArgs.cert);
      await viaObfs4proxyClient(port, oldArgs.cert!, "0", [MiB, 10]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("obfs4 server over TCP answers garbage with silence and closes only after the delay", async () => {
  let dialed = 0;
  const errors: unknown[] = [];
  const transport = createObfs4({ probeCloseDelay: () => 700 });
  const manager = await proxy(transport, {}, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
    target: () => {
      dialed++;
      return Promise.reject(new Error("must not be dialed"));
    },
    onError: (e) => errors.push(e),
  });
  try {
    const conns = await Promise.all([20, 5000, 20_000].map(async (size) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: manager.addr.port });
      const start = Date.now();
      await conn.write(crypto.getRandomValues(new Uint8Array(size)));
      return { conn, start };
    }));
    const results = await Promise.all(conns.map(async ({ conn, start }) => {
      const buf = new Uint8Array(1024);
      let received = 0;
      // Keep sending a little: the server must keep reading, not reset.
      const more = await conn.write(new Uint8Array(10));
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        received += n;
      }
      conn.close();
      return { received, elapsed: Date.now() - start, more };
    }));
    for (const r of results) {
      strictEqual(r.received, 0);
      strictEqual(r.more, 10);
      ok(r.elapsed >= 600, `closed after ${r.elapsed} ms`);
    }
    strictEqual(dialed, 0);
  } finally {
    await manager.close();
  }
});

Deno.test("obfs4 carries 8 concurrent connections each way with obfs4proxy", async () => {
  await withObfs4proxyServer("0", async (port, args) => {
    const connector = await createConnector(obfs4, { cert: args.cert!, "iat-mode": "0" });
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const conn = await connector.dial({ hostname: "127.0.0.1", port });
      const r = await echoTransfer(conn, 512 * 1024 + i);
      strictEqual(r.received, r.sent);
      await conn.closed;
    }));
  });
  await withPtkitServer({}, new MemoryStore(), async (port, cert) => {
    const dir = await Deno.makeTempDir({ prefix: "ptkit_obfs4c_" });
    const pt = await startObfs4proxy({
      TOR_PT_CLIENT_TRANSPORTS: "obfs4",
      TOR_PT_STATE_LOCATION: dir,
    });
    try {
      const [host, socksPort] = pt.method[1]!.split(":");
      await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        const conn = await socks5Connect(
          { hostname: host!, port: Number(socksPort) },
          { hostname: "127.0.0.1", port },
          { username: `cert=${cert};iat-mode=0`, password: "\0" },
        );
        try {
          const r = await echoTransfer(connStreams(conn), 512 * 1024 + i);
          strictEqual(r.received, r.sent);
        } finally {
          conn.close();
        }
      }));
    } finally {
      await pt.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("obfs4 completes 100 handshakes each way with obfs4proxy (random representatives)", async () => {
  await withObfs4proxyServer("0", async (port, args) => {
    const connector = await createConnector(obfs4, { cert: args.cert!, "iat-mode": "0" });
    for (let i = 0; i < 100; i++) {
      const conn = await connector.dial({ hostname: "127.0.0.1", port });
      const r = await echoTransfer(conn, 16);
      strictEqual(r.received, r.sent, `connection ${i}`);
      await conn.closed;
    }
  });
  await withPtkitServer({}, new MemoryStore(), async (port, cert) => {
    const dir = await Deno.makeTempDir({ prefix: "ptkit_obfs4c_" });
    const pt = await startObfs4proxy({
      TOR_PT_CLIENT_TRANSPORTS: "obfs4",
      TOR_PT_STATE_LOCATION: dir,
    });
    try {
      const [host, socksPort] = pt.method[1]!.split(":");
      for (let i = 0; i < 100; i++) {
        const conn = await socks5Connect(
          { hostname: host!, port: Number(socksPort) },
          { hostname: "127.0.0.1", port },
          { username: `cert=${cert};iat-mode=0`, password: "\0" },
        );
        try {
          const r = await echoTransfer(connStreams(conn), 16);
          strictEqual(r.received, r.sent, `connection ${i}`);
        } finally {
          conn.close();
        }
      }
    } finally {
      await pt.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
});
