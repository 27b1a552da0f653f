// Copyright the ptkit authors. MIT license.
// WebTunnel, client and server, with the library API: the request bytes, the
// 101 check, bytes after a head, the server's answers to bad input, and real
// nginx (TLS with a certificate made now by openssl) in front: 64 MiB each
// way, obfs4 inside WebTunnel, the client's address from X-Forwarded-For.

import { upgradeServerPair } from "../transports/webtunnel/_http_upgrade.ts";
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { type Connector, createConnector } from "../client.ts";
import { proxy } from "../server.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { layerTransports } from "../transports/layer.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";
import type { TransportConn } from "../net/transport_conn.ts";
import { tcpDialer } from "../net/net_conn.ts";
import {
  clientTimerTo,
  echoServer,
  Hasher,
  hashOf,
  pseudoRandomChunks,
  tcpServer,
} from "./_util.ts";
import { readAll } from "./ipc_util.ts";
import { COVER_PAGE, makeCertificate, Nginx, type TestCertificate } from "./nginx_util.ts";
import { curl } from "./cli_util.ts";
import { freePort } from "./tor_util.ts";
import { socksReplyCode } from "../ipc/socks/_reply.ts";
import { parseManagedConfig } from "../ipc/managed/config.ts";
import { runServer } from "../ipc/managed/server.ts";
import type { PtLine } from "../ipc/lines/pt_line.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SECRET = "/Xk3v9QpL2mZr8Tn";

/** A raw TCP peer that records what the client sends and answers `reply`. */
function rawServer(reply: string): {
  port: number;
  received: Promise<string>;
  close: () => Promise<void>;
} {
  let resolve!: (text: string) => void;
  const received = new Promise<string>((r) => resolve = r);
  const server = tcpServer(async (conn) => {
    let text = "";
    const buffer = new Uint8Array(4096);
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n));
    }
    resolve(text);
    await conn.write(encoder.encode(reply));
    await readAll(conn).catch(() => {});
  });
  return { port: server.port, received, close: server.close };
}

