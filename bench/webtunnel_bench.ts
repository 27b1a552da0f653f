// Copyright the ptkit authors. MIT license.

// WebTunnel behind real nginx (TLS, certificate made now by openssl),
// against the limit nginx and TLS set: MiB downloaded through the whole
// pipeline (ptkit client -> nginx with TLS -> ptkit webtunnel server ->
// source) versus curl fetching a file of the same size over TLS from the same
// nginx. The ptkit server (with the source behind it) is its own process, as
// in a deployment. Progress on stderr, the table on stdout. Not a test.
//
//   deno run -A bench/webtunnel_bench.ts [MiB, default 256]

import { createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { makeCertificate, Nginx } from "../tests/nginx_util.ts";

const SECRET = "/bench-secret-path";
const CHUNK = 65536;

if (Deno.args[0] === "--serve") {
  // Child: a source that sends the size it is asked for (u32 MiB count
  // first), behind a ptkit webtunnel server. Prints the server's port.
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
  console.log(manager.addr.port);
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
const serverPort = Number(
  (await server.stdout.pipeThrough(new TextDecoderStream()).getReader().read()).value?.trim(),
);
const nginx = await Nginx.start({
  dir,
  certificate,
  secretPath: SECRET,
  backendPort: serverPort,
});
const base = `https://localhost:${nginx.port}`;

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

let curlBest = 0;
let tunnelBest = 0;
try {
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`round ${round}/${ROUNDS}: curl ${mib} MiB over TLS from nginx`);
    curlBest = Math.max(curlBest, await viaCurl());
    progress(`round ${round}/${ROUNDS}: ${mib} MiB through webtunnel`);
    tunnelBest = Math.max(tunnelBest, await viaWebtunnel());
  }
  const row = (name: string, value: number) =>
    console.log(
      `${name.padEnd(48)} ${value.toFixed(0).padStart(8)} MB/s    ratio ${
        (value / curlBest).toFixed(2)
      }`,
    );
  console.log(
    `WebTunnel behind nginx (TLS): ${mib} MiB downloaded, best of ${ROUNDS} (goal >= 0.8):`,
  );
  row("curl, a file over TLS from the same nginx", curlBest);
  row("ptkit client -> nginx (TLS) -> webtunnel server", tunnelBest);
} finally {
  server.stdin.close();
  await server.status;
  await nginx[Symbol.asyncDispose]();
  await Deno.remove(dir, { recursive: true });
}
