// Copyright the ptkit authors. MIT license.
// Unknown transport options are ignored and logged once, never fatal (as in
// obfs4proxy and lyrebird): bridge lines with extra keys through main.ts's
// SOCKS front end to a real obfs4proxy and to ptkit's plain server, a server
// given a client key, layered transports, and missing keys that stay errors.

import { deepStrictEqual, ok } from "node:assert";
import { createConnector } from "../client.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { plain } from "../transports/plain.ts";
import { defineTransport, type IgnoredOption, layerTransports } from "../transports/mod.ts";
import { suggestOptionKey } from "../transports/_option_keys.ts";
import { parseSmethodArgs } from "../ipc/lines/_args.ts";
import { MAIN, PtProcess } from "./ipc_util.ts";
import { TextProcess } from "./cli_util.ts";
import { connStreams, echoTransfer, startEcho, startObfs4proxy } from "./obfs4_live_helpers.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { ignoredOptionLog } from "../ipc/managed/_requested_transports.ts";
import type { PtLine } from "../ipc/lines/pt_line.ts";

const ignoredLines = (lines: string[], key: string) =>
  lines.filter((l) =>
    l.startsWith("LOG ") &&
    (l.includes(`ignoring unknown option '${key}'`) || l.includes(`ignoring option '${key}'`))
  );

async function transfer(conn: Deno.TcpConn, size = 256 * 1024): Promise<void> {
  const result = await echoTransfer(connStreams(conn), size);
  deepStrictEqual(result.receivedBytes, size);
  deepStrictEqual(result.received, result.sent);
  try {
    conn.close();
  } catch {
    // Closed by the transfer.
  }
}

