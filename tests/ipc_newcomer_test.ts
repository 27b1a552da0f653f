// Copyright the ptkit authors. MIT license.
// What a newcomer hit trying the README (each case was reproduced before
// its fix): `start` with transports it cannot run alone, the Shadowsocks
// client command without its password, WebTunnel's listen address, host
// names in bridge lines, exit codes of the SIP003 plugin and of bad state
// files, SOCKS replies for a transport handshake that timed out and for a
// free-mode client against a bound server, mistyped commands, relative XDG
// paths, the help text's layout; and from a second newcomer, trying the
// library and main.ts turn: what listen/createConnector say about a bad
// transport or null options, obfs4's error for a dial without a bridge,
// and turn's shutdown line.

import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert";
import { policyText, runCli } from "../ipc/cli/_commands.ts";
import { DestinationPolicy } from "../net/destination_policy.ts";
import { runUntil } from "./cli_util.ts";
import { parseFlags } from "../ipc/managed/_flags.ts";
import { perUserStateDir } from "../ipc/managed/_state_dir.ts";
import { socks5Connect } from "../ipc/socks/_client.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "../ipc/socks/_reply.ts";
import { HandshakeError } from "../transports/_handshake_error.ts";
import { childEnv, denoDir, MAIN, PtProcess } from "./ipc_util.ts";

const cli = runUntil;

Deno.test("start refuses webtunnel and ssh with one line naming server and client, exit 64", async () => {
  for (const transport of ["webtunnel", "ssh"]) {
    const { code, out, err } = await cli(["start", "--transport", transport]);
    deepStrictEqual(code, 64, err);
    match(err, new RegExp(`^ptkit: error: Cannot run ${transport} with start: .*main\\.ts server`));
    deepStrictEqual(err.split("\n").length, 2, err);
    deepStrictEqual(out, "");
  }
});

Deno.test("start runs shadowsocks with a password of its own, and the demo page comes through", async () => {
  await withStart(async (socks, page, err, out) => {
    const curl = await new Deno.Command("curl", {
      args: ["-s", "-m", "20", "--socks5-hostname", socks, page],
    }).output();
    match(new TextDecoder().decode(curl.stdout), /came through shadowsocks/);
    ok(!/password/i.test(out() + err()), out() + err());
  }, "shadowsocks");
});

Deno.test("start says what its server refuses as --allow leaves it: loopback allowed is not called refused", async () => {
  // The text as start prints it, for each --allow.
  await withStart((_socks, _page, _err, out) => {
    match(
      out(),
      /^The server refuses loopback, private, link-local and multicast destinations except the demo page \(SOCKS reply 02; see --allow\)\.$/m,
    );
    return Promise.resolve();
  });
  await using http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("loopback reached\n"),
  );
  await withStart(
    async (socks, _page, _err, out) => {
      match(
        out(),
        /^The server allows loopback destinations \(--allow\) and refuses private, link-local and multicast destinations except the demo page \(shadowsocks carries no answer back: the connection just closes\)\.$/m,
      );
      ok(!out().includes("refuses loopback"), out());
      // As it says: a loopback destination other than the demo page comes through.
      const curl = await new Deno.Command("curl", {
        args: ["-s", "-m", "20", "--socks5-hostname", socks, `http://127.0.0.1:${http.addr.port}/`],
      }).output();
      deepStrictEqual(new TextDecoder().decode(curl.stdout), "loopback reached\n");
    },
    "shadowsocks",
    ["--allow", "loopback"],
  );
  const policy = (list: string) => DestinationPolicy.parse(list);
  deepStrictEqual(
    policyText(policy("private,[::1]:53"), "SOCKS reply 02", true),
    "The server allows private destinations (--allow) and refuses loopback, link-local and multicast destinations except the demo page and the --allow list's addresses (SOCKS reply 02).",
  );
  deepStrictEqual(
    policyText(policy("loopback,private,link-local,multicast"), "SOCKS reply 02", true),
    "The server allows loopback, private, link-local and multicast destinations (--allow).",
  );
});

/**
 * Run `main.ts start --transport <transport>` (plain by default) in this
 * process while `use` runs, with its SOCKS address, its demo page and its
 * stderr and stdout so far.
 */
async function withStart(
  use: (socks: string, page: string, err: () => string, out: () => string) => Promise<void>,
  transport = "plain",
  more: string[] = [],
): Promise<void> {
  const state = await Deno.makeTempDir();
  const stop = new AbortController();
  let out = "";
  let err = "";
  const started = Promise.withResolvers<void>();
  const done = runCli(
    ["start", "--transport", transport, "--socks", "127.0.0.1:0", "--state", state, ...more],
    {
      stdout: (t) => {
        out += t;
        if (out.includes("Press Ctrl-C")) started.resolve();
      },
      stderr: (t) => err += t,
      getEnv: () => undefined,
      process: false,
      signal: stop.signal,
    },
  );
  try {
    await Promise.race([started.promise, done.then(() => Promise.reject(new Error(err)))]);
    const socks = /SOCKS5 proxy: (127\.0\.0\.1:[0-9]+)/.exec(out)![1]!;
    const page = /curl --socks5-hostname \S+ (http:\/\/localhost:[0-9]+\/)/.exec(out)![1]!;
    await use(socks, page, () => err, () => out);
  } finally {
    stop.abort();
    await done;
    await Deno.remove(state, { recursive: true });
  }
}