Deno.test("webtunnel client sends the reference request and keeps bytes after the 101", async () => {
  const server = rawServer(
    "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nUPGRADE: WebSocket\r\n\r\nfirst",
  );
  try {
    const connector = await createConnector(webtunnel, {
      url: `http://localhost:${server.port}${SECRET}`,
      ver: "0.0.4",
      "some-future-key": "x",
    });
    // The SOCKS destination (the bridge line's placeholder) is not dialed.
    await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
    // Host is the URL's host without its port, as lyrebird's client sends it
    // (its HTTPHost is url.Hostname()).
    deepStrictEqual(
      await server.received,
      `GET ${SECRET} HTTP/1.1\r\nHost: localhost\r\n` +
        "User-Agent: Go-http-client/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    await conn.ready;
    const { value } = await conn.readable.getReader().read();
    deepStrictEqual(decoder.decode(value), "first");
  } finally {
    await server.close();
  }
});

Deno.test("webtunnel client arms TCP keepalive on its connection (15 s), as lyrebird's Go dialer does", async () => {
  // Found as a censor (h40censor): lyrebird's webtunnel client dials with
  // Go's net.Dial (keepalive probes after 15 s idle); ptkit's had none.
  const server = rawServer(
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
  );
  try {
    const connector = await createConnector(webtunnel, {
      url: `http://127.0.0.1:${server.port}${SECRET}`,
    });
    await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
    await conn.ready;
    const timers = await clientTimerTo(server.port);
    strictEqual(timers.length, 1);
    strictEqual(timers[0]!.timer, 2, "the client's socket has a keepalive armed");
    ok(timers[0]!.ticks <= 1500, `${timers[0]!.ticks} ticks left (15 s at most)`);
  } finally {
    await server.close();
  }
});

Deno.test("webtunnel client brackets an IPv6 URL host and honours addr=", async () => {
  const server = rawServer("HTTP/1.1 101 Switching Protocols\r\n\r\n");
  try {
    const connector = await createConnector(webtunnel, {
      url: `http://[::1]:8${SECRET}`,
      addr: `127.0.0.1:${server.port}`,
    });
    await using _conn = await connector.dial({ hostname: "192.0.2.1", port: 443 });
    // Without the port, as lyrebird's client; an IPv6 host keeps its brackets
    // (nginx answers 400 to lyrebird's 'Host: ::1').
    ok((await server.received).includes(`\r\nHost: [::1]\r\n`));
  } finally {
    await server.close();
  }
  await rejects(createConnector(webtunnel, { url: "https://x/s", addr: "::1:443" }), TypeError);
  await rejects(createConnector(webtunnel, { url: "ftp://x/s" }), TypeError);
  await rejects(createConnector(webtunnel, { ver: "0.0.1" }), /missing required option 'url'/);
  await rejects(createConnector(webtunnel, { url: "https://x/s", cert: "AAAA" }), /pinning/);
});

// sni-imitation= hides the bridge's host from the SNI; Deno verifies the
// certificate against the name it sends, so honouring the rest of the line
// would send the very name the line hides: refused, unless servername= says
// what to send (lyrebird sends servername then).
Deno.test("webtunnel client refuses sni-imitation= alone (the URL host it hides would be the SNI), and says which name it sends with servername=", async () => {
  const reasons = async (config: Record<string, string>) => {
    const ignored: string[] = [];
    await createConnector(webtunnel, config, {
      env: { onIgnoredOption: ({ key, reason }) => ignored.push(`${key}: ${reason}`) },
    });
    return ignored;
  };
  await rejects(
    reasons({ url: "https://bridge.example/s", "sni-imitation": "cover.example" }),
    (error: Error) =>
      error instanceof TypeError &&
      /option 'sni-imitation' cannot be honoured/.test(error.message) &&
      !error.message.includes("cover.example") && !error.message.includes("bridge.example"),
  );
  deepStrictEqual(
    await reasons({
      url: "https://bridge.example/s",
      "sni-imitation": "cover.example",
      servername: "front.example",
    }),
    ["sni-imitation: servername is sent as SNI, as lyrebird does when both are given"],
  );
  deepStrictEqual(
    await reasons({ url: "http://bridge.example/s", "sni-imitation": "cover.example" }),
    ["sni-imitation: the URL is not https: there is no SNI"],
  );
});

Deno.test("webtunnel client fails on any status but 101, naming it", async () => {
  for (
    const [reply, pattern] of [
      ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", /status 200/],
      ["HTTP/1.1 404 Not Found\r\n\r\n", /status 404.*secret path/],
      // nginx's answer to plain HTTP on its TLS port (url=http:// where https:// was meant).
      ["HTTP/1.1 400 Bad Request\r\n\r\n", /status 400.*speaks TLS.*https:\/\//],
      // nginx's answers when the WebTunnel server behind it is down or silent.
      ["HTTP/1.1 502 Bad Gateway\r\n\r\n", /status 502.*could not reach the WebTunnel server/],
      ["HTTP/1.1 503 Service Unavailable\r\n\r\n", /status 503.*could not reach/],
      ["HTTP/1.1 504 Gateway Time-out\r\n\r\n", /status 504.*could not reach/],
      ["HTTP/1.1 1010 Odd\r\n\r\n", /no HTTP\/1.1 status line/],
      ["HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", /without/],
      ["SSH-2.0-OpenSSH\r\n\r\n", /no HTTP\/1.1 status line/],
    ] as const
  ) {
    const server = rawServer(reply);
    try {
      const connector = await createConnector(webtunnel, {
        url: `http://127.0.0.1:${server.port}${SECRET}`,
      });
      const conn = await connector.dial({ hostname: "127.0.0.1", port: 1 });
      await rejects(conn.ready, pattern);
      await conn.closed;
    } finally {
      await server.close();
    }
  }
});

Deno.test("webtunnel server without url names where it goes: --options, or torrc's ServerTransportOptions line under tor", async () => {
  // A bridge operator following a WebTunnel setup guide writes torrc, not
  // TOR_PT_SERVER_TRANSPORT_OPTIONS (the variable tor makes of that line).
  await rejects(
    async () => await webtunnel.server({}),
    (error: Error) =>
      error instanceof TypeError &&
      error.message ===
        "Cannot configure webtunnel: missing required option 'url' (the public https://HOST/SECRET-PATH its front server passes on, given as --options 'url=...', or under tor as 'ServerTransportOptions webtunnel url=...' in torrc)",
  );
});

Deno.test("webtunnel refuses a url it could never dial when configured (client and server), naming url, never quoting it", async () => {
  for (
    const [url, pattern] of [
      [`https://localhost:0${SECRET}`, /'url': port 0 is out of range/],
      [`https://localhost:99999${SECRET}`, /'url': not an absolute URL.*port/],
      [`ftp://localhost${SECRET}`, /'url': scheme must be https or http/],
    ] as const
  ) {
    for (const role of ["client", "server"] as const) {
      await rejects(
        async () => role === "client" ? webtunnel.client({ url }) : await webtunnel.server({ url }),
        (error: Error) =>
          error instanceof TypeError && pattern.test(error.message) &&
          !error.message.includes(SECRET.slice(1)),
        `${role} ${url}`,
      );
    }
  }
  // addr= likewise: port 0 is no port to dial.
  for (const addr of ["localhost:0", "[::1]:0", "192.0.2.1:00", "localhost:65536"]) {
    await rejects(
      async () => await webtunnel.client({ url: `https://localhost${SECRET}`, addr }),
      (error: Error) => error instanceof TypeError && /'addr'.*1-65535/.test(error.message),
      addr,
    );
  }
});

/** Send `request` to the server, return everything it answers until it closes. */
async function exchange(port: number, request: Uint8Array | string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(typeof request === "string" ? encoder.encode(request) : request);
    await conn.closeWrite().catch(() => {});
    return decoder.decode(await readAll(conn));
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the server.
    }
  }
}

