// Copyright the ptkit authors. MIT license.
// The friendly CLI: help texts, and clear usage errors (exit 64) for bad input.

import { deepStrictEqual, match, ok, throws } from "node:assert";
import { runCli } from "../ipc/cli/_commands.ts";
import { parseSip003 } from "../ipc/managed/_sip003.ts";
import { parseUpstreamProxy } from "../ipc/managed/_proxy_uri.ts";
import { cliError, methodErrorCode, methodErrorText } from "../ipc/cli/_names.ts";
import { readValueFile, UsageError } from "../ipc/cli/_value_file.ts";
import { childEnv, countingEcho, startMicrosocks } from "./ipc_util.ts";
import { runUntil, TextProcess } from "./cli_util.ts";

async function run(args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(args, {
    stdout: (t) => out += t,
    stderr: (t) => err += t,
    getEnv: () => undefined,
    process: false,
  });
  return { code, out, err };
}

Deno.test("runCli prints help for each subcommand", async () => {
  for (
    const [sub, flag] of [["server", "--listen"], ["client", "--bridge"], ["start", "--socks"]]
  ) {
    const { code, out } = await run([sub!, "--help"]);
    deepStrictEqual(code, 0);
    ok(out.includes(flag!), out);
    ok(out.startsWith(`Usage: main.ts ${sub} [flags]`));
  }
  deepStrictEqual((await run(["client", "-h"])).code, 0);
  // A tor user's bridge line carries the relay's fingerprint, which the
  // parser takes: the help says so (it showed '[name] ip:port [k=v ...]').
  const bridge = (await run(["client", "--help"])).out.split("\n")
    .find((line) => line.startsWith("  --bridge LINE"));
  ok(
    bridge?.includes("[name] ip:port [fingerprint] [k=v ...], the words after 'Bridge' in a torrc"),
    bridge,
  );
});