Deno.test("a standalone client's SOCKS port ignores an application's own user name and password (SOCKS5) or user id (SOCKS4): its bridge line is all the transport gets", async () => {
  await withStart(async (socks, page, err) => {
    for (
      const proxy of [
        `socks5h://alice:Secret5Mark@${socks}`, // not k=v: was reply 0x12
        `socks4a://root@${socks}`, // Java's SOCKS4 sends the OS user name
      ]
    ) {
      const curl = await new Deno.Command("curl", {
        args: ["-s", "-m", "20", "-x", proxy, page],
      }).output();
      deepStrictEqual(curl.code, 0, `${proxy}: curl exit ${curl.code}\n${err()}`);
      match(new TextDecoder().decode(curl.stdout), /came through plain/);
    }
    ok(!err().includes("Secret5Mark"), err());
  });
});

Deno.test("an application set up for an HTTP proxy on a SOCKS port gets a 400 page saying so, and the client a warning", async () => {
  await withStart(async (socks, page, err) => {
    for (const target of [page, "https://example.com/"]) {
      // A plain request, then a CONNECT (curl tunnels https through an HTTP proxy).
      const curl = await new Deno.Command("curl", {
        args: ["-s", "-m", "20", "-i", "-x", `http://${socks}`, target],
      }).output();
      const reply = new TextDecoder().decode(curl.stdout);
      match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/, `${target}: ${reply}`);
      if (target === page) match(reply, /This is a SOCKS5 proxy, not an HTTP proxy/);
    }
    match(err(), /\[warning\] plain: SOCKS handshake failed: .*an HTTP request came/);
    // A POST's body, unread when the port closed, made the close a reset:
    // a client that reads only once it has sent its request (as many do)
    // then lost the page on systems that drop received data on a reset.
    const [host, port] = socks.split(":");
    const conn = await Deno.connect({ hostname: host!, port: Number(port) });
    try {
      const body = new Uint8Array(48 * 1024).fill(0x61);
      const head = `POST ${page} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`;
      let sent = 0;
      const request = new Uint8Array([...new TextEncoder().encode(head), ...body]);
      while (sent < request.length) sent += await conn.write(request.subarray(sent));
      await new Promise((resolve) => setTimeout(resolve, 300));
      let reply = "";
      const chunk = new Uint8Array(4096);
      for (let n; (n = await conn.read(chunk)) !== null;) {
        reply += new TextDecoder().decode(chunk.subarray(0, n));
      }
      match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
      match(reply, /This is a SOCKS5 proxy, not an HTTP proxy/);
      // The port read the body (not reset): the rest of a body still goes.
      // Before, the reset failed this write ("Connection reset by peer").
      await conn.write(new Uint8Array(1024));
    } finally {
      conn.close();
    }
  });
});

