// Copyright the ptkit authors. MIT license.

// ptkit's Shadowsocks against shadowsocks-libev 3.3.5 (Debian), side by
// side in one run over loopback, per method. Same topology for both: the
// bench connects a tunnel (ss-tunnel, or ptkit's client: this file with
// --hop) that carries every connection to one fixed target through the
// server (ss-server, or ptkit's server: this file with --serve); each peer
// is its own process. One stream upload, one stream download; prints MB/s
// and the ptkit / ss-libev ratio per method and direction. Progress on
// stderr. Not a test.
//
//   deno run -A bench/shadowsocks_bench.ts [MiB per run, default 256]
//
// SHADOWSOCKS_BENCH_METHODS (comma-separated) picks the methods.

import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { relay } from "../net/relay.ts";
import { tcpDialer } from "../net/net_conn.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import { libcryptoAead } from "../net/_aead.ts";
import { requireBinary, waitListening } from "../tests/ipc_util.ts";
import { freePort } from "../tests/obfs4_live_helpers.ts";

// SHADOWSOCKS_BENCH_METHODS=aes-128-gcm,... runs only those.
const METHODS = Deno.env.get("SHADOWSOCKS_BENCH_METHODS")?.split(",") ??
  ["chacha20-ietf-poly1305", "aes-128-gcm", "aes-256-gcm"];
const PASSWORD = "ptkit-bench";
const ROUNDS = 3;
const self = new URL(import.meta.url).pathname;
// proxy() and createConnector() give the transport the runtime's crypto:
// OpenSSL's AEADs through FFI where they load, else node:crypto.
const openssl = libcryptoAead() !== undefined;

/** `--serve METHOD PORT`: ptkit's server, connecting each stream's destination. */
async function serve(method: string, port: number): Promise<void> {
  await proxy(shadowsocks, { method, password: PASSWORD }, {
    hostname: "127.0.0.1",
    port,
    target: async (conn) => await tcpDialer(await conn.destination!),
  });
}

/** `--hop METHOD PORT SERVER TARGET`: ptkit's client as a tunnel to one destination. */
async function hop(method: string, port: number, server: number, target: number): Promise<void> {
  const connector = await createConnector(shadowsocks, { method, password: PASSWORD });
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  for await (const conn of listener) {
    connector.dial({ port: server, destination: { hostname: "127.0.0.1", port: target } })
      .then((out) => relay(conn, out))
      .catch(() => conn.close());
  }
}

/**
 * The target: a first byte `u` means "read TOTAL bytes, then answer one
 * byte"; `d` means "send TOTAL bytes". No half-close needed.
 */
function target(total: number): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const data = crypto.getRandomValues(new Uint8Array(65536));
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(256 * 1024);
        const n = await conn.read(buffer);
        if (n === null) return;
        if (buffer[0] === 0x75) {
          let got = n - 1;
          while (got < total) {
            const m = await conn.read(buffer);
            if (m === null) break;
            got += m;
          }
          await conn.write(new Uint8Array([1]));
        } else {
          for (let sent = 0; sent < total; sent += data.length) {
            const piece = data.subarray(0, Math.min(data.length, total - sent));
            for (let off = 0; off < piece.length;) off += await conn.write(piece.subarray(off));
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      })().catch(() => {}).finally(() => conn.close());
    }
  })().catch(() => {});
  return { port: listener.addr.port, close: () => listener.close() };
}

async function upload(port: number, total: number): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunk = crypto.getRandomValues(new Uint8Array(65536));
  const start = performance.now();
  await conn.write(new Uint8Array([0x75]));
  for (let sent = 0; sent < total; sent += chunk.length) {
    for (let off = 0; off < chunk.length;) off += await conn.write(chunk.subarray(off));
  }
  const answer = await conn.read(new Uint8Array(16));
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  if (answer === null) throw new Error("upload: the target's answer did not arrive");
  return total / 1e6 / seconds;
}