Deno.test("runCli refuses bad input with a clear message and exit 64", async () => {
  const table: [string[], RegExp][] = [
    // A mistyped command is named with a guess; any other word may be a
    // value given in the wrong place, and is not shown.
    [
      ["bogus"],
      /^ptkit: error: Unknown command \(not shown\): expected server, client, start, turn/,
    ],
    [["sever"], /^ptkit: error: Unknown command "sever" \(did you mean server\?\)/],
    [["server", "--bogus"], /Unknown flag --bogus/],
    // The flag is named as typed (coturn's -L, a capital letter), not rewritten.
    [["server", "-X"], /^ptkit: error: Unknown flag -X\n/],
    [["server", "--noSuchFlag=1"], /^ptkit: error: Unknown flag --noSuchFlag\n/],
    // The managed proxy's spelling is understood (and its value checked).
    [
      ["server", "--logLevel", "loud"],
      /^ptkit: error: Invalid --log-level "loud": expected one of/,
    ],
    [["client", "--sock", "127.0.0.1:1"], /Unknown flag --sock \(did you mean --socks\?\)/],
    [["server", "--listen"], /Flag --listen needs a value/],
    // A value left out before the next flag is named, not taken as the value.
    [
      ["server", "--listen", "--target", "socks"],
      /^ptkit: error: Flag --listen needs a value \(the next argument is the flag --target\)\n/,
    ],
    [
      ["client", "--bridge", "--socks", "127.0.0.1:1"],
      /^ptkit: error: Flag --bridge needs a value \(the next argument is the flag --socks\)\n/,
    ],
    [["server", "--state", "--help"], /Flag --state needs a value \(.*the flag --help\)/],
    [["server", "--listen", "nowhere"], /Cannot parse --listen "nowhere"/],
    // Options written with spaces, as in a bridge line: named, the password not quoted.
    [
      ["server", "--transport", "shadowsocks", "--options", "method=aes-256-gcm password=Pw9Mark"],
      /^ptkit: error: Invalid --options: the value of 'method' holds another k=v after a space: separate options with ';' \(k=v;k=v\), not spaces\n$/,
    ],
    [["server", "--transport", "nope"], /Unknown transport "nope": available: plain, obfs4/],
    // The managed proxy's and tor's names for the same things (obfs4proxy
    // users type them), too far in spelling for a near miss.
    [
      ["server", "-orport", "127.0.0.1:9001"],
      /^ptkit: error: Unknown flag -orport \(did you mean --target\?\)\n/,
    ],
    [
      ["server", "--bindaddr", "0.0.0.0:443"],
      /^ptkit: error: Unknown flag --bindaddr \(did you mean --listen\?\)\n/,
    ],
    [
      ["client", "-SocksPort", "9050"],
      /^ptkit: error: Unknown flag -SocksPort \(did you mean --socks\?\)\n/,
    ],
    [
      ["client", "-proxylistenaddr", "127.0.0.1:1080"],
      /^ptkit: error: Unknown flag -proxylistenaddr \(did you mean --socks\?\)\n/,
    ],
    // Another command's flag is named with the command that takes it (a
    // server's --orport given to the client got a bare 'Unknown flag').
    [
      ["client", "--orport", "127.0.0.1:9001"],
      /^ptkit: error: Unknown flag --orport: main\.ts client has no such flag; main\.ts server takes it as --target\n/,
    ],
    [
      ["client", "--public-address", "203.0.113.7:443"],
      /^ptkit: error: Unknown flag --public-address: main\.ts client has no such flag; main\.ts server takes it\n/,
    ],
    [
      ["server", "--bridge", "obfs4 203.0.113.7:443"],
      /^ptkit: error: Unknown flag --bridge: main\.ts server has no such flag; main\.ts client takes it\n/,
    ],
    [
      ["server", "-proxylistenaddr", "127.0.0.1:1080"],
      /^ptkit: error: Unknown flag -proxylistenaddr: main\.ts server has no such flag; main\.ts client takes it as --socks\n/,
    ],
    [
      ["start", "--target", "socks"],
      /^ptkit: error: Unknown flag --target: main\.ts start has no such flag; main\.ts server takes it\n/,
    ],
    [
      ["client", "--listen", "127.0.0.1:1080"],
      /^ptkit: error: Unknown flag --listen \(did you mean --socks\?\)\n/,
    ],
    [["server", "stray"], /Unexpected argument 2: expected a flag/],
    // What a bridge line is and where it comes from (was "Missing --bridge '<bridge line>'").
    [
      ["client"],
      /^ptkit: error: Missing --bridge: give the bridge line of the bridge to use, the words after 'Bridge' in tor's torrc \(from bridges\.torproject\.org, or from the bridge's operator: main\.ts server prints it, and obfs4_bridgeline\.txt holds it\), such as --bridge 'obfs4 203\.0\.113\.7:443 FINGERPRINT cert=\.\.\. iat-mode=0', or --bridge @FILE\n/,
    ],
    [["client", "--bridge", "obfs4"], /no address/],
    [["client", "--bridge", "127.0.0.1:1"], /No transport/],
    [["client", "--bridge", "nope 127.0.0.1:1"], /Unknown transport "nope"/],
    [["client", "--bridge", "plain 127.0.0.1:1 junk"], /word 3 is not key=value/],
    [
      ["client", "--bridge", "plain 127.0.0.1:1", "--transport", "obfs4"],
      /bridge line's transport plain disagrees with --transport obfs4/,
    ],
    [["client", "--bridge", "plain 127.0.0.1:1", "--socks", "x", "--tcp", "y"], /not both/],
    [["start", "--socks", "nowhere"], /Cannot parse --socks/],
  ];
  for (const [args, pattern] of table) {
    const { code, err } = await run(args);
    deepStrictEqual(code, 64, args.join(" "));
    match(err, pattern);
    // One style: `ptkit: error: <Sentence>`, and nothing about shutting down.
    match(err, /^ptkit: error: [A-Z]/, err);
    ok(!err.includes("Shutting down"), err);
  }
});

