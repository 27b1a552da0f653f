// Copyright the ptkit authors. MIT license.
// The test tables of goptlib, lyrebird (obfs4) and arti, transcribed as
// data in tests/reference_tables/, run against ptkit: at the unit level
// (ptkit's parsers and writers), in-process (runManagedProxy with TOR_PT_*
// variables) and black-box (main.ts as a process: variables in, lines and
// exit code out; SOCKS bytes in, reply bytes out), wherever a level can
// observe the case. Every case must give what the reference expects, or be
// a documented difference that gives what ptkit says instead. The last test
// prints the counts per source and checks the README's list of differences.

import { deepStrictEqual, ok } from "node:assert";
import { isDeepStrictEqual } from "node:util";
import { createHmac } from "node:crypto";
import {
  formatSmethodArgs,
  parseSmethodArgs,
  parseTorArgs,
  parseTransportOptions,
} from "../ipc/lines/_args.ts";
import { formatLine } from "../ipc/lines/pt_line.ts";
import { parseBindAddr } from "../ipc/managed/_bind_addr.ts";
import { parseUpstreamProxy } from "../ipc/managed/_proxy_uri.ts";
import { formatPtLine, parsePtLine, runManagedProxy } from "../ipc/mod.ts";
import { extOrPortHandshake } from "../ipc/extorport/_client.ts";
import { readCookieFile } from "../ipc/extorport/_safe_cookie.ts";
import { socksHandshake } from "../ipc/socks/_server_handshake.ts";
import { formatHostPort, parseHostPort } from "../net/mod.ts";
import { defineTransport, plain, type Transport } from "../transports/mod.ts";
import { type Difference, DIFFERENCES } from "./reference_tables/differences.ts";
import { type Args, type Case, ERROR, type Source, type Table } from "./reference_tables/case.ts";
import {
  clientParameters,
  serverTransportOptions,
  smethodArgs,
} from "./reference_tables/goptlib_args.ts";
import * as pt from "./reference_tables/goptlib_pt.ts";
import { proxyUrl } from "./reference_tables/goptlib_proxy.ts";
import {
  socks4a,
  type Socks4aResult,
  socks5,
  type SocksInput,
  type SocksResult,
} from "./reference_tables/socks.ts";
import { ptLines } from "./reference_tables/arti_ipc.ts";
import { MemoryPipe } from "./reference_tables/memory_pipe.ts";
import {
  authWith,
  echoSocks,
  fromLatin1,
  hex,
  latin1,
  type Peer,
  unhex,
  unitPeer,
} from "./reference_tables/peers.ts";
import { childEnv, MAIN, readN } from "./ipc_util.ts";

// ---------------------------------------------------------------- judging

type Outcome = "passed" | "difference" | "pending";
const counts = new Map<Source, Record<Outcome | "cases", number>>();
const usedDifferences = new Set<Difference>();

/** Set PTKIT_TABLES_VERBOSE=1 to see every case and what each level gave. */
const VERBOSE = Deno.env.get("PTKIT_TABLES_VERBOSE") === "1";
const show = (v: unknown) => JSON.stringify(v, (_k, x) => x === undefined ? "(undefined)" : x);

/**
 * Judge one case: every level that could observe it (`undefined` where a
 * level cannot) must give what the reference expects, or, for a documented
 * difference, what ptkit says it gives (`pending`: either). `norm` turns
 * an expectation into the form the levels report. Returns a failure
 * message, or undefined.
 */
function judge<I, R>(
  source: Source,
  c: Case<I, R>,
  results: readonly unknown[],
  norm: (want: R) => unknown = (want) => want,
): string | undefined {
  const seen = results.filter((r) => r !== undefined);
  const gives = (want: R) => seen.length > 0 && seen.every((r) => isDeepStrictEqual(r, norm(want)));
  let outcome: Outcome | undefined;
  if (c.differs !== undefined) {
    usedDifferences.add(c.differs);
    if (c.ptkit !== undefined && gives(c.ptkit) && !gives(c.expect)) outcome = "difference";
  } else if (gives(c.expect)) {
    outcome = "passed";
  } else if (c.pending !== undefined && c.ptkit !== undefined && gives(c.ptkit)) {
    outcome = "pending";
  }
  if (VERBOSE) console.log(`${source} ${c.test} ${show(c.input)} -> ${outcome} ${show(results)}`);
  const tally = counts.get(source) ?? { cases: 0, passed: 0, difference: 0, pending: 0 };
  counts.set(source, tally);
  tally.cases++;
  if (outcome !== undefined) {
    tally[outcome]++;
    return undefined;
  }
  return `${c.test} ${show(c.input)}: levels gave ${show(results)}, expected ${
    show(norm(c.expect))
  }${c.ptkit === undefined ? "" : ` (ptkit: ${show(norm(c.ptkit))})`}`;
}

