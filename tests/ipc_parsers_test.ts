// Copyright the ptkit authors. MIT license.
// Unit tests of the IPC parsers and line writer: good, malformed, truncated
// and oversized input.

import { deepStrictEqual, ok, throws } from "node:assert";
import {
  formatTorArgs,
  parseJsonSettings,
  parseTorArgs,
  parseTransportOptions,
} from "../ipc/lines/_args.ts";
import { IpcOutput } from "../ipc/lines/_output.ts";
import { parseFlags } from "../ipc/managed/_flags.ts";
import { parseUpstreamProxy } from "../ipc/managed/_proxy_uri.ts";
import { socksHandshake } from "../ipc/socks/_server_handshake.ts";
import { SocksReplyError } from "../ipc/socks/_reply.ts";
import { SocksServer } from "../ipc/socks/_socks_server.ts";
import { parseUserinfo, redactUserinfo, splitAuthority } from "../net/_userinfo.ts";
import { readN } from "./ipc_util.ts";

Deno.test("parseTorArgs accepts escapes and refuses malformed text", () => {
  deepStrictEqual(parseTorArgs(""), {});
  deepStrictEqual(parseTorArgs("a=b"), { a: "b" });
  deepStrictEqual(parseTorArgs("a="), { a: "" });
  deepStrictEqual(parseTorArgs("a=b=c"), { a: "b=c" });
  deepStrictEqual(parseTorArgs("a\\=x=1;b=\\;\\\\"), { "a=x": "1", b: ";\\" });
  deepStrictEqual(parseTorArgs("a=1;b=2;a=3"), { a: "1", b: "2" });
  for (const bad of ["a", "=b", "a=b;", ";", "a=b;;c=d", "a=\\", "a=1;b"]) {
    throws(() => parseTorArgs(bad), SyntaxError, bad);
  }
  const big = "k=" + "v".repeat(100000);
  deepStrictEqual(parseTorArgs(big).k!.length, 100000);
});

Deno.test("formatTorArgs round-trips awkward keys and values", () => {
  const options = { "a;b": "c=d;e\\", "x=y": "\u00e9", "k\\": "" };
  deepStrictEqual(parseTorArgs(formatTorArgs(options)), options);
  deepStrictEqual(formatTorArgs({ k: "v;w" }), "k=v\\;w");
});

Deno.test("parseJsonSettings refuses anything but an object of scalars", () => {
  deepStrictEqual(parseJsonSettings('{"a":"b","n":1.5,"t":true}'), { a: "b", n: "1.5", t: "true" });
  for (const bad of ["", "{", "[]", "null", '"s"', "1", '{"a":{}}', '{"a":null}', '{"a":[1]}']) {
    throws(() => parseJsonSettings(bad), SyntaxError, bad);
  }
});

Deno.test("parseTransportOptions reads tor's form and JSON", () => {
  const parsed = parseTransportOptions(
    "scramblesuit:key=banana;automata:rule=110;automata:depth=3",
  );
  deepStrictEqual(parsed.get("scramblesuit"), { key: "banana" });
  deepStrictEqual(parsed.get("automata"), { rule: "110", depth: "3" });
  deepStrictEqual(parseTransportOptions("t:k=a\\;b\\:c").get("t"), { k: "a;b:c" });
  deepStrictEqual(parseTransportOptions('{"k":"v"}').get("*"), { k: "v" });
  deepStrictEqual(parseTransportOptions('{"t":{"k":"v"}}').get("t"), { k: "v" });
  deepStrictEqual(parseTransportOptions("").size, 0);
  deepStrictEqual(parseTransportOptions("t:k=1;t:k=2").get("t"), { k: "1" });
  for (const bad of ["noname", ":k=v", "t:k", "t:k=v;", "{", '{"t":[1]}']) {
    throws(() => parseTransportOptions(bad), SyntaxError, bad);
  }
});

