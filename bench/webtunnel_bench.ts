// Copyright the ptkit authors. MIT license.

// WebTunnel behind real nginx (TLS, certificate made now by openssl),
// against the limit nginx and TLS set: MiB downloaded through the whole
// pipeline (ptkit client -> nginx with TLS -> ptkit webtunnel server ->
// source) versus curl fetching a file of the same size over TLS from the same
// nginx. The ptkit server (with the source behind it) is its own process, as
// in a deployment. A third row runs the same pipeline without ptkit: Deno's
// own TLS stream reading the upgraded connection, nginx, and a hop that
// answers the upgrade itself and pipes to the source with `pipeTo` (as
// bench/pipe_hop.ts): what the pipeline's extra loopback hops cost before
// ptkit does anything. Then the CPU seconds per GiB of each process, so a
// run shows where the time goes (Linux /proc; "n/a" elsewhere). Progress on
// stderr, the tables on stdout. Not a test.
//
//   deno run -A bench/webtunnel_bench.ts [MiB, default 256]

import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { upgradeRequest } from "../transports/webtunnel/_http_upgrade.ts";
import { makeCertificate, Nginx } from "../tests/nginx_util.ts";
import { childPids, cpuSeconds } from "./_cpu.ts";

const SECRET = "/bench-secret-path";
const CHUNK = 65536;
const HEAD_END = [13, 10, 13, 10];

/** Where `\r\n\r\n` ends in `bytes`, or -1. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 4 <= bytes.length; i++) {
    if (HEAD_END.every((byte, j) => bytes[i + j] === byte)) return i + 4;
  }
  return -1;
}

if (Deno.args[0] === "--serve") {
  // Child: a source that sends the size it is asked for (u32 MiB count
  // first), behind a ptkit webtunnel server, and behind a plain hop that
  // answers the upgrade itself. Prints both ports.
  const source = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const block = crypto.getRandomValues(new Uint8Array(CHUNK));
  (async () => {
    for await (const conn of source) {
      (async () => {
        const head = new Uint8Array(4);
        for (let got = 0; got < 4;) {
          const n = await conn.read(head.subarray(got));
          if (n === null) return;
          got += n;
        }
        const total = new DataView(head.buffer).getUint32(0) * 1024 * 1024;
        for (let sent = 0; sent < total; sent += CHUNK) {
          for (let offset = 0; offset < CHUNK;) offset += await conn.write(block.subarray(offset));
        }
        // nginx ends an upgraded connection when either side finishes: the
        // client closes once it has everything.
        await conn.read(new Uint8Array(1)).catch(() => null);
      })().catch(() => {}).finally(() => {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      });
    }
  })();
  const manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: source.addr.port },
    onError: () => {},
  });
  // Without ptkit: read the request head, answer 101, then pipeTo both ways.
  const plain = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of plain) {
      (async () => {
        let head = new Uint8Array(0);
        const buffer = new Uint8Array(16 * 1024);
        while (headEnd(head) < 0) {
          const n = await conn.read(buffer);
          if (n === null) throw new Error("Closed before the request head");
          head = new Uint8Array([...head, ...buffer.subarray(0, n)]);
        }
        const out = await Deno.connect({ hostname: "127.0.0.1", port: source.addr.port });
        await out.write(head.subarray(headEnd(head)));
        await conn.write(
          new TextEncoder().encode(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
          ),
        );
        await Promise.allSettled([
          conn.readable.pipeTo(out.writable),
          out.readable.pipeTo(conn.writable),
        ]);
      })().catch(() => conn.close());
    }
  })();
  console.log(`${manager.addr.port} ${plain.addr.port}`);
  for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
  Deno.exit(0);
}

const mib = Number(Deno.args[0] ?? 256);
const size = mib * 1024 * 1024;
const ROUNDS = 3;
const progress = (text: string) => console.error(`webtunnel bench: ${text}`);

const dir = await Deno.makeTempDir({ prefix: "ptkit_webtunnel_bench_" });
progress("making a certificate with openssl");
const certificate = await makeCertificate(dir);
progress(`writing a ${mib} MiB file for nginx to serve`);
{
  await Deno.mkdir(`${dir}/www`, { recursive: true });
  using file = await Deno.open(`${dir}/www/big.bin`, { write: true, create: true });
  const block = crypto.getRandomValues(new Uint8Array(CHUNK));
  for (let written = 0; written < size; written += CHUNK) {
    for (let offset = 0; offset < CHUNK;) offset += await file.write(block.subarray(offset));
  }
}

progress("starting the ptkit webtunnel server (its own process)");
const server = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-all", new URL(import.meta.url).pathname, "--serve"],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const [serverPort, plainPort] =
  (await server.stdout.pipeThrough(new TextDecoderStream()).getReader().read()).value!.trim()
    .split(" ").map(Number);
const nginx = await Nginx.start({
  dir,
  certificate,
  secretPath: SECRET,
  backendPort: serverPort!,
});
// The same configuration for the pipeline without ptkit (its own directory).
await Deno.mkdir(`${dir}/plain`);
const plainNginx = await Nginx.start({
  dir: `${dir}/plain`,
  certificate,
  secretPath: SECRET,
  backendPort: plainPort!,
});
const base = `https://localhost:${nginx.port}`;
const nginxWorkers = (server: Nginx) =>
  childPids(Number(Deno.readTextFileSync(`${server.dir}/nginx.pid`).trim()));

async function viaCurl(): Promise<number> {
  const output = await new Deno.Command("curl", {
    args: [
      "-sS",
      "-o",
      "/dev/null",
      "--cacert",
      certificate.caFile,
      "-w",
      "%{size_download} %{time_total}",
      `${base}/big.bin`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [bytes, seconds] = new TextDecoder().decode(output.stdout).split(" ").map(Number);
  if (output.code !== 0 || bytes !== size) {
    throw new Error(`curl failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return size / 1e6 / seconds!;
}

const connector = await createConnector(webtunnel, { url: `${base}${SECRET}` }, {
  caCerts: [certificate.caPem],
});

async function viaWebtunnel(): Promise<number> {
  const start = performance.now();
  await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
  const writer = conn.writable.getWriter();
  const request = new Uint8Array(4);
  new DataView(request.buffer).setUint32(0, mib);
  await writer.write(request);
  let got = 0;
  const reader = conn.readable.getReader();
  while (got < size) {
    const { value, done } = await reader.read();
    if (done) break;
    got += value.byteLength;
  }
  const seconds = (performance.now() - start) / 1000;
  if (got !== size) throw new Error(`webtunnel download ended after ${got} of ${size} bytes`);
  return size / 1e6 / seconds;
}

async function withoutPtkit(): Promise<number> {
  const start = performance.now();
  const conn = await Deno.connectTls({
    hostname: "localhost",
    port: plainNginx.port,
    caCerts: [certificate.caPem],
  });
  try {
    const request = new Uint8Array(4);
    new DataView(request.buffer).setUint32(0, mib);
    await conn.write(new Uint8Array([...upgradeRequest(SECRET, "localhost"), ...request]));
    let head = new Uint8Array(0);
    let got = -1;
    for await (const chunk of conn.readable) {
      if (got < 0) {
        head = new Uint8Array([...head, ...chunk]);
        if (headEnd(head) < 0) continue;
        got = head.length - headEnd(head);
      } else {
        got += chunk.byteLength;
      }
      if (got >= size) break;
    }
    const seconds = (performance.now() - start) / 1000;
    if (got !== size) throw new Error(`Download without ptkit ended after ${got} of ${size} bytes`);
    return size / 1e6 / seconds;
  } finally {
    try {
      conn.close();
    } catch {
      // The stream's end closed it.
    }
  }
}

/** Best throughput and summed CPU seconds of each process over the rounds. */
interface Figures {
  best: number;
  downloader: number;
  nginx: number;
  server: number;
}