/** Run every case of a table through `levels` and fail with every mismatch. */
async function runTable<I, R>(
  table: Table<I, R>,
  levels: (input: I, c: Case<I, R>) => Promise<unknown[]> | unknown[],
  norm?: (want: R) => unknown,
): Promise<void> {
  const failures: string[] = [];
  for (const c of table.cases) {
    const failure = judge(table.source, c, await levels(c.input, c), norm);
    if (failure !== undefined) failures.push(failure);
  }
  deepStrictEqual(failures, []);
}

const attempt = <T>(f: () => T): T | typeof ERROR => {
  try {
    return f();
  } catch {
    return ERROR;
  }
};

/** goptlib's Args as ptkit sees them: the first value of each key. */
const firstValues = (args: Args | null): Record<string, string> =>
  Object.fromEntries(Object.entries(args ?? {}).map(([k, v]) => [k, v[0]!]));

// ------------------------------------------------- the managed proxy, run

interface Run {
  readonly code: number;
  /** stdout and stderr lines, without newlines. */
  readonly lines: readonly string[];
}

const state = await Deno.makeTempDir({ prefix: "ptkit_reference_" });

/** Run the managed proxy in-process until its methods are reported. */
async function inProcess(
  env: Readonly<Record<string, string>>,
  registry?: ReadonlyMap<string, Transport>,
): Promise<Run> {
  const lines: string[] = [];
  const stop = new AbortController();
  const collect = (line: string) => {
    lines.push(line.replace(/\n$/, ""));
    if (/^[CS]METHODS DONE\n$/.test(line)) stop.abort();
  };
  const code = await runManagedProxy({
    args: [],
    getEnv: (name) => env[name],
    ...(registry === undefined ? {} : { registry }),
    stdout: collect,
    stderr: collect,
    signal: stop.signal,
    process: false,
  });
  return { code, lines };
}

