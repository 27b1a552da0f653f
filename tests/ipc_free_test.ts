// Copyright the ptkit authors. MIT license.
// Acceptance 3 (free mode): curl --socks5-hostname through the standalone
// client and server (obfs4) fetches a local page by the name `localhost`,
// resolved on the server side, when loopback is explicitly allowed; without
// that allowance the request gets SOCKS reply 02 and the HTTP server sees
// no connection. The client never resolves names.

import { deepStrictEqual, match, ok } from "node:assert";
import { MAIN, readN, requireBinary } from "./ipc_util.ts";
import { CountingHttpServer, curl, TextProcess } from "./cli_util.ts";
import { parseManagedConfig, type PtLine, runClient } from "../ipc/mod.ts";

async function startPair(dir: string, allow: string[]) {
  const server = new TextProcess(MAIN, [
    "server",
    "--transport",
    "obfs4",
    "--listen",
    "127.0.0.1:0",
    "--target",
    "socks",
    ...allow,
    "--state",
    `${dir}/server`,
  ]);
  const bridge = (await server.waitFor(/Bridge line for clients:\n {2}(obfs4 [^\n]+)\n/))[1]!;
  match(bridge, /^obfs4 127\.0\.0\.1:[0-9]+ cert=[A-Za-z0-9+/]{70} iat-mode=0$/);
  const command = (await server.waitFor(/Client command:\n {2}([^\n]+)\n/))[1]!;
  ok(command.includes(`--bridge '${bridge}'`), command);
  const client = new TextProcess(MAIN, [
    "client",
    "--bridge",
    bridge,
    "--socks",
    "127.0.0.1:0",
    "--state",
    `${dir}/client`,
  ]);
  const socks = (await client.waitFor(/SOCKS5 proxy: (127\.0\.0\.1:[0-9]+)/))[1]!;
  return { server, client, socks };
}

