// Copyright the ptkit authors. MIT license.
// main.ts as a Shadowsocks server and client, against shadowsocks-libev
// 3.3.5 (Debian `shadowsocks-libev`), each method: ss-local -> `main.ts
// -server -transports shadowsocks` -> an HTTP server, and `main.ts -client
// -free` -> ss-server -> the HTTP server, curl --socks5-hostname (names
// travel unresolved); a loopback destination refused without `-allow
// loopback`; as tor runs it (the bridge line's arguments in the SOCKS
// request, the server relaying to its ORPort); the password printed nowhere.

import { deepStrictEqual, ok } from "node:assert";
import { CountingHttpServer, curl } from "./cli_util.ts";
import { PtProcess, readAll, readN } from "./ipc_util.ts";
import { evpBytesToKey, sessionSubkey } from "../transports/shadowsocks/_methods.ts";
import * as nodeCrypto from "node:crypto";
import { socks5Connect } from "./obfs4_socks5.ts";
import { METHODS, startSsLibev } from "./shadowsocks_util.ts";
import { freePort } from "./obfs4_live_helpers.ts";

const PASSWORD = "Ss9MainSecretMark";

/** Start main.ts with `args` (one worker, a fresh state directory). */
function startMain(args: string[], state: string): PtProcess {
  return new PtProcess([...args, "-state", state, "-workers", "1", "-logLevel", "debug"], {});
}

/** The port of the SMETHOD line of shadowsocks, checking its ARGS. */
async function smethodPort(pt: PtProcess, method: string): Promise<number> {
  const line = await pt.waitFor(/^SMETHOD(-ERROR)? shadowsocks /);
  // The bridge line's ARGS carry the method only: the password is a secret.
  deepStrictEqual(line.split(" ").slice(3), [`ARGS:method=${method}`], line);
  await pt.waitFor(/^SMETHODS DONE$/);
  return Number(line.split(" ")[2]!.split(":")[1]);
}

/** Stop a PT and check that nothing it printed holds the password. */
async function stopAndScan(pt: PtProcess, state: string): Promise<void> {
  pt.child.kill("SIGTERM");
  const { stdout, stderr } = await pt.exit();
  ok(!(stdout + stderr).includes(PASSWORD), `password printed:\n${stdout}\n${stderr}`);
  for await (const entry of Deno.readDir(state)) {
    if (!entry.isFile) continue;
    const text = await Deno.readTextFile(`${state}/${entry.name}`);
    ok(!text.includes(PASSWORD), `password in ${entry.name}`);
  }
}

/** A server's and a client's state directories, removed on dispose. */
async function tempStates(): Promise<
  { serverState: string; clientState: string } & AsyncDisposable
> {
  const serverState = await Deno.makeTempDir();
  const clientState = await Deno.makeTempDir();
  return {
    serverState,
    clientState,
    [Symbol.asyncDispose]: async () => {
      await Deno.remove(serverState, { recursive: true });
      await Deno.remove(clientState, { recursive: true });
    },
  };
}

