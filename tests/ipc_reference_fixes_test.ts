// Copyright the ptkit authors. MIT license.
// The four places where ptkit disagreed with the reference implementations'
// test tables without meaning to (see reference_tables_test.ts), each
// checked where a user meets it: (1) escaped transport names in
// TOR_PT_SERVER_TRANSPORT_OPTIONS, (2) repeated keys in SOCKS arguments,
// server options, SMETHOD ARGS, bridge lines and LOG/STATUS fields (first
// value, logged once by name), (3) unbracketed IPv6 in TOR_PT_ORPORT and
// TOR_PT_EXTENDED_SERVER_PORT, (4) LOG/STATUS C strings that arti can read.

import { deepStrictEqual, match, ok, throws } from "node:assert";
import { IpcOutput } from "../ipc/lines/_output.ts";
import { parseBridgeLine } from "../ipc/lines/_bridge_line.ts";
import {
  parseJsonSettings,
  parseSmethodArgs,
  parseTorArgs,
  parseTransportOptions,
} from "../ipc/lines/_args.ts";
import { parsePtLine } from "../ipc/mod.ts";
import { type PtLogEvent, PtServer, type PtStatusEvent } from "../ipc/adapter/mod.ts";
import { childEnv, MAIN, PtProcess, readN } from "./ipc_util.ts";
import { TextProcess } from "./cli_util.ts";
import { FakeExtOrPort, writeCookieFile } from "./ext_orport_fake.ts";
import { echoSocks } from "./reference_tables/peers.ts";

const state = await Deno.makeTempDir({ prefix: "ptkit_fixes_" });
let runs = 0;

