// Copyright the ptkit authors. MIT license.
// main.ts as a SIP003 plugin: the plugin options (`k=v;k=v`, `\` escapes)
// as a table; the variables turned into a side; and shadowsocks-libev
// 3.3.5 on both ends (`ss-server --plugin main.ts --plugin-opts
// "server;transport=obfs4;state=DIR"`, `ss-local --plugin main.ts
// --plugin-opts "transport=obfs4;cert=...;iat-mode=0"`): curl through
// ss-local, and obfs4proxy talking to the server plugin with the printed
// cert (the bytes between the plugins are obfs4), and `main.ts client
// ss://...?plugin=ptkit;...` reaches the server plugin too; the plugins
// exit with their parents.

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert";
import { formatPluginOptions, parsePluginOptions } from "../ipc/lines/_args.ts";
import { CLIENT_OPTIONS_FILE, parseSip003, pluginWording } from "../ipc/managed/_sip003.ts";
import { createConnector } from "../client.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import { parseClientConfig } from "../transports/obfs4/_config.ts";
import { CountingHttpServer, curl, TextProcess } from "./cli_util.ts";
import { childEnv, childrenOf, MAIN, requireBinary, waitListening } from "./ipc_util.ts";
import { freePort, startObfs4proxy } from "./obfs4_live_helpers.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { collectOutput } from "./shadowsocks_util.ts";

const PLUGIN_OPTION_ROWS: readonly [text: string, expected: Record<string, string> | RegExp][] = [
  ["", {}],
  ["transport=obfs4", { transport: "obfs4" }],
  ["server;transport=obfs4;state=/var/lib/x", {
    server: "",
    transport: "obfs4",
    state: "/var/lib/x",
  }],
  ["a=1;;b=2;", { a: "1", b: "2" }],
  ["cert=AbC+/x;iat-mode=0", { cert: "AbC+/x", "iat-mode": "0" }],
  ["k=a\\;b", { k: "a;b" }],
  ["k=a\\=b", { k: "a=b" }],
  ["k=a=b", { k: "a=b" }],
  ["k=a\\\\;j=2", { k: "a\\", j: "2" }],
  ["k\\=x=1", { "k=x": "1" }],
  ["k\\;x", { "k;x": "" }],
  ["state=/tmp/a\\ b", { state: "/tmp/a b" }],
  // Lists as people write them: spaces around items, keys and values are not theirs.
  ["server; transport=obfs4; state=/var/lib/x", {
    server: "",
    transport: "obfs4",
    state: "/var/lib/x",
  }],
  [" transport = obfs4 ;iat-mode= 0 ; ", { transport: "obfs4", "iat-mode": "0" }],
  // An escaped space stays, at either end.
  ["state=/tmp/a\\ ;k=\\ v;j=\\ ;i=\\ \\ ", { state: "/tmp/a ", k: " v", j: " ", i: "  " }],
  ["k=1;k=2", { k: "1" }],
  ["k=", { k: "" }],
  ["k=v\\", /trailing backslash/],
  ["=v", /empty key in pair 1/],
  ["a=1;=secret", /empty key in pair 2/],
];

for (const [text, expected] of PLUGIN_OPTION_ROWS) {
  Deno.test(`parsePluginOptions: ${JSON.stringify(text)}`, () => {
    if (expected instanceof RegExp) {
      throws(() => parsePluginOptions(text), (error: Error) => {
        ok(error instanceof SyntaxError && expected.test(error.message), error.message);
        ok(!error.message.includes("secret") && !error.message.includes("v\\"), error.message);
        return true;
      });
      return;
    }
    deepStrictEqual(parsePluginOptions(text), expected);
    // Formatting gives text that parses back to the same options.
    deepStrictEqual(parsePluginOptions(formatPluginOptions(expected)), expected);
  });
}

const VARS = {
  SS_REMOTE_HOST: "192.0.2.1",
  SS_REMOTE_PORT: "8388",
  SS_LOCAL_HOST: "127.0.0.1",
  SS_LOCAL_PORT: "1984",
};
const state = (role: string) => `/default/${role}`;

Deno.test("parseSip003: the client listens on SS_LOCAL and dials SS_REMOTE", () => {
  const plan = parseSip003(
    { ...VARS, SS_PLUGIN_OPTIONS: "transport=obfs4;cert=abc;iat-mode=0" },
    state,
  );
  const config = plan.config;
  ok(config.kind === "client");
  deepStrictEqual(
    [config.mode, config.listen, config.target, config.transports, config.stateDir],
    [
      "transparent-TCP",
      { hostname: "127.0.0.1", port: 1984 },
      { hostname: "192.0.2.1", port: 8388 },
      ["obfs4"],
      undefined, // a client keeps nothing on disk without state=
    ],
  );
  deepStrictEqual(config.options.get("obfs4"), { cert: "abc", "iat-mode": "0" });
});

Deno.test("parseSip003: the server listens on SS_REMOTE and relays to SS_LOCAL", () => {
  const plan = parseSip003(
    { ...VARS, SS_REMOTE_HOST: "::", SS_PLUGIN_OPTIONS: "server;transport=plain;state=/s" },
    state,
  );
  const config = plan.config;
  ok(config.kind === "server");
  deepStrictEqual(config.bindAddrs.get("plain"), { hostname: "::", port: 8388 });
  deepStrictEqual(config.target, {
    kind: "orport",
    address: { hostname: "127.0.0.1", port: 1984 },
  });
  deepStrictEqual([config.stateDir, config.options.get("plain"), config.workers], ["/s", {}, 1]);
  // No state= : the per-user default.
  const defaulted = parseSip003({ ...VARS, SS_PLUGIN_OPTIONS: "server" }, state);
  deepStrictEqual([defaulted.transport, defaulted.config.stateDir], ["obfs4", "/default/server"]);
});