Deno.test("free mode: curl reaches localhost through the standalone obfs4 client and server when allowed", async () => {
  requireBinary("curl", "curl");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_free_" });
  await using http = new CountingHttpServer("hello through ptkit\n");
  const { server, client, socks } = await startPair(dir, ["--allow", "loopback"]);
  await using _s = server;
  await using _c = client;
  const result = await curl(["--socks5-hostname", socks, `http://localhost:${http.port}/`]);
  deepStrictEqual([result.code, result.out], [0, "hello through ptkit\n"], result.err);
  deepStrictEqual(http.connections, 1);
  // An unresolvable name fails on the server side with reply 04.
  const unknown = await curl(["--socks5-hostname", socks, "http://no-such-host.invalid/"]);
  deepStrictEqual(unknown.code, 97, unknown.err);
  match(unknown.err, /\(4\)/);
  deepStrictEqual(await client.interrupt(), 0);
  deepStrictEqual(await server.interrupt(), 0);
  ok(!/127\.0\.0\.1:[0-9]/.test(server.stderr), `server logged an address: ${server.stderr}`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("free mode: without an allowance localhost is refused with reply 02 and never dialed", async () => {
  requireBinary("curl", "curl");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_free_" });
  await using http = new CountingHttpServer("must not be seen\n");
  const { server, client, socks } = await startPair(dir, ["--log-level", "info"]);
  await using _s = server;
  await using _c = client;
  const result = await curl(["--socks5-hostname", socks, `http://localhost:${http.port}/`]);
  deepStrictEqual(result.code, 97, result.err);
  match(result.err, /\(2\)/);
  // The same by hand: the reply code byte is 02, for a name and for IP literals.
  const [host, port] = socks.split(":");
  for (
    const address of [
      [3, 9, ...new TextEncoder().encode("localhost")],
      [1, 127, 0, 0, 1],
      [1, 10, 1, 2, 3],
      [4, ...new Array(15).fill(0), 1],
    ]
  ) {
    using conn = await Deno.connect({ hostname: host!, port: Number(port) });
    await conn.write(new Uint8Array([5, 1, 0]));
    deepStrictEqual(await readN(conn, 2), new Uint8Array([5, 0]));
    const p = http.port;
    await conn.write(new Uint8Array([5, 1, 0, ...address, p >> 8, p & 255]));
    deepStrictEqual((await readN(conn, 10))[1], 0x02);
  }
  deepStrictEqual(http.connections, 0);
  deepStrictEqual(await client.interrupt(), 0);
  deepStrictEqual(await server.interrupt(), 0);
  match(server.stderr, /Destination refused: loopback/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("free mode: the client sends the application's host name unresolved (no DNS leak)", async () => {
  // A stand-in server for `plain` (which passes bytes unchanged) that records
  // the SOCKS5 request the client carries through the transport.
  using fakeServer = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const lines: PtLine[] = [];
  const config = parseManagedConfig([
    ...["-transports", "plain", "-free", "-target", `127.0.0.1:${fakeServer.addr.port}`],
    ...["-state", "."],
  ]);
  if (config.kind !== "client") throw new Error(`not a client: ${config.kind}`);
  const running = await runClient(config, { emit: (line) => lines.push(line) });
  const method = lines[0]!;
  if (method.type !== "CMETHOD") throw new Error(`not a CMETHOD: ${method.type}`);
  const port = method.address.port;
  const app = await Deno.connect({ hostname: "127.0.0.1", port });
  const name = new TextEncoder().encode("only-the-server-resolves.example");
  await app.write(new Uint8Array([5, 1, 0]));
  deepStrictEqual(await readN(app, 2), new Uint8Array([5, 0]));
  await app.write(new Uint8Array([5, 1, 0, 3, name.length, ...name, 1, 187]));
  using server = await fakeServer.accept();
  deepStrictEqual(await readN(server, 3), new Uint8Array([5, 1, 0]));
  await server.write(new Uint8Array([5, 0]));
  deepStrictEqual(
    await readN(server, 7 + name.length),
    new Uint8Array([5, 1, 0, 3, name.length, ...name, 1, 187]),
  );
  // The server's reply code reaches the application unchanged.
  await server.write(new Uint8Array([5, 0x04, 0, 1, 0, 0, 0, 0, 0, 0]));
  deepStrictEqual((await readN(app, 10))[1], 0x04);
  app.close();
  await running.close();
});

Deno.test("free mode against a bound server: a greeting answered by its service (not SOCKS5) fails with the free-mode hint", async () => {
  // A stand-in for a bound plain server: its service speaks first, HTTP.
  using fakeServer = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const lines: PtLine[] = [];
  const config = parseManagedConfig([
    ...["-transports", "plain", "-free", "-target", `127.0.0.1:${fakeServer.addr.port}`],
    ...["-state", ".", "-logLevel", "info"],
  ]);
  if (config.kind !== "client") throw new Error(`not a client: ${config.kind}`);
  const running = await runClient(config, { emit: (line) => lines.push(line) });
  const method = lines[0]!;
  if (method.type !== "CMETHOD") throw new Error(`not a CMETHOD: ${method.type}`);
  using app = await Deno.connect({ hostname: "127.0.0.1", port: method.address.port });
  await app.write(new Uint8Array([5, 1, 0]));
  deepStrictEqual(await readN(app, 2), new Uint8Array([5, 0]));
  await app.write(new Uint8Array([5, 1, 0, 1, 192, 0, 2, 1, 0, 80]));
  using server = await fakeServer.accept();
  await server.write(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
  ok((await readN(app, 10))[1] !== 0);
  await running.close();
  const messages = lines.flatMap((line) =>
    line.type === "LOG" || line.type === "STATUS" ? [JSON.stringify(line)] : []
  );
  ok(
    messages.some((m) =>
      m.includes("bad method reply: is the server in free mode (-target socks)?")
    ),
    messages.join("\n"),
  );
});
