// Copyright the ptkit authors. MIT license.
// Bad input for the server side of main.ts: an unreachable ORPort, and 1000
// connections of random bytes (obfs4 handshake parser; plain into the
// embedded SOCKS5 target). The process stays up, its memory stays bounded,
// and later good connections work.

import { deepStrictEqual, match, ok } from "node:assert";
import { createConnector } from "../client.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { parseSmethodArgs } from "../ipc/lines/_args.ts";
import { PtProcess, readAll, readN, requireBinary } from "./ipc_util.ts";
import { freePort } from "./tor_util.ts";

/** Echoes every connection; closes them all on dispose. */
class EchoServer implements AsyncDisposable {
  readonly listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #loop: Promise<void>;
  accepted = 0;

  constructor(port = 0) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.accepted++;
        this.#conns.add(conn);
        const task = (async () => {
          const buffer = new Uint8Array(16384);
          try {
            for (;;) {
              const n = await conn.read(buffer);
              if (n === null) break;
              await conn.write(buffer.subarray(0, n));
            }
          } catch {
            // Peer went away.
          }
        })().finally(() => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Closed.
          }
        });
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Closed.
      }
    }
    await this.#loop;
    await Promise.allSettled([...this.#tasks]);
  }
}

function serverEnv(dir: string, transport: string, extra: Record<string, string> = {}) {
  return {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_SERVER_TRANSPORTS: transport,
    TOR_PT_SERVER_BINDADDR: `${transport}-127.0.0.1:0`,
    TOR_PT_STATE_LOCATION: `${dir}/state`,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    ...extra,
  };
}

async function smethod(pt: PtProcess, name: string) {
  const line = await pt.waitFor(new RegExp(`^SMETHOD ${name} `));
  await pt.waitFor(/^SMETHODS DONE$/);
  const [, , addr, args] = line.split(" ");
  return { port: Number(addr!.split(":")[1]), args: parseSmethodArgs(args ?? "") };
}

function rss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+([0-9]+) kB/.exec(status)![1]) * 1024;
}