Deno.test("parseSip003: a |-separated host list (ss-libev given several -s): the server listens on each, the client dials the first", () => {
  for (
    const [hosts, expected] of [
      ["127.0.0.1|::1", ["127.0.0.1", "::1"]],
      ["::|0.0.0.0", ["::", "0.0.0.0"]],
      ["192.0.2.1|2001:db8::1|198.51.100.7", ["192.0.2.1", "2001:db8::1", "198.51.100.7"]],
      ["::1|", ["::1"]],
      // A host listed twice is one listener.
      ["127.0.0.1|::1|127.0.0.1", ["127.0.0.1", "::1"]],
    ] as const
  ) {
    const server = parseSip003(
      { ...VARS, SS_REMOTE_HOST: hosts, SS_PLUGIN_OPTIONS: "server;transport=plain" },
      state,
    ).config;
    ok(server.kind === "server");
    const listens = [
      server.bindAddrs.get("plain"),
      ...(server.moreBindAddrs?.get("plain") ?? []),
    ];
    deepStrictEqual(listens, expected.map((hostname) => ({ hostname, port: 8388 })), hosts);
    const client = parseSip003({ ...VARS, SS_REMOTE_HOST: hosts }, state).config;
    ok(client.kind === "client");
    deepStrictEqual(client.target, { hostname: expected[0], port: 8388 });
    deepStrictEqual(client.warnings.length, expected.length > 1 ? 1 : 0, hosts);
  }
  // A host name, as ss-server -s takes one (its listener binds the name's
  // first address, as ss-server's own does).
  const named = parseSip003(
    { ...VARS, SS_REMOTE_HOST: "127.0.0.1|localhost", SS_PLUGIN_OPTIONS: "server" },
    state,
  ).config;
  ok(named.kind === "server");
  deepStrictEqual(named.moreBindAddrs?.get("obfs4"), [{ hostname: "localhost", port: 8388 }]);
  throws(() => parseSip003({ ...VARS, SS_REMOTE_HOST: "|" }, state), /no host/);
});

Deno.test("parseSip003: bad variables and options are errors that quote no option", () => {
  for (
    const [vars, message] of [
      [{ ...VARS, SS_REMOTE_PORT: "99999" }, /SS_REMOTE/],
      [
        { ...VARS, SS_LOCAL_PORT: "0" },
        /^Invalid port 0 for SS_LOCAL_HOST:SS_LOCAL_PORT "127\.0\.0\.1:0": must be an integer in 1-65535$/,
      ],
      [
        { ...VARS, SS_LOCAL_HOST: undefined, SS_LOCAL_PORT: undefined },
        /^Cannot start as a SIP003 plugin: SS_LOCAL_HOST and SS_LOCAL_PORT are not set/,
      ],
      [{ ...VARS, SS_REMOTE_PORT: undefined }, /: SS_REMOTE_PORT is not set/],
      [{ ...VARS, SS_PLUGIN_OPTIONS: "transport=ob fs4" }, /expected a transport name/],
      [{ ...VARS, SS_PLUGIN_OPTIONS: "cert=Secret9Mark\\" }, /trailing backslash/],
      [
        { ...VARS, SS_PLUGIN_OPTIONS: "loglevel=chatty" },
        /^Invalid plugin option loglevel "chatty": expected one of error, warning, notice, info, debug$/,
      ],
    ] as const
  ) {
    throws(() => parseSip003(vars, state), (error: Error) => {
      ok(message.test(error.message), error.message);
      ok(!error.message.includes("Secret9Mark"), error.message);
      return true;
    });
  }
});

Deno.test("parseSip003: server is the key alone, server=true or server=false; another value is refused", () => {
  for (
    const [options, kind] of [
      ["server", "server"],
      ["server=true", "server"],
      ["server=TRUE", "server"],
      [" server = true ", "server"],
      ["server=false", "client"],
      ["server=False", "client"],
      ["", "client"],
    ] as const
  ) {
    deepStrictEqual(
      parseSip003({ ...VARS, SS_PLUGIN_OPTIONS: `${options};transport=plain` }, state).config.kind,
      kind,
      options,
    );
  }
  for (const value of ["yes", "1", "flase", "0"]) {
    throws(
      () => parseSip003({ ...VARS, SS_PLUGIN_OPTIONS: `server=${value}` }, state),
      (error: Error) => {
        deepStrictEqual(
          error.message,
          `Invalid plugin option server "${value}": expected server alone, server=true or server=false`,
        );
        return error instanceof SyntaxError;
      },
    );
  }
});

Deno.test("parseSip003: a plugin key given twice or an empty state= is refused, naming the key; a transport's key given twice is a warning", () => {
  for (
    const [options, key] of [
      ["transport=plain;transport=obfs4", "transport"],
      ["server;server=false", "server"],
      ["server;state=/a;state=/b", "state"],
      ["loglevel=info;loglevel=debug", "loglevel"],
    ] as const
  ) {
    throws(() => parseSip003({ ...VARS, SS_PLUGIN_OPTIONS: options }, state), (error: Error) => {
      deepStrictEqual(
        error.message,
        `Invalid plugin options: the key '${key}' is given more than once: give it once`,
      );
      return error instanceof SyntaxError;
    });
  }
  for (const options of ["server;state=", "server;state= ", "state="]) {
    throws(
      () => parseSip003({ ...VARS, SS_PLUGIN_OPTIONS: options }, state),
      /^SyntaxError: Invalid plugin option state: it is empty: give a directory/,
      options,
    );
  }
  const plan = parseSip003(
    { ...VARS, SS_PLUGIN_OPTIONS: "transport=obfs4;cert=Secret9Mark;cert=Other9Mark" },
    state,
  );
  deepStrictEqual(plan.config.options.get("obfs4"), { cert: "Secret9Mark" });
  deepStrictEqual(plan.config.warnings, [
    'The plugin options give "cert" more than once; using its first value',
  ]);
});