Deno.test("server: Shadowsocks' client command has a password placeholder, never the password; WebTunnel says where it listens", async () => {
  const state = await Deno.makeTempDir();
  try {
    const ss = await cli([
      ...["server", "--transport", "shadowsocks", "--listen", "127.0.0.1:0", "--state", state],
      ...["--options", "method=aes-256-gcm;password=Opt9Secret"],
    ], "Ctrl-C stops");
    deepStrictEqual(ss.code, 0, ss.err);
    match(
      ss.out,
      /client --bridge 'shadowsocks 127\.0\.0\.1:[0-9]+ method=aes-256-gcm password=<PASSWORD>'/,
    );
    match(ss.out, /Replace <PASSWORD> with the server's password/);
    ok(!(ss.out + ss.err).includes("Opt9Secret"));
    const key = await cli([
      ...["server", "--transport", "shadowsocks", "--listen", "127.0.0.1:0", "--state", state],
      ...["--options", `method=aes-128-gcm;key=${btoa("0123456789abcdef")}`],
    ], "Ctrl-C stops");
    match(key.out, / key=<KEY> method=aes-128-gcm'/);
    const wt = await cli([
      ...["server", "--transport", "webtunnel", "--listen", "127.0.0.1:0", "--state", state],
      ...["--options", "url=https://bridge.example/path"],
    ], "Ctrl-C stops");
    deepStrictEqual(wt.code, 0, wt.err);
    // The listen address, not the bridge line's placeholder.
    match(wt.out, /webtunnel listening on 127\.0\.0\.1:[0-9]+,/);
    match(wt.out, /Bridge line for clients:\n {2}webtunnel \[2001:db8:/);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("client refuses the server's printed Shadowsocks command as is: its <PASSWORD> or <KEY> placeholder is named, exit 64", async () => {
  const state = await Deno.makeTempDir();
  try {
    for (
      const [options, name] of [
        ["method=aes-256-gcm;password=Opt9Secret", "password"],
        [`method=aes-128-gcm;key=${btoa("0123456789abcdef")}`, "key"],
      ] as const
    ) {
      const server = await cli([
        ...["server", "--transport", "shadowsocks", "--listen", "127.0.0.1:0", "--state", state],
        ...["--options", options],
      ], "Ctrl-C stops");
      // The client command exactly as printed, with a free SOCKS port.
      const line = /client --bridge '([^']+)'/.exec(server.out)![1]!;
      const client = await cli(
        ["client", "--bridge", line, "--socks", "127.0.0.1:0", "--state", state],
        "Ctrl-C stops",
      );
      deepStrictEqual(client.code, 64, client.out + client.err);
      const placeholder = name === "key" ? "<KEY>" : "<PASSWORD>";
      deepStrictEqual(
        client.err,
        `ptkit: error: The bridge line's ${name} is the placeholder ${placeholder}: replace it with the server's ${name} (the server never prints it)\n`,
      );
      deepStrictEqual(client.out, "");
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("server in free mode says what it refuses (a client's loopback destination gets SOCKS reply 02) and how --allow changes it", async () => {
  const state = await Deno.makeTempDir();
  try {
    const strict = await cli(
      ["server", "--transport", "obfs4", "--listen", "127.0.0.1:0", "--state", state],
      "Ctrl-C stops",
    );
    deepStrictEqual(strict.code, 0, strict.err);
    match(
      strict.out,
      /^The server refuses loopback, private, link-local and multicast destinations \(SOCKS reply 02; see --allow\)\.$/m,
    );
    const loose = await cli(
      [
        ...["server", "--transport", "shadowsocks", "--listen", "127.0.0.1:0", "--state", state],
        ...["--options", "method=aes-256-gcm;password=x", "--allow", "loopback,[::1]:53"],
      ],
      "Ctrl-C stops",
    );
    deepStrictEqual(loose.code, 0, loose.err);
    match(
      loose.out,
      /^The server allows loopback destinations \(--allow\) and refuses private, link-local and multicast destinations except the --allow list's addresses \(shadowsocks carries no answer back: the connection just closes\)\.$/m,
    );
    // Relaying to one service, no destination is chosen by clients: nothing said.
    const bound = await cli(
      [
        ...["server", "--transport", "plain", "--listen", "127.0.0.1:0", "--state", state],
        ...["--target", "127.0.0.1:9"],
      ],
      "Ctrl-C stops",
    );
    deepStrictEqual(bound.code, 0, bound.err);
    ok(!bound.out.includes("destinations"), bound.out);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("client --bridge @obfs4_bridgeline.txt: its comments are skipped, and its placeholders named until replaced", async () => {
  const state = await Deno.makeTempDir();
  try {
    const server = await cli([
      ...["server", "--transport", "obfs4", "--listen", "127.0.0.1:0", "--state", state],
    ], "Ctrl-C stops");
    deepStrictEqual(server.code, 0, server.err);
    const file = `${state}/obfs4_bridgeline.txt`;
    const written = await Deno.readTextFile(file);
    ok(written.startsWith("#") && written.includes("<IP ADDRESS>:<PORT> <FINGERPRINT>"), written);
    // As written: the placeholder is named (it was "word 1 is not an address").
    const asIs = await cli(["client", "--bridge", `@${file}`, "--state", state], "Ctrl-C stops");
    deepStrictEqual(asIs.code, 64, asIs.out + asIs.err);
    deepStrictEqual(
      asIs.err,
      "ptkit: error: The bridge line still holds the placeholder <IP ADDRESS> (as obfs4_bridgeline.txt writes it): replace it with the bridge's own value\n",
    );
    // Edited as its comments say (a copy: ptkit rewrites its own), it works.
    const port = /listening on 127\.0\.0\.1:([0-9]+)/.exec(server.out)![1]!;
    const edited = `${state}/edited_bridgeline.txt`;
    await Deno.writeTextFile(
      edited,
      written.replace(
        "<IP ADDRESS>:<PORT> <FINGERPRINT>",
        `127.0.0.1:${port} 0123456789ABCDEF0123456789ABCDEF01234567`,
      ),
    );
    const ok2 = await cli(
      ["client", "--bridge", `@${edited}`, "--socks", "127.0.0.1:0", "--state", state],
      "Ctrl-C stops",
    );
    deepStrictEqual(ok2.code, 0, ok2.err);
    match(ok2.out, new RegExp(`^ptkit client: obfs4 to 127\\.0\\.0\\.1:${port}\n`));
    // Two lines (tor's bridgelines file, say): which one is meant is not guessed.
    await Deno.writeTextFile(edited, "plain 127.0.0.1:1\n# a comment\nplain 127.0.0.1:2\n");
    const two = await cli(["client", "--bridge", `@${edited}`, "--state", state], "Ctrl-C stops");
    deepStrictEqual(two.code, 64);
    match(two.err, /holds 2 lines besides comments and blank ones: expected one\n$/);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("server --public-address takes an IP address (tor's bridge lines take no name), exit 64", async () => {
  const { code, err } = await cli(["server", "--public-address", "bridge.example.org:443"]);
  deepStrictEqual(code, 64);
  match(
    err,
    /^ptkit: error: Invalid --public-address "bridge\.example\.org:443": expected IP:PORT/,
  );
});

/** main.ts as a process: exit code, stdout and stderr. */
async function main(args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(MAIN, {
    args,
    env: childEnv(env),
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout),
    err: decoder.decode(output.stderr),
  };
}

Deno.test("the SIP003 plugin exits 64 for a transport's bad options, as main.ts client does", async () => {
  const { code, err } = await main([], {
    SS_REMOTE_HOST: "127.0.0.1",
    SS_REMOTE_PORT: "9",
    SS_LOCAL_HOST: "127.0.0.1",
    SS_LOCAL_PORT: "9",
    SS_PLUGIN_OPTIONS: "transport=obfs4;iat-mode=0",
  });
  deepStrictEqual(code, 64, err);
  match(err, /ptkit: error: Cannot configure transport 'obfs4': missing option 'cert'/);
});

Deno.test("a state file that is not JSON is a configuration error (64), as a bad key in it is", async () => {
  const state = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${state}/obfs4_state.json`, "{not json", { mode: 0o600 });
    const { code, err } = await main(
      ["server", "--listen", "127.0.0.1:0", "--state", state],
      { HOME: state },
    );
    deepStrictEqual(code, 64, err);
    match(
      err,
      /ptkit: error: Cannot start obfs4: Cannot parse \/\S*\/obfs4_state\.json: invalid JSON/,
    );
    // Left as it was.
    deepStrictEqual(await Deno.readTextFile(`${state}/obfs4_state.json`), "{not json");

    // A file without the keys says which are missing, naming the file.
    await Deno.writeTextFile(`${state}/obfs4_state.json`, "{}", { mode: 0o600 });
    const empty = await main(
      ["server", "--listen", "127.0.0.1:0", "--state", state],
      { HOME: state },
    );
    deepStrictEqual(empty.code, 64, empty.err);
    match(
      empty.err,
      /ptkit: error: Cannot start obfs4: Cannot parse \/\S*\/obfs4_state\.json: 'node-id', 'private-key' and 'drbg-seed' are missing; it is not replaced \(.*restore it from a backup.*\n/,
    );
    deepStrictEqual(await Deno.readTextFile(`${state}/obfs4_state.json`), "{}");
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("a state directory that cannot be written to is a configuration error (64), as README says", async () => {
  // Root writes anywhere: as root (as CI runs) main.ts runs as nobody here.
  const NOBODY = 65534;
  const asNobody = Deno.uid() === 0;
  const base = await Deno.makeTempDir();
  try {
    await Deno.chmod(base, 0o755);
    const state = `${base}/state`;
    await Deno.mkdir(state, { mode: 0o555 });
    await Deno.chmod(state, 0o555);
    const denoDir = `${base}/deno_dir`;
    await Deno.mkdir(denoDir);
    if (asNobody) await Deno.chown(denoDir, NOBODY, NOBODY);
    const args = ["server", "--listen", "127.0.0.1:0", "--state", state];
    const output = await new Deno.Command(asNobody ? "setpriv" : MAIN, {
      args: asNobody
        ? [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", MAIN, ...args]
        : args,
      env: childEnv({ HOME: base, DENO_DIR: denoDir }),
      clearEnv: true,
      stdin: "null",
    }).output();
    const err = new TextDecoder().decode(output.stderr);
    match(err, /Cannot write state file \/\S*\/state\/obfs4_state\.json: permission denied/);
    deepStrictEqual(output.code, 64, err);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a state directory over a file or through one says so, not mkdir's errno", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "");
    const over = await main(["server", "--state", `${dir}/file`]);
    deepStrictEqual(over.code, 64);
    match(
      over.err,
      /Cannot use state directory ".*\/file": a file is in the way \(not a directory\)/,
    );
    const through = await main(["server", "--state", `${dir}/file/x`]);
    deepStrictEqual(through.code, 64);
    match(through.err, /a part of the path is not a directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a transport handshake that timed out is SOCKS reply 06; other handshake failures 01", () => {
  deepStrictEqual(
    socksReplyCode(new HandshakeError("timeout", "timed out")),
    SocksReply.ttlExpired,
  );
  deepStrictEqual(
    socksReplyCode(new HandshakeError("failed", "closed")),
    SocksReply.generalFailure,
  );
});

Deno.test("socks5Connect gives up on a server that never answers the greeting: 06, connection closed", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  using silent = await accepted;
  await rejects(
    socks5Connect(conn, { hostname: "example.com", port: 80 }, { greetingTimeout: 200 }),
    (error: unknown) => {
      ok(error instanceof SocksReplyError);
      deepStrictEqual(error.code, SocksReply.ttlExpired);
      match(error.message, /did not answer the SOCKS5 greeting in 0\.2 s/);
      return true;
    },
  );
  // The server saw the greeting, then the end of the connection.
  const buffer = new Uint8Array(16);
  deepStrictEqual(await silent.read(buffer), 3);
  deepStrictEqual(await silent.read(buffer), null);
});

Deno.test("a mistyped command is named without echoing the argument; flags are quoted with their dashes", () => {
  deepStrictEqual(parseFlags(["serve"]).errors, [
    "Unexpected argument 1: expected a flag (-name or --name); did you mean server?",
  ]);
  deepStrictEqual(parseFlags(["help"]).errors, [
    "Unexpected argument 1: expected a flag (-name or --name); did you mean --help?",
  ]);
  deepStrictEqual(parseFlags(["version"]).errors, [
    "Unexpected argument 1: expected a flag (-name or --name); did you mean --version?",
  ]);
  // Not -h, the nearest name, but the version flag.
  deepStrictEqual(parseFlags(["-v"]).errors, ["Unknown flag -v (did you mean --version?)"]);
  deepStrictEqual(parseFlags(["--V"]).errors, ["Unknown flag --V (did you mean --version?)"]);
  // Not the first argument, or nothing like a command: no hint, nothing echoed.
  deepStrictEqual(parseFlags(["-client", "serve"]).errors, [
    "Unexpected argument 2: expected a flag (-name or --name)",
  ]);
  deepStrictEqual(parseFlags(["hunter2"]).errors, [
    "Unexpected argument 1: expected a flag (-name or --name)",
  ]);
  deepStrictEqual(parseFlags(["--bogus"]).errors, ["Unknown flag --bogus"]);
  deepStrictEqual(
    parseFlags(["--transport", "obfs4"]).errors[0],
    [
      "Unknown flag --transport (did you mean --transports?)",
    ][0],
  );
});

Deno.test("a relative XDG_STATE_HOME or HOME is ignored (XDG Base Directory specification)", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const exists = () => true;
  deepStrictEqual(
    perUserStateDir("server", env({ XDG_STATE_HOME: "relative/dir", HOME: "/home/u" }), exists),
    "/home/u/.local/state/ptkit/server",
  );
  deepStrictEqual(
    perUserStateDir("server", env({ XDG_STATE_HOME: "/x/state" })),
    "/x/state/ptkit/server",
  );
  deepStrictEqual(
    perUserStateDir("client", env({ HOME: "here" })),
    `${Deno.cwd()}/.ptkit-state/ptkit/client`,
  );
});

Deno.test("the per-user state directory has no doubled slash when HOME, XDG_STATE_HOME or the working directory is / or ends in /", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const exists = () => true;
  deepStrictEqual(
    perUserStateDir("server", env({ HOME: "/" }), exists),
    "/.local/state/ptkit/server",
  );
  deepStrictEqual(
    perUserStateDir("server", env({ HOME: "/home/u/" }), exists),
    "/home/u/.local/state/ptkit/server",
  );
  deepStrictEqual(perUserStateDir("client", env({ XDG_STATE_HOME: "/x//" })), "/x/ptkit/client");
  // A service started from / with no usable HOME (systemd's default working directory).
  const cwd = Deno.cwd();
  try {
    Deno.chdir("/");
    deepStrictEqual(perUserStateDir("server", env({})), "/.ptkit-state/ptkit/server");
  } finally {
    Deno.chdir(cwd);
  }
});

Deno.test("a HOME that does not exist (a service user's /nonexistent) is not created: main.ts server keeps state in the working directory", async () => {
  const cwd = await Deno.makeTempDir();
  const home = `${cwd}/nonexistent`;
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  deepStrictEqual(
    perUserStateDir("server", env({ HOME: home })),
    `${Deno.cwd()}/.ptkit-state/ptkit/server`,
  );
  // The executable, as a service user's shell would start it.
  const child = new Deno.Command(MAIN, {
    args: ["server", "--transport", "obfs4", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9"],
    cwd,
    // Deno's own cache would otherwise be looked for under that HOME.
    env: {
      DENO_DIR: denoDir(),
      ...childEnv(),
      HOME: home,
    },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("Ctrl-C")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  child.kill("SIGTERM");
  await reader.cancel();
  await child.status;
  await child.stderr.cancel();
  match(out, new RegExp(`State \\(keys\\): ${cwd}/\\.ptkit-state/ptkit/server`));
  ok((await Deno.stat(`${cwd}/.ptkit-state/ptkit/server/obfs4_state.json`)).isFile);
  await rejects(() => Deno.stat(home), Deno.errors.NotFound);
  await Deno.remove(cwd, { recursive: true });
});

Deno.test("help texts of several lines continue under their first", async () => {
  const { out } = await cli(["server", "--help"]);
  const lines = out.split("\n");
  const at = lines.findIndex((l) => l.startsWith("  --options "));
  match(lines[at + 1]!, /^ {29}shadowsocks: method=/);
});

Deno.test("main.ts turn says it is shutting down on SIGINT, and exits 0", async () => {
  const child = new Deno.Command(MAIN, {
    args: ["turn", "--listen", "127.0.0.1:0", "--user", "u:p", "--realm", "r"],
    env: childEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (!text.includes("turn: listening on")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  deepStrictEqual((await child.status).code, 0, text);
  match(text, /turn: listening on 127\.0\.0\.1:[0-9]+\nturn: shutting down \(SIGINT\)\n$/);
});

Deno.test("library calls name what is wrong with a transport or its options", async () => {
  const { listen } = await import("../server.ts");
  const { createConnector } = await import("../client.ts");
  const { plain } = await import("../transports/plain.ts");
  await rejects(
    listen(undefined as never, {}, { port: 0 }),
    /^TypeError: Cannot listen: transport must be a Transport .*got undefined$/,
  );
  await rejects(
    createConnector(null as never, {}),
    /^TypeError: Cannot create a connector: transport must be a Transport .*got null$/,
  );
  await rejects(
    listen(plain, null as never, { hostname: "127.0.0.1", port: 0 }),
    /options must be an object of strings, got null/,
  );
});

Deno.test("library calls given null for their options say null, not 'object' or a destructuring error", async () => {
  const { listen, proxy } = await import("../server.ts");
  const { createConnector } = await import("../client.ts");
  const { plain } = await import("../transports/plain.ts");
  const { launchClient } = await import("../ipc/adapter/mod.ts");
  const { serveUdpServer } = await import("../udp/mod.ts");
  await rejects(
    listen(plain, {}, null as never),
    /^TypeError: Cannot listen: options must be an object, got null$/,
  );
  await rejects(
    listen(plain, {}, { hostname: "127.0.0.1", port: 0, limits: null as never }),
    /^TypeError: Cannot listen: limits must be an object, got null$/,
  );
  await rejects(
    proxy(plain, {}, null as never),
    /^TypeError: Cannot proxy: options must be an object, got null$/,
  );
  await rejects(
    proxy(plain, {}, { hostname: "127.0.0.1", port: 0, target: null as never }),
    /^TypeError: Cannot proxy: target must be an address or a function, got null$/,
  );
  await rejects(
    createConnector(plain, {}, null as never),
    /^TypeError: Cannot create a connector: options must be an object, got null$/,
  );
  const connector = await createConnector(plain, {});
  await rejects(
    connector.dial(null as never),
    /^TypeError: Cannot dial: options must be an object, got null$/,
  );
  await rejects(
    launchClient(null as never),
    /^TypeError: Cannot launch PT: options must be an object, got null$/,
  );
  await rejects(
    serveUdpServer(null as never),
    /^TypeError: Cannot serve UDP server: options must be an object, got null$/,
  );
});

Deno.test("an obfs4 connector without a bridge names every missing key when a dial brings none", async () => {
  const { obfs4 } = await import("../transports/obfs4/mod.ts");
  const { createConnector } = await import("../client.ts");
  // An empty configuration: the bridge comes with each connection.
  await using connector = await createConnector(obfs4, {});
  await rejects(
    connector.dial({ hostname: "127.0.0.1", port: 9 }),
    /missing option 'iat-mode' and option 'cert' \(or 'node-id' and 'public-key'\)/,
  );
});

/**
 * A SOCKS5 CONNECT to the IPv4 address and port in `destination` (6 bytes)
 * through the PT's port, with `user` as RFC 1929 user name and "\0" as
 * password, as tor sends bridge arguments; returns the reply code.
 */
async function socksReplyTo(port: number, user: string, destination: number[]): Promise<number> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const name = new TextEncoder().encode(user);
  await conn.write(new Uint8Array([5, 1, 2]));
  const buf = new Uint8Array(64);
  deepStrictEqual([...buf.subarray(0, (await conn.read(buf))!)], [5, 2]);
  await conn.write(new Uint8Array([1, name.length, ...name, 1, 0]));
  await conn.read(buf); // The auth reply.
  await conn.write(new Uint8Array([5, 1, 0, 1, ...destination]));
  const n = await conn.read(buf);
  ok(n !== null && n >= 2, "no SOCKS reply");
  return buf[1]!;
}

Deno.test("client: SOCKS arguments that do not parse get reply 0x12 and a warning (the default level shows it), never the arguments", async () => {
  const state = await Deno.makeTempDir();
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "obfs4",
    TOR_PT_STATE_LOCATION: state,
  });
  try {
    const { port } = await pt.cmethod("obfs4");
    strictEqual(
      await socksReplyTo(port, "cert=SecretCertMark;", [192, 0, 2, 1, 0, 80]),
      SocksReply.settingsParseError,
    );
    const line = await pt.waitFor(/^LOG SEVERITY=warning MESSAGE=".*SOCKS handshake failed/);
    ok(!line.includes("SecretCertMark"), line);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("client: SOCKS arguments that do not parse get a STATUS CONNECT=Failed line naming the bridge, as refused ones do, never the arguments", async () => {
  const state = await Deno.makeTempDir();
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "obfs4",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  try {
    const { port } = await pt.cmethod("obfs4");
    // The user name ends with ';' (an empty pair).
    strictEqual(
      await socksReplyTo(port, "cert=SecretCertMark;iat-mode=0;", [192, 0, 2, 1, 0x01, 0xbb]),
      SocksReply.settingsParseError,
    );
    await pt.closeStdin();
    const { lines } = await pt.exit();
    const failed = lines.filter((l) =>
      l.startsWith('STATUS TRANSPORT=obfs4 ADDRESS=192.0.2.1:443 CONNECT=Failed ERRSTR="')
    );
    deepStrictEqual(failed.length, 1, lines.join("\n"));
    ok(lines.every((l) => !l.includes("SecretCertMark")), lines.join("\n"));
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("client: a parent that stops reading stdout does not stop the PT: LOG and STATUS lines past a backlog are dropped and counted, and the SOCKS port keeps answering", async () => {
  const state = await Deno.makeTempDir();
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "obfs4",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  try {
    const { port } = await pt.cmethod("obfs4");
    // From here on nobody reads the PT's stdout. Each refused connection
    // writes a STATUS and a LOG line (about 300 bytes): 5000 of them are far
    // past a pipe's 64 KiB (where a synchronous write stopped the process)
    // and what the test's own stream buffers.
    const attempts = 5000;
    for (let i = 0; i < attempts; i++) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`The PT stopped answering after ${i} connections`)),
          30_000,
        );
      });
      try {
        strictEqual(
          await Promise.race([
            socksReplyTo(port, "cert=AAAA;iat-mode=0", [192, 0, 2, 1, 0, 80]),
            stuck,
          ]),
          SocksReply.settingsInvalid,
        );
      } finally {
        clearTimeout(timer);
      }
    }
    await pt.closeStdin();
    const { code, lines } = await pt.exit();
    strictEqual(code, 0);
    const failed = lines.filter((l) => l.startsWith("STATUS TRANSPORT=obfs4 ADDRESS=192.0.2.1:80"));
    ok(failed.length > 0 && failed.length < attempts, `${failed.length} STATUS lines`);
    ok(
      lines.some((l) =>
        /^LOG SEVERITY=warning MESSAGE="\d+ LOG and STATUS lines were dropped: the parent process did not read stdout/
          .test(l)
      ),
      lines.slice(-5).join("\n"),
    );
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("the usage's -transports line names the variable of each side (it stands for TOR_PT_SERVER_TRANSPORTS with -server), and -options' variable is the server's", async () => {
  // Was '[TOR_PT_CLIENT_TRANSPORTS]' alone: a bridge operator coming from
  // obfs4proxy could not tell that -transports sets the server's list.
  const { usage } = await import("../ipc/managed/_flags.ts");
  const lines = usage("main.ts").split("\n");
  const transports = lines.find((text) => text.startsWith("  -transports LIST"));
  ok(
    transports?.endsWith("[TOR_PT_CLIENT_TRANSPORTS; with -server TOR_PT_SERVER_TRANSPORTS]"),
    transports,
  );
  const options = lines.find((text) => text.startsWith("  -options OPTS"));
  ok(options?.endsWith("[server: TOR_PT_SERVER_TRANSPORT_OPTIONS]"), options);
});

Deno.test("the usage's -proxy line shows every upstream proxy form the parser takes: a SOCKS4a user id, an HTTP user without a password", async () => {
  const { usage } = await import("../ipc/managed/_flags.ts");
  const { parseUpstreamProxy } = await import("../ipc/managed/_proxy_uri.ts");
  const line = usage("main.ts").split("\n").find((text) => text.includes("-proxy URI"));
  ok(line !== undefined);
  const forms = line.match(/(?:socks5|socks4a|http):\/\/\S+?ip:port/g) ?? [];
  deepStrictEqual(forms, [
    "socks5://[user:pass@]ip:port",
    "socks4a://[user@]ip:port",
    "http://[user[:pass]@]ip:port",
  ]);
  for (const uri of ["socks4a://alice@127.0.0.1:9", "http://alice@127.0.0.1:9"]) {
    parseUpstreamProxy(uri);
  }
});

Deno.test("deno run main.ts without the shebang's permissions: one line naming the flag and how to run it, exit 64, no stack trace", async () => {
  const decoder = new TextDecoder();
  for (
    const [flags, args, flag] of [
      [[], ["start"], "--allow-env"],
      [["--allow-env"], ["start"], "--allow-net"],
      [[], ["server", "--transport", "plain", "--listen", "127.0.0.1:0"], "--allow-env"],
      [[], ["-client", "-transports", "plain"], "--allow-env"],
    ] as const
  ) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--no-prompt", ...flags, MAIN, ...args],
      env: childEnv({ NO_COLOR: "1" }),
      clearEnv: true,
      stdin: "null",
    }).output();
    const err = decoder.decode(output.stderr);
    strictEqual(output.code, 64, `${args.join(" ")}: ${err}`);
    strictEqual(err.split("\n").length, 2, `one line: ${err}`);
    match(err, /^ptkit: error: Requires \w+ access to .*/);
    ok(err.includes(flag), err);
    ok(err.includes("./main.ts") && err.includes("deno task start"), err);
    strictEqual(decoder.decode(output.stdout), "");
  }
});

Deno.test("generateConfig()'s whole { client, server } given as options is named, with which half goes where", async () => {
  const { listen } = await import("../server.ts");
  const { createConnector } = await import("../client.ts");
  const { shadowsocks } = await import("../transports/shadowsocks/mod.ts");
  const generated = await shadowsocks.generateConfig!();
  const said =
    /^TypeError: Cannot configure transport 'shadowsocks': options must be an object of strings, got generateConfig\(\)'s \{ client, server \}: give the server side its \.server and the client side its \.client$/;
  await rejects(listen(shadowsocks, generated as never, { hostname: "127.0.0.1", port: 0 }), said);
  await rejects(createConnector(shadowsocks, generated as never), said);
});

Deno.test("start says so when 127.0.0.1:1080 is taken and it took a free port instead", async () => {
  let holder: Deno.Listener | undefined;
  try {
    holder = Deno.listen({ hostname: "127.0.0.1", port: 1080 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error; // Taken already: as wanted.
  }
  const state = await Deno.makeTempDir();
  const stop = new AbortController();
  let out = "";
  const started = Promise.withResolvers<void>();
  const done = runCli(["start", "--transport", "plain", "--state", state], {
    stdout: (t) => {
      out += t;
      if (out.includes("Press Ctrl-C")) started.resolve();
    },
    stderr: () => {},
    getEnv: () => undefined,
    process: false,
    signal: stop.signal,
  });
  try {
    await Promise.race([started.promise, done.then(() => Promise.reject(new Error(out)))]);
    match(out, /^SOCKS5 proxy: 127\.0\.0\.1:[0-9]+ \(127\.0\.0\.1:1080 is taken\)$/m);
    ok(!out.includes("127.0.0.1:1080 http"), out);
  } finally {
    stop.abort();
    await done;
    holder?.close();
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts help and main.ts version at a shell point at --help and --version, as the managed proxy's flags do", async () => {
  for (const [word, flag] of [["help", "--help"], ["version", "--version"]]) {
    const { code, out, err } = await cli([word!]);
    deepStrictEqual(code, 64, err);
    deepStrictEqual(
      err,
      `ptkit: error: Unknown command "${word}" (did you mean ${flag}?): expected server, client, start, turn, or flags as tor gives them (main.ts --help)\n`,
    );
    deepStrictEqual(out, "");
  }
});

Deno.test("a listen address with no host (Go's ':443') is named as a missing host, with an example", async () => {
  const { code, out, err } = await cli([
    "server",
    "--transport",
    "plain",
    "--listen",
    ":14443",
    "--target",
    "127.0.0.1:9",
  ]);
  deepStrictEqual(code, 64, err);
  deepStrictEqual(
    err,
    'ptkit: error: Cannot parse --listen ":14443": missing host before the port (an IP address, such as 127.0.0.1:14443, or 0.0.0.0:14443 for every IPv4 address)\n',
  );
  deepStrictEqual(out, "");
});

Deno.test("an address to connect to with no host (--target ':9', an ss:// link's '@:8388') gets no listen advice", async () => {
  // 0.0.0.0 is where a server listens on every IPv4 address, not a place
  // to connect to: the hint for a listen address was given for these too.
  const link = `ss://${btoa("aes-256-gcm:pass")}@:8388`;
  for (
    const [args, what, port] of [
      [
        ["server", "--transport", "plain", "--listen", "127.0.0.1:0", "--target", ":9"],
        "--target",
        "9",
      ],
      [["client", link], "ss:// server", "8388"],
    ] as const
  ) {
    const { code, out, err } = await cli([...args]);
    deepStrictEqual(code, 64, err);
    deepStrictEqual(
      err,
      `ptkit: error: Cannot parse ${what} ":${port}": missing host before the port (the address to connect to, such as 127.0.0.1:${port})\n`,
    );
    deepStrictEqual(out, "");
  }
});

Deno.test("--allow names a near miss of a scope, localhost, and an address without its port", () => {
  for (
    const [item, hint] of [
      ["loopbak", " (did you mean loopback?)"],
      ["Private", " (did you mean private?)"],
      ["localhost", " (did you mean loopback?)"],
      ["127.0.0.1", " (an address needs its port: 127.0.0.1:PORT, or the scope loopback)"],
      ["::1", " (an address needs its port: [::1]:PORT, or the scope loopback)"],
      ["everything", ""],
    ]
  ) {
    let message = "";
    try {
      DestinationPolicy.parse(item!);
    } catch (error) {
      ok(error instanceof SyntaxError);
      message = error.message;
    }
    deepStrictEqual(
      message,
      `Cannot parse allowed destination "${item}": expected one of loopback, private, link-local, multicast or an ip:port${hint}`,
    );
  }
});

Deno.test("a port alone where host:port goes (--socks 1080) says how to write it", async () => {
  const { code, err } = await cli(["start", "--socks", "1080"]);
  deepStrictEqual(code, 64, err);
  deepStrictEqual(
    err,
    'ptkit: error: Cannot parse --socks "1080": expected host:port (a port alone: 127.0.0.1:1080 for this machine)\n',
  );
});