/** Run main.ts (or the test variant with `echo`) as tor does; undefined when env cannot carry a value. */
async function blackBox(env: Readonly<Record<string, string>>): Promise<Run | undefined> {
  if (Object.values(env).some((v) => v.includes("\0"))) return undefined;
  const output = await new Deno.Command(MAIN, {
    env: childEnv({ ...env, TOR_PT_EXIT_ON_STDIN_CLOSE: "1" }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, lines: text.split("\n").filter((l) => l !== "") };
}

const refused = (run: Run) =>
  run.code === 64 && run.lines.some((l) => l.startsWith("ENV-ERROR ")) ? ERROR : undefined;

/** ERROR when main.ts refused the configuration; undefined when it ran (nothing more to see). */
const acceptedOrRefused = (run: Run | undefined) =>
  run === undefined ? undefined : refused(run) ?? (run.code === 0 ? undefined : `exit ${run.code}`);

const client = (extra: Record<string, string> = {}) => ({
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_CLIENT_TRANSPORTS: "plain",
  TOR_PT_STATE_LOCATION: `${state}/client`,
  ...extra,
});

const server = (extra: Record<string, string> = {}) => ({
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_SERVER_TRANSPORTS: "plain",
  TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
  TOR_PT_ORPORT: "127.0.0.1:9",
  TOR_PT_STATE_LOCATION: `${state}/server`,
  ...extra,
});

/** A transport whose server side reports its options as its SMETHOD ARGS. */
const mirror = defineTransport<Record<string, string>>({
  name: "mirror",
  parseConfig: (config) => ({ ...config }),
  clientOptions: (config) => config,
  pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
});

/** A registry that serves `names` (any text) with `transport`. */
const registryOf = (names: readonly string[], transport: Transport = mirror) =>
  new Map(names.map((name) => [name, transport]));

/** The SMETHOD and SMETHOD-ERROR lines: name, address (or undefined), ARGS. */
function smethods(run: Run): { name: string; addr?: string; args: Record<string, string> }[] {
  return run.lines.flatMap((line) => {
    const [keyword, name, addr, args] = line.split(" ");
    if (keyword === "SMETHOD") {
      return [{ name: name!, addr: addr!, args: parseSmethodArgs(args ?? "") }];
    }
    return keyword === "SMETHOD-ERROR" ? [{ name: name!, args: {} }] : [];
  });
}

// ----------------------------------------------------- goptlib args_test.go

Deno.test("goptlib args_test.go TestParseClientParameters: parseTorArgs and SOCKS through main.ts", async () => {
  await using socks = await echoSocks(state);
  await runTable(
    clientParameters,
    async (input) => [attempt(() => parseTorArgs(input)), await socks.args(input)],
    (want) => want === ERROR ? ERROR : firstValues(want),
  );
});

Deno.test("goptlib args_test.go TestParseServerTransportOptions: parser, runManagedProxy, main.ts", async () => {
  await runTable(
    serverTransportOptions,
    async (input, c) => {
      const unit = attempt(() => Object.fromEntries(parseTransportOptions(input)));
      // In-process: each expected transport reports the options it received.
      const names = c.expect === ERROR || Object.keys(c.expect).length === 0
        ? ["t"]
        : Object.keys(c.expect);
      const env = server({
        TOR_PT_SERVER_TRANSPORTS: names.join(","),
        TOR_PT_SERVER_BINDADDR: "",
        TOR_PT_SERVER_TRANSPORT_OPTIONS: input,
      });
      const run = await inProcess(env, registryOf(names));
      const got = refused(run) ??
        Object.fromEntries(
          smethods(run).filter((m) => Object.keys(m.args).length > 0).map((m) => [
            m.name,
            m.args,
          ]),
        );
      return [unit, got, acceptedOrRefused(await blackBox(env))];
    },
    (want) =>
      want === ERROR
        ? ERROR
        : Object.fromEntries(Object.entries(want).map(([name, args]) => [name, firstValues(args)])),
  );
});

Deno.test("goptlib args_test.go TestEncodeSmethodArgs: formatSmethodArgs", async () => {
  await runTable(
    smethodArgs,
    (input) => [formatSmethodArgs(firstValues(input)).replace(/^ARGS:/, "")],
  );
});

// ------------------------------------------------------- goptlib pt_test.go

Deno.test("goptlib pt_test.go TestErrors, TestKeywordIsSafe, TestArgIsSafe: formatLine", async () => {
  await runTable(pt.errorLines, ([keyword, message]) => [formatLine(keyword, message)]);
  await runTable(pt.keywordIsSafe, (keyword) => [attempt(() => formatLine(keyword)) !== ERROR]);
  await runTable(pt.argIsSafe, (arg) => [formatLine("X", `<${arg}>`) === `X <${arg}>`]);
});

Deno.test("goptlib pt_test.go TestGetManagedTransportVer and TestGetClientTransports", async () => {
  await runTable(pt.managedTransportVer, async (input) => {
    const env = client(input === null ? {} : { TOR_PT_MANAGED_TRANSPORT_VER: input });
    if (input === null) delete (env as Record<string, string>).TOR_PT_MANAGED_TRANSPORT_VER;
    const version = (run: Run | undefined) => {
      const line = run?.lines.find((l) => /^VERSION(-ERROR)? /.test(l));
      return line?.startsWith("VERSION ") ? line.slice(8) : ERROR;
    };
    return [version(await inProcess(env)), version(await blackBox(env))];
  });
  const names = ["alpha", "beta", "gamma", "*", "alpha\\"];
  await runTable(pt.clientTransports, async (input) => {
    const env = client();
    if (input === null) delete (env as Record<string, string>).TOR_PT_CLIENT_TRANSPORTS;
    else env.TOR_PT_CLIENT_TRANSPORTS = input;
    const run = await inProcess(env, registryOf(names, plain));
    const started = run.lines.filter((l) => l.startsWith("CMETHOD ")).map((l) => l.split(" ")[1]!);
    return [refused(run) ?? started.sort(), acceptedOrRefused(await blackBox(env))];
  }, (want) => want === ERROR ? ERROR : [...want].sort());
});

Deno.test("goptlib pt_test.go TestResolveAddr as TOR_PT_ORPORT", async () => {
  await runTable(pt.orPort, async (input) => {
    const env = server({ TOR_PT_ORPORT: input });
    const verdict = (run: Run | undefined) =>
      run === undefined ? undefined : refused(run) ??
        (run.lines.some((l) => l.startsWith("SMETHOD plain ")) ? "accepted" : run.lines.join("|"));
    return [verdict(await inProcess(env)), verdict(await blackBox(env))];
  });
});

Deno.test("goptlib pt_test.go TestGetServerBindaddrs", async () => {
  const names = ["alpha", "beta", "gamma", "trebuchet", "ballista"];
  await runTable(pt.serverBindaddrs, async ({ bindaddr, transports, options }) => {
    const env: Record<string, string> = server({ TOR_PT_SERVER_TRANSPORT_OPTIONS: options });
    for (
      const [name, value] of [["TOR_PT_SERVER_BINDADDR", bindaddr], [
        "TOR_PT_SERVER_TRANSPORTS",
        transports,
      ]] as const
    ) {
      if (value === null) delete env[name];
      else env[name] = value;
    }
    const run = await inProcess(env, registryOf(names));
    const entries = attempt(() => parseBindAddr(bindaddr ?? ""));
    const served = refused(run) ?? smethods(run).map(({ name, addr }) => {
      const entry = entries === ERROR ? undefined : entries.get(name);
      const want = entry === undefined ? "127.0.0.1:0" : formatHostPort(entry);
      // A free port is any port on 127.0.0.1.
      const seen = addr === undefined || (entry === undefined && addr.startsWith("127.0.0.1:"))
        ? want
        : addr;
      return { name, addr: seen };
    }).sort((a, b) => a.name < b.name ? -1 : 1);
    return [served, acceptedOrRefused(await blackBox(env))];
  }, (want) => want === ERROR ? ERROR : [...want].sort((a, b) => a.name < b.name ? -1 : 1));
});

Deno.test("goptlib pt_test.go TestReadAuthCookie: readCookieFile", async () => {
  const path = `${state}/cookie`;
  await runTable(pt.authCookie, async (content) => {
    await Deno.writeFile(path, latin1(content));
    return [await readCookieFile(path).then(fromLatin1, () => ERROR)];
  });
});

Deno.test("goptlib pt_test.go Extended ORPort tables: extOrPortHandshake against a scripted tor", async () => {
  await runTable(pt.extOrHashes, async (which, c) => {
    const run = await extOr({ serverHash: which === "server" ? unhex(c.expect) : undefined });
    return [which === "server" ? (run.accepted ? c.expect : "rejected") : run.clientHash];
  });
  await runTable(pt.extOrUserAddr, async (addr) => {
    const run = await extOr({ userAddr: addr });
    return [run.commands.find((cmd) => cmd.type === 1)?.body];
  });
  await runTable(pt.extOrTransport, async (name) => {
    const run = await extOr({ transport: name });
    return [run.commands.filter((cmd) => cmd.type === 2).map((cmd) => cmd.raw).join("")];
  });
  await runTable(pt.extOrDone, async () => [(await extOr({})).commands.at(-1)?.raw]);
  await runTable(pt.extOrReceive, async (input) => {
    const head = latin1(input.slice(0, 4));
    const length = head.length === 4 ? (head[2]! << 8) | head[3]! : 0;
    const complete = input.length >= 4 + length;
    // A complete command is followed by OKAY and the leftover bytes.
    const reply = complete
      ? [latin1(input.slice(0, 4 + length)), unhex("10000000"), latin1(input.slice(4 + length))]
      : [latin1(input)];
    const run = await extOr({ reply });
    if (!run.ok) return [ERROR];
    return [{ body: input.slice(4, 4 + length), leftover: run.leftover }];
  });
  await runTable(pt.extOrMetadata, async ({ addr, name }) => {
    const run = await extOr({ transport: name, ...(addr === "" ? {} : { userAddr: addr }) });
    const metadata: Record<string, string> = {};
    for (const cmd of run.commands) {
      if (cmd.type === 1) metadata.userAddr = cmd.body;
      if (cmd.type === 2) metadata.transport = cmd.body;
    }
    return [metadata];
  });
});

Deno.test("goptlib pt_test.go TestMakeStateDir as TOR_PT_STATE_LOCATION", async () => {
  const base = await Deno.makeTempDir({ dir: state });
  await Deno.writeTextFile(`${base}/file`, "");
  await Deno.mkdir(`${base}/existing`);
  let n = 0;
  await runTable(pt.stateDir, async (location) => {
    const dir = `${base}/${++n}`;
    const path = {
      "unset": undefined,
      "an existing directory": `${base}/existing`,
      "a new directory": `${dir}`,
      "a new directory in a new directory": `${dir}/deeper`,
      "a file": `${base}/file`,
      "below a file": `${base}/file/below`,
    }[location];
    const env = client();
    if (path === undefined) delete (env as Record<string, string>).TOR_PT_STATE_LOCATION;
    else env.TOR_PT_STATE_LOCATION = path;
    const verdict = async (run: Run | undefined) => {
      if (run === undefined) return undefined;
      if (refused(run) !== undefined) return ERROR;
      const there = await Deno.stat(path ?? Deno.cwd()).then((s) => s.isDirectory, () => false);
      return run.code === 0 && there ? "created" : `exit ${run.code}`;
    };
    const unit = await verdict(await inProcess(env));
    if (path !== undefined && path.startsWith(dir)) await Deno.remove(dir, { recursive: true });
    return [unit, await verdict(await blackBox(env))];
  });
});

Deno.test("goptlib pt_test.go TestEncodeCString: LOG lines read back by parsePtLine", async () => {
  await runTable(pt.cString, (message) => {
    const line = formatPtLine({ type: "LOG", severity: "debug", message });
    if (!/^[\x20-\x7e]*$/.test(line)) return [`not printable ASCII: ${line}`];
    const parsed = parsePtLine(line);
    return [parsed.type === "LOG" ? parsed.message : parsed.type];
  });
});

// ----------------------------------------------------- goptlib proxy_test.go

Deno.test("goptlib proxy_test.go TestGetProxyURL: parseUpstreamProxy and TOR_PT_PROXY", async () => {
  await runTable(proxyUrl, async (input) => {
    const unit = input === null ? "" : attempt(() => {
      const p = parseUpstreamProxy(input);
      const user = p.username === undefined
        ? ""
        : `${p.username}${p.password === undefined ? "" : `:${p.password}`}@`;
      return `${p.scheme}://${user}${formatHostPort(p)}`;
    });
    const env = client(input === null ? {} : { TOR_PT_PROXY: input });
    const run = await blackBox(env);
    const proxyLine = run?.lines.find((l) => l.startsWith("PROXY"));
    const black = proxyLine === undefined
      ? ""
      : proxyLine.startsWith("PROXY-ERROR")
      ? ERROR
      : undefined;
    return [unit, black];
  }, (want) => want.replace(/\/$/, ""));
});

// ------------------------------------------------------------------ SOCKS

Deno.test("goptlib socks_test.go and lyrebird common/socks5/socks_test.go: socksHandshake and main.ts", async () => {
  await using socks = await echoSocks(state);
  const failures: string[] = [];
  for (const c of socks5) {
    const unit = await socks5Exchange(unitPeer, c.input);
    // A request's destination is only dialed black-box when it is the sink.
    const black = "request" in c.expect
      ? undefined
      : await socks5Exchange(() => socks.peer(), c.input);
    for (const source of c.in) {
      const failure = judge(source, c, [normalize(unit), normalize(black)], normalize);
      if (failure !== undefined) failures.push(`${source}: ${failure}`);
    }
  }
  deepStrictEqual(failures, []);
});

Deno.test("goptlib 0.5 socks_test.go TestReadSocks4aConnect: socksHandshake and main.ts", async () => {
  await using socks = await echoSocks(state);
  await runTable(
    { source: "goptlib 0.5 socks_test.go (SOCKS4a)", cases: socks4a },
    async (input, c) => {
      const pipe = new MemoryPipe();
      const handshake = socksHandshake(pipe.server);
      pipe.send(latin1(input));
      pipe.end();
      const unit: Socks4aResult = await handshake.then(
        (r) => r.version === 4 ? { hostname: r.hostname, port: r.port, args: r.settings } : ERROR,
        () => ERROR,
      );
      // Black-box, only a refusal can be seen without dialing the destination.
      let black: typeof ERROR | "granted" | undefined;
      if (c.expect === ERROR) {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port: socks.port });
        await conn.write(latin1(input));
        await conn.closeWrite();
        const reply = await readN(conn, 64).catch(() => new Uint8Array());
        black = reply[0] === 0 && reply[1] === 0x5a ? "granted" : ERROR;
      }
      return [unit, black];
    },
  );
});