for (const method of METHODS) {
  Deno.test(`main.ts shadowsocks ${method}: ss-local -> main.ts -server -> HTTP server`, async () => {
    await using http = new CountingHttpServer(`hello ${method}\n`);
    const state = await Deno.makeTempDir();
    const options = JSON.stringify({ method, password: PASSWORD });
    const port = freePort();
    const pt = startMain([
      ...["-server", "-transports", "shadowsocks", "-bindaddr", `shadowsocks-127.0.0.1:${port}`],
      ...["-options", options, "-allow", "loopback"],
    ], state);
    try {
      deepStrictEqual(await smethodPort(pt, method), port);
      await using local = await startSsLibev("ss-local", {
        method,
        password: PASSWORD,
        server: port,
      });
      // A name travels unresolved: main.ts resolves "localhost".
      const result = await curl([
        "--socks5-hostname",
        `127.0.0.1:${local.port}`,
        `http://localhost:${http.port}/`,
      ]);
      deepStrictEqual(result.out, `hello ${method}\n`, result.err + local.output());
      deepStrictEqual(http.connections, 1);
    } finally {
      await stopAndScan(pt, state);
      await Deno.remove(state, { recursive: true });
    }
  });

  Deno.test(`main.ts shadowsocks ${method}: main.ts -client -free -> ss-server -> HTTP server`, async () => {
    await using http = new CountingHttpServer(`hello ${method}\n`);
    await using ssServer = await startSsLibev("ss-server", { method, password: PASSWORD });
    const state = await Deno.makeTempDir();
    const listen = freePort();
    const pt = startMain([
      ...[
        "-client",
        "-transports",
        "shadowsocks",
        "-free",
        "-target",
        `127.0.0.1:${ssServer.port}`,
      ],
      ...["-proxylistenaddr", `127.0.0.1:${listen}`],
      ...["-options", JSON.stringify({ method, password: PASSWORD })],
    ], state);
    try {
      deepStrictEqual(await pt.cmethod("shadowsocks"), { hostname: "127.0.0.1", port: listen });
      // ss-server resolves the name: main.ts sent it unresolved.
      const result = await curl([
        "--socks5-hostname",
        `127.0.0.1:${listen}`,
        `http://localhost:${http.port}/`,
      ]);
      deepStrictEqual(result.out, `hello ${method}\n`, result.err + ssServer.output());
      deepStrictEqual(http.connections, 1);
    } finally {
      await stopAndScan(pt, state);
      await Deno.remove(state, { recursive: true });
    }
  });
}

Deno.test("main.ts shadowsocks: a loopback destination is refused without -allow loopback", async () => {
  await using http = new CountingHttpServer("must not be reached\n");
  const method = "chacha20-ietf-poly1305";
  await using states = await tempStates();
  const { serverState, clientState } = states;
  const options = JSON.stringify({ method, password: PASSWORD });
  const server = startMain(
    ["-server", "-transports", "shadowsocks", "-options", options],
    serverState,
  );
  let client: PtProcess | undefined;
  try {
    const port = await smethodPort(server, method);
    client = startMain([
      ...["-client", "-transports", "shadowsocks", "-free", "-target", `127.0.0.1:${port}`],
      ...["-options", options],
    ], clientState);
    const socks = await client.cmethod("shadowsocks");
    // Shadowsocks has no reply: the client's SOCKS front end answers at
    // once (as ss-local does) and the refusal is the server closing the
    // stream without a byte; the destination is never dialed.
    for (const url of [`http://localhost:${http.port}/`, `http://127.0.0.1:${http.port}/`]) {
      const result = await curl(["--socks5-hostname", `${socks.hostname}:${socks.port}`, url]);
      ok(result.code !== 0 && result.out === "", `${url}: ${JSON.stringify(result)}`);
    }
    deepStrictEqual(http.connections, 0);
    await server.waitFor(
      /^LOG SEVERITY=info MESSAGE="shadowsocks: connection failed: Destination refused: loopback"$/,
    );
  } finally {
    if (client !== undefined) await stopAndScan(client, clientState);
    await stopAndScan(server, serverState);
  }
});