Deno.test("pluginWording: a transport's hint names the plugin options, not --options, tor's variable or a bridge line", () => {
  deepStrictEqual(
    pluginWording(
      "Cannot configure webtunnel: missing required option 'url' (the public https://HOST/SECRET-PATH its front server passes on, given as --options 'url=...', or under tor as 'ServerTransportOptions webtunnel url=...' in torrc)",
      true,
    ),
    "Cannot configure webtunnel: missing required option 'url' (the public https://HOST/SECRET-PATH its front server passes on, given as url=... in the plugin options: ss-server --plugin-opts or SS_PLUGIN_OPTIONS)",
  );
  deepStrictEqual(
    pluginWording(
      "Cannot configure webtunnel: missing required option 'url' (the bridge line's url=https://HOST/SECRET-PATH)",
      false,
    ),
    "Cannot configure webtunnel: missing required option 'url' (the plugin option url=https://HOST/SECRET-PATH, in ss-local --plugin-opts or SS_PLUGIN_OPTIONS)",
  );
  deepStrictEqual(
    pluginWording("a wrong cert: check the bridge line's cert, and the address", false),
    "a wrong cert: check the plugin options' cert, and the address",
  );
  deepStrictEqual(
    pluginWording("Cannot listen on 127.0.0.1:9", true),
    "Cannot listen on 127.0.0.1:9",
  );
  // The side is the options' word alone: a plugin on the wrong side hears so.
  match(
    pluginWording("Cannot listen on 127.0.0.1:9: Address already in use (os error 98)", false),
    /in use \(os error 98\) \(SS_LOCAL: under ss-server, .* give the plugin 'server' in its options/,
  );
  match(
    pluginWording(
      "Cannot listen on 192.0.2.1:9: Cannot assign requested address (os error 99)",
      true,
    ),
    /\(os error 99\) \(SS_REMOTE is no address of this machine: under ss-local .* leave 'server' out/,
  );
  // Where the side is right, the message is as it was.
  for (const server of [true, false]) {
    const taken = "Cannot listen on 127.0.0.1:9: Address already in use (os error 98)";
    if (server) deepStrictEqual(pluginWording(taken, server), taken);
    const foreign = "Cannot listen on 192.0.2.1:9: Cannot assign requested address (os error 99)";
    if (!server) deepStrictEqual(pluginWording(foreign, server), foreign);
  }
});

Deno.test("SIP003: ss-server whose --plugin-opts leave out 'server' hears that its plugin needs it, not only that an address is in use", async () => {
  const serverPort = freePort();
  const server = startWithPlugin("ss-server", [
    ...["-s", "127.0.0.1", "-p", String(serverPort), "-k", "sip003-side", "-m", "aes-128-gcm"],
    ...["--plugin-opts", "transport=plain"],
  ]);
  try {
    // The plugin, a client, tries ss-server's own SS_LOCAL port and exits.
    await server.waitFor(/ptkit: error: .*/);
    match(
      server.output(),
      /ptkit: error: Cannot listen on 127\.0\.0\.1:[0-9]+: Address already in use/,
    );
    match(
      server.output(),
      /give the plugin 'server' in its options, --plugin-opts "server;transport=\.\.\."/,
    );
  } finally {
    await server.stop("SIGKILL");
  }
});

/** A shadowsocks-libev program with main.ts as its plugin; output collected. */
function startWithPlugin(program: "ss-server" | "ss-local", args: string[]) {
  const binary = requireBinary(program, "shadowsocks-libev");
  const child = new Deno.Command(binary, {
    args: [...args, "--plugin", MAIN, "-t", "60"],
    // As ss-libev runs under systemd: stdin is /dev/null.
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const { text, done } = collectOutput(child);
  return {
    child,
    output: text,
    async waitFor(pattern: RegExp): Promise<RegExpExecArray> {
      for (let i = 0; i < 600; i++) {
        const match = pattern.exec(text());
        if (match) return match;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`${program}: no ${pattern} in\n${text()}`);
    },
    async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
      try {
        child.kill(signal);
      } catch {
        // Gone.
      }
      await child.status;
      // The plugin has the pipes too: they end once it has exited.
      await done;
    },
  };
}

/**
 * ss-local with main.ts as its plugin (`printed`: the server plugin's
 * options), to `host`:`port`, once its plugin listens; `get` fetches a URL
 * through its SOCKS5 port with curl.
 */
async function startSsLocal(
  host: string,
  port: number,
  { password, method, printed }: { password: string; method: string; printed: string },
) {
  const localPort = freePort();
  const local = startWithPlugin("ss-local", [
    ...["-s", host, "-p", String(port), "-k", password, "-m", method],
    ...["-b", "127.0.0.1", "-l", String(localPort), "--plugin-opts", printed],
  ]);
  try {
    await local.waitFor(/obfs4 client on [^ ]+:[0-9]+ \(SS_LOCAL\)/);
  } catch (error) {
    await local.stop("SIGKILL");
    throw error;
  }
  const get = (url: string) => curl(["--socks5-hostname", `127.0.0.1:${localPort}`, url]);
  return { local, get };
}

/** The process ids of main.ts plugins whose parent is `parent`. */
async function pluginsOf(parent: number): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await childrenOf(parent)) {
    try {
      if ((await Deno.readTextFile(`/proc/${pid}/cmdline`)).includes(MAIN)) found.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await Deno.stat(`/proc/${pid}`);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`plugin ${pid} did not exit with its parent`);
}

Deno.test("SIP003: ss-local and ss-server with main.ts as their obfs4 plugin; obfs4proxy reaches the server plugin", async () => {
  await using http = new CountingHttpServer("hello over sip003\n");
  const stateDir = await Deno.makeTempDir();
  const method = "chacha20-ietf-poly1305";
  const password = "sip003-test-password";
  const serverPort = freePort();
  const server = startWithPlugin("ss-server", [
    ...["-s", "127.0.0.1", "-p", String(serverPort), "-k", password, "-m", method],
    ...["--plugin-opts", `server;transport=obfs4;state=${stateDir}`],
  ]);
  let local: ReturnType<typeof startWithPlugin> | undefined;
  try {
    // The server plugin prints the client's options on stderr and writes them.
    const printed =
      (await server.waitFor(/^(transport=obfs4;cert=[A-Za-z0-9+/]+;iat-mode=0)$/m))[1]!;
    await waitListening(serverPort);
    // The file is written after the line is printed: its notice says when.
    await server.waitFor(/Wrote .*sip003_client_options\.txt/);
    // Where it listens, and the part of an ss:// link that names the plugin.
    ok(
      server.output().includes(`obfs4 server on 127.0.0.1:${serverPort} (SS_REMOTE)`),
      server.output(),
    );
    ok(
      server.output().includes(
        `in an ss:// link: /?plugin=${encodeURIComponent(`ptkit;${printed}`)}`,
      ),
      server.output(),
    );
    deepStrictEqual(
      await Deno.readTextFile(`${stateDir}/${CLIENT_OPTIONS_FILE}`),
      `${printed}\n`,
    );
    let get: (url: string) => ReturnType<typeof curl>;
    ({ local, get } = await startSsLocal("127.0.0.1", serverPort, { password, method, printed }));
    const result = await get(`http://localhost:${http.port}/`);
    deepStrictEqual(
      result.out,
      "hello over sip003\n",
      result.err + local.output() + server.output(),
    );
    deepStrictEqual(http.connections, 1);

    // An Outline-style link with ptkit's plugin: main.ts client runs
    // Shadowsocks over obfs4 itself, to the same server plugin.
    const b64 = btoa(`${method}:${password}`).replace(/=+$/, "");
    const link = `ss://${b64}@127.0.0.1:${serverPort}/?plugin=${
      encodeURIComponent(`ptkit;${printed}`)
    }#sip003`;
    const socksPort = freePort();
    {
      await using client = new TextProcess(MAIN, [
        ...["client", link, "--socks", `127.0.0.1:${socksPort}`, "--state", `${stateDir}/link`],
      ]);
      await client.waitFor(/Shadowsocks chacha20-ietf-poly1305 over obfs4 to 127\.0\.0\.1:/);
      const viaLink = await curl([
        "--socks5-hostname",
        `127.0.0.1:${socksPort}`,
        `http://localhost:${http.port}/`,
      ]);
      deepStrictEqual(viaLink.out, "hello over sip003\n", viaLink.err + client.stderr);
      deepStrictEqual(http.connections, 2);
    }

    // obfs4proxy, given the printed cert, talks obfs4 to the server plugin;
    // inside, a Shadowsocks stream that ss-server decodes.
    const cert = /cert=([^;]+)/.exec(printed)![1]!;
    const obfs4proxy = await startObfs4proxy({
      TOR_PT_CLIENT_TRANSPORTS: "obfs4",
      TOR_PT_STATE_LOCATION: `${stateDir}/obfs4proxy`,
    }, [requireBinary("obfs4proxy", "obfs4proxy")]);
    try {
      const [hostname, port] = obfs4proxy.method.at(-1)!.split(":");
      const socks = { hostname: hostname!, port: Number(port) };
      const connector = await createConnector(shadowsocks, { method, password }, {
        dialer: (target) =>
          socks5Connect(socks, target, { username: `cert=${cert};iat-mode=0`, password: "\0" }),
      });
      const conn = await connector.dial({
        hostname: "127.0.0.1",
        port: serverPort,
        destination: { hostname: "127.0.0.1", port: http.port },
      });
      const writer = conn.writable.getWriter();
      await writer.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
      const reply = await new Response(conn.readable).text();
      ok(reply.endsWith("\r\n\r\nhello over sip003\n"), reply);
      deepStrictEqual(http.connections, 3);
    } finally {
      await obfs4proxy.stop();
    }

    // The plugins exit with their parents: SIGTERM to ss-local, SIGKILL to
    // ss-server (no chance to stop its plugin).
    const [localPlugin] = await pluginsOf(local.child.pid);
    const [serverPlugin] = await pluginsOf(server.child.pid);
    ok(localPlugin !== undefined && serverPlugin !== undefined, "plugins not found");
    await local.stop("SIGTERM");
    await waitGone(localPlugin);
    await server.stop("SIGKILL");
    await waitGone(serverPlugin);
  } finally {
    await local?.stop("SIGKILL");
    await server.stop("SIGKILL");
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: ss-server given two -s (127.0.0.1 and ::1): the plugin listens on both; ss-local reaches each", async () => {
  await using http = new CountingHttpServer("dual stack\n");
  const stateDir = await Deno.makeTempDir();
  const method = "chacha20-ietf-poly1305";
  const password = "sip003-dual-password";
  const serverPort = freePort();
  const server = startWithPlugin("ss-server", [
    ...["-s", "127.0.0.1", "-s", "::1", "-p", String(serverPort), "-k", password, "-m", method],
    ...["--plugin-opts", `server;transport=obfs4;state=${stateDir}`],
  ]);
  try {
    const printed =
      (await server.waitFor(/^(transport=obfs4;cert=[A-Za-z0-9+/]+;iat-mode=0)$/m))[1]!;
    // Printed once, though the plugin listens twice.
    deepStrictEqual(server.output().split(printed).length, 2, server.output());
    ok(!/error/i.test(server.output()), server.output());
    for (const host of ["127.0.0.1", "::1"]) {
      const { local, get } = await startSsLocal(host, serverPort, { password, method, printed });
      try {
        const result = await get(`http://localhost:${http.port}/`);
        deepStrictEqual(
          result.out,
          "dual stack\n",
          host + result.err + local.output() + server.output(),
        );
      } finally {
        await local.stop("SIGKILL");
      }
    }
    deepStrictEqual(http.connections, 2);
  } finally {
    await server.stop("SIGKILL");
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: ss-server given a host name (-s localhost), as ss-libev takes one: the plugin listens on its address; ss-local reaches it", async () => {
  // Before, the plugin refused it ('Invalid SS_REMOTE_HOST "localhost": the
  // server listens on IP addresses') and ss-server exited.
  await using http = new CountingHttpServer("by name\n");
  const stateDir = await Deno.makeTempDir();
  const method = "chacha20-ietf-poly1305";
  const password = "sip003-name-password";
  const serverPort = freePort();
  const server = startWithPlugin("ss-server", [
    ...["-s", "localhost", "-p", String(serverPort), "-k", password, "-m", method],
    ...["--plugin-opts", `server;transport=obfs4;state=${stateDir}`],
  ]);
  try {
    const printed =
      (await server.waitFor(/^(transport=obfs4;cert=[A-Za-z0-9+/]+;iat-mode=0)$/m))[1]!;
    ok(!/error/i.test(server.output()), server.output());
    const { local, get } = await startSsLocal("localhost", serverPort, {
      password,
      method,
      printed,
    });
    try {
      const result = await get(`http://localhost:${http.port}/`);
      deepStrictEqual(result.out, "by name\n", result.err + local.output() + server.output());
    } finally {
      await local.stop("SIGKILL");
    }
    deepStrictEqual(http.connections, 1);
  } finally {
    await server.stop("SIGKILL");
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: main.ts refuses an unknown or free transport and bad options (64), quoting no option", async () => {
  for (
    const [options, message] of [
      [
        "transport=bogus;cert=Secret9Mark",
        /^ptkit: error: Unknown transport "bogus": expected one of plain, obfs4/m,
      ],
      [
        "transport=shadowsocks;password=Secret9Mark",
        // It said 'Free (not a plugin) transport "shadowsocks"', which told a
        // user neither what is wrong with it nor that ss-libev does that part.
        /^ptkit: error: Transport "shadowsocks" cannot carry a Shadowsocks connection: it is a free transport \(each connection names its own destination; Shadowsocks itself is ss-local's and ss-server's part\): expected one of plain, obfs4, webtunnel$/m,
      ],
      ["transport=obfs4;cert=Secret9Mark\\", /^ptkit: error: [A-Z].*trailing backslash/m],
    ] as const
  ) {
    await using plugin = new TextProcess(MAIN, [], {
      ...VARS,
      SS_REMOTE_HOST: "127.0.0.1",
      SS_PLUGIN_OPTIONS: options,
    });
    const status = await plugin.child.status;
    await plugin.done;
    deepStrictEqual(status.code, 64, plugin.stderr);
    ok(message.test(plugin.stderr), plugin.stderr);
    ok(!(plugin.stdout + plugin.stderr).includes("Secret9Mark"), plugin.stderr);
  }
});

/**
 * Run main.ts as a plugin with `options` its transport refuses: its exit
 * status must be 64 (a configuration error); its standard error.
 */
async function refusedOptions(options: string, home: string): Promise<string> {
  await using plugin = new TextProcess(MAIN, [], {
    ...VARS,
    SS_REMOTE_HOST: "127.0.0.1",
    SS_REMOTE_PORT: String(freePort()),
    SS_PLUGIN_OPTIONS: options,
    XDG_STATE_HOME: home,
  });
  const status = await plugin.child.status;
  await plugin.done;
  deepStrictEqual(status.code, 64, plugin.stderr);
  return plugin.stderr;
}

Deno.test("SIP003: main.ts tells a plugin user to put WebTunnel's url= in the plugin options (server and client), exit 64", async () => {
  const home = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    for (
      const [options, where] of [
        ["server;transport=webtunnel", "ss-server --plugin-opts or SS_PLUGIN_OPTIONS"],
        ["transport=webtunnel", "ss-local --plugin-opts or SS_PLUGIN_OPTIONS"],
      ] as const
    ) {
      const stderr = await refusedOptions(options, home);
      ok(
        stderr.startsWith(
          "ptkit: error: Cannot configure webtunnel: missing required option 'url' (",
        ),
        stderr,
      );
      ok(stderr.includes(`url=`) && stderr.includes(`${where})\n`), stderr);
      ok(!/--options|TOR_PT_|bridge line/.test(stderr), stderr);
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("pluginWording: a transport's refusal of its options that names no place names the plugin options, once", () => {
  // obfs4's own messages say what is wrong, not where to fix it: a plugin
  // user read them without a word of --plugin-opts.
  deepStrictEqual(
    pluginWording(
      "Cannot configure transport 'obfs4': missing option 'iat-mode' and option 'cert' (or 'node-id' and 'public-key')",
      false,
    ),
    "Cannot configure transport 'obfs4': missing option 'iat-mode' and option 'cert' (or 'node-id' and 'public-key'); fix it in ss-local --plugin-opts or SS_PLUGIN_OPTIONS (the server plugin prints the client's)",
  );
  deepStrictEqual(
    pluginWording(
      "Cannot configure transport 'obfs4': invalid iat-mode \"7\": expected 0, 1 or 2",
      true,
    ),
    "Cannot configure transport 'obfs4': invalid iat-mode \"7\": expected 0, 1 or 2; fix it in ss-server --plugin-opts or SS_PLUGIN_OPTIONS",
  );
  // obfs4's own words for a bridge line cut short (tor's Bridge line,
  // --bridge) give way to the plugin options, named once.
  const cutShort = (() => {
    try {
      parseClientConfig({});
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error("parseClientConfig took no cert and no iat-mode");
  })();
  ok(cutShort.includes("tor's Bridge line"), cutShort);
  const worded = pluginWording(cutShort, false);
  ok(!/tor's Bridge|--bridge|bridge line/.test(worded), worded);
  strictEqual(worded.split("SS_PLUGIN_OPTIONS").length, 2, worded);
  // A message that names the place already is left as it is.
  const named =
    "Cannot configure transport 'obfs4': 'cert' has 3 characters: expected 70 of base64 (the bridge line's cert=)";
  deepStrictEqual(
    pluginWording(named, false),
    "Cannot configure transport 'obfs4': 'cert' has 3 characters: expected 70 of base64 (the plugin option cert=, in ss-local --plugin-opts or SS_PLUGIN_OPTIONS)",
  );
  // Not an options error: no hint.
  deepStrictEqual(
    pluginWording("Cannot read state file /x/obfs4_state.json: permission denied", true),
    "Cannot read state file /x/obfs4_state.json: permission denied",
  );
});

Deno.test("SIP003: an obfs4 client plugin given no cert, or a server plugin a bad iat-mode, hears to fix its plugin options, exit 64", async () => {
  const home = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    for (
      const [options, where] of [
        [
          "transport=obfs4",
          "; give 'cert' and 'iat-mode' in ss-local --plugin-opts or SS_PLUGIN_OPTIONS (cert=...;iat-mode=0, as the server plugin prints them)\n",
        ],
        [
          "server;transport=obfs4;iat-mode=7",
          "; fix it in ss-server --plugin-opts or SS_PLUGIN_OPTIONS\n",
        ],
      ] as const
    ) {
      const stderr = await refusedOptions(options, home);
      ok(stderr.startsWith("ptkit: error: Cannot configure transport 'obfs4': "), stderr);
      ok(stderr.includes(where), stderr);
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("SIP003: main.ts given transport options it refuses exits 64 without creating anything on disk (state= or the per-user default)", async () => {
  const home = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    for (
      const options of [
        "server;transport=webtunnel",
        "transport=webtunnel",
        "server;transport=obfs4;iat-mode=9",
        "transport=obfs4;cert=Secret9Mark;iat-mode=0",
        `server;transport=obfs4;iat-mode=9;state=${home}/given`,
      ]
    ) {
      await using plugin = new TextProcess(MAIN, [], {
        ...VARS,
        SS_REMOTE_HOST: "127.0.0.1",
        SS_REMOTE_PORT: String(freePort()),
        SS_PLUGIN_OPTIONS: options,
        XDG_STATE_HOME: home,
      });
      const status = await plugin.child.status;
      await plugin.done;
      deepStrictEqual(status.code, 64, `${options}: ${plugin.stderr}`);
      const made = [];
      for await (const entry of Deno.readDir(home)) made.push(entry.name);
      deepStrictEqual(made, [], `${options} created ${made.join(", ")}`);
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("SIP003: main.ts with only some of the address variables names the missing ones (64), not the managed proxy's usage", async () => {
  await using plugin = new TextProcess(MAIN, [], {
    SS_REMOTE_HOST: "127.0.0.1",
    SS_REMOTE_PORT: "8388",
    SS_PLUGIN_OPTIONS: "transport=obfs4;cert=Secret9Mark",
  });
  const status = await plugin.child.status;
  await plugin.done;
  deepStrictEqual(status.code, 64, plugin.stderr);
  ok(
    /^ptkit: error: Cannot start as a SIP003 plugin: SS_LOCAL_HOST and SS_LOCAL_PORT are not set/m
      .test(plugin.stderr),
    plugin.stderr,
  );
  ok(!plugin.stderr.includes("Usage") && !plugin.stderr.includes("Secret9Mark"), plugin.stderr);
});

/**
 * A SIP003 client plugin over plain whose stdin is a pipe from this process
 * ("piped"), /dev/null ("null") or the file `input` (through sh's `<`).
 */
function stdinPlugin(stdin: "piped" | "null" | { input: string }) {
  const env = childEnv({
    ...VARS,
    SS_REMOTE_HOST: "127.0.0.1",
    SS_LOCAL_PORT: String(freePort()),
    SS_PLUGIN_OPTIONS: "transport=plain",
  });
  const output = { env, clearEnv: true, stdout: "piped", stderr: "piped" } as const;
  const child = typeof stdin === "string"
    ? new Deno.Command(MAIN, { ...output, stdin }).spawn()
    : new Deno.Command("sh", { ...output, args: ["-c", `exec "$0" < "$1"`, MAIN, stdin.input] })
      .spawn();
  const { text, done } = collectOutput(child);
  const started = async () => {
    while (!/plain client on [^ ]+ \(SS_LOCAL\)/.test(text())) {
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, text, done, started };
}

/** The plugin keeps serving 1.5 s after its start, until SIGTERM ends it (0). */
async function keepsServing(plugin: ReturnType<typeof stdinPlugin>): Promise<void> {
  await plugin.started();
  await new Promise((r) => setTimeout(r, 1500));
  ok(!/Shutting down/.test(plugin.text()), plugin.text());
  plugin.child.kill("SIGTERM");
  deepStrictEqual((await plugin.child.status).code, 0);
  await plugin.done;
  ok(/Shutting down: SIGTERM/.test(plugin.text()), plugin.text());
}

Deno.test("SIP003: the plugin exits when its parent's stdin pipe closes, not on /dev/null", async () => {
  // A pipe: closing it is the parent going away.
  {
    const plugin = stdinPlugin("piped");
    await plugin.started();
    await new Promise((r) => setTimeout(r, 1200)); // Past the /dev/null window.
    await plugin.child.stdin.close();
    deepStrictEqual((await plugin.child.status).code, 0);
    await plugin.done;
    ok(/Shutting down: parent closed stdin/.test(plugin.text()), plugin.text());
    deepStrictEqual(plugin.text().match(/Shutting down/g)?.length, 1, plugin.text());
  }
  // /dev/null (ss-libev under systemd): it keeps serving until SIGTERM.
  await keepsServing(stdinPlugin("null"));
});

Deno.test("SIP003: a parent's stdin pipe closed at once ends the plugin; a file as stdin does not", async () => {
  // The parent died before the plugin got going: its pipe ends with no byte,
  // within the first second. That is still the parent's pipe closing.
  {
    const plugin = stdinPlugin("piped");
    await plugin.child.stdin.close();
    const timer = setTimeout(() => plugin.child.kill("SIGKILL"), 20_000);
    const status = await plugin.child.status;
    clearTimeout(timer);
    await plugin.done;
    deepStrictEqual(status.code, 0, plugin.text());
    ok(/Shutting down: parent closed stdin/.test(plugin.text()), plugin.text());
  }
  // A file with bytes in it is nobody's pipe: it keeps serving until SIGTERM.
  const dir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    await Deno.writeTextFile(`${dir}/input`, "not a parent\n");
    await keepsServing(stdinPlugin({ input: `${dir}/input` }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIP003: the server plugin writes sip003_client_options.txt through the state store: a planted link is refused, never followed", async () => {
  const root = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    const stateDir = `${root}/state`;
    await Deno.mkdir(stateDir, { mode: 0o700 });
    await Deno.writeTextFile(`${root}/victim.txt`, "precious\n");
    await Deno.symlink(`${root}/victim.txt`, `${stateDir}/${CLIENT_OPTIONS_FILE}`);
    await using plugin = await serverPlugin(
      `server;transport=obfs4;state=${stateDir}`,
      freePort(),
      /(Wrote|Cannot \w+ state file) /,
    );
    ok(
      new RegExp(`Cannot replace state file ${stateDir}/${CLIENT_OPTIONS_FILE}: .*symbolic link`)
        .test(plugin.stderr),
      plugin.stderr,
    );
    deepStrictEqual(await Deno.readTextFile(`${root}/victim.txt`), "precious\n");
    deepStrictEqual(
      await Deno.readLink(`${stateDir}/${CLIENT_OPTIONS_FILE}`),
      `${root}/victim.txt`,
    );
    // No temporary file is left beside it, and the keys were written as usual.
    deepStrictEqual(
      (await Array.fromAsync(Deno.readDir(stateDir), (e) => e.name)).sort(),
      ["obfs4_bridgeline.txt", "obfs4_state.json", CLIENT_OPTIONS_FILE],
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("SIP003: the server plugin writes sip003_client_options.txt while it holds the state directory's lock", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./sip003_lock_main.ts", import.meta.url).pathname],
      env: childEnv({
        SS_REMOTE_HOST: "127.0.0.1",
        SS_REMOTE_PORT: String(freePort()),
        SS_LOCAL_HOST: "127.0.0.1",
        SS_LOCAL_PORT: "9",
        SS_PLUGIN_OPTIONS: `server;transport=obfs4;state=${stateDir}`,
      }),
      clearEnv: true,
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(output.stderr);
    deepStrictEqual(output.code, 0, text);
    // Only the lock, the write's report and the release, in their order.
    const events = text.split("\n").filter((line) => /^(un)?locked$|Wrote /.test(line))
      .map((line) => line.replace(/^.*Wrote .*$/, "wrote"));
    deepStrictEqual(events, ["locked", "wrote", "unlocked"], text);
    ok(
      (await Deno.readTextFile(`${stateDir}/${CLIENT_OPTIONS_FILE}`)).startsWith(
        "transport=obfs4;",
      ),
    );
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: a mistyped plugin option gets a did-you-mean hint, as a mistyped flag does", async () => {
  const home = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    // `stat` for `state`; the state goes to the per-user directory (XDG_STATE_HOME).
    await using plugin = await serverPlugin(
      `server;transport=obfs4;stat=${home}/typo;iat-mod=0`,
      freePort(),
      /(Wrote|Cannot \w+ state file) /,
      { XDG_STATE_HOME: home },
    );
    ok(
      plugin.stderr.includes(
        "ptkit: [notice] obfs4: ignoring unknown option 'stat' (did you mean 'state'?)\n",
      ),
      plugin.stderr,
    );
    ok(!plugin.stderr.includes(`${home}/typo`), "the value is not printed");
    // The transport's own keys keep the transport's hints.
    ok(
      plugin.stderr.includes("obfs4: ignoring unknown option 'iat-mod' (did you mean 'iat-mode'?)"),
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("SIP003: a WebTunnel server plugin says where it listens (SS_REMOTE), not the bridge line's placeholder address", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    const port = freePort();
    await using plugin = await serverPlugin(
      `server;transport=webtunnel;url=https://bridge.example/6d0c2f8a;state=${stateDir}`,
      port,
      /--plugin-opts/,
    );
    ok(
      plugin.stderr.includes(`ptkit: webtunnel server on 127.0.0.1:${port} (SS_REMOTE); `),
      plugin.stderr,
    );
    ok(!plugin.stderr.includes("2001:db8"), plugin.stderr);
    // The client's options are WebTunnel's own: its URL, which the client dials.
    ok(
      plugin.stderr.includes("\ntransport=webtunnel;url=https://bridge.example/6d0c2f8a;ver="),
      plugin.stderr,
    );
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: a WebTunnel client plugin says it carries connections to its url='s host (what it dials), not to SS_REMOTE", async () => {
  // ss-local -s 192.0.2.1 -p 15000: the plugin dials the url's host, never SS_REMOTE.
  const local = freePort();
  await using plugin = await serverPlugin(
    "transport=webtunnel;url=https://bridge.example:8443/6d0c2f8a;ver=0.0.3",
    15000,
    /(carrying|error)/,
    { SS_REMOTE_HOST: "192.0.2.1", SS_LOCAL_PORT: String(local) },
  );
  ok(
    plugin.stderr.includes(
      `ptkit: webtunnel client on 127.0.0.1:${local} (SS_LOCAL), carrying connections to ` +
        "bridge.example:8443 (from the plugin options; SS_REMOTE is not used)\n",
    ),
    plugin.stderr,
  );
  ok(!plugin.stderr.includes("6d0c2f8a"), "the secret path is not printed");
  // Other transports dial SS_REMOTE, as the line says.
  const plainLocal = freePort();
  await using plain = await serverPlugin("transport=plain", 15000, /(carrying|error)/, {
    SS_REMOTE_HOST: "192.0.2.1",
    SS_LOCAL_PORT: String(plainLocal),
  });
  ok(
    plain.stderr.includes(
      `ptkit: plain client on 127.0.0.1:${plainLocal} (SS_LOCAL), carrying connections to SS_REMOTE\n`,
    ),
    plain.stderr,
  );
});

Deno.test("SIP003: a server plugin given a host list (SS_REMOTE_HOST=127.0.0.1|::1) says it listens on each, not on the first alone", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    const port = freePort();
    await using plugin = await serverPlugin(
      `server;transport=plain;state=${stateDir}`,
      port,
      /(Wrote|error)/,
      { SS_REMOTE_HOST: "127.0.0.1|::1" },
    );
    ok(
      plugin.stderr.includes(
        `ptkit: plain server on 127.0.0.1:${port} and [::1]:${port} (SS_REMOTE); `,
      ),
      plugin.stderr,
    );
    // The client's options, once.
    strictEqual(plugin.stderr.split("the client's --plugin-opts").length, 2, plugin.stderr);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: ss-server -s 0.0.0.0 -s :: (both wildcards, as ss-libev listens on each): the plugin serves IPv4 and IPv6 with no error, in either order", async () => {
  for (const hosts of ["0.0.0.0|::", "::|0.0.0.0"]) {
    // A wildcard port is taken by any process's socket on it (a shared
    // machine's outgoing connections too): then the run is made again.
    for (let attempt = 1;; attempt++) {
      const stateDir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
      try {
        const port = freePort();
        const stderr = await (async () => {
          await using plugin = await serverPlugin(
            `server;transport=plain;state=${stateDir}`,
            port,
            /(Wrote|Cannot \w+ state file) /,
            { SS_REMOTE_HOST: hosts },
          );
          if (!plugin.stderr.includes("error")) {
            // Both families reach it.
            for (const hostname of ["127.0.0.1", "::1"]) {
              const conn = await Deno.connect({ hostname, port });
              conn.close();
            }
          }
          return plugin.stderr;
        })();
        if (stderr.includes("error") && attempt < 5 && takenByOthers(port)) continue;
        ok(!stderr.includes("error"), stderr);
        ok(stderr.includes(`plain server on [::]:${port} (SS_REMOTE)`), stderr);
        break;
      } finally {
        await Deno.remove(stateDir, { recursive: true });
      }
    }
  }
});

/** Whether another process holds `port` on a wildcard address now. */
function takenByOthers(port: number): boolean {
  try {
    Deno.listen({ hostname: "::", port }).close();
    return false;
  } catch {
    return true;
  }
}

Deno.test("SIP003: --plugin-opts written with spaces after the semicolons ('server; transport=plain; state=DIR') is read as meant", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    const port = freePort();
    await using plugin = await serverPlugin(
      `server; transport=plain; state=${stateDir}`,
      port,
      /(Wrote|error)/,
    );
    // Not obfs4 (the default) in the per-user state directory, with notices
    // about unknown options.
    ok(
      plugin.stderr.includes(`ptkit: plain server on 127.0.0.1:${port} (SS_REMOTE)`),
      plugin.stderr,
    );
    ok(plugin.stderr.includes(`Wrote ${stateDir}/${CLIENT_OPTIONS_FILE}`), plugin.stderr);
    ok(!plugin.stderr.includes("unknown option"), plugin.stderr);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("SIP003: a state= written with a final slash ('state=DIR/') names its files without a doubled slash", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "ptkit_sip003_" });
  try {
    const port = freePort();
    await using plugin = await serverPlugin(
      `server;transport=plain;state=${stateDir}/`,
      port,
      /(Wrote|error)/,
    );
    ok(plugin.stderr.includes(`Wrote ${stateDir}/${CLIENT_OPTIONS_FILE}\n`), plugin.stderr);
    ok(!plugin.stderr.includes(`//${CLIENT_OPTIONS_FILE}`), plugin.stderr);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

/**
 * Start main.ts as a SIP003 server plugin on 127.0.0.1:`port` with
 * `options`, and wait (30 s at most) until its stderr matches `until`.
 */
async function serverPlugin(
  options: string,
  port: number,
  until: RegExp,
  env: Record<string, string> = {},
): Promise<TextProcess> {
  const plugin = new TextProcess(MAIN, [], {
    SS_REMOTE_HOST: "127.0.0.1",
    SS_REMOTE_PORT: String(port),
    SS_LOCAL_HOST: "127.0.0.1",
    SS_LOCAL_PORT: "9",
    SS_PLUGIN_OPTIONS: options,
    ...env,
  });
  for (let i = 0; i < 600 && !until.test(plugin.stderr); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return plugin;
}

function match(text: string, pattern: RegExp): void {
  ok(pattern.test(text), `${JSON.stringify(text)} does not match ${pattern}`);
}

Deno.test("SIP003: a client plugin without state= writes nothing to disk (under Debian's ss-local unit, DynamicUser, no directory it may write: it failed with 'Cannot use state directory')", async () => {
  // Its transports (plain, obfs4, webtunnel) keep no client state: the
  // per-user default (here XDG_STATE_HOME, under systemd "/" or a HOME it
  // cannot write) must not be made, nor locked.
  const home = await Deno.makeTempDir({ prefix: "ptkit_sip003_client_" });
  try {
    const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = freePort();
    await using plugin = new TextProcess(MAIN, [], {
      SS_REMOTE_HOST: "127.0.0.1",
      SS_REMOTE_PORT: String(target.addr.port),
      SS_LOCAL_HOST: "127.0.0.1",
      SS_LOCAL_PORT: String(port),
      SS_PLUGIN_OPTIONS: "transport=plain",
      XDG_STATE_HOME: home,
    });
    for (let i = 0; i < 600 && !/plain client on/.test(plugin.stderr); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    match(plugin.stderr, /plain client on 127\.0\.0\.1:[0-9]+ \(SS_LOCAL\)/);
    // It carries a connection.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const peer = await target.accept();
    await conn.write(new Uint8Array([7]));
    const got = new Uint8Array(1);
    deepStrictEqual(await peer.read(got), 1);
    conn.close();
    peer.close();
    target.close();
    deepStrictEqual(await plugin.interrupt(), 0);
    ok(!/state/i.test(plugin.stderr), plugin.stderr);
    const made = [];
    for await (const entry of Deno.readDir(home)) made.push(entry.name);
    deepStrictEqual(made, [], `the client plugin created ${made.join(", ")}`);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