// ------------------------------------------------------------------- arti

Deno.test("arti tor-ptmgr ipc.rs it_parses_spec_examples: parsePtLine", async () => {
  await runTable(ptLines, (line) => [attempt(() => ({ ...parsePtLine(line) }))]);
});

// ----------------------------------------------------------------- totals

Deno.test("reference tables: counts per source, and every difference is in the README", async () => {
  const readme = (await Deno.readTextFile(new URL("../README.md", import.meta.url)))
    .replace(/\s+/g, " ");
  const section = readme.slice(readme.indexOf("## Where ptkit differs from goptlib and lyrebird"));
  ok(
    section.length < readme.length,
    "README has no section 'Where ptkit differs from goptlib and lyrebird'",
  );
  for (const [id, reason] of Object.entries(DIFFERENCES)) {
    ok(section.includes(reason.replace(/\s+/g, " ")), `README lacks the reason '${id}': ${reason}`);
    ok(usedDifferences.has(id as Difference), `No case uses the difference '${id}'`);
  }
  const rows = [...counts].map(([source, t]) =>
    `${source}: ${t.cases} cases, ${t.passed} passed, ${t.difference} documented differences` +
    (t.pending > 0 ? `, ${t.pending} waiting for an open issue` : "")
  );
  const total = [...counts.values()].reduce((a, t) => a + t.cases, 0);
  console.log(`Reference tables (${total} cases):\n  ${rows.join("\n  ")}`);
  for (const t of counts.values()) deepStrictEqual(t.passed + t.difference + t.pending, t.cases);
});