Deno.test("parseUpstreamProxy accepts the three schemes and refuses the rest", () => {
  deepStrictEqual(parseUpstreamProxy("socks4a://127.0.0.1:1080"), {
    scheme: "socks4a",
    hostname: "127.0.0.1",
    port: 1080,
  });
  deepStrictEqual(parseUpstreamProxy("http://u:p%40ss@[::1]:3128"), {
    scheme: "http",
    hostname: "::1",
    port: 3128,
    username: "u",
    password: "p@ss",
  });
  deepStrictEqual(parseUpstreamProxy("SOCKS5://127.0.0.1:1080/").scheme, "socks5");
  const bad = [
    "",
    "127.0.0.1:1080",
    "socks5://",
    "socks5://127.0.0.1",
    "socks5://127.0.0.1:",
    "socks5://127.0.0.1:0",
    "socks5://127.0.0.1:65536",
    "socks5://256.0.0.1:1080",
    "socks5://localhost:1080",
    "socks5://127.0.0.1:1080/x",
    "socks5://127.0.0.1:1080?x",
    "socks5://127.0.0.1:1080#x",
    "socks5://u@127.0.0.1:1080",
    "socks5://:p@127.0.0.1:1080",
    `socks5://u:${"p".repeat(256)}@127.0.0.1:1080`,
    "socks4a://u:p@127.0.0.1:1080",
    "socks4://127.0.0.1:1080",
    "https://127.0.0.1:443",
    "http://u:%zz@127.0.0.1:80",
    "socks5://[zz]:1080",
    "socks5://" + "1".repeat(100000) + ":1",
  ];
  for (const text of bad) {
    throws(() => parseUpstreamProxy(text), (e: unknown) => {
      ok(e instanceof SyntaxError || e instanceof RangeError, String(e));
      // Credentials never appear in the message.
      ok(!(e as Error).message.includes("pppp"), (e as Error).message);
      return true;
    }, text.slice(0, 60));
  }
});

Deno.test("parseUpstreamProxy splits userinfo at the last '@' and the first ':', then decodes", () => {
  const cases: [string, { username?: string; password?: string } | ErrorConstructor][] = [
    ["http://alice:p@ss:w0rd@127.0.0.1:3128", { username: "alice", password: "p@ss:w0rd" }],
    ["http://alice:@127.0.0.1:3128", { username: "alice", password: "" }],
    ["http://alice@127.0.0.1:3128", { username: "alice" }],
    ["http://alice:p%40ss@127.0.0.1:3128", { username: "alice", password: "p@ss" }],
    ["http://al%3Aice:pw@127.0.0.1:3128", { username: "al:ice", password: "pw" }],
    ["http://alice:a%3Ab%25c@127.0.0.1:3128", { username: "alice", password: "a:b%c" }],
    ["http://alice:pa/ss?#x@127.0.0.1:3128/", { username: "alice", password: "pa/ss?#x" }],
    ["http://:pw@127.0.0.1:3128", { username: "", password: "pw" }],
    ["http://@127.0.0.1:3128", {}],
    ["http://%C3%A9l%C3%A8ve:mot@127.0.0.1:3128", { username: "\u00e9l\u00e8ve", password: "mot" }],
    ["socks5://alice:p@ss:w0rd@127.0.0.1:1080", { username: "alice", password: "p@ss:w0rd" }],
    ["socks5://alice:p%40ss@[::1]:1080", { username: "alice", password: "p@ss" }],
    ["socks5://alice:@127.0.0.1:1080", RangeError], // RFC 1929: 1-255 bytes
    ["socks5://alice@127.0.0.1:1080", RangeError],
    ["socks5://:pw@127.0.0.1:1080", RangeError],
    ["socks4a://alice@127.0.0.1:1080", { username: "alice" }],
    ["socks4a://alice:@127.0.0.1:1080", RangeError],
    ["socks4a://alice:p@ss@127.0.0.1:1080", RangeError],
    ["http://alice:%zz@127.0.0.1:3128", SyntaxError],
    ["http://alice:p@ss@proxy.example:3128", SyntaxError],
    ["http://alice:p@ss@127.0.0.1:3128/path", SyntaxError],
  ];
  for (const [text, expected] of cases) {
    if (typeof expected === "function") {
      throws(() => parseUpstreamProxy(text), (e: unknown) => {
        ok(e instanceof expected, `${text}: ${e}`);
        ok(!/p@ss|w0rd|%zz|\bpw\b|alice/.test((e as Error).message), (e as Error).message);
        return true;
      }, text);
      continue;
    }
    const parsed = parseUpstreamProxy(text);
    deepStrictEqual(
      { username: parsed.username, password: parsed.password },
      { username: expected.username, password: expected.password },
      text,
    );
  }
  deepStrictEqual(splitAuthority("a@b@c:1"), { userinfo: "a@b", host: "c:1" });
  deepStrictEqual(parseUserinfo("u:p%41"), { username: "u", password: "p%41" });
  deepStrictEqual(parseUserinfo("u:p%41", { percentDecode: true }), {
    username: "u",
    password: "pA",
  });
  for (
    const [text, shown] of [
      ["http://alice:p@ss:w0rd@127.0.0.1:1", "http://***@127.0.0.1:1"],
      ["alice:p@ss@127.0.0.1:1", "***@127.0.0.1:1"],
      ["socks5://127.0.0.1:1", "socks5://127.0.0.1:1"],
    ]
  ) deepStrictEqual(redactUserinfo(text!), shown, text);
});