Deno.test("main.ts shadowsocks as tor runs it: the bridge line's arguments in SOCKS, the server relays to its ORPort", async () => {
  await using orport = new CountingHttpServer("hello, ORPort\n");
  const method = "aes-128-gcm";
  await using states = await tempStates();
  const { serverState, clientState } = states;
  const server = startMain([
    ...["-server", "-transports", "shadowsocks", "-orport", `127.0.0.1:${orport.port}`],
    ...["-options", JSON.stringify({ method, password: PASSWORD })],
  ], serverState);
  // The client as tor starts it: variables only, no options.
  const client = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "shadowsocks",
    TOR_PT_STATE_LOCATION: clientState,
  });
  try {
    const port = await smethodPort(server, method);
    const socks = await client.cmethod("shadowsocks");
    // tor's SOCKS request: the bridge's address, its arguments as the user name.
    const conn = await socks5Connect(socks, { hostname: "127.0.0.1", port }, {
      username: `method=${method};password=${PASSWORD}`,
      password: "\0",
    });
    try {
      await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
      const reply = new TextDecoder().decode(await readAll(conn));
      ok(reply.endsWith("\r\n\r\nhello, ORPort\n"), reply);
    } finally {
      conn.close();
    }
    deepStrictEqual(orport.connections, 1);
  } finally {
    await stopAndScan(client, clientState);
    await stopAndScan(server, serverState);
  }
});

Deno.test("main.ts shadowsocks: a transparent-TCP client reaches a bound server's target; a free server refuses it at once", async () => {
  await using http = new CountingHttpServer("hello bound\n");
  await using states = await tempStates();
  const options = JSON.stringify({ method: "aes-128-gcm", password: PASSWORD });
  const bound = startMain([
    ...["-server", "-transports", "shadowsocks", "-bindaddr", "shadowsocks-127.0.0.1:0"],
    ...["-options", options, "-target", `127.0.0.1:${http.port}`],
  ], states.serverState);
  const freeState = await Deno.makeTempDir();
  const free = startMain([
    ...["-server", "-transports", "shadowsocks", "-bindaddr", "shadowsocks-127.0.0.1:0"],
    ...["-options", options, "-allow", "loopback"],
  ], freeState);
  const clients: PtProcess[] = [];
  const ports: number[] = [];
  try {
    for (const server of [bound, free]) {
      const port = await smethodPort(server, "aes-128-gcm");
      const listen = freePort();
      const client = startMain([
        ...["-client", "-transports", "shadowsocks", "-mode", "transparent-TCP"],
        ...["-target", `127.0.0.1:${port}`, "-proxylistenaddr", `127.0.0.1:${listen}`],
        ...["-options", options],
      ], states.clientState);
      clients.push(client);
      ports.push((await client.cmethod("shadowsocks", "transparent-TCP")).port);
    }
    const [toBound, toFree] = ports;
    const reached = await curl([`http://127.0.0.1:${toBound}/`]);
    deepStrictEqual(reached.out, "hello bound\n", reached.err);
    const refused = await curl(["-m", "5", `http://127.0.0.1:${toFree}/`]);
    deepStrictEqual([refused.code, refused.out], [52, ""], refused.err);
    await free.waitFor(/Destination refused: unspecified/);
    deepStrictEqual(http.connections, 1);
  } finally {
    for (const client of clients) await stopAndScan(client, states.clientState);
    await stopAndScan(bound, states.serverState);
    await stopAndScan(free, freeState);
    await Deno.remove(freeState, { recursive: true });
  }
});

// A password given as `-options` shows in the process list: `-options
// @FILE` (and `-turnuser`, `-proxy`) reads the value from a file, as
// `main.ts server --options @FILE` does. A file that cannot be read is an
// ENV-ERROR naming its path, never its content.
Deno.test("main.ts -server -options @FILE takes the Shadowsocks password from a file (ss-local carries curl through it); an unreadable file is an ENV-ERROR naming the path", async () => {
  const method = "aes-256-gcm";
  await using http = new CountingHttpServer(`hello ${method}\n`);
  const state = await Deno.makeTempDir();
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, `${JSON.stringify({ method, password: PASSWORD })}\n`);
  const port = freePort();
  const pt = startMain([
    ...["-server", "-transports", "shadowsocks", "-bindaddr", `shadowsocks-127.0.0.1:${port}`],
    ...["-options", `@${file}`, "-allow", "loopback"],
  ], state);
  try {
    deepStrictEqual(await smethodPort(pt, method), port);
    await using local = await startSsLibev("ss-local", {
      method,
      password: PASSWORD,
      server: port,
    });
    const result = await curl([
      "--socks5-hostname",
      `127.0.0.1:${local.port}`,
      `http://localhost:${http.port}/`,
    ]);
    deepStrictEqual(result.out, `hello ${method}\n`, result.err + local.output());
  } finally {
    await stopAndScan(pt, state);
  }
  try {
    const missing = startMain(
      ["-server", "-transports", "shadowsocks", "-options", `@${state}/nope`],
      state,
    );
    // PT 2.0 writes error lines to stderr.
    const { code, stderr } = await missing.exit();
    deepStrictEqual(code, 64);
    ok(stderr.startsWith(`ENV-ERROR Cannot read -options from ${state}/nope: `), stderr);
  } finally {
    await Deno.remove(state, { recursive: true });
    await Deno.remove(file);
  }
});