Deno.test("reference tables: cleanup", async () => {
  await Deno.remove(state, { recursive: true });
});

// ----------------------------------------------------- SOCKS exchange code

/**
 * What a level saw of a SOCKS5 case: a SocksResult, or a server that kept
 * waiting where it should have answered or closed.
 */
type Observed = SocksResult | { readonly reply: string; readonly then: "waiting" };

/** A CONNECT after the handshake: "continues" on success, else the reply code that refused it. */
async function connectAfter(peer: Peer): Promise<"continues" | { refusedAtConnect: number }> {
  await peer.send(peer.connect);
  await peer.answer();
  const reply = await peer.recv(10);
  return reply.length === 10 && reply[1] === 0 ? "continues" : { refusedAtConnect: reply[1] ?? -1 };
}

/** Play a SOCKS5 case at one level (see socks.ts for what the result means). */
async function socks5Exchange(open: () => Promise<Peer>, input: SocksInput): Promise<Observed> {
  await using peer = await open();
  const closedOr = async (reply: Uint8Array): Promise<Observed> =>
    await peer.closes()
      ? { reply: hex(reply), then: "closed" }
      : { reply: hex(reply), then: "waiting" };
  if (input.stage === "success reply") {
    await peer.send(unhex("050100"));
    await peer.recv(2);
    await peer.send(peer.connect);
    await peer.answer();
    return { reply: hex(await peer.recv(10)), then: "continues" };
  }
  if (input.stage === "hangup") {
    await peer.send(unhex(input.send));
    const reply = await peer.recv(2);
    await peer.end();
    // The next client is served as usual.
    await using next = await open();
    await next.send(unhex("050100"));
    await next.recv(2);
    return await connectAfter(next) === "continues"
      ? { reply: hex(reply), then: "continues" }
      : { reply: hex(reply), then: "closed" };
  }
  if (input.stage === "auth" || input.stage === "request") {
    await peer.send(unhex(input.stage === "auth" ? "050102" : "050100"));
    await peer.recv(2);
  }
  await peer.send(unhex(input.send));
  if (input.stage === "request") {
    const request = await peer.request();
    return request === undefined ? await closedOr(await peer.recv(10)) : { reply: "", request };
  }
  const reply = await peer.recv(2);
  const accepted = input.stage === "greeting"
    ? reply.length === 2 && reply[0] === 5 && reply[1] !== 0xff
    : hex(reply) === "0100";
  if (!accepted) return await closedOr(reply);
  if (input.stage === "greeting" && reply[1] === 2) {
    // Method 02 chosen: authenticate with arguments, as tor does.
    await peer.send(authWith("k=v"));
    if (hex(await peer.recv(2)) !== "0100") return await closedOr(reply);
  }
  const then = await connectAfter(peer);
  if (then !== "continues" || input.stage !== "auth") return { reply: hex(reply), then };
  return { reply: hex(reply), then, args: await peer.args() };
}