Deno.test("runCli client checks a bridge line's keys at start: a line without them fails before listening", async () => {
  const state = await Deno.makeTempDir();
  const table: [string, RegExp][] = [
    // Where the keys come from (a bridge line cut short when copied): the
    // operator's bridge line, or a Shadowsocks plugin's options.
    [
      "obfs4 127.0.0.1:1",
      /missing option 'iat-mode' and option 'cert' \(or 'node-id' and 'public-key'\); 'cert' and 'iat-mode' come from the bridge line the bridge's operator gives \(obfs4 ADDR:PORT FINGERPRINT cert=\.\.\. iat-mode=0\): keep both on tor's Bridge line or in --bridge\n$/,
    ],
    [
      "obfs4 127.0.0.1:1 iat-mode=0",
      /missing option 'cert' .*; 'cert' and 'iat-mode' come from the bridge line/,
    ],
    [
      `obfs4 127.0.0.1:1 iat-mode=3 cert=${"A".repeat(70)}`,
      /^ptkit: error: Cannot configure transport 'obfs4': invalid iat-mode "3": expected 0, 1 or 2\n$/,
    ],
    ["shadowsocks 127.0.0.1:1", /missing option 'method'/],
    ["shadowsocks 127.0.0.1:1 method=aes-128-gcm", /missing option 'password'/],
    ["webtunnel 127.0.0.1:1", /missing required option 'url'/],
    // A malformed value is configuration too (exit 64), named as such.
    ["webtunnel 127.0.0.1:1 url=notaurl", /^ptkit: error: Cannot configure webtunnel: Invalid /],
    ["webtunnel 127.0.0.1:1 url=ftp://x/y", /^ptkit: error: Cannot configure webtunnel: Invalid /],
  ];
  for (const [bridge, pattern] of table) {
    const { code, out, err } = await run([
      "client",
      "--bridge",
      bridge,
      "--socks",
      "127.0.0.1:0",
      "--state",
      state,
    ]);
    deepStrictEqual(code, 64, `${bridge}: exit ${code}`);
    match(err, pattern);
    ok(!out.includes("SOCKS5 proxy:"), `${bridge} listened: ${out}`);
  }
  await Deno.remove(state, { recursive: true });
});