const UPGRADE = `GET ${SECRET} HTTP/1.1\r\nHost: example.com\r\nConnection: upgrade\r\n` +
  "Upgrade: websocket\r\n\r\n";

Deno.test("webtunnel server upgrades a request whose lines end in a bare LF, as webtunnel-server (Go's net/http) does", async () => {
  // Before: no answer, then 408 after the 10 s head deadline; a prober could
  // tell ptkit from webtunnel-server with one request.
  const echo = echoServer();
  await using manager = await proxy(webtunnel, { url: `https://example.com${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  try {
    const crlf = await exchange(manager.addr.port, UPGRADE);
    const lf = await exchange(manager.addr.port, UPGRADE.replaceAll("\r\n", "\n"));
    ok(lf.startsWith("HTTP/1.1 101 Switching Protocols\r\n"), lf);
    strictEqual(lf, crlf);
    const notUpgrade = await exchange(
      manager.addr.port,
      `GET ${SECRET} HTTP/1.1\nHost: example.com\n\n`,
    );
    ok(notUpgrade.startsWith("HTTP/1.1 404 Not Found\r\n"), notUpgrade);
  } finally {
    await echo.close();
  }
});

Deno.test("webtunnel server answers bad input with a small page, and stays up", async () => {
  const echo = echoServer();
  const failures: unknown[] = [];
  await using manager = await proxy(webtunnel, { url: `https://example.com${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
    onError: (error) => failures.push(error),
  });
  const port = manager.addr.port;
  try {
    // A slow client (1 byte per second) runs alongside everything else.
    const slow = (async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const started = Date.now();
      try {
        for (const byte of encoder.encode(UPGRADE)) {
          try {
            await conn.write(new Uint8Array([byte]));
          } catch {
            break; // Closed by the server.
          }
          await new Promise((r) => setTimeout(r, 1000));
          if (Date.now() - started > 30_000) break;
        }
        return decoder.decode(await readAll(conn));
      } finally {
        conn.close();
      }
    })();

    const notUpgrade = await exchange(port, `GET ${SECRET} HTTP/1.1\r\nHost: example.com\r\n\r\n`);
    ok(notUpgrade.startsWith("HTTP/1.1 404 Not Found\r\n"), notUpgrade);
    ok(notUpgrade.includes("Content-Length:") && notUpgrade.includes("</html>"), notUpgrade);

    const post = await exchange(port, UPGRADE.replace("GET", "POST"));
    ok(post.startsWith("HTTP/1.1 405 Method Not Allowed\r\n"), post);
    // A HEAD answer has no body (RFC 9110 9.3.2), only the length GET's would have.
    const head = await exchange(port, UPGRADE.replace("GET", "HEAD"));
    ok(head.startsWith("HTTP/1.1 405 Method Not Allowed\r\n"), head);
    ok(head.endsWith("\r\n\r\n") && head.includes("Content-Length: "), head);
    deepStrictEqual(head, post.slice(0, post.indexOf("\r\n\r\n") + 4));

    const garbage = await exchange(port, "\x16\x03\x01\x02\x00 hello\r\n\r\n");
    ok(garbage.startsWith("HTTP/1.1 400 Bad Request\r\n"), garbage);

    const huge = await exchange(
      port,
      `GET ${SECRET} HTTP/1.1\r\n` + `X-Pad: ${"a".repeat(1000)}\r\n`.repeat(80) + "\r\n",
    );
    ok(huge.startsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"), huge);

    // A reset in the middle of the head.
    const reset = await Deno.connect({ hostname: "127.0.0.1", port });
    await reset.write(encoder.encode(UPGRADE.slice(0, 30)));
    reset.setNoDelay(true);
    reset.close();

    // Bytes pipelined after the head reach the target (the echo sends them back).
    const pipelined = await Deno.connect({ hostname: "127.0.0.1", port });
    await pipelined.write(encoder.encode(UPGRADE + "pipelined bytes"));
    await pipelined.closeWrite();
    const answer = decoder.decode(await readAll(pipelined));
    pipelined.close();
    ok(answer.startsWith("HTTP/1.1 101 Switching Protocols\r\n"), answer);
    ok(answer.endsWith("\r\n\r\npipelined bytes"), answer);

    const slowAnswer = await slow;
    ok(slowAnswer.startsWith("HTTP/1.1 408 Request Timeout\r\n"), slowAnswer);

    // Still serving.
    const after = await exchange(port, UPGRADE + "still up");
    ok(after.startsWith("HTTP/1.1 101") && after.endsWith("\r\n\r\nstill up"), after);
    const refusals = failures.map((e) => (e as Error).message).join("\n");
    for (const status of [404, 405, 400, 431, 408]) {
      ok(refusals.includes(`HTTP ${status}`), refusals);
    }
  } finally {
    await echo.close();
  }
});