/** main.ts as tor runs a server, until SMETHODS DONE (stdin closed at once). */
async function serve(env: Record<string, string>): Promise<{ code: number; lines: string[] }> {
  const output = await new Deno.Command(MAIN, {
    env: childEnv({
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
      TOR_PT_ORPORT: "127.0.0.1:9",
      TOR_PT_STATE_LOCATION: `${state}/${++runs}`,
      TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
      ...env,
    }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(output.stdout).split("\n").filter((l) => l !== "");
  return { code: output.code, lines };
}

Deno.test("fix 1: a backslash escapes any character of a transport name in TOR_PT_SERVER_TRANSPORT_OPTIONS", async () => {
  deepStrictEqual(
    Object.fromEntries(parseTransportOptions("t\\:1:k=v;t\\=2:k=v;t\\;3:k=v;t\\\\4:k=v")),
    { "t:1": { k: "v" }, "t=2": { k: "v" }, "t;3": { k: "v" }, "t\\4": { k: "v" } },
  );
  // `obf\s4` is obfs4: its options reach it (iat-mode 7 is refused)...
  const good = await serve({ TOR_PT_SERVER_TRANSPORT_OPTIONS: "obf\\s4:iat-mode=1" });
  match(good.lines.join("\n"), /^SMETHOD obfs4 127\.0\.0\.1:\d+ ARGS:cert=[^ ]*,iat-mode=1$/m);
  const bad = await serve({ TOR_PT_SERVER_TRANSPORT_OPTIONS: "obf\\s4:iat-mode=7" });
  match(bad.lines.join("\n"), /^SMETHOD-ERROR obfs4 /m);
  // ...while `ob\:fs4` is another transport, and obfs4 keeps its defaults.
  const other = await serve({ TOR_PT_SERVER_TRANSPORT_OPTIONS: "ob\\:fs4:iat-mode=7" });
  match(other.lines.join("\n"), /^SMETHOD obfs4 127\.0\.0\.1:\d+ ARGS:cert=[^ ]*,iat-mode=0$/m);
  for (const run of [good, bad, other]) deepStrictEqual(run.code, 0);
});

Deno.test("fix 2: every k=v parser keeps a repeated key's first value and reports the key once", () => {
  const seen: unknown[] = [];
  const report = (key: string, transport?: string) => seen.push([key, transport]);
  deepStrictEqual(parseTorArgs("k=1;k=2;j=1;k=3;j=2", { onRepeatedKey: report }), {
    k: "1",
    j: "1",
  });
  deepStrictEqual(
    Object.fromEntries(parseTransportOptions("a:k=1;b:k=2;a:k=3;a:k=4", { onRepeatedKey: report })),
    { a: { k: "1" }, b: { k: "2" } },
  );
  deepStrictEqual(parseSmethodArgs("ARGS:k=1,k=2", { onRepeatedKey: report }), { k: "1" });
  deepStrictEqual(
    parseBridgeLine("obfs4 192.0.2.1:443 cert=a cert=b iat-mode=0", { onRepeatedKey: report })
      .options,
    { cert: "a", "iat-mode": "0" },
  );
  deepStrictEqual(seen, [
    ["k", undefined],
    ["j", undefined],
    ["k", "a"],
    ["k", undefined],
    ["cert", undefined],
  ]);
  deepStrictEqual(parsePtLine("SMETHOD x 127.0.0.1:1 ARGS:k=1,k=2,k=3"), {
    type: "SMETHOD",
    transport: "x",
    address: { hostname: "127.0.0.1", port: 1 },
    args: { k: "1" },
    repeatedKeys: ["k"],
  });
  deepStrictEqual(parsePtLine('STATUS TRANSPORT=x A=1 A="2"'), {
    type: "STATUS",
    transport: "x",
    fields: { A: "1" },
    repeatedKeys: ["A"],
  });
});

Deno.test("fix 2: options written as JSON keep a repeated key's first value and report it once, as the k=v forms do", () => {
  const seen: unknown[] = [];
  const report = (key: string, transport?: string) => seen.push([key, transport]);
  // -options / TOR_PT_SERVER_TRANSPORT_OPTIONS as JSON: per transport, a
  // transport named twice (its options merged), and for every transport.
  deepStrictEqual(
    Object.fromEntries(
      parseTransportOptions(
        '{"a":{"k":"1","j":"x","k":"2"},"b":{"k":"3"},"a":{"k":"4","i":"y","j":"z"}}',
        { onRepeatedKey: report },
      ),
    ),
    { a: { k: "1", j: "x", i: "y" }, b: { k: "3" } },
  );
  deepStrictEqual(
    Object.fromEntries(
      parseTransportOptions(' {"k":"1","k":"2","n":3,"n":4}', { onRepeatedKey: report }),
    ),
    { "*": { k: "1", n: "3" } },
  );
  // SOCKS per-connection settings as JSON (PT 2.0), and main.ts server --options.
  deepStrictEqual(
    parseJsonSettings('{"k":"\\u0031","k":"2","k\\u0020":"3","__proto__":"p","__proto__":"q"}', {
      onRepeatedKey: report,
    }),
    JSON.parse('{"k":"\\u0031","k ":"3","__proto__":"p"}'),
  );
  // Nesting as deep as JSON.parse takes is refused for what it is, not by the stack.
  const deep = `{"a":{"k":${"[".repeat(100_000)}${"]".repeat(100_000)}}}`;
  throws(
    () => parseTransportOptions(deep),
    /value of "k" must be a string, number or boolean, got an array/,
  );
  deepStrictEqual(seen, [
    ["k", "a"],
    ["j", "a"],
    ["k", "*"],
    ["n", "*"],
    ["k", undefined],
    ["__proto__", undefined],
  ]);
});

Deno.test("fix 2: main.ts server --options (k=v or JSON) uses a repeated key's first value and says the key once, never a value", async () => {
  for (
    const options of [
      "method=aes-128-gcm;password=FirstMark;password=SecondMark;password=ThirdMark",
      '{"method":"aes-128-gcm","password":"FirstMark","password":"SecondMark","password":"ThirdMark"}',
    ]
  ) {
    const dir = await Deno.makeTempDir({ prefix: "ptkit_repeat_" });
    try {
      await using server = new TextProcess(MAIN, [
        ...["server", "--transport", "shadowsocks", "--listen", "127.0.0.1:0"],
        ...["--state", dir, "--options", options],
      ]);
      await server.waitFor(/listening on/);
      deepStrictEqual(await server.interrupt(), 0);
      const output = server.stdout + server.stderr;
      deepStrictEqual(output.match(/more than once/g)?.length, 1, output);
      match(output, /--options give "password" more than once; using its first value/);
      ok(!/FirstMark|SecondMark|ThirdMark/.test(output), output);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("fix 2: main.ts uses a repeated SOCKS argument's first value and logs the key once, never a value", async () => {
  await using socks = await echoSocks(state);
  const config = { secret: "value1", x: "1" };
  deepStrictEqual(await socks.args("secret=value1;secret=value2;x=1"), config);
  deepStrictEqual(await socks.args("secret=value1;x=1;secret=value3"), config);
  // SOCKS4: the arguments are the user id.
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: socks.port });
    const sink = [socks.sinkPort >> 8, socks.sinkPort & 0xff];
    const userId = new TextEncoder().encode("secret=value1;secret=value4;x=1");
    await conn.write(new Uint8Array([4, 1, ...sink, 127, 0, 0, 1, ...userId, 0]));
    deepStrictEqual((await readN(conn, 8))[1], 0x5a);
    let line = "";
    for (let b = await readN(conn, 1); b.length === 1 && b[0] !== 0x0a; b = await readN(conn, 1)) {
      line += String.fromCharCode(b[0]!);
    }
    deepStrictEqual(JSON.parse(line).config, config);
  }
  // Another repeated key: its warning follows any later one for "secret".
  deepStrictEqual(await socks.args("other=1;other=2"), { other: "1" });
  await socks.pt.waitFor(/^LOG .*\\"other\\"/);
  const logs = socks.pt.lines.filter((l) => l.startsWith("LOG "));
  deepStrictEqual(logs.filter((l) => l.includes("secret")), [
    'LOG SEVERITY=warning MESSAGE="echo: SOCKS arguments give \\"secret\\" more than once; using its first value"',
  ]);
  ok(!socks.pt.lines.some((l) => /value[1-4]/.test(l)), socks.pt.lines.join("\n"));
});

Deno.test("fix 2: a key TOR_PT_SERVER_TRANSPORT_OPTIONS repeats keeps its first value, logged once", async () => {
  const run = await serve({
    TOR_PT_SERVER_TRANSPORT_OPTIONS: "obfs4:iat-mode=1;obfs4:iat-mode=2;obfs4:iat-mode=0",
  });
  deepStrictEqual(run.code, 0);
  match(run.lines.join("\n"), /^SMETHOD obfs4 127\.0\.0\.1:\d+ ARGS:cert=[^ ]*,iat-mode=1$/m);
  deepStrictEqual(run.lines.filter((l) => l.includes("more than once")), [
    `LOG SEVERITY=warning MESSAGE="TOR_PT_SERVER_TRANSPORT_OPTIONS for 'obfs4' give \\"iat-mode\\" more than once; using its first value"`,
  ]);
});

Deno.test("fix 2: the adapter reads a PT's repeated SMETHOD ARGS and STATUS fields, warning once each", async () => {
  const pt = new PtServer({
    path: new URL("./adapter_fake_pt.sh", import.meta.url).pathname,
    args: ["repeated-keys"],
    transports: ["fake"],
    orport: "127.0.0.1:9",
    startTimeout: 3000,
    stopTimeout: 300,
  });
  const logs: PtLogEvent[] = [];
  const statuses: PtStatusEvent[] = [];
  pt.addEventListener("log", (e) => logs.push(e as PtLogEvent));
  pt.addEventListener("status", (e) => statuses.push(e as PtStatusEvent));
  await pt.start();
  try {
    deepStrictEqual(pt.transports.get("fake")!.clientOptions, { k: "1", j: "3" });
    // The LOG line "last" follows both STATUS lines; wait for it.
    while (!logs.some((l) => l.message === "last")) await new Promise((r) => setTimeout(r, 20));
    deepStrictEqual(statuses.map((s) => s.fields), [{ CONNECT: "Success" }, {
      CONNECT: "Success",
    }]);
    deepStrictEqual(logs.filter((l) => l.severity === "warning").map((l) => l.message), [
      'SMETHOD lines of the PT give "k" more than once; using its first value',
      'STATUS lines of the PT give "CONNECT" more than once; using its first value',
    ]);
  } finally {
    await pt.close();
  }
});

Deno.test("fix 3: an unbracketed IPv6 TOR_PT_ORPORT is repaired and relayed to", async () => {
  using orport = Deno.listen({ hostname: "::1", port: 0 });
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_SERVER_TRANSPORTS: "plain",
    TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
    TOR_PT_ORPORT: `::1:${orport.addr.port}`,
    TOR_PT_STATE_LOCATION: `${state}/orport`,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  const port = Number((await pt.waitFor(/^SMETHOD plain /)).split(" ")[2]!.split(":")[1]);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new Uint8Array([1, 2, 3]));
  using relayed = await orport.accept();
  deepStrictEqual(await readN(relayed, 3), new Uint8Array([1, 2, 3]));
});

Deno.test("fix 3: an unbracketed IPv6 TOR_PT_EXTENDED_SERVER_PORT is repaired and used", async () => {
  const cookie = crypto.getRandomValues(new Uint8Array(32));
  await writeCookieFile(`${state}/cookie`, cookie);
  await using fake = new FakeExtOrPort(cookie, () => "okay", undefined, "::1");
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_SERVER_TRANSPORTS: "plain",
    TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
    TOR_PT_EXTENDED_SERVER_PORT: `::1:${fake.port}`,
    TOR_PT_AUTH_COOKIE_FILE: `${state}/cookie`,
    TOR_PT_STATE_LOCATION: `${state}/extorport`,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  const port = Number((await pt.waitFor(/^SMETHOD plain /)).split(" ")[2]!.split(":")[1]);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new Uint8Array([42]));
  deepStrictEqual(await readN(conn, 1), new Uint8Array([42]));
  deepStrictEqual(fake.sessions[0]!.commands.map((c) => c.body).slice(1), ["plain", ""]);
});

Deno.test("fix 3: what cannot be an IPv6 address before a port stays an ENV-ERROR", async () => {
  for (const address of ["1:2::3:4::9999", "1:2:3:4::9999", "::1:70000", "fe80::1%lo:9"]) {
    for (const variable of ["TOR_PT_ORPORT", "TOR_PT_EXTENDED_SERVER_PORT"]) {
      const run = await serve({ [variable]: address, TOR_PT_AUTH_COOKIE_FILE: `${state}/cookie` });
      deepStrictEqual(run.code, 64, `${variable}=${address}: ${run.lines.join("|")}`);
      match(run.lines.join("\n"), new RegExp(`^ENV-ERROR .*${variable}`, "m"));
    }
  }
});

/**
 * A LOG/STATUS value read by arti's rules (tor-ptmgr): `\n \r \t`, a
 * backslash keeps the next character, and `\0` to `\8` are refused.
 */
function readAsArti(quoted: string): string {
  ok(quoted.startsWith('"') && quoted.endsWith('"'), quoted);
  let out = "";
  for (let i = 1; i < quoted.length - 1; i++) {
    const c = quoted[i]!;
    if (c !== "\\") {
      ok(c !== '"', `unescaped quote in ${quoted}`);
      out += c;
      continue;
    }
    const next = quoted[++i]!;
    ok(!/[0-8]/.test(next), `arti refuses the octal escape in ${quoted}`);
    out += next === "n" ? "\n" : next === "r" ? "\r" : next === "t" ? "\t" : next;
  }
  return out;
}

Deno.test("fix 4: LOG and STATUS C strings escape what tor and arti share and write ? for the rest", () => {
  const lines: string[] = [];
  const output = new IpcOutput({ stdout: (l) => lines.push(l), logLevel: "debug" });
  const samples = [
    ...Array.from({ length: 256 }, (_, i) => `a${String.fromCharCode(i)}0`),
    "\x0123abc",
    "\\377",
    'quote " backslash \\ line\r\n\ttab',
    "caf\u00e9 \u2028 \u{1f600}",
  ];
  for (const message of samples) {
    lines.length = 0;
    output.log("debug", message);
    output.write({ type: "STATUS", transport: "plain", fields: { ERRSTR: message } });
    const expected = message.replace(/[^\x20-\x7e\n\r\t]/gu, "?");
    const [log, status] = lines;
    match(log!, /^LOG SEVERITY=debug MESSAGE=".*"\n$/);
    match(status!, /^STATUS TRANSPORT=plain ERRSTR=.*\n$/);
    for (const line of [log!, status!]) {
      ok(/^[\x20-\x7e]*\n$/.test(line), `not printable ASCII: ${JSON.stringify(line)}`);
    }
    const value = (line: string, key: string) =>
      line.slice(line.indexOf(`${key}=`) + key.length + 1, -1);
    deepStrictEqual(readAsArti(value(log!, "MESSAGE")), expected, JSON.stringify(message));
    const errstr = value(status!, "ERRSTR");
    deepStrictEqual(errstr.startsWith('"') ? readAsArti(errstr) : errstr, expected);
    // ptkit's own adapter reads the same.
    deepStrictEqual((parsePtLine(log!.slice(0, -1)) as { message: string }).message, expected);
  }
});

Deno.test({
  name: "fixes: cleanup",
  fn: async () => {
    await Deno.remove(state, { recursive: true });
  },
});