Deno.test("parseFlags takes single and double dashes, = and separate values", () => {
  deepStrictEqual(
    parseFlags([
      "--ptversion=1,2",
      "-logLevel",
      "debug",
      "-LOGLEVEL=info",
      "-exit-on-stdin-close=false",
      "-options",
      "a:b=c",
    ]).values,
    { version: "1,2", logLevel: "info", exitOnStdinClose: "false", options: "a:b=c" },
  );
  deepStrictEqual(
    parseFlags(["-transport", "obfs4"]).errors[0],
    "Unknown flag -transport (did you mean -transports?)",
  );
  deepStrictEqual(parseFlags(["-zzzz"]).errors, ["Unknown flag -zzzz"]);
  deepStrictEqual(parseFlags(["stray"]).errors, [
    "Unexpected argument 1: expected a flag (-name or --name)",
  ]);
  deepStrictEqual(parseFlags(["-client=maybe"]).errors, [
    'Flag -client takes no value, got "maybe"',
  ]);
  deepStrictEqual(parseFlags(["---x"]).errors, [
    "Unexpected argument 1: expected a flag (-name or --name)",
  ]);
  deepStrictEqual(parseFlags(["-target"]).errors, ["Flag -target needs a value"]);
  // A value left out before the next flag is named, not taken as the value
  // (a state directory called "-transports" was created before).
  const skipped = parseFlags(["-client", "-state", "-transports", "obfs4"]);
  deepStrictEqual(skipped.errors, [
    "Flag -state needs a value (the next argument is the flag -transports)",
  ]);
  deepStrictEqual(skipped.values.transports, "obfs4");
  deepStrictEqual(skipped.values.state, undefined);
  // A value that only looks like a flag is still a value.
  deepStrictEqual(parseFlags(["-options", "-x"]).values.options, "-x");
});

Deno.test("IpcOutput never lets an argument break a line", () => {
  const out: string[] = [];
  const ipc = new IpcOutput({ stdout: (l) => out.push(l), logLevel: "debug" });
  ipc.log("debug", 'a\nb\u0000c\u00e9"\\');
  ipc.write({ type: "ENV-ERROR", message: "bad\nVERSION 2" });
  ipc.write({
    type: "STATUS",
    transport: "plain",
    fields: { CONNECT: "Success", ERRSTR: 'x "y"\n' },
  });
  deepStrictEqual(out, [
    'LOG SEVERITY=debug MESSAGE="a\\nb?c?\\"\\\\"\n',
    "ENV-ERROR bad VERSION 2\n",
    'STATUS TRANSPORT=plain CONNECT=Success ERRSTR="x \\"y\\"\\n"\n',
  ]);
  throws(() => ipc.write({ type: "unknown", keyword: "BAD KEYWORD" }), TypeError);
  const quiet: string[] = [];
  new IpcOutput({ stdout: (l) => quiet.push(l) }).log("info", "hidden");
  deepStrictEqual(quiet, []);
});