interface Front {
  nginx: Nginx;
  certificate: TestCertificate;
  [Symbol.asyncDispose](): Promise<void>;
}

/** nginx with a fresh certificate in front of `backendPort`. */
async function front(
  backendPort: number,
  extra: { proxyBind?: string; backendHost?: string } = {},
): Promise<Front> {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_webtunnel_" });
  const certificate = await makeCertificate(dir);
  const nginx = await Nginx.start({
    dir,
    certificate,
    secretPath: SECRET,
    backendPort,
    ...extra,
  });
  return {
    nginx,
    certificate,
    async [Symbol.asyncDispose]() {
      await nginx[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Read exactly `size` bytes from `readable`, hashing them. nginx ends an
 * upgraded connection as soon as either side finishes (no half-close), so
 * both ends read everything before either closes.
 */
async function hashExactly(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  size: number,
): Promise<string> {
  const hasher = new Hasher();
  while (hasher.bytes < size) {
    const { value, done } = await reader.read();
    if (done) break;
    hasher.update(value);
  }
  deepStrictEqual(hasher.bytes, size);
  return hasher.digest();
}

/** Write `size` pseudo-random bytes (seed `seed`) without closing. */
async function writeChunks(writable: WritableStream<Uint8Array>, size: number, seed: number) {
  const writer = writable.getWriter();
  for (const chunk of pseudoRandomChunks(size, seed)) await writer.write(chunk);
  writer.releaseLock();
}

/** A target that sends `size` bytes (seed 2) and hashes the `size` bytes it receives. */
function hashingTarget(
  size: number,
): { port: number; received: Promise<string>; close(): Promise<void> } {
  let resolve!: (hash: string) => void;
  let reject!: (error: unknown) => void;
  const received = new Promise<string>((res, rej) => [resolve, reject] = [res, rej]);
  const server = tcpServer(async (conn) => {
    try {
      const [hash] = await Promise.all([
        hashExactly(conn.readable.getReader(), size),
        writeChunks(conn.writable, size, 2),
      ]);
      resolve(hash);
    } catch (error) {
      reject(error);
    }
  });
  return { port: server.port, received, close: server.close };
}

/** Send `size` bytes (seed 1) through `conn` and check both directions' hashes. */
async function bothWays(conn: TransportConn, size: number, target: { received: Promise<string> }) {
  const [hash] = await Promise.all([
    hashExactly(conn.readable.getReader(), size),
    writeChunks(conn.writable, size, 1),
  ]);
  deepStrictEqual(hash, hashOf(pseudoRandomChunks(size, 2)));
  deepStrictEqual(await target.received, hashOf(pseudoRandomChunks(size, 1)));
}

Deno.test("webtunnel behind nginx: cover page, 64 MiB each way, client address from X-Forwarded-For", async () => {
  const size = 64 * 1024 * 1024;
  const target = hashingTarget(size);
  let seen: TransportConn | undefined;
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: async (conn) => {
      seen = conn;
      return await Deno.connect({ hostname: "127.0.0.1", port: target.port });
    },
  });
  // nginx reaches the server from 127.0.0.3; the client comes from 127.0.0.1.
  await using site = await front(manager.addr.port, { proxyBind: "127.0.0.3" });
  const url = `https://localhost:${site.nginx.port}${SECRET}`;
  try {
    const cover = await curl([
      "-sS",
      "--cacert",
      site.certificate.caFile,
      url.replace(SECRET, "/"),
    ]);
    deepStrictEqual(cover.out, COVER_PAGE);
    const probe = await curl(["-sS", "-i", "--cacert", site.certificate.caFile, url]);
    ok(probe.out.startsWith("HTTP/1.1 404 Not Found"), probe.out);

    const connector = await createConnector(webtunnel, { url, ver: "0.0.3" }, {
      caCerts: [site.certificate.caPem],
    });
    await using conn = await connector.dial({ hostname: "2001:db8::7", port: 443 });
    await bothWays(conn, size, target);
    deepStrictEqual((seen!.remoteAddr as Deno.NetAddr).hostname, "127.0.0.3");
    deepStrictEqual(seen!.clientAddress, { hostname: "127.0.0.1", port: 60000 });
  } finally {
    await target.close();
  }
});

Deno.test("webtunnel over TLS: a wrong server name fails, another from servername= is tried", async () => {
  const echo = echoServer();
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  await using site = await front(manager.addr.port);
  try {
    const caCerts = [site.certificate.caPem];
    const url = `https://localhost:${site.nginx.port}${SECRET}`;
    // Not trusted without the CA.
    const untrusted = await createConnector(webtunnel, { url });
    await rejects(
      untrusted.dial({ hostname: "2001:db8::1", port: 443 }),
      (error: Error) =>
        /^TLS handshake failed for the bridge's server name: .*UnknownIssuer.* DENO_CERT=FILE\.pem\)$/
          .test(error.message) && !error.message.includes("localhost"),
    );
    // A name the certificate does not hold: rustls's reason quotes it and
    // the certificate's names, which the message must not repeat (the
    // bridge's names are not printed; before: 'certificate not valid for
    // name "wrong.example"; certificate is only valid for DnsName("localhost")...').
    const wrong = await createConnector(webtunnel, { url, servername: "wrong.example" }, {
      caCerts,
    });
    await rejects(
      wrong.dial({ hostname: "2001:db8::1", port: 443 }),
      (error: Error) =>
        /^TLS handshake failed for the bridge's server name: .*certificate not valid for name/
          .test(error.message) && !/wrong\.example|localhost|127\.0\.0\.1/.test(error.message),
    );
    // The certificate names localhost; "wrong.example" fails, then localhost works.
    for (let i = 0; i < 3; i++) {
      const connector = await createConnector(webtunnel, {
        url,
        servername: "wrong.example, localhost",
      }, { caCerts });
      await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
      const writer = conn.writable.getWriter();
      await writer.write(encoder.encode("ping"));
      const { value } = await conn.readable.getReader().read();
      deepStrictEqual(decoder.decode(value), "ping");
    }
  } finally {
    await echo.close();
  }
});

Deno.test("webtunnel over TLS: after a server name fails its TLS handshake, later connections start with the one that worked (as lyrebird rerolls)", async () => {
  const echo = echoServer();
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  await using site = await front(manager.addr.port);
  try {
    let dials = 0;
    const random = Math.random;
    // The first server name is the one picked at start: the wrong one.
    Math.random = () => 0;
    let connector: Connector;
    try {
      connector = await createConnector(webtunnel, {
        url: `https://localhost:${site.nginx.port}${SECRET}`,
        servername: "wrong.example,localhost",
      }, {
        caCerts: [site.certificate.caPem],
        dialer: (target, settings, options) => {
          dials++;
          return tcpDialer(target, settings, options);
        },
      });
    } finally {
      Math.random = random;
    }
    for (let i = 0; i < 3; i++) {
      await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
      await conn.writable.getWriter().write(encoder.encode("ping"));
      const { value } = await conn.readable.getReader().read();
      deepStrictEqual(decoder.decode(value), "ping");
    }
    // One TLS handshake with wrong.example, then localhost each time: a
    // censor sees no failed handshake before every tunnel.
    strictEqual(dials, 4);
  } finally {
    await echo.close();
  }
});

Deno.test("webtunnel behind nginx as README configures it: the secret path answers anything but an upgrade as a missing page does", async () => {
  const echo = echoServer();
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  await using site = await front(manager.addr.port);
  try {
    const base = `https://localhost:${site.nginx.port}`;
    /** curl's status line, headers and body, without the Date header. */
    const probe = async (args: string[], path: string) => {
      const result = await curl(["-i", "--cacert", site.certificate.caFile, ...args, base + path]);
      return result.out.split("\r\n").filter((line) => !line.startsWith("Date: ")).join("\r\n");
    };
    const probes = [
      [],
      ["-0"],
      ["-I"],
      ["-X", "POST", "-d", "x=1"],
      ["-X", "OPTIONS"],
      ["-X", "DELETE"],
      ["-H", "Upgrade: h2c"],
      ["-X", "POST", "-H", "Upgrade: websocket", "-H", "Connection: upgrade"],
    ];
    for (const args of probes) {
      const missing = await probe(args, "/no-such-page");
      ok(/^HTTP\/1\.[01] 40[45] /.test(missing), missing);
      deepStrictEqual(await probe(args, SECRET), missing, `curl ${args.join(" ")}`);
    }
    // An upgrade whose values differ in case (webtunnel-server compares them
    // lower-cased) is passed on too.
    const mixed = await probe(
      ["-m", "3", "-H", "Upgrade: WebSocket", "-H", "Connection: Upgrade"],
      SECRET,
    );
    ok(mixed.startsWith("HTTP/1.1 101 "), mixed);
    // The upgrade still goes through.
    const connector = await createConnector(webtunnel, { url: base + SECRET }, {
      caCerts: [site.certificate.caPem],
    });
    await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
    await conn.writable.getWriter().write(encoder.encode("ping"));
    const { value } = await conn.readable.getReader().read();
    deepStrictEqual(decoder.decode(value), "ping");
  } finally {
    await echo.close();
  }
});

Deno.test("webtunnel behind nginx as README configures it: an upgrade with as many header bytes as nginx passes (4 x 8 KiB buffers) is upgraded, as webtunnel-server does", async () => {
  const echo = echoServer();
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  await using site = await front(manager.addr.port);
  try {
    // nginx takes header lines of up to 8 KiB and 32 KiB in all (its default
    // large_client_header_buffers): four 7000-byte lines pass it, and
    // webtunnel-server (Go's http.ReadRequest, no limit) upgrades them.
    const pad = Array.from({ length: 4 }, (_, i) => `X-Pad-${i}: ${"a".repeat(7000)}\r\n`).join("");
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: site.nginx.port,
      caCerts: [site.certificate.caPem],
    });
    try {
      await conn.write(encoder.encode(
        `GET ${SECRET} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n` +
          `Connection: upgrade\r\n${pad}\r\nping`,
      ));
      // Read the answer's head, then, after a 101, the echoed bytes.
      let text = "";
      const buffer = new Uint8Array(4096);
      for (;;) {
        const end = text.indexOf("\r\n\r\n");
        if (end >= 0 && (!text.startsWith("HTTP/1.1 101 ") || text.endsWith("ping"))) break;
        const n = await conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n));
      }
      ok(text.startsWith("HTTP/1.1 101 ") && text.endsWith("\r\n\r\nping"), text.slice(0, 200));
    } finally {
      conn.close();
    }
  } finally {
    await echo.close();
  }
});

