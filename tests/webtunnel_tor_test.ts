// Copyright the ptkit authors. MIT license.
// WebTunnel through main.ts behind real nginx (TLS, certificate made by
// openssl, trusted through DENO_CERT): SOCKS5 -> nginx -> server -> target
// with 64 MiB each way; a non-101 answer is a SOCKS error and a LOG line
// naming the status; and Debian tor end to end, a bridge with
// `ServerTransportPlugin webtunnel` behind nginx and a client with the bridge
// line from the SMETHOD ARGS, the bridge's Extended ORPort seeing the
// address nginx put in X-Forwarded-For.

import { deepStrictEqual, ok, rejects } from "node:assert";
import { proxy } from "../server.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { parseSmethodArgs } from "../ipc/lines/_args.ts";
import { Hasher, hashOf, pseudoRandomChunks, tcpServer } from "./_util.ts";
import { MAIN, PtProcess, requireBinary } from "./ipc_util.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { makeCertificate, Nginx } from "./nginx_util.ts";
import {
  assertCleanTorRun,
  freePort,
  startBridgeTor,
  startClientTor,
  type Tor,
} from "./tor_util.ts";

const SECRET = "/c2VjcmV0LXdlYnR1bm5lbA";

/** RFC 1929 user/password carrying `k=v;k=v`, as tor sends bridge arguments. */
function socksAuth(args: Record<string, string>): { username: string; password: string } {
  const text = Object.entries(args).map(([k, v]) => `${k}=${v}`).join(";");
  return { username: text.slice(0, 255), password: text.length > 255 ? text.slice(255) : "\0" };
}

async function readExactlyHash(conn: Deno.Conn, size: number): Promise<string> {
  const hasher = new Hasher();
  const buffer = new Uint8Array(256 * 1024);
  while (hasher.bytes < size) {
    const n = await conn.read(buffer.subarray(0, Math.min(buffer.length, size - hasher.bytes)));
    if (n === null) break;
    hasher.update(buffer.subarray(0, n));
  }
  deepStrictEqual(hasher.bytes, size);
  return hasher.digest();
}

async function writeChunks(conn: Deno.Conn, size: number, seed: number): Promise<void> {
  for (const chunk of pseudoRandomChunks(size, seed)) {
    for (let offset = 0; offset < chunk.length;) offset += await conn.write(chunk.subarray(offset));
  }
}