Deno.test("main.ts shadowsocks -client -free: the request goes with the application's first data in one write, a chunk of its own followed by theirs, as ss-local sends it", async () => {
  // ss-local (shadowsocks-libev 3.3.5, local.c) answers the SOCKS request,
  // then waits up to 50 ms for the application's first bytes and writes the
  // address header and them at once, sealed as two chunks: header (7 bytes
  // for IPv4), then data (measured: 18 bytes of data gave a first read of
  // 125 bytes, chunks of 7 and 18). Sent alone, the request makes a first
  // flight of a fixed size (salt, 18, 7 + 16 bytes for an IPv4 destination):
  // a censor's old Shadowsocks signal, and not ss-local's; sealed with the
  // data in one chunk, the first flight is 34 bytes shorter than ss-local's.
  const method = "aes-256-gcm";
  const recorder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = await Deno.makeTempDir();
  const listen = freePort();
  const pt = startMain([
    ...["-client", "-transports", "shadowsocks", "-free"],
    ...["-target", `127.0.0.1:${recorder.addr.port}`, "-proxylistenaddr", `127.0.0.1:${listen}`],
    ...["-options", JSON.stringify({ method, password: PASSWORD })],
  ], state);
  const key = evpBytesToKey(new TextEncoder().encode(PASSWORD), 32);
  const request = new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n");
  // A chunk's length field, sealed with the nonce `nonce` (little-endian).
  const lengthAt = (salt: Uint8Array, wire: Uint8Array, nonce: number) => {
    const iv = new Uint8Array(12);
    iv[0] = nonce;
    const decipher = nodeCrypto.createDecipheriv("aes-256-gcm", sessionSubkey(key, salt), iv);
    decipher.setAuthTag(wire.subarray(2, 18));
    const length = decipher.update(wire.subarray(0, 2));
    decipher.final();
    return (length[0]! << 8) | length[1]!;
  };
  try {
    await pt.cmethod("shadowsocks");
    for (let i = 0; i < 3; i++) {
      const accepted = recorder.accept();
      // As curl does: the request, then its first bytes as soon as the reply comes.
      const app = await socks5Connect({ hostname: "127.0.0.1", port: listen }, {
        hostname: "192.0.2.1",
        port: 80,
      });
      await app.write(request);
      const server = await accepted;
      const first = await readN(server, 32 + 18);
      const salt = first.subarray(0, 32);
      // The address header alone (type, 4, 2: 7 bytes).
      deepStrictEqual(lengthAt(salt, first.subarray(32), 0), 7, `connection ${i + 1}`);
      // Then the request, in the next chunk (nonces 2 and 3).
      const next = await readN(server, 7 + 16 + 18);
      deepStrictEqual(
        lengthAt(salt, next.subarray(7 + 16), 2),
        request.length,
        `connection ${i + 1}: the second chunk`,
      );
      app.close();
      server.close();
    }
  } finally {
    recorder.close();
    await stopAndScan(pt, state);
    await Deno.remove(state, { recursive: true });
  }
});