Deno.test("webtunnel behind nginx as README configures it: nginx's error log never names a bridge user (WebTunnel server down, or closing at once)", async () => {
  // A port nothing listens on, then a server that closes each connection
  // unread (a reset): nginx logs both at level error, with 'client: ADDRESS'
  // and the request line (the secret path) unless the location's error_log
  // sends them elsewhere.
  // The port nothing listens on is on 127.0.0.2: nginx and the servers
  // here listen on 127.0.0.1, on ports of the kernel's choice, which could
  // be one just closed there.
  const down = (() => {
    using listener = Deno.listen({ hostname: "127.0.0.2", port: 0 });
    return { host: "127.0.0.2", port: listener.addr.port };
  })();
  const closing = tcpServer((conn) => Promise.resolve(conn.close()));
  for (const backend of [down, { host: "127.0.0.1", port: closing.port }]) {
    await using site = await front(backend.port, { backendHost: backend.host });
    const connector = await createConnector(webtunnel, {
      url: `https://localhost:${site.nginx.port}${SECRET}`,
    }, { caCerts: [site.certificate.caPem] });
    const conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
    await rejects(conn.ready, /status 502/);
    await conn.closed;
    const log = await site.nginx.errorLog();
    ok(/\[notice\].*start worker process/.test(log), log);
    ok(!log.includes("client: 127.0.0.1") && !log.includes(SECRET), log);
  }
  await closing.close();
});

