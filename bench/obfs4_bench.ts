// Copyright the ptkit authors. MIT license.

// Throughput of ptkit's obfs4 against Debian's obfs4proxy, one stream over
// loopback, upload and download measured separately. Not a test: prints
// MB/s and ratios measured in the same run.
//
//   deno run -A bench/obfs4_bench.ts [MiB]

import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import { freePort, startObfs4proxy } from "../tests/obfs4_live_helpers.ts";
import { socks5Connect } from "../tests/obfs4_socks5.ts";

const size = Number(Deno.args[0] ?? 64) * 1024 * 1024;
const CHUNK = 65536;

// Target server: first byte 'U' = read `size` bytes then answer one byte,
// 'D' = send `size` bytes.
const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
(async () => {
  for await (const conn of target) {
    (async () => {
      const buf = new Uint8Array(CHUNK);
      try {
        let n = await conn.read(buf.subarray(0, 1));
        const mode = buf[0];
        if (n === null) return;
        if (mode === 0x55) {
          let got = 0;
          while (got < size) {
            n = await conn.read(buf);
            if (n === null) return;
            got += n;
          }
          await conn.write(new Uint8Array([1]));
        } else {
          const data = crypto.getRandomValues(new Uint8Array(CHUNK));
          for (let sent = 0; sent < size;) sent += await conn.write(data);
        }
        await conn.read(buf);
      } catch {
        // Done.
      } finally {
        conn.close();
      }
    })();
  }
})();
const targetPort = (target.addr as Deno.NetAddr).port;

interface Duplex {
  write(data: Uint8Array): Promise<void>;
  read(): Promise<number | null>;
  close(): void;
}

function fromConn(conn: Deno.Conn): Duplex {
  const buf = new Uint8Array(CHUNK * 2);
  return {
    async write(data) {
      for (let o = 0; o < data.length;) o += await conn.write(data.subarray(o));
    },
    read: () => conn.read(buf),
    close: () => conn.close(),
  };
}

async function measure(open: () => Promise<Duplex>): Promise<[number, number]> {
  const results: number[] = [];
  for (const mode of ["U", "D"]) {
    const d = await open();
    const start = performance.now();
    await d.write(new TextEncoder().encode(mode));
    if (mode === "U") {
      const data = crypto.getRandomValues(new Uint8Array(CHUNK));
      for (let sent = 0; sent < size; sent += CHUNK) await d.write(data);
      await d.read();
    } else {
      let got = 0;
      while (got < size) {
        const n = await d.read();
        if (n === null) throw new Error("Stream ended early");
        got += n;
      }
    }
    results.push(size / 1e6 / ((performance.now() - start) / 1000));
    d.close();
  }
  return results as [number, number];
}

async function transportConnDuplex(dial: () => Promise<import("../client.ts").TransportConn>) {
  const conn = await dial();
  const writer = conn.writable.getWriter();
  const reader = conn.readable.getReader();
  return {
    write: (data: Uint8Array) => writer.write(data),
    read: async () => {
      const { value } = await reader.read();
      return value?.length ?? null;
    },
    close: () => conn.close(),
  } satisfies Duplex;
}

const dirs: string[] = [];
const tmp = async () => {
  const d = await Deno.makeTempDir({ prefix: "ptkit_obfs4_bench_" });
  dirs.push(d);
  return d;
};

// obfs4proxy server in front of the target.
const goServerPort = freePort();
const goServer = await startObfs4proxy({
  TOR_PT_SERVER_TRANSPORTS: "obfs4",
  TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${goServerPort}`,
  TOR_PT_ORPORT: `127.0.0.1:${targetPort}`,
  TOR_PT_STATE_LOCATION: await tmp(),
});
const goCert = goServer.method[1]!.match(/cert=([^,]+)/)![1]!;
// obfs4proxy client.
const goClient = await startObfs4proxy({
  TOR_PT_CLIENT_TRANSPORTS: "obfs4",
  TOR_PT_STATE_LOCATION: await tmp(),
});
const [socksHost, socksPort] = goClient.method[1]!.split(":");
// ptkit server in front of the target.
const ptServer = await proxy(obfs4, {}, {
  hostname: "127.0.0.1",
  port: 0,
  env: { local: new MemoryStore() },
  target: { hostname: "127.0.0.1", port: targetPort },
});

const viaGoClient = (port: number, cert: string) => async () =>
  fromConn(
    await socks5Connect({ hostname: socksHost!, port: Number(socksPort) }, {
      hostname: "127.0.0.1",
      port,
    }, { username: `cert=${cert};iat-mode=0`, password: "\0" }),
  );
const ptClientTo = async (port: number, cert: string) => {
  const connector = await createConnector(obfs4, { cert, "iat-mode": "0" });
  return () => transportConnDuplex(() => connector.dial({ hostname: "127.0.0.1", port }));
};

const rows: [string, [number, number]][] = [];
rows.push([
  "obfs4proxy client -> obfs4proxy server",
  await measure(viaGoClient(goServerPort, goCert)),
]);
rows.push([
  "ptkit client      -> obfs4proxy server",
  await measure(await ptClientTo(goServerPort, goCert)),
]);
rows.push([
  "obfs4proxy client -> ptkit server     ",
  await measure(viaGoClient(ptServer.addr.port, ptServer.clientOptions.cert!)),
]);
rows.push([
  "ptkit client      -> ptkit server     ",
  await measure(await ptClientTo(ptServer.addr.port, ptServer.clientOptions.cert!)),
]);

const [base] = rows[0]!.slice(1) as [[number, number]];
console.log(
  `obfs4, one stream, ${size / 1024 / 1024} MiB each way, MB/s (ratio to obfs4proxy pair)`,
);
for (const [name, [up, down]] of rows) {
  console.log(
    `${name}  upload ${up.toFixed(0).padStart(4)} (${(up / base[0]).toFixed(2)})  download ${
      down.toFixed(0).padStart(4)
    } (${(down / base[1]).toFixed(2)})`,
  );
}
console.log("(ptkit client -> ptkit server runs both ends and the target in one Deno thread)");

await ptServer.close();
await goClient.stop();
await goServer.stop();
target.close();
for (const d of dirs) await Deno.remove(d, { recursive: true });
Deno.exit(0);