Deno.test("runCli server reports a listen failure and exits non-zero", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = await Deno.makeTempDir();
  const { code, err } = await run([
    "server",
    "--transport",
    "plain",
    "--listen",
    `127.0.0.1:${busy.addr.port}`,
    "--state",
    state,
  ]);
  deepStrictEqual(code, 1);
  deepStrictEqual(
    err,
    `ptkit: error: Cannot start plain: Cannot listen on 127.0.0.1:${busy.addr.port}: Address already in use (os error 98)\n`,
  );
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts server warns when its bridge line says 0.0.0.0, not with --public-address", async () => {
  const state = await Deno.makeTempDir();
  const serve = async (extra: string[]) => {
    const { code, out, err } = await runUntil([
      ...["server", "--transport", "obfs4", "--listen", "0.0.0.0:0", "--state", state],
      ...extra,
    ], "Ctrl-C stops the server");
    deepStrictEqual(code, 0, err);
    return { out, err };
  };
  const bare = await serve([]);
  const port = /listening on 0\.0\.0\.0:([0-9]+)/.exec(bare.out)![1]!;
  match(bare.out, new RegExp(`^  obfs4 0\\.0\\.0\\.0:${port} cert=\\S+ iat-mode=0$`, "m"));
  match(bare.out, /^Warning: 0\.0\.0\.0:[0-9]+ in this bridge line is the listen address/m);
  match(
    bare.err,
    new RegExp(`^Warning: .*clients cannot dial: use --public-address IP:${port}$`, "m"),
  );
  const published = await serve(["--public-address", "203.0.113.7:443"]);
  match(published.out, /^ {2}obfs4 203\.0\.113\.7:443 cert=\S+ iat-mode=0$/m);
  ok(!/Warning/.test(published.out + published.err), published.out + published.err);
  // ptkit's own bridge line file says which of its fields are placeholders.
  const file = await Deno.readTextFile(`${state}/obfs4_bridgeline.txt`);
  match(file, /<IP ADDRESS>, <PORT> and <FINGERPRINT> below are placeholders/);
  match(file, /tor writes the finished line itself to DataDirectory\/bridgelines/);
  match(file, /^Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=\S+ iat-mode=0$/m);
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts server --transport plain warns that it is an open proxy off loopback, not on loopback", async () => {
  const state = await Deno.makeTempDir();
  try {
    for (const [listen, warned] of [["0.0.0.0:0", true], ["127.0.0.1:0", false]] as const) {
      const run = await runUntil(
        ["server", "--transport", "plain", "--listen", listen, "--state", state],
        "Ctrl-C stops the server",
      );
      deepStrictEqual(run.code, 0, run.err);
      deepStrictEqual(/plain has no authentication/.test(run.err), warned, run.err);
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts --help lists every command and main.ts turn --help works", async () => {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const decoder = new TextDecoder();
  const help = await new Deno.Command(main, { args: ["--help"], stdin: "null" }).output();
  deepStrictEqual(help.code, 0);
  const text = decoder.decode(help.stdout);
  for (const command of ["server", "client", "start", "turn"]) {
    match(text, new RegExp(`^  main\\.ts ${command} `, "m"));
  }
  match(text, /--version/);
  const turn = await new Deno.Command(main, { args: ["turn", "--help"], stdin: "null" }).output();
  deepStrictEqual([turn.code, decoder.decode(turn.stderr)], [0, ""]);
  match(
    decoder.decode(turn.stdout),
    /^Usage: main\.ts turn --listen HOST:PORT --user USER:PASSWORD/,
  );
  match(decoder.decode(turn.stdout), /--realm REALM/);
  // A mistyped command: one error line and exit 64, not tor's protocol
  // lines (VERSION, STATUS, ENV-ERROR joined by ';').
  const typo = await new Deno.Command(main, {
    args: ["sever", "--listen", "127.0.0.1:0"],
    stdin: "null",
  }).output();
  deepStrictEqual(
    [typo.code, decoder.decode(typo.stdout), decoder.decode(typo.stderr).split("\n")[0]],
    [
      64,
      "",
      'ptkit: error: Unknown command "sever" (did you mean server?): expected server, client, start, turn, or flags as tor gives them (main.ts --help)',
    ],
  );
});

Deno.test("main.ts server --options gives the transport its options (shadowsocks, webtunnel), k=v;k=v or JSON; bad ones fail with 64 quoting no value; --workers is checked", async () => {
  const state = await Deno.makeTempDir();
  const serve = (extra: string[]) =>
    runUntil(
      ["server", "--listen", "127.0.0.1:0", "--state", state, ...extra],
      "Ctrl-C stops the server",
    );
  const ss = await serve([
    ...["--transport", "shadowsocks", "--options", "method=aes-256-gcm;password=Opt9Secret"],
  ]);
  deepStrictEqual(ss.code, 0, ss.err);
  match(ss.out, /shadowsocks listening on 127\.0\.0\.1:[0-9]+/);
  const json = await serve([
    ...["--transport", "shadowsocks", "--options", '{"method":"aes-128-gcm","password":"x"}'],
    ...["--workers", "1"],
  ]);
  deepStrictEqual(json.code, 0, json.err);
  const wt = await serve([
    ...["--transport", "webtunnel", "--options", "url=https://bridge.example/path"],
  ]);
  deepStrictEqual(wt.code, 0, wt.err);
  match(wt.out, /webtunnel listening on/);
  for (
    const [extra, pattern] of [
      [["--transport", "shadowsocks", "--options", "Opt9Secret"], /Invalid --options/],
      [["--transport", "shadowsocks", "--options", "{Opt9Secret"], /Invalid --options/],
      [["--transport", "plain", "--workers", "0"], /Invalid --workers "0"/],
      [["--transport", "plain", "--workers", "many"], /Invalid --workers/],
    ] as const
  ) {
    const { code, out, err } = await serve([...extra]);
    deepStrictEqual(code, 64, extra.join(" ") + err);
    match(err, pattern);
    ok(!(out + err).includes("Opt9Secret"), err);
  }
  const help = await run(["server", "--help"]);
  match(help.out, /--options K=V;K=V/);
  match(help.out, /--workers N/);
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts client names what it dials: WebTunnel's URL host or addr=, not the bridge line's placeholder", async () => {
  const state = await Deno.makeTempDir();
  try {
    for (
      const [args, expected] of [
        ["url=https://bridge.example:8443/p", "bridge.example:8443"],
        ["url=https://bridge.example/p", "bridge.example:443"],
        ["url=http://[2001:db8::7]/p", "[2001:db8::7]:80"],
        ["url=https://bridge.example/p addr=localhost:18443", "localhost:18443"],
      ] as const
    ) {
      const { code, out } = await runUntil([
        ...["client", "--bridge", `webtunnel [2001:db8::1]:443 ${args}`],
        ...["--socks", "127.0.0.1:0", "--state", state],
      ], "SOCKS5");
      deepStrictEqual(code, 0, out);
      ok(out.includes(`webtunnel to ${expected}`), `${args}: ${out}`);
      ok(!out.includes("2001:db8::1]"), out);
    }
    // Other transports: the bridge line's address.
    const { out } = await runUntil([
      ...["client", "--bridge", "plain 192.0.2.5:4000", "--socks", "127.0.0.1:0"],
      ...["--state", state],
    ], "SOCKS5");
    ok(out.includes("plain to 192.0.2.5:4000"), out);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("runCli: a transport's bad options are a configuration error (64), one line, no shutdown notice", async () => {
  const state = await Deno.makeTempDir();
  for (
    const args of [
      ["client", "--bridge", "obfs4 127.0.0.1:1 cert=AAAA iat-mode=0", "--socks", "127.0.0.1:0"],
      ["client", "--bridge", "obfs4 127.0.0.1:1 iat-mode=7", "--socks", "127.0.0.1:0"],
      ["client", "ss://YmFkLW1ldGhvZDpwYXNz@127.0.0.1:8388", "--socks", "127.0.0.1:0"],
      [
        "client",
        "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@127.0.0.1:8388/?plugin=ptkit%3Btransport%3Dobfs4%3Bcert%3Dx",
        "--socks",
        "127.0.0.1:0",
      ],
    ]
  ) {
    const { code, err } = await run([...args, "--state", state]);
    deepStrictEqual(code, 64, err);
    match(err, /^ptkit: error: Cannot configure (transport 'obfs4'|shadowsocks): [^\n]+\n$/);
    // A link names no stack of layers, no bridge line: its plugin options.
    if (args[1]!.startsWith("ss://")) ok(!/its layer|Bridge line|--bridge/.test(err), err);
  }
  // A link's plugin options without a cert say to give it there.
  const { err } = await run([
    "client",
    "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@127.0.0.1:8388/?plugin=ptkit%3Btransport%3Dobfs4",
    "--state",
    state,
  ]);
  match(
    err,
    /missing option 'iat-mode' and option 'cert' .*; give 'cert' and 'iat-mode' in the link's plugin options \(plugin=ptkit;transport=obfs4;cert=\.\.\.;iat-mode=0\)/,
  );
  await Deno.remove(state, { recursive: true });
});

/** main.ts with `args` and `env`; its exit code and output. */
async function main(
  args: string[],
  env: Record<string, string> = {},
  deno?: string[],
): Promise<{ code: number; out: string }> {
  const path = new URL("../main.ts", import.meta.url).pathname;
  const output = await new Deno.Command(deno === undefined ? path : Deno.execPath(), {
    args: deno === undefined ? args : ["run", ...deno, path, ...args],
    env: childEnv(env),
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, out: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

Deno.test("main.ts server: a state directory or file it cannot use is named, with why (not Deno's flag advice)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const forbidden = await main([
      "server",
      "--listen",
      "127.0.0.1:0",
      "--state",
      "/proc/forbidden",
    ]);
    deepStrictEqual(forbidden, {
      code: 64,
      out: 'ptkit: error: Cannot use state directory "/proc/forbidden": permission denied\n',
    });
    // A state file this process may not read (Deno's permissions here; the
    // system's, as another user, give the same line).
    const unreadable = await main(
      [
        "-server",
        "-transports",
        "obfs4",
        "-orport",
        "127.0.0.1:9",
        "-state",
        dir,
        "-exit-on-stdin-close",
      ],
      {},
      ["--no-prompt", "--allow-net", "--allow-env", `--allow-write=${dir}`],
    );
    match(
      unreadable.out,
      new RegExp(
        `^SMETHOD-ERROR obfs4 Cannot read state file ${dir}/obfs4_state\\.json: permission denied$`,
        "m",
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every listen that fails names its address: server, SOCKS, metrics, TURN, tor's PT, SIP003", async () => {
  // One port held for TCP and UDP: the kernel's free TCP port may be taken
  // for UDP by another process on a shared machine, so try again then.
  const [busy, busyUdp] = holdTcpAndUdp();
  using _busy = busy;
  const port = busy.addr.port;
  const at = `127.0.0.1:${port}`;
  const inUse = `Cannot listen on ${at}: Address already in use (os error 98)`;
  const dir = await Deno.makeTempDir();
  try {
    const server = await main(["server", "--listen", at, "--state", dir]);
    deepStrictEqual(server, { code: 1, out: `ptkit: error: Cannot start obfs4: ${inUse}\n` });
    const client = await main(["client", "--bridge", "plain 127.0.0.1:9", "--socks", at]);
    deepStrictEqual(client, { code: 1, out: `ptkit: error: Cannot start plain: ${inUse}\n` });
    const turn = await main(["turn", "--listen", at, "--user", "u:p", "--realm", "r"]);
    deepStrictEqual(turn, { code: 1, out: `ptkit: error: ${inUse}\n` });
    const pt = await main(["-server", "-transports", "plain", "-orport", "127.0.0.1:9"], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_SERVER_BINDADDR: `plain-${at}`,
      TOR_PT_STATE_LOCATION: dir,
      TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    });
    match(pt.out, new RegExp(`^SMETHOD-ERROR plain ${inUse.replace(/[().]/g, "\\$&")}$`, "m"));
    const sip003 = await main([], {
      SS_REMOTE_HOST: "127.0.0.1",
      SS_REMOTE_PORT: "9",
      SS_LOCAL_HOST: "127.0.0.1",
      SS_LOCAL_PORT: String(port),
      SS_PLUGIN_OPTIONS: "transport=plain",
    });
    // A client plugin's SS_LOCAL taken: most likely ss-server's own port (no 'server' given).
    deepStrictEqual(sip003, {
      code: 1,
      out: `ptkit: error: ${inUse} (SS_LOCAL: under ss-server, ss-server listens there itself: ` +
        `give the plugin 'server' in its options, --plugin-opts "server;transport=...")\n`,
    });
    // Metrics must not take the side down: a warning naming the address (not the flag).
    const stop = new AbortController();
    let err = "";
    const code = await runCli(
      [
        "server",
        "--transport",
        "plain",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        at,
        "--state",
        dir,
      ],
      {
        stdout: (t) => t.includes("Ctrl-C stops") && stop.abort(),
        stderr: (t) => err += t,
        getEnv: () => undefined,
        process: false,
        signal: stop.signal,
      },
    );
    deepStrictEqual(code, 0, err);
    match(
      err,
      new RegExp(`^\\[warning\\] Cannot serve metrics: ${inUse.replace(/[().]/g, "\\$&")}$`, "m"),
    );
  } finally {
    busyUdp.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("methodErrorCode: configuration and state directory faults are 64, a full or failing disk 1", () => {
  const table: [string, 64 | 1][] = [
    ["Cannot write state file /s/obfs4_state.json: Permission denied (os error 13)", 64],
    ["Cannot read state file /s/obfs4_state.json: unexpected end of JSON input", 64],
    ["Invalid cert: must be 70 base64 characters", 64],
    ["Cannot write state file /s/obfs4_state.json: No space left on device (os error 28)", 1],
    ["Cannot replace state file /s/x: Disk quota exceeded (os error 122)", 1],
    ["Cannot write state file /s/x: Input/output error (os error 5)", 1],
    ["Cannot listen on 127.0.0.1:443: Address already in use (os error 98)", 1],
  ];
  for (const [message, code] of table) deepStrictEqual(methodErrorCode(message), code, message);
});

Deno.test("runCli: an error naming a file keeps its case (link2.txt, empty.txt, a lower-case key), never capitalized", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/link2.txt`, "ss://A@h:1\nss://B@h:2\n");
    await Deno.writeTextFile(`${dir}/empty.txt`, "# only a comment\n\n");
    const table: [string[], string][] = [
      [["client", `@${dir}/link2.txt`], `The file ${dir}/link2.txt holds 2 lines`],
      [["client", "--bridge", `@${dir}/empty.txt`], `The file ${dir}/empty.txt holds 0 lines`],
    ];
    for (const [args, text] of table) {
      const { code, err } = await run(args);
      deepStrictEqual(code, 64, err);
      ok(err.startsWith(`ptkit: error: ${text} besides comments and blank ones`), err);
    }
    // A relative path is printed as given, its first letter unchanged.
    const cwd = Deno.cwd();
    Deno.chdir(dir);
    try {
      const { code, err } = await run(["client", "@link2.txt"]);
      deepStrictEqual(code, 64, err);
      ok(err.startsWith("ptkit: error: The file link2.txt holds 2 lines"), err);
    } finally {
      Deno.chdir(cwd);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("methodErrorText: a transport's lower-case text gets its side's prefix; a sentence is kept as it is", () => {
  deepStrictEqual(
    methodErrorText("obfs4", "Cannot configure transport 'obfs4': missing option 'cert'"),
    "Cannot configure transport 'obfs4': missing option 'cert'",
  );
  deepStrictEqual(
    methodErrorText("plain", "Cannot listen on 127.0.0.1:9: Address already in use (os error 98)"),
    "Cannot listen on 127.0.0.1:9: Address already in use (os error 98)",
  );
  deepStrictEqual(
    methodErrorText("plain", "connection reset"),
    "Cannot start plain: connection reset",
  );
  deepStrictEqual(cliError("link2.txt is empty"), "ptkit: error: link2.txt is empty\n");
});

Deno.test("Port 0 is refused in the one form parseHostPort gives ('Invalid port 0 for X: must be an integer in 1-65535'): --target, a bridge line's address, SIP003's SS_*_PORT and TOR_PT_PROXY's URI", async () => {
  // Before, each said it its own way: 'Invalid --target: port 0',
  // 'Cannot parse bridge line: port 0', 'Invalid SS_LOCAL_PORT: port 0'.
  const form = /Invalid port 0 for .+: must be an integer in 1-65535\n?$/;
  const target = await run(["server", "--transport", "plain", "--target", "127.0.0.1:0"]);
  deepStrictEqual(target.code, 64);
  match(target.err, /^ptkit: error: Invalid port 0 for --target "127\.0\.0\.1:0": must be/);
  match(target.err, form);
  const bridge = await run(["client", "--bridge", "plain 192.0.2.1:0", "--socks", "127.0.0.1:0"]);
  deepStrictEqual(bridge.code, 64);
  match(bridge.err, /^ptkit: error: Invalid port 0 for bridge address: must be/);
  match(bridge.err, form);
  for (const variable of ["SS_LOCAL_PORT", "SS_REMOTE_PORT"]) {
    let message = "";
    try {
      parseSip003({
        SS_REMOTE_HOST: "192.0.2.1",
        SS_REMOTE_PORT: "8388",
        SS_LOCAL_HOST: "127.0.0.1",
        SS_LOCAL_PORT: "1984",
        [variable]: "0",
      }, () => "/nonexistent");
    } catch (error) {
      message = `${error}`;
    }
    match(message, /^RangeError: Invalid port 0 for SS_(LOCAL|REMOTE)_HOST:SS_\1_PORT /);
    match(message, form);
  }
  // TOR_PT_PROXY's URI (before: 'Invalid proxy port 0: must be 1-65535');
  // its userinfo stays unquoted.
  let proxy = "nothing thrown";
  try {
    parseUpstreamProxy("socks5://user:Pw9Mark@127.0.0.1:0");
  } catch (error) {
    proxy = `${error}`;
  }
  match(proxy, /^RangeError: Invalid port 0 for proxy URI "socks5:\/\/\*\*\*@127\.0\.0\.1:0": /);
  match(proxy, form);
  ok(!proxy.includes("Pw9Mark"));
});

/** A loopback port held for both TCP and UDP (another is tried while its UDP side is taken). */
function holdTcpAndUdp(): [Deno.TcpListener, Deno.DatagramConn] {
  for (let attempt = 0;; attempt++) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = tcp.addr.port;
      return [tcp, Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port })];
    } catch (error) {
      tcp.close();
      if (!(error instanceof Deno.errors.AddrInUse) || attempt === 20) throw error;
    }
  }
}

Deno.test("readValueFile: '@' alone (a file name forgotten) is a usage error that says so, not 'from : Empty path is not allowed'", () => {
  for (const what of ["-options", "-proxy", "--bridge"]) {
    throws(() => readValueFile("@", what), (error: Error) => {
      ok(error instanceof UsageError, String(error));
      deepStrictEqual(error.message, `Cannot read ${what}: '@' names no file (write @FILE)`);
      return true;
    });
  }
});

/** Connect to `port`, send a line and read it back; null when the connection ends first. */
async function echoThrough(port: number): Promise<string | null> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("through\n"));
  const buffer = new Uint8Array(64);
  let text = "";
  const timer = setTimeout(() => conn.close(), 10_000);
  try {
    while (text.length < 8) {
      const n = await conn.read(buffer);
      if (n === null) return null;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
  return text;
}

Deno.test("main.ts client --proxy: every connection to the server goes through the upstream proxy (microsocks, user and password), fail-closed; a bad URI is a usage error that hides the password", async () => {
  const echo = countingEcho();
  const upstream = await startMicrosocks("ptuser", "Secret7Pass");
  const state = await Deno.makeTempDir();
  const port = (() => {
    using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return l.addr.port;
  })();
  try {
    await using client = new TextProcess(new URL("../main.ts", import.meta.url).pathname, [
      ...["client", "--bridge", `plain 127.0.0.1:${echo.addr.port}`, "--tcp", `127.0.0.1:${port}`],
      ...["--proxy", `socks5://ptuser:Secret7Pass@127.0.0.1:${upstream.port}`, "--state", state],
    ]);
    await client.waitFor(/relays to the server's target/);
    deepStrictEqual(await echoThrough(port), "through\n");
    deepStrictEqual(echo.accepted(), 1);
    await upstream.kill();
    deepStrictEqual(await echoThrough(port), null);
    deepStrictEqual(echo.accepted(), 1, "a connection went around the stopped proxy");
    deepStrictEqual(await client.interrupt(), 0);
    ok(!`${client.stdout}${client.stderr}`.includes("Secret7Pass"), client.stderr);
  } finally {
    await upstream.kill().catch(() => {});
    await echo.close();
    await Deno.remove(state, { recursive: true });
  }
  const bad = await run([
    ...["client", "--bridge", "plain 127.0.0.1:9", "--proxy", "socks9://u:Secret7Pass@127.0.0.1:1"],
  ]);
  deepStrictEqual(bad.code, 64, bad.err);
  match(bad.err, /^ptkit: error: Invalid --proxy: Unsupported proxy scheme "socks9"/);
  ok(!bad.err.includes("Secret7Pass"), bad.err);
  const noPort = await run([
    ...["client", "--bridge", "plain 127.0.0.1:9", "--proxy", "socks5://u:Secret7Pass@127.0.0.1"],
  ]);
  deepStrictEqual(noPort.code, 64, noPort.err);
  match(noPort.err, /^ptkit: error: Invalid --proxy: /);
  ok(!noPort.err.includes("Secret7Pass"), noPort.err);
});

Deno.test("main.ts client whose default state directory cannot be made (a service user without a home) keeps its state in memory and says so; a --state it cannot use is still an error", async () => {
  const stop = new AbortController();
  let out = "";
  let err = "";
  const code = await runCli([
    ...["client", "--bridge", "plain 127.0.0.1:9", "--socks", "127.0.0.1:0"],
  ], {
    stdout: (t) => {
      out += t;
      if (out.includes("SOCKS5")) stop.abort();
    },
    stderr: (t) => err += t,
    getEnv: (name) => name === "XDG_STATE_HOME" ? "/proc/forbidden" : undefined,
    process: false,
    signal: stop.signal,
  });
  deepStrictEqual(code, 0, err);
  ok(out.includes("SOCKS5 proxy: 127.0.0.1:"), out);
  match(
    err,
    /\[warning\] Cannot use state directory "\/proc\/forbidden\/ptkit\/client": [a-z ]+; client state is kept in memory for this run \(--state DIR keeps it\)/,
  );
  const given = await run([
    ...["client", "--bridge", "plain 127.0.0.1:9", "--socks", "127.0.0.1:0"],
    ...["--state", "/proc/forbidden"],
  ]);
  deepStrictEqual(given.code, 64, given.err);
  match(given.err, /^ptkit: error: Cannot use state directory "\/proc\/forbidden": [a-z ]+\n$/);
});

Deno.test("main.ts server and start whose default state directory cannot be made (a service user without a home, run from /) name --state, which fixes it (the error named no fix)", async () => {
  for (const command of ["server", "start"]) {
    let err = "";
    const code = await runCli([
      command,
      ...(command === "server" ? ["--listen", "127.0.0.1:0"] : []),
    ], {
      stdout: () => {},
      stderr: (t) => err += t,
      getEnv: (name) => name === "XDG_STATE_HOME" ? "/proc/forbidden" : undefined,
      process: false,
    });
    deepStrictEqual(code, 64, err);
    match(
      err,
      new RegExp(
        `^ptkit: error: Cannot use state directory "/proc/forbidden/ptkit/${command}" \\(the default, as no --state was given\\): [a-z ]+; give --state DIR, a directory this user may write, where the keys stay across starts\n$`,
      ),
    );
  }
});

Deno.test("main.ts client with an ss:// link serves --metrics as with --bridge (the flag was taken and ignored)", async () => {
  const metricsPort = (() => {
    using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return l.addr.port;
  })();
  const state = await Deno.makeTempDir();
  try {
    const link = `ss://${btoa("chacha20-ietf-poly1305:Secret7Pass")}@127.0.0.1:8388`;
    await using client = new TextProcess(new URL("../main.ts", import.meta.url).pathname, [
      ...["client", link, "--socks", "127.0.0.1:0", "--metrics", `127.0.0.1:${metricsPort}`],
      ...["--state", state],
    ]);
    await client.waitFor(/SOCKS5 proxy: /);
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    const text = await response.text();
    deepStrictEqual(response.status, 200, text);
    match(text, /^ptkit_build_info\{/m);
    ok(!text.includes("Secret7Pass"), text);
    deepStrictEqual(await client.interrupt(), 0);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});