Deno.test("obfs4 inside webtunnel behind nginx carries 8 MiB each way", async () => {
  const size = 8 * 1024 * 1024;
  const target = hashingTarget(size);
  const stacked = (t: typeof webtunnel) => layerTransports("obfs4_webtunnel", [obfs4, t]);
  await using manager = await proxy(stacked(webtunnel), {
    "webtunnel.url": `https://localhost${SECRET}`,
  }, {
    hostname: "127.0.0.1",
    port: 0,
    env: { local: new MemoryStore() },
    target: { hostname: "127.0.0.1", port: target.port },
  });
  await using site = await front(manager.addr.port);
  try {
    const options = manager.clientOptions;
    ok(options["obfs4.cert"] && options["webtunnel.ver"], JSON.stringify(Object.keys(options)));
    const connector = await createConnector(
      stacked(webtunnel),
      { ...options, "webtunnel.url": `https://localhost:${site.nginx.port}${SECRET}` },
      { caCerts: [site.certificate.caPem] },
    );
    await using conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
    await bothWays(conn, size, target);
  } finally {
    await target.close();
  }
});

Deno.test("webtunnel client: addr= takes host:port with a name; a failed lookup names the configured host", async () => {
  const server = rawServer("HTTP/1.1 101 Switching Protocols\r\n\r\n");
  try {
    const connector = await createConnector(webtunnel, {
      url: `http://bridge.example${SECRET}`,
      addr: `localhost:${server.port}`,
    });
    await using _conn = await connector.dial({ hostname: "2001:db8::1", port: 443 });
    ok((await server.received).includes("\r\nHost: bridge.example\r\n"));
  } finally {
    await server.close();
  }
  for (
    const options of [{ url: "http://no-such-host.invalid:8080/p" }, {
      url: "https://bridge.example/p",
      addr: "no-such-addr.invalid:443",
    }]
  ) {
    const connector = await createConnector(webtunnel, options);
    await rejects(
      connector.dial({ hostname: "2001:db8::1", port: 443 }),
      (error: Error) => {
        ok(/no-such-(host|addr)\.invalid/.test(error.message), error.message);
        return true;
      },
    );
  }
  await rejects(createConnector(webtunnel, { url: "https://x/s", addr: "::1:443" }), /host:port/);
});