/** IPv6 destinations in canonical form, so that levels and tables compare. */
function normalize(result: Observed | undefined): unknown {
  if (result === undefined || !("request" in result)) return result;
  const { hostname, port } = result.request;
  const canonical = hostname.includes(":")
    ? new URL(`http://[${hostname}]/`).hostname.slice(1, -1)
    : hostname;
  return { reply: result.reply, request: { hostname: canonical, port } };
}

// ------------------------------------------------ Extended ORPort script

interface ExtOrScript {
  readonly transport?: string;
  readonly userAddr?: string;
  /** The server hash tor sends; the right one for the all-zero cookie by default. */
  readonly serverHash?: Uint8Array | undefined;
  /** What tor sends after DONE; OKAY by default. */
  readonly reply?: readonly Uint8Array[];
}

/** Play tor's side of the Extended ORPort against extOrPortHandshake (all-zero cookie and nonces). */
async function extOr(script: ExtOrScript) {
  const cookie = new Uint8Array(32);
  const nonces = new Uint8Array(64);
  const hmac = (label: string) =>
    new Uint8Array(
      createHmac("sha256", cookie).update(`ExtORPort authentication ${label} hash`).update(nonces)
        .digest(),
    );
  const pipe = new MemoryPipe();
  const handshake = extOrPortHandshake(pipe.server, {
    cookie,
    transport: script.transport ?? "alpha",
    ...(script.userAddr === undefined ? {} : { userAddr: parseHostPort(script.userAddr) }),
    random: (bytes) => bytes.fill(0),
  }).then(() => true, () => false);
  pipe.send(new Uint8Array([1, 0]));
  await pipe.recv(33);
  pipe.send(
    new Uint8Array([...(script.serverHash ?? hmac("server-to-client")), ...new Uint8Array(32)]),
  );
  const clientHash = await pipe.recv(32);
  const accepted = clientHash.length === 32;
  const commands: { type: number; body: string; raw: string }[] = [];
  if (accepted) {
    pipe.send(new Uint8Array([1]));
    for (;;) {
      const head = await pipe.recv(4);
      if (head.length < 4) break;
      const body = await pipe.recv((head[2]! << 8) | head[3]!);
      const type = (head[0]! << 8) | head[1]!;
      commands.push({ type, body: new TextDecoder().decode(body), raw: hex(head) + hex(body) });
      if (type === 0) break;
    }
    for (const part of script.reply ?? [unhex("10000000")]) pipe.send(part);
  }
  pipe.end();
  const ok = await handshake;
  const rest = await readAll(pipe);
  pipe.server.close();
  return { accepted, clientHash: hex(clientHash), commands, ok, leftover: fromLatin1(rest) };
}

/** What the server end of a pipe can still read. */
async function readAll(pipe: MemoryPipe): Promise<Uint8Array> {
  const out: number[] = [];
  const buffer = new Uint8Array(1024);
  for (let n = await pipe.server.read(buffer); n !== null; n = await pipe.server.read(buffer)) {
    out.push(...buffer.subarray(0, n));
  }
  return new Uint8Array(out);
}