Deno.test("socksHandshake reads a request sent one byte at a time", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  using server = await listener.accept();
  const handshake = socksHandshake(server);
  const send = async (bytes: number[]) => {
    for (const b of bytes) await client.write(new Uint8Array([b]));
  };
  await send([5, 2, 0, 2]);
  deepStrictEqual(await readN(client, 2), new Uint8Array([5, 2]));
  const user = [...new TextEncoder().encode("k=v")];
  await send([1, user.length, ...user, 1, 0]);
  deepStrictEqual(await readN(client, 2), new Uint8Array([1, 0]));
  await send([5, 1, 0, 4, ...new Array(15).fill(0), 1, 0x01, 0xbb]);
  const request = await handshake;
  deepStrictEqual(
    [request.hostname, request.port, request.settings, request.method],
    ["::1", 443, { k: "v" }, "userpass"],
  );
});

Deno.test("socksHandshake rejects a client that hangs up mid-request", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  using server = await listener.accept();
  await client.write(new Uint8Array([4, 1, 0, 80, 127, 0, 0, 1, 0x61]));
  client.close();
  let error: unknown;
  await socksHandshake(server).catch((e) => error = e);
  ok(error instanceof SocksReplyError, String(error));
});

Deno.test("SocksServer drain waits for open connections; close ends them", async () => {
  using service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    connect: (r) => Deno.connect({ hostname: r.hostname, port: r.port }),
  });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const p = service.addr.port;
  await client.write(new Uint8Array([5, 1, 0]));
  await readN(client, 2);
  await client.write(new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 255]));
  using peer = await service.accept();
  deepStrictEqual((await readN(client, 10))[1], 0);
  deepStrictEqual(server.connections, 1);
  let drained = false;
  const draining = server.drain().then(() => drained = true);
  await client.write(new Uint8Array([9]));
  deepStrictEqual(await readN(peer, 1), new Uint8Array([9]));
  deepStrictEqual(drained, false);
  await server.close();
  await draining;
  deepStrictEqual(await readN(client, 1), new Uint8Array());
  client.close();
});

// The SOCKS front end reads one byte to watch a client while it connects
// (a close or early data gives the attempt up). That byte used to cross on
// its own: an application's first write (a TLS ClientHello) became a 1-byte
// write and the rest, two frames and two bursts on the wire, which neither
// obfs4proxy nor ss-local sends. It now crosses with what came with it; an
// application that sends one byte and waits still gets it through.
Deno.test("SocksServer relays an application's first write as one chunk, not its first byte alone; a lone byte still crosses", async () => {
  const chunks: number[] = [];
  const server = new SocksServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    connect: () => {
      const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          chunks.push(chunk.length);
          controller.enqueue(chunk);
        },
      });
      return Promise.resolve({ readable, writable, close: () => {} });
    },
  });
  try {
    for (const sizes of [[1000, 1], [1, 1000]]) {
      chunks.length = 0;
      using client = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
      await client.write(new Uint8Array([5, 1, 0]));
      await readN(client, 2);
      await client.write(new Uint8Array([5, 1, 0, 1, 192, 0, 2, 1, 0, 80]));
      deepStrictEqual((await readN(client, 10))[1], 0);
      // Each write is echoed back whole before the next one goes.
      for (const size of sizes) {
        await client.write(new Uint8Array(size).fill(7));
        deepStrictEqual(await readN(client, size), new Uint8Array(size).fill(7));
      }
      deepStrictEqual(chunks, sizes);
    }
  } finally {
    await server.close();
  }
});