Deno.test("webtunnel server warns once at start when it listens on a non-loopback address (X-Forwarded-For is trusted)", async () => {
  const state = await Deno.makeTempDir();
  try {
    for (const [bind, warned] of [["0.0.0.0", true], ["127.0.0.1", false]] as const) {
      const config = parseManagedConfig([
        ...["-server", "-transports", "webtunnel", "-options", "webtunnel:url=https://x.example/p"],
        ...["-bindaddr", `webtunnel-${bind}:0`, "-orport", "127.0.0.1:9", "-state", state],
      ]);
      ok(config.kind === "server");
      const lines: PtLine[] = [];
      const running = await runServer(config, { emit: (line) => lines.push(line) });
      await running.close();
      const warnings = lines.filter((line) =>
        line.type === "LOG" && line.severity === "warning" && /X-Forwarded-For/.test(line.message)
      );
      deepStrictEqual(warnings.length, warned ? 1 : 0, `${bind}: ${JSON.stringify(lines)}`);
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("webtunnel behind a front on loopback: the per-source limits count X-Forwarded-For's client, not the front", async () => {
  const echo = echoServer();
  await using manager = await proxy(webtunnel, { url: `https://localhost${SECRET}` }, {
    hostname: "127.0.0.1",
    port: 0,
    limits: { maxConnectionsPerSource: 2 },
    target: { hostname: "127.0.0.1", port: echo.port },
  });
  const open = async (client: string) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: manager.addr.port });
    const head = `GET ${SECRET} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n` +
      `Upgrade: websocket\r\nX-Forwarded-For: ${client}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    ok(n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("HTTP/1.1 101"));
    return conn;
  };
  /** Whether `conn` still echoes (else the server closed it). */
  const echoes = async (conn: Deno.Conn) => {
    await conn.write(new Uint8Array([1, 2, 3])).catch(() => {});
    const n = await conn.read(new Uint8Array(16)).catch(() => null);
    return n === 3;
  };
  const conns: Deno.Conn[] = [];
  try {
    // Five clients through one front address: all served.
    for (const client of ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]) {
      conns.push(await open(client));
    }
    // A second from 192.0.2.1 is served; a third is refused (closed).
    conns.push(await open("192.0.2.1"));
    const third = await open("192.0.2.1");
    deepStrictEqual(await echoes(third), false);
    third.close();
    for (const conn of conns) deepStrictEqual(await echoes(conn), true);
  } finally {
    for (const conn of conns) conn.close();
    await echo.close();
  }
});

// nginx's $proxy_add_x_forwarded_for (the Tor Project guide's) appends the
// address it saw to what the client sent: the first value is the client's
// choice, the last the front's. Taking the first let a client pick its own
// USERADDR and escape the per-source limits.
Deno.test("webtunnel server takes the last X-Forwarded-For value (the front's), never one the client sent before it", async () => {
  const cases: [string, string][] = [
    ["X-Forwarded-For: 203.0.113.9, 192.0.2.7\r\n", "192.0.2.7"],
    ["X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 192.0.2.7\r\n", "192.0.2.7"],
    ["X-Forwarded-For: 203.0.113.9,2001:db8::7\r\n", "2001:db8::7"],
    ["X-Forwarded-For: 192.0.2.7\r\n", "192.0.2.7"],
    // With the client's port, as Azure Application Gateway sends it (found as
    // a WebTunnel operator, h41ss: every such client was the front's
    // loopback address, one source for the per-source limits).
    ["X-Forwarded-For: 203.0.113.9, 192.0.2.7:4711\r\n", "192.0.2.7"],
    ["X-Forwarded-For: [2001:db8::5]:4711\r\n", "2001:db8::5"],
    ["X-Forwarded-For: [2001:db8::5]\r\n", "2001:db8::5"],
  ];
  for (const [fields, expected] of cases) {
    const pair = upgradeServerPair();
    const writer = pair.decode.writable.getWriter();
    void writer.write(
      new TextEncoder().encode(
        `GET /s HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n${fields}\r\n`,
      ),
    );
    void pair.decode.readable.getReader().read();
    void pair.encode.readable.getReader().read();
    await pair.ready;
    deepStrictEqual(await pair.clientAddress, { hostname: expected, port: 60000 }, fields);
    await writer.close().catch(() => {});
  }
});

Deno.test("webtunnel client: a url host that refuses names itself in the error, of the same class (SOCKS reply 05), not as the bridge's placeholder address", async () => {
  // Found under tor as a WebTunnel user: tor names the bridge line's
  // placeholder ([2001:db8:...]:443) beside the PT's bare 'Connection
  // refused (os error 111)', which read as that address refusing.
  const closed = freePort();
  await using connector = await createConnector(webtunnel, {
    url: `http://127.0.0.1:${closed}/secret`,
  });
  const error = await connector.dial({ hostname: "2001:db8::1", port: 443 }).then(
    () => undefined,
    (error: unknown) => error,
  );
  ok(error instanceof Deno.errors.ConnectionRefused, String(error));
  strictEqual(
    error.message,
    `Cannot connect to 127.0.0.1:${closed} (the server the transport's options name, not the bridge address): Connection refused (os error 111)`,
  );
  strictEqual(socksReplyCode(error), 0x05);
});

Deno.test("webtunnel server says a short secret path (its length, never the path), and nothing for a long one", async () => {
  for (
    const [url, said] of [
      ["https://example.com", "0 characters"],
      ["https://example.com/", "0 characters"],
      ["https://example.com/Short9", "6 characters"],
      ["https://example.com/0123456789abcdef", undefined],
    ] as const
  ) {
    const notices: string[] = [];
    await webtunnel.server({ url }, { onNotice: (message) => notices.push(message) });
    if (said === undefined) {
      deepStrictEqual(notices, [], url);
    } else {
      deepStrictEqual(notices.length, 1, url);
      ok(notices[0]!.includes(`secret path is ${said} long`), notices[0]);
      ok(!notices[0]!.includes("Short9") && !notices[0]!.includes("example.com"), notices[0]);
    }
  }
});