Deno.test("main.ts server: an unreachable ORPort closes that client's connection and keeps serving", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_srvbad_" });
  const orPort = freePort();
  await using pt = new PtProcess(
    [],
    serverEnv(dir, "plain", { TOR_PT_ORPORT: `127.0.0.1:${orPort}` }),
  );
  const { port } = await smethod(pt, "plain");
  for (let i = 0; i < 3; i++) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new Uint8Array([1])).catch(() => 0);
    deepStrictEqual(await readAll(conn), new Uint8Array(0));
  }
  // The line says which side refused (the ORPort, not the client), without its address.
  await pt.waitFor(
    /^LOG SEVERITY=warning MESSAGE="plain: connection failed: cannot connect to the target \(the ORPort or -target\): Connection refused/,
  );
  // Once the ORPort is up, the same server relays.
  {
    await using echo = new EchoServer(orPort);
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new Uint8Array([1, 2, 3]));
    deepStrictEqual(await readN(conn, 3), new Uint8Array([1, 2, 3]));
    conn.close();
    void echo;
  }
  await pt.closeStdin();
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 0);
  deepStrictEqual(lines.filter((l) => l.includes("connection failed")).length, 3);
  ok(!lines.some((l) => /127\.0\.0\.1/.test(l) && l.startsWith("LOG")), "logged an address");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("main.ts server (obfs4): 1000 connections of random bytes; memory bounded, good clients still served", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_srvbad_" });
  await using echo = new EchoServer();
  await using pt = new PtProcess(
    [],
    serverEnv(dir, "obfs4", { TOR_PT_ORPORT: `127.0.0.1:${echo.port}` }),
  );
  const { port, args } = await smethod(pt, "obfs4");
  const connector = await createConnector(obfs4, args);
  const good = async () => {
    await using conn = await connector.dial({ hostname: "127.0.0.1", port });
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode("still here"));
    const reader = conn.readable.getReader();
    let text = "";
    while (text.length < 10) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    deepStrictEqual(text, "still here");
    reader.releaseLock();
    writer.releaseLock();
  };
  await good();
  const before = rss(pt.child.pid);
  let peak = before;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        // Sizes around the obfs4 handshake limits (up to 8 KiB and beyond).
        const junk = new Uint8Array([0, 1, 64, 1000, 5000, 8192, 9000, 20000][i % 8]!);
        crypto.getRandomValues(junk);
        await conn.write(junk).catch(() => {});
      } finally {
        conn.close();
      }
    }));
    peak = Math.max(peak, rss(pt.child.pid));
  }
  await good();
  const growth = (peak - before) / (1 << 20);
  console.log(`obfs4 server resident memory grew by ${growth.toFixed(1)} MiB`);
  ok(growth < 128, `memory grew by ${growth.toFixed(1)} MiB`);
  deepStrictEqual(echo.accepted, 2, "random bytes reached the ORPort");
  await pt.closeStdin();
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("main.ts server (plain, -target socks): 1000 connections of random bytes into the SOCKS target", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_srvbad_" });
  await using echo = new EchoServer();
  await using pt = new PtProcess(
    ["-target", "socks", "-allow", `127.0.0.1:${echo.port}`],
    serverEnv(dir, "plain"),
  );
  const { port } = await smethod(pt, "plain");
  let seed = 4242;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  const before = rss(pt.child.pid);
  let peak = before;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const junk = new Uint8Array(Math.floor(random() * 700));
        crypto.getRandomValues(junk);
        if (junk.length > 2 && random() < 0.5) junk.set([5, 1, 0]);
        if (junk.length > 6 && random() < 0.3) junk.set([5, 1, 0, 5, 1, 0, 3]);
        await conn.write(junk).catch(() => {});
        await conn.closeWrite().catch(() => {});
        await readAll(conn);
      } finally {
        conn.close();
      }
    }));
    peak = Math.max(peak, rss(pt.child.pid));
  }
  const growth = (peak - before) / (1 << 20);
  ok(growth < 128, `memory grew by ${growth.toFixed(1)} MiB`);
  deepStrictEqual(echo.accepted, 0);
  // A well-formed request to the allowed destination works.
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new Uint8Array([5, 1, 0]));
    deepStrictEqual(await readN(conn, 2), new Uint8Array([5, 0]));
    const p = echo.port;
    await conn.write(new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 255]));
    deepStrictEqual((await readN(conn, 10))[1], 0);
    await conn.write(new Uint8Array([9, 9]));
    deepStrictEqual(await readN(conn, 2), new Uint8Array([9, 9]));
  }
  await pt.closeStdin();
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("main.ts server: a client that resets its connection while relaying (a censor's injected RST, a crashed client) is logged at info, not as a warning for the operator", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_srvbad_" });
  await using echo = new EchoServer();
  await using pt = new PtProcess(
    ["-logLevel", "info"],
    serverEnv(dir, "plain", { TOR_PT_ORPORT: `127.0.0.1:${echo.port}` }),
  );
  const { port } = await smethod(pt, "plain");
  // Node.js can reset a socket (SO_LINGER 0); Deno cannot.
  const script = `
    const net = require("node:net");
    const socket = net.connect(${port}, "127.0.0.1", () => socket.write("hello"));
    socket.on("data", () => { socket.resetAndDestroy(); console.log("reset"); });
    socket.on("error", () => {});
  `;
  const output = await new Deno.Command(requireBinary("node", "nodejs"), {
    args: ["-e", script],
    stdout: "piped",
  }).output();
  deepStrictEqual(new TextDecoder().decode(output.stdout).trim(), "reset");
  const line = await pt.waitFor(/plain: connection failed/);
  match(line, /^LOG SEVERITY=info MESSAGE="plain: connection failed: Connection reset by peer/);
  await pt.closeStdin();
  const { code } = await pt.exit();
  deepStrictEqual(code, 0);
  await Deno.remove(dir, { recursive: true });
});