Deno.test("main.ts obfs4 and plain clients ignore unknown bridge-line keys, reply 05 00 and carry data", async () => {
  const state = await Deno.makeTempDir();
  const echo = startEcho();
  const bridge = await startObfs4proxy({
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
    TOR_PT_ORPORT: `127.0.0.1:${echo.addr.port}`,
    TOR_PT_STATE_LOCATION: `${state}/obfs4proxy`,
  });
  // A ptkit plain server in front of the same echo service.
  await using plainServer = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_SERVER_TRANSPORTS: "plain",
    TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
    TOR_PT_ORPORT: `127.0.0.1:${echo.addr.port}`,
    TOR_PT_STATE_LOCATION: `${state}/server`,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  await using client = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "obfs4,plain",
    TOR_PT_STATE_LOCATION: `${state}/client`,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  try {
    const [bridgeAddr, argsField] = bridge.method;
    const [host, port] = bridgeAddr!.split(":");
    const { cert, "iat-mode": iatMode } = parseSmethodArgs(argsField!);
    ok(cert && iatMode === "0", String(bridge.method));
    const obfs4Socks = await client.cmethod("obfs4");
    const plainSocks = await client.cmethod("plain");
    const target = { hostname: host!, port: Number(port) };

    // Tor's PT 1.0 form: the bridge line's arguments as the SOCKS user name.
    // socks5Connect throws unless the reply is 05 00.
    for (const extra of ["foo=bar", "foo=baz;iatMode=1", "ver=2"]) {
      const username = `cert=${cert};iat-mode=0;${extra}`;
      await transfer(await socks5Connect(obfs4Socks, target, { username, password: "\0" }));
    }
    const plainLine = await plainServer.waitFor(/^SMETHOD plain /);
    const [plainHost, plainPort] = plainLine.split(" ")[2]!.split(":");
    const plainTarget = { hostname: plainHost!, port: Number(plainPort) };
    for (let i = 0; i < 2; i++) {
      await transfer(
        await socks5Connect(plainSocks, plainTarget, {
          username: "foo=bar;color=blue",
          password: "\0",
        }),
      );
    }

    await client.closeStdin();
    const { code, lines, stderr } = await client.exit();
    deepStrictEqual(code, 0, stderr);
    // Once per transport and key, naming the key (never the value).
    deepStrictEqual(ignoredLines(lines, "foo").length, 2, String(lines));
    ok(ignoredLines(lines, "foo").some((l) => l.includes("obfs4: ignoring")), String(lines));
    ok(ignoredLines(lines, "foo").some((l) => l.includes("plain: ignoring")), String(lines));
    deepStrictEqual(ignoredLines(lines, "color").length, 1, String(lines));
    deepStrictEqual(ignoredLines(lines, "ver").length, 1, String(lines));
    deepStrictEqual(
      ignoredLines(lines, "iatMode"),
      [
        `LOG SEVERITY=notice MESSAGE="obfs4: ignoring unknown option 'iatMode' (did you mean 'iat-mode'?)"`,
      ],
    );
    for (const line of lines) {
      ok(!/bar|baz|blue/.test(line), `a value was logged: ${line}`);
    }
  } finally {
    await bridge.stop();
    await echo.close();
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts obfs4 server with a client key (cert) among its options serves and logs the key once", async () => {
  const state = await Deno.makeTempDir();
  const echo = startEcho();
  try {
    await using server = new PtProcess([], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
      TOR_PT_SERVER_TRANSPORT_OPTIONS: "obfs4:cert=x;obfs4:iat-mode=0;obfs4:iat_mode=0",
      TOR_PT_ORPORT: `127.0.0.1:${echo.addr.port}`,
      TOR_PT_STATE_LOCATION: state,
      TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    });
    const line = await server.waitFor(/^SMETHOD(-ERROR)? obfs4 /);
    ok(line.startsWith("SMETHOD obfs4 127.0.0.1:"), line);
    const [, , addr, args] = line.split(" ");
    const connector = await createConnector(obfs4, parseSmethodArgs(args!));
    for (let i = 0; i < 2; i++) {
      const conn = await connector.dial({ port: Number(addr!.split(":")[1]) });
      const result = await echoTransfer(conn, 64 * 1024);
      deepStrictEqual(result.received, result.sent);
      await conn.closed;
      conn.close();
    }
    await server.closeStdin();
    const { code, lines } = await server.exit();
    deepStrictEqual(code, 0);
    deepStrictEqual(ignoredLines(lines, "cert"), [
      // A bridge line's key given to the server (was "ignoring unknown option 'cert'",
      // though obfs4 knows it): said to be the client's.
      `LOG SEVERITY=notice MESSAGE="obfs4: ignoring option 'cert': it is a client option, not a server one"`,
    ]);
    deepStrictEqual(ignoredLines(lines, "iat_mode"), [
      `LOG SEVERITY=notice MESSAGE="obfs4: ignoring unknown option 'iat_mode' (did you mean 'iat-mode'?)"`,
    ]);
  } finally {
    await echo.close();
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client with a bridge line missing cert fails at start naming cert", async () => {
  const state = await Deno.makeTempDir();
  try {
    await using client = new TextProcess(MAIN, [
      "client",
      "--bridge",
      "obfs4 192.0.2.1:443 iat-mode=0 foo=bar",
      "--socks",
      "127.0.0.1:0",
      "--state",
      state,
    ]);
    const status = await client.child.status;
    await client.done;
    ok(status.code !== 0, `exit code ${status.code}`);
    ok(/missing option 'cert'/.test(client.stderr), client.stderr);
    ok(!client.stdout.includes("SOCKS5 proxy"), client.stdout);
    // A malformed value stays an error too.
    await using bad = new TextProcess(MAIN, [
      "client",
      "--bridge",
      "obfs4 192.0.2.1:443 cert=short iat-mode=0",
      "--socks",
      "127.0.0.1:0",
      "--state",
      state,
    ]);
    ok((await bad.child.status).code !== 0);
    await bad.done;
    ok(/'cert' has 5 characters: expected 70 of base64/.test(bad.stderr), bad.stderr);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("suggestOptionKey gives hints for near misses only", () => {
  const obfs4Keys = obfs4.optionKeys!.client;
  const cases: [string, string | undefined][] = [
    ["iatMode", "iat-mode"],
    ["IAT_MODE", "iat-mode"],
    ["iat.mode", "iat-mode"],
    ["iat-mod", "iat-mode"],
    ["iat-mdoe", "iat-mode"],
    ["cret", "cert"],
    ["Cert", "cert"],
    ["certs", "cert"],
    ["publickey", "public-key"],
    ["nodeid", "node-id"],
    ["foo", undefined],
    ["ver", undefined],
    ["color", undefined],
    ["", undefined],
    ["-", undefined],
  ];
  for (const [key, expected] of cases) {
    deepStrictEqual(suggestOptionKey(key, obfs4Keys), expected, key);
  }
  deepStrictEqual(suggestOptionKey("anything", []), undefined);
});

Deno.test("transports ignore unknown keys on both sides, per connection and in layers", async () => {
  const ignored: IgnoredOption[] = [];
  const env = { onIgnoredOption: (i: IgnoredOption) => ignored.push(i) };
  // obfs4 server and client, with per-connection settings.
  const generated = await obfs4.generateConfig!();
  const server = await obfs4.server({ ...generated.server, cert: "x" }, env);
  deepStrictEqual(server.clientOptions.cert, generated.client.cert);
  const client = await obfs4.client({}, env);
  client.pair({ ...generated.client, ver: "1" });
  deepStrictEqual(ignored.splice(0), [
    { transport: "obfs4", key: "cert", reason: "it is a client option, not a server one" },
    { transport: "obfs4", key: "ver" },
  ]);
  // Required keys and malformed values stay errors.
  const failures: [Record<string, string>, RegExp][] = [
    [{ "iat-mode": "0", foo: "bar" }, /missing option 'cert'/],
    [{ cert: generated.client.cert!, foo: "bar" }, /missing option 'iat-mode'/],
    [{ cert: generated.client.cert!, "iat-mode": "3" }, /invalid iat-mode "3"/],
    // A value joined to the next option's is not echoed.
    [
      { cert: generated.client.cert!, "iat-mode": "0;cert=Secret9Mark" },
      /invalid iat-mode: expected 0, 1 or 2$/,
    ],
  ];
  for (const [config, pattern] of failures) {
    let error: unknown;
    await Promise.resolve(obfs4.client(config, env)).catch((e: unknown) => error = e);
    ok(error instanceof Error && pattern.test(error.message), String(error));
  }
  deepStrictEqual(ignored.splice(0).map((i) => i.key), ["foo", "foo"]);
  // A transport without declared keys sees everything (it checks its own).
  const seen: string[] = [];
  const own = defineTransport({
    name: "own",
    parseConfig: (config) => void seen.push(...Object.keys(config)),
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  });
  await own.client({ a: "1" }, env);
  deepStrictEqual([seen, own.optionKeys], [["a"], undefined]);
  // Layers: unprefixed keys, unknown layer keys (with the prefix), hints.
  const inner = defineTransport({
    name: "inner",
    optionKeys: { client: ["n"], server: ["n"] },
    parseConfig: (config) => config.n ?? "",
    pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
  });
  const stacked = layerTransports("stacked", [inner, plain]);
  deepStrictEqual(stacked.optionKeys, { client: ["inner.n"], server: ["inner.n"] });
  const side = await stacked.client(
    { "inner.n": "1", n: "2", "inner.N": "3", "plain.x": "4", "nosuch.k": "5" },
    env,
  );
  side.pair({ "inner.m": "1" });
  await stacked.server({ "plain.cert": "x" }, env);
  deepStrictEqual(ignored.splice(0), [
    { transport: "stacked", key: "n", suggestion: "inner.n" },
    { transport: "stacked", key: "nosuch.k" },
    { transport: "stacked", key: "inner.N", suggestion: "inner.n" },
    { transport: "stacked", key: "plain.x" },
    { transport: "stacked", key: "inner.m", suggestion: "inner.n" },
    { transport: "stacked", key: "plain.cert" },
  ]);
});

Deno.test("an unknown key with separators (a piece of a value, maybe a password) is logged without its text", () => {
  const lines: PtLine[] = [];
  const log = ignoredOptionLog((line) => lines.push(line));
  log({ transport: "shadowsocks", key: "ss;w" });
  log({ transport: "shadowsocks", key: "pa ss,Secret9Mark" });
  log({ transport: "obfs4", key: "iatMode", suggestion: "iat-mode" });
  const messages = lines.map((line) => line.type === "LOG" ? line.message : "");
  deepStrictEqual(messages, [
    "shadowsocks: ignoring unknown option '(a key with separators, possibly part of a value: not shown)'",
    "shadowsocks: ignoring unknown option '(a key with separators, possibly part of a value: not shown)'",
    "obfs4: ignoring unknown option 'iatMode' (did you mean 'iat-mode'?)",
  ]);
});