async function measure(
  name: string,
  run: () => Promise<number>,
  front: Nginx,
  figures: Figures,
  external: boolean,
): Promise<void> {
  const workers = nginxWorkers(front);
  const cpu = () => ({
    downloader: cpuSeconds("self", external),
    nginx: workers.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    server: cpuSeconds(server.pid),
  });
  const before = cpu();
  const value = await run();
  const after = cpu();
  progress(`${name}: ${value.toFixed(0)} MB/s`);
  figures.best = Math.max(figures.best, value);
  figures.downloader += after.downloader - before.downloader;
  figures.nginx += workers.length === 0 ? NaN : after.nginx - before.nginx;
  figures.server += external ? 0 : after.server - before.server;
}

const figures = (): Figures => ({ best: 0, downloader: 0, nginx: 0, server: 0 });
const curl = figures();
const tunnel = figures();
const plain = figures();
try {
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`round ${round}/${ROUNDS}: curl ${mib} MiB over TLS from nginx`);
    await measure("curl", viaCurl, nginx, curl, true);
    progress(`round ${round}/${ROUNDS}: ${mib} MiB through webtunnel`);
    await measure("webtunnel", viaWebtunnel, nginx, tunnel, false);
    progress(`round ${round}/${ROUNDS}: ${mib} MiB through the same pipeline without ptkit`);
    await measure("without ptkit", withoutPtkit, plainNginx, plain, false);
  }
  const short = ["curl", "ptkit webtunnel", "without ptkit"];
  const names = [
    "curl, a file over TLS from the same nginx",
    "ptkit client -> nginx (TLS) -> webtunnel server",
    "the same pipeline without ptkit (Deno streams)",
  ];
  console.log(
    `WebTunnel behind nginx (TLS): ${mib} MiB downloaded, best of ${ROUNDS} (goal >= 0.8):`,
  );
  [curl, tunnel, plain].forEach((figures, i) =>
    console.log(
      `${names[i]!.padEnd(48)} ${figures.best.toFixed(0).padStart(8)} MB/s    ratio ${
        (figures.best / curl.best).toFixed(2)
      }`,
    )
  );
  const gib = (ROUNDS * size) / 2 ** 30;
  const cell = (seconds: number) =>
    (Number.isNaN(seconds) ? "n/a" : (seconds / gib).toFixed(2)).padStart(10);
  console.log(
    `CPU seconds per GiB (all rounds): ${"client".padStart(10)} ${"nginx".padStart(10)} ${
      "server".padStart(10)
    }`,
  );
  [curl, tunnel, plain].forEach((figures, i) =>
    console.log(
      `${short[i]!.padEnd(33)}${cell(figures.downloader)} ${cell(figures.nginx)} ${
        i === 0 ? "-".padStart(10) : cell(figures.server)
      }`,
    )
  );
  console.log(
    "(client: curl, or this process; server: the webtunnel server's process with the source.)",
  );
} finally {
  server.stdin.close();
  await server.status;
  await nginx[Symbol.asyncDispose]();
  await plainNginx[Symbol.asyncDispose]();
  await Deno.remove(dir, { recursive: true });
}