async function download(port: number, total: number): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(256 * 1024);
  const start = performance.now();
  await conn.write(new Uint8Array([0x64]));
  let got = 0;
  while (got < total) {
    const n = await conn.read(buffer);
    if (n === null) break;
    got += n;
  }
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  if (got < total) throw new Error(`download: got ${got} of ${total} bytes`);
  return total / 1e6 / seconds;
}

function spawn(command: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // Gone.
  }
  await child.status;
}

async function best(label: string, fn: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const value = await fn();
    Deno.stderr.writeSync(
      new TextEncoder().encode(`  ${label} run ${i + 1}: ${value.toFixed(0)} MB/s\n`),
    );
    top = Math.max(top, value);
  }
  return top;
}

/** Start a server and a tunnel to `targetPort`; the tunnel's port and a stopper. */
async function pairOf(
  kind: "ptkit" | "ss-libev",
  method: string,
  targetPort: number,
): Promise<{ port: number; stop(): Promise<void> }> {
  const serverPort = freePort();
  const tunnelPort = freePort();
  const deno = Deno.execPath();
  const children = kind === "ptkit"
    ? [
      spawn(deno, ["run", "-A", self, "--serve", method, String(serverPort)]),
      spawn(deno, [
        "run",
        "-A",
        self,
        "--hop",
        method,
        String(tunnelPort),
        String(serverPort),
        String(targetPort),
      ]),
    ]
    : [
      spawn(requireBinary("ss-server", "shadowsocks-libev"), [
        "-s",
        "127.0.0.1",
        "-p",
        String(serverPort),
        "-k",
        PASSWORD,
        "-m",
        method,
      ]),
      spawn(requireBinary("ss-tunnel", "shadowsocks-libev"), [
        "-s",
        "127.0.0.1",
        "-p",
        String(serverPort),
        "-b",
        "127.0.0.1",
        "-l",
        String(tunnelPort),
        "-L",
        `127.0.0.1:${targetPort}`,
        "-k",
        PASSWORD,
        "-m",
        method,
      ]),
    ];
  await waitListening(serverPort);
  await waitListening(tunnelPort);
  return { port: tunnelPort, stop: () => Promise.all(children.map(stop)).then(() => {}) };
}

/** Run the comparison; returns the rows printed. */
export async function shadowsocksBench(mib: number): Promise<void> {
  const total = mib * 1024 * 1024;
  const sink = target(total);
  const results: [string, string, number, number][] = [];
  for (const method of METHODS) {
    const rates: Record<string, { up: number; down: number }> = {};
    for (const kind of ["ss-libev", "ptkit"] as const) {
      Deno.stderr.writeSync(new TextEncoder().encode(`shadowsocks bench: ${kind} ${method}\n`));
      const pair = await pairOf(kind, method, sink.port);
      try {
        const up = await best(`${kind} ${method} upload`, () => upload(pair.port, total));
        const down = await best(`${kind} ${method} download`, () => download(pair.port, total));
        rates[kind] = { up, down };
      } finally {
        await pair.stop();
      }
    }
    results.push([method, "upload", rates.ptkit!.up, rates["ss-libev"]!.up]);
    results.push([method, "download", rates.ptkit!.down, rates["ss-libev"]!.down]);
  }
  sink.close();
  console.log(
    `Shadowsocks (${
      openssl ? "OpenSSL via FFI" : "node:crypto"
    }): ptkit client + server vs ss-local + ss-server (ss-tunnel, 3.3.5), one stream, ${mib} MiB per run, best of ${ROUNDS} (goal >= 1.0, floor 0.8):`,
  );
  for (const [method, direction, ptkit, libev] of results) {
    console.log(
      `${`${method} ${direction}`.padEnd(36)} ptkit ${
        ptkit.toFixed(0).padStart(5)
      } MB/s  ss-libev ${libev.toFixed(0).padStart(5)} MB/s  ratio ${(ptkit / libev).toFixed(2)}`,
    );
  }
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode === "--serve") await serve(rest[0]!, Number(rest[1]));
  else if (mode === "--hop") await hop(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]));
  else {
    await shadowsocksBench(Number(mode ?? "256"));
    Deno.exit(0);
  }
}