Deno.test("main.ts webtunnel client: SOCKS5 -> nginx (TLS) -> server, 64 MiB each way; non-101 is a SOCKS error", async () => {
  const size = 64 * 1024 * 1024;
  let resolve!: (hash: string) => void;
  const received = new Promise<string>((r) => resolve = r);
  const target = tcpServer(async (conn) => {
    const [hash] = await Promise.all([readExactlyHash(conn, size), writeChunks(conn, size, 2)]);
    resolve(hash);
  });
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: target.port },
  });
  const dir = await Deno.makeTempDir({ prefix: "ptkit_webtunnel_socks_" });
  const certificate = await makeCertificate(dir);
  await using nginx = await Nginx.start({
    dir,
    certificate,
    secretPath: SECRET,
    backendPort: manager.addr.port,
  });
  await using pt = new PtProcess(["-logLevel", "info"], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "webtunnel",
    TOR_PT_STATE_LOCATION: `${dir}/state`,
    DENO_CERT: certificate.caFile,
  });
  try {
    const cmethod = await pt.waitFor(/^CMETHOD webtunnel socks5 /);
    const [host, port] = cmethod.split(" ")[3]!.split(":");
    const socks = { hostname: host!, port: Number(port) };
    const url = `https://localhost:${nginx.port}${SECRET}`;
    const conn = await socks5Connect(
      socks,
      { hostname: "2001:db8::1", port: 443 },
      socksAuth({ url, ver: "0.0.3", utls: "hellochrome_auto" }),
    );
    try {
      const [hash] = await Promise.all([readExactlyHash(conn, size), writeChunks(conn, size, 1)]);
      deepStrictEqual(hash, hashOf(pseudoRandomChunks(size, 2)));
      deepStrictEqual(await received, hashOf(pseudoRandomChunks(size, 1)));
    } finally {
      conn.close();
    }
    await pt.waitFor(/webtunnel: ignoring option 'utls': Deno cannot shape its TLS ClientHello/);
    // nginx answers 404 for any other path: a SOCKS error, and a LOG line with the status.
    await rejects(
      socks5Connect(
        socks,
        { hostname: "2001:db8::1", port: 443 },
        socksAuth({ url: `https://localhost:${nginx.port}/not-the-secret` }),
      ),
    );
    const log = await pt.waitFor(/SOCKS connect failed: .*HTTP status 404/);
    ok(!log.includes("not-the-secret") && !log.includes("127.0.0.1"), log);
  } finally {
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "Debian tor bootstraps through a ptkit webtunnel bridge behind nginx; USERADDR is X-Forwarded-For",
  fn: async () => {
    const torBinary = requireBinary("tor", "tor");
    const dir = await Deno.makeTempDir({ prefix: "ptkit_torwebtunnel_" });
    const certificate = await makeCertificate(dir);
    const orPort = freePort();
    const ptPort = freePort();
    // nginx reaches the bridge's PT from 127.0.0.3; clients come from 127.0.0.1.
    const nginx = await Nginx.start({
      dir: `${dir}/nginx`,
      certificate,
      secretPath: SECRET,
      backendPort: ptPort,
      proxyBind: "127.0.0.3",
    }).catch(async (error) => {
      await Deno.mkdir(`${dir}/nginx`, { recursive: true });
      throw error;
    });
    const url = `https://localhost:${nginx.port}${SECRET}`;
    const bridge = await startBridgeTor(torBinary, dir, orPort, [
      "ExtORPort auto",
      `ServerTransportPlugin webtunnel exec ${MAIN} -logLevel info`,
      `ServerTransportListenAddr webtunnel 127.0.0.1:${ptPort}`,
      `ServerTransportOptions webtunnel url=${url}`,
      "SafeLogging 0",
      "Log [net]debug [*]info stdout",
    ]);
    let client: Tor | undefined;
    try {
      await bridge.waitFor(/Registered server transport 'webtunnel'/, 60000);
      const smethod = /\(SMETHOD webtunnel \[(2001:db8:[0-9a-f:]+)\]:443 ARGS:([^)]*)\)/.exec(
        bridge.log,
      );
      ok(smethod, `no SMETHOD line in the bridge's log:\n${bridge.log.slice(-4000)}`);
      const args = parseSmethodArgs(smethod[2]!);
      deepStrictEqual(args.url, url);
      ok(args.ver, smethod[0]);
      let fingerprint = "";
      for (let i = 0; i < 600 && fingerprint === ""; i++) {
        const text = await Deno.readTextFile(`${dir}/bridge/fingerprint`).catch(() => "");
        fingerprint = text.trim().split(" ")[1] ?? "";
        if (fingerprint === "") await new Promise((r) => setTimeout(r, 100));
      }
      ok(/^[0-9A-F]{40}$/.test(fingerprint), fingerprint);
      // The client's PT trusts the test CA through DENO_CERT (tor passes its
      // environment to the PT).
      client = await startClientTor(
        torBinary,
        dir,
        "webtunnel",
        `webtunnel [${smethod[1]}]:443 ${fingerprint} url=${args.url} ver=${args.ver}`,
        undefined,
        { DENO_CERT: certificate.caFile },
      );
      const line = await client.waitFor(
        /Bootstrapped (2[5-9]|[3-9][0-9]|100)% \([a-z_]+\)/,
        120000,
      );
      console.log(`webtunnel client tor: ${line}`);
      await bridge.waitFor(/webtunnel: Extended ORPort authenticated, connection accepted/, 30000);
      // tor's Extended ORPort took the X-Forwarded-For address, not nginx's 127.0.0.3.
      const useraddr = await bridge.waitFor(
        /Received USERADDR\.We rewrite our address from '[^']*' to '[^']*'/,
        30000,
      );
      // (ptkit's socket peer is nginx at 127.0.0.3; the placeholder port 60000
      // marks an X-Forwarded-For address.)
      ok(/ to '127\.0\.0\.1:60000'$/.test(useraddr), useraddr);
      ok(!/Received USERADDR.* to '127\.0\.0\.3:/.test(bridge.log), "USERADDR was nginx's address");
    } finally {
      await client?.stop();
      await bridge.stop();
      await nginx[Symbol.asyncDispose]();
    }
    await assertCleanTorRun(bridge, dir);
  },
});
