// Copyright the ptkit authors. MIT license.

// The adapter against misbehaving PTs (tests/adapter_fake_pt.sh): clear
// errors, no hang, relaunch with bounded backoff, no process left behind.

import { deepStrictEqual, match, ok, rejects, strictEqual, throws } from "node:assert";
import {
  launchClient,
  type LaunchClientOptions,
  launchServer,
  PtClient,
  PtExitEvent,
  type PtFailedEvent,
  type PtLogEvent,
  type PtStatusEvent,
} from "../ipc/adapter/mod.ts";
import { MAX_PT_LINE_LENGTH } from "../ipc/lines/pt_line.ts";
import { relative } from "node:path";

// A copy of the script in a directory of this run's own: the process
// checks below (no fake PT left behind) look for its path among every
// process of the machine, where another run of these tests (another
// checkout, a helper beside this one) has fake PTs of its own.
const FAKE_DIR = await Deno.makeTempDir({ prefix: "ptkit_fake_pt_" });
const FAKE = `${FAKE_DIR}/adapter_fake_pt.sh`;
await Deno.copyFile(new URL("./adapter_fake_pt.sh", import.meta.url), FAKE);
await Deno.chmod(FAKE, 0o755);
globalThis.addEventListener("unload", () => Deno.removeSync(FAKE_DIR, { recursive: true }));

function fake(mode: string, extra: Partial<LaunchClientOptions> = {}): LaunchClientOptions {
  return {
    path: FAKE,
    args: [mode],
    transports: ["fake"],
    startTimeout: 3000,
    stopTimeout: 300,
    ...extra,
  };
}

/** Whether a process id is gone (no process, not even a zombie). */
async function gone(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // A pid may be reused by an unrelated process; ours would be bash running FAKE.
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
    return !cmdline.includes("adapter_fake_pt") && !/^\d+ \([^)]*\) Z/.test(stat);
  } catch {
    return true;
  }
}

/** The pids of processes running the fake PT script. */
async function fakePids(): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes(FAKE)) pids.push(Number(entry.name));
  }
  return pids;
}

Deno.test("launchClient reports a PT that exits before CMETHODS DONE, with its stderr", async () => {
  const error = await launchClient(fake("early-exit")).then(
    () => new Error("launched"),
    (e: Error) => e,
  );
  match(error.message, /failed to start: it exited with code 3 before CMETHODS DONE/);
  match(error.message, /stderr: fake PT: cannot open the frobnicator/);
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient times out a PT that never answers and kills it past SIGTERM", async () => {
  const error = await launchClient(fake("silent", { startTimeout: 500 })).then(
    () => new Error("launched"),
    (e: Error) => e,
  );
  match(error.message, /failed to start: no CMETHODS DONE within 500 ms/);
  match(error.message, /stderr: fake PT: waiting forever/);
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient stops when its signal aborts: the start rejects with the signal's reason and the PT is gone", async () => {
  // Found as a library user (h40adapt): { signal } was ignored without an
  // error, and a silent PT held the caller for the whole startTimeout.
  const controller = new AbortController();
  const reason = new Error("the user gave up");
  setTimeout(() => controller.abort(reason), 300);
  const error = await launchClient(
    fake("silent", { startTimeout: 60_000, signal: controller.signal }),
  ).then(() => new Error("launched"), (e: unknown) => e);
  // (A timeout would have rejected with its own error, 60 s later.)
  strictEqual(error, reason);
  deepStrictEqual(await fakePids(), []);
  // Already aborted: nothing is spawned.
  await rejects(
    launchClient(fake("ok", { signal: AbortSignal.abort(reason) })),
    (e: unknown) => e === reason,
  );
  deepStrictEqual(await fakePids(), []);
  // Aborted after the start: the PT stops, as close() stops it.
  const late = new AbortController();
  const pt = await launchClient(fake("ok", { signal: late.signal }));
  late.abort();
  await pt.close();
  deepStrictEqual(await fakePids(), []);
  await rejects(
    launchClient(fake("ok", { signal: "no" as unknown as AbortSignal })),
    /Cannot launch PT: signal must be an AbortSignal, got string/,
  );
});

Deno.test("launchClient reports VERSION-ERROR with the versions offered", async () => {
  await rejects(
    launchClient(fake("version-error", { versions: ["1"] })),
    /supports none of the versions offered \(1\): VERSION-ERROR no-version/,
  );
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient reads PT 2.0 error lines on stderr", async () => {
  await rejects(
    launchClient(fake("env-error-stderr")),
    /rejected its environment: ENV-ERROR No TOR_PT_ORPORT/,
  );
});

Deno.test("launchClient requires PROXY DONE when an upstream proxy is given", async () => {
  await rejects(
    launchClient(fake("ok", { proxy: "socks5://127.0.0.1:1080" })),
    /did not accept the upstream proxy \(no PROXY DONE\)/,
  );
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchServer refuses a PT that answers with client lines", async () => {
  await rejects(
    launchServer({ ...fake("ok", { startTimeout: 500 }), orport: "127.0.0.1:9" }),
    /failed to start: it exited with code 0 before SMETHODS DONE|no SMETHODS DONE/,
  );
  deepStrictEqual(await fakePids(), []);
});

Deno.test("a start-up failure names the lines it ignored: a malformed CMETHOD, or a server PT's answer with client lines", async () => {
  // The adapter's warnings while a PT starts go to "log" listeners, and
  // launchClient's caller can attach none before it settles: the error is
  // all they see.
  const error = await launchClient(fake("malformed-method")).then(
    () => new Error("launched"),
    (e: Error) => e,
  );
  match(error.message, /failed to start: it started none of fake/);
  match(
    error.message,
    /started none of fake \(ignored a malformed line from the PT: Cannot parse CMETHOD line: .*expected host:port/,
  );
  const server = await launchServer({ ...fake("ok", { startTimeout: 500 }), orport: "127.0.0.1:9" })
    .then(() => new Error("launched"), (e: Error) => e);
  match(server.message, /no SMETHODS DONE within 500 ms \(ignored CMETHOD/);
  // It asked for "fake": the line is ignored for its kind, not as unrequested.
  match(
    server.message,
    /ignored CMETHOD for fake \(a client PT's line; this PT was launched as a server\)/,
  );
  // Its CMETHODS DONE was ignored too, and said so: a client binary used
  // as a server otherwise fails with the timeout alone.
  match(
    server.message,
    /ignored CMETHODS DONE \(a client PT's line; this PT was launched as a server\)/,
  );
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient parses lines, ignores noise and unknown keywords, and reports LOG and STATUS", async () => {
  const logs: PtLogEvent[] = [];
  const statuses: PtStatusEvent[] = [];
  const pt = new PtClient(fake("ok", { env: { FAKE_PORT: "4242" } }));
  pt.addEventListener("log", (e) => logs.push(e as PtLogEvent));
  pt.addEventListener("status", (e) => statuses.push(e as PtStatusEvent));
  await pt.start();
  const pid = pt.pid!;
  try {
    strictEqual(pt.version, "1");
    deepStrictEqual([...pt.transports.keys()], ["fake"]);
    deepStrictEqual(pt.transports.get("fake")!.address, { hostname: "127.0.0.1", port: 4242 });
    deepStrictEqual(pt.errors, new Map()); // "other" was not requested.
    const stateDir = pt.stateDir!;
    ok((await Deno.stat(stateDir)).isDirectory);
    // The LOG and STATUS lines and the malformed last line (a variable
    // assignment) follow CMETHODS DONE, in as many reads as the pipe makes
    // of them: wait for the last, for at most 3 s.
    const malformed = () =>
      logs.some((l) => l.severity === "warning" && /malformed line/.test(l.message));
    for (const until = Date.now() + 3000; !malformed() && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 20));
    }
    ok(malformed(), "a warning for the malformed line");
    ok(statuses.length > 0, "the STATUS line");
    ok(logs.some((l) => l.severity === "warning" && /other \(not requested\)/.test(l.message)));
    deepStrictEqual(
      logs.filter((l) => l.severity === "notice").map((l) => l.message),
      ['hello "parent"\n'],
    );
    deepStrictEqual([statuses[0]!.transport, statuses[0]!.fields], ["fake", {
      CONNECT: "Success",
    }]);
    await pt.close();
    await rejects(Deno.stat(stateDir), Deno.errors.NotFound);
  } finally {
    await pt.close();
  }
  ok(await gone(pid));
});

Deno.test("launchClient skips an oversized line with a warning and keeps going", async () => {
  const warnings: string[] = [];
  await using pt = new PtClient(fake("oversized"));
  pt.addEventListener("log", (event) => warnings.push(event.message));
  await pt.start();
  deepStrictEqual([...pt.transports.keys()], ["fake"]);
  ok(
    warnings.some((w) =>
      w === `Ignored a line of over ${MAX_PT_LINE_LENGTH} characters from the PT`
    ),
    String(warnings),
  );
});

Deno.test("launchClient gives the PT only TOR_PT_* and the essential variables", async () => {
  Deno.env.set("PTKIT_SECRET_FOR_TEST", "leak");
  const logs: string[] = [];
  try {
    await using pt = new PtClient(fake("env", { env: { EXTRA: "1" } }));
    pt.addEventListener("log", (e) => logs.push((e as PtLogEvent).message));
    await pt.start();
    while (!logs.some((l) => l.startsWith("TOR_PT_STATE_LOCATION="))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    Deno.env.delete("PTKIT_SECRET_FOR_TEST");
  }
  const names = logs.map((l) => l.split("=")[0]!).filter((n) => !["_", "PWD", "SHLVL"].includes(n));
  ok(!names.includes("PTKIT_SECRET_FOR_TEST"));
  ok(names.includes("EXTRA"));
  ok(logs.includes("TOR_PT_EXIT_ON_STDIN_CLOSE=1"));
  ok(logs.includes("TOR_PT_MANAGED_TRANSPORT_VER=1,2"));
  ok(logs.includes("TOR_PT_CLIENT_TRANSPORTS=fake"));
  for (const name of names) {
    ok(
      name.startsWith("TOR_PT_") ||
        ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "DENO_DIR", "NO_COLOR", "EXTRA"]
          .includes(name),
      `unexpected variable ${name}`,
    );
  }
});

Deno.test("launchClient relaunches a PT killed mid-run, with backoff", async () => {
  const events: Event[] = [];
  await using pt = await launchClient(
    fake("ok", { restart: { initialDelay: 50, maxDelay: 1000, maxAttempts: 3 } }),
  );
  for (const type of ["exit", "ready", "failed"]) {
    pt.addEventListener(type, (e) => events.push(e as Event));
  }
  const first = pt.pid!;
  Deno.kill(first, "SIGKILL");
  while (!events.some((e) => e.type === "ready")) await new Promise((r) => setTimeout(r, 20));
  const exit = events[0] as PtExitEvent;
  strictEqual(exit.type, "exit");
  strictEqual(exit.signal, "SIGKILL");
  strictEqual(exit.restartDelay, 50);
  strictEqual(exit.attempt, 1);
  await pt.ready();
  ok(pt.pid !== undefined && pt.pid !== first);
  ok(await gone(first));
  strictEqual(pt.transports.get("fake")!.mode, "socks5");
  const second = pt.pid!;
  await pt.close();
  ok(await gone(second));
  await rejects(pt.ready(), /closed/);
});

Deno.test("launchClient stops relaunching a crash-looping PT after the bounded attempts", async () => {
  const events: Event[] = [];
  const pt = new PtClient(
    fake("crash-after-done", { restart: { initialDelay: 20, maxDelay: 50, maxAttempts: 3 } }),
  );
  pt.addEventListener("exit", (e) => events.push(e));
  pt.addEventListener("ready", (e) => events.push(e));
  const failed = new Promise<PtFailedEvent>((resolve) =>
    pt.addEventListener("failed", (e) => resolve(e as PtFailedEvent), { once: true })
  );
  await pt.start();
  try {
    const event = await failed;
    match(event.error.message, /exited with code 1; gave up after 3 relaunches/);
    deepStrictEqual(
      events.map((e) => e instanceof PtExitEvent ? `exit ${e.restartDelay}` : e.type),
      ["exit 20", "ready", "exit 40", "ready", "exit 50", "ready", "exit undefined"],
    );
    await rejects(pt.ready(), /gave up/);
    await rejects(pt.transports.get("fake")!.dial({ hostname: "127.0.0.1", port: 1 }), /gave up/);
  } finally {
    await pt.close();
  }
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient with restart off gives up at the first unexpected exit", async () => {
  await using pt = new PtClient(fake("crash-after-done", { restart: false }));
  const failedEvent = new Promise<PtFailedEvent>((resolve) =>
    pt.addEventListener("failed", resolve, { once: true })
  );
  await pt.start();
  const failed = await failedEvent;
  // What it wrote to stderr before it died (a Go PT's panic) is said too.
  match(
    failed.error.message,
    /exited with code 1; relaunching is off; stderr: fake PT: panic: the frobnicator broke$/,
  );
  await rejects(pt.ready(), /relaunching is off/);
});

Deno.test("launchClient and launchServer refuse options of the wrong type with a TypeError naming them (never a value), before a process starts", async () => {
  // Before: args "x", env "x", inheritEnv "PATH", restart "no" and
  // jsonLengthPrefix "no" (read as true: JSON framed for the wrong protocol)
  // were taken; versions "1" failed with 'this[#versions].every is not a
  // function', env { A: 1 } and cwd 5 with Deno's 'serde_v8 error' after
  // the spawn was tried, transportOptions "x" with '0 is not in
  // transports', an option value 1 with 's.replace is not a function'.
  const base = { path: FAKE, transports: ["a"] };
  const client: [Record<string, unknown>, string][] = [
    [{ args: "x" }, "args must be an array of strings, got string"],
    [{ args: ["-a", 5] }, "args[1] must be a string, got number"],
    [{ versions: "1" }, "versions must be an array of strings, got string"],
    [{ inheritEnv: "PATH" }, "inheritEnv must be an array of strings, got string"],
    [{ env: "x" }, "env must be an object of strings, got string"],
    [{ env: { SECRET: 1 } }, 'env "SECRET" must be a string, got number'],
    [{ cwd: 5 }, "cwd must be a string, got number"],
    [{ restart: "no" }, "restart must be an object or false, got string"],
    [{ restart: { initialDelay: "5" } }, "restart.initialDelay must be a number, got string"],
    [{ jsonLengthPrefix: "no" }, "jsonLengthPrefix must be a boolean, got string"],
  ];
  for (const [options, message] of client) {
    await rejects(
      launchClient({ ...base, ...options } as Parameters<typeof launchClient>[0]),
      (e: unknown) => e instanceof TypeError && e.message === `Cannot launch PT: ${message}`,
      message,
    );
  }
  const server: [Record<string, unknown>, string][] = [
    [{ transportOptions: "x" }, "transportOptions must be an object, got string"],
    [
      { transportOptions: { a: { "iat-mode": 1 } } },
      'transportOptions.a "iat-mode" must be a string, got number',
    ],
  ];
  for (const [options, message] of server) {
    await rejects(
      launchServer(
        { ...base, orport: "127.0.0.1:9", ...options } as Parameters<
          typeof launchServer
        >[0],
      ),
      (e: unknown) => e instanceof TypeError && e.message === `Cannot launch PT: ${message}`,
      message,
    );
  }
});

Deno.test("launchClient refuses malformed options", async () => {
  await rejects(launchClient({ path: FAKE, transports: [] }), TypeError);
  await rejects(launchClient({ path: FAKE, transports: ["bad name"] }), TypeError);
  await rejects(
    launchClient({ path: FAKE, transports: ["a", "b", "a"] }),
    /^TypeError: Cannot launch PT: transport "a" is listed twice$/,
  );
  await rejects(launchClient({ path: FAKE, transports: ["a"], versions: ["1,2"] }), TypeError);
  await rejects(launchClient({ path: FAKE, transports: ["a"], startTimeout: -1 }), RangeError);
  // Every dial would have timed out at once ('timed out after -1 ms').
  for (const socksTimeout of [-1, Number.NaN, 2 ** 40]) {
    await rejects(
      launchClient({ path: FAKE, transports: ["a"], socksTimeout }),
      /Cannot launch PT: invalid socksTimeout/,
    );
  }
  // Not the working directory, where a PT would write its keys.
  await rejects(
    launchClient({ path: FAKE, transports: ["a"], stateDir: "" }),
    /Cannot launch PT: invalid stateDir ""/,
  );
  await rejects(
    launchClient({ path: FAKE, transports: ["a"], restart: { initialDelay: -5 } }),
    RangeError,
  );
  await rejects(launchClient({ path: FAKE, transports: ["a"], proxy: "ftp://x:1" }), RangeError);
  await rejects(
    launchClient({ path: FAKE, transports: ["a"], proxy: "socks5://proxy.example:1" }),
    SyntaxError,
  );
  await rejects(
    launchServer({ path: FAKE, transports: ["a"] }),
    /exactly one of orport and extorport/,
  );
  // An address object is checked as the text form is, naming the transport.
  await rejects(
    launchServer({
      path: FAKE,
      transports: ["a"],
      orport: "127.0.0.1:9",
      bindaddr: { a: { hostname: "127.0.0.1", port: 70000 } },
    }),
    RangeError("Invalid port 70000 for bindaddr of a: must be an integer in 0-65535"),
  );
  await rejects(
    launchServer({
      path: FAKE,
      transports: ["a"],
      orport: "127.0.0.1:9",
      bindaddr: { a: null as unknown as string },
    }),
    /^TypeError: Invalid bindaddr of a: expected an object with hostname and port, got null$/,
  );
  // Nothing listens on port 0: every client's connection would fail.
  await rejects(
    launchServer({ path: FAKE, transports: ["a"], orport: "127.0.0.1:0" }),
    /Invalid port 0 for orport "127.0.0.1:0": must be an integer in 1-65535/,
  );
  await rejects(
    launchServer({ path: FAKE, transports: ["a"], orport: { hostname: "127.0.0.1", port: 0 } }),
    /Invalid port 0 for orport: must be an integer in 1-65535/,
  );
  await rejects(
    launchServer({
      path: FAKE,
      transports: ["a"],
      extorport: { addr: { hostname: "127.0.0.1", port: 0 }, cookieFile: "/nonexistent" },
    }),
    /Invalid port 0 for extorport address/,
  );
  // A host name where tor sets an IP address: obfs4proxy answered
  // 'ENV-ERROR TOR_PT_SERVER_BINDADDR: "obfs4-localhost:0": not an IP
  // string' (and the same for TOR_PT_ORPORT) after it was started (h42lib).
  for (
    const [options, message] of [
      [
        { orport: "127.0.0.1:9", bindaddr: { a: "localhost:0" } },
        'Invalid bindaddr of a "localhost:0": the host must be an IP address (PTs refuse a name)',
      ],
      [
        { orport: "localhost:9" },
        'Invalid orport "localhost:9": the host must be an IP address (PTs refuse a name)',
      ],
      [
        { orport: { hostname: "tor.example", port: 9 } },
        'Invalid orport "tor.example": the host must be an IP address (PTs refuse a name)',
      ],
      [
        { extorport: { addr: { hostname: "localhost", port: 9 }, cookieFile: "/nonexistent" } },
        'Invalid extorport address "localhost": the host must be an IP address (PTs refuse a name)',
      ],
    ] as const
  ) {
    await rejects(
      launchServer({ path: FAKE, transports: ["a"], ...options }),
      (error: Error) => error instanceof TypeError && error.message === message,
      message,
    );
  }
  await rejects(
    launchClient({ path: "/nonexistent/pt", transports: ["a"] }),
    /^Error: Cannot launch PT \/nonexistent\/pt: no such file$/,
  );
  // A bare name is looked up in PATH: the error says so, not Deno's "entity not found".
  await rejects(
    launchClient({ path: "no-such-pt-binary", transports: ["a"] }),
    /^Error: Cannot launch PT no-such-pt-binary: not found in PATH \(install it, or give its full path\)$/,
  );
});

Deno.test("close() while start() makes the state directory: start rejects, no PT is spawned, the temporary directory is removed", async () => {
  for (const stateDir of [undefined, await Deno.makeTempDir({ prefix: "ptkit_given_" })]) {
    const pt = new PtClient(fake("ok", stateDir === undefined ? {} : { stateDir }));
    const started = pt.start(); // Awaits the directory before spawning.
    const closed = pt.close();
    await rejects(started, /closed while the PT was starting/);
    await closed;
    strictEqual(pt.pid, undefined);
    deepStrictEqual(await fakePids(), []);
    const dir = pt.stateDir!;
    // A temporary directory is the adapter's to remove; a given one stays.
    strictEqual(await Deno.stat(dir).then(() => true, () => false), stateDir !== undefined);
    if (stateDir !== undefined) await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("PtClientTransport refuses a target, arguments, options or signal of the wrong type, naming them, before it connects to the PT", async () => {
  // Before: a null target failed with 'Cannot destructure property', a
  // signal "x" with 'signal?.throwIfAborted is not a function'; port 0, null
  // arguments and an argument value 5 went to the PT (general failure
  // 0x01), and connector(null) or { cert: 5 } were taken.
  using socks = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using pt = await launchClient(fake("ok", { env: { FAKE_PORT: `${socks.addr.port}` } }));
  const transport = pt.transports.get("fake")!;
  const at = { hostname: "127.0.0.1", port: 9 };
  const bad = <T>(value: unknown) => value as T;
  const cases: [() => unknown, typeof TypeError | typeof RangeError, string][] = [
    [
      () => transport.dial(bad(null), {}),
      TypeError,
      "Invalid PT server address: expected an object with hostname and port, got null",
    ],
    [
      () => transport.dial({ ...at, port: 0 }, {}),
      RangeError,
      "Invalid port 0 for PT server address: must be an integer in 1-65535",
    ],
    [
      () => transport.dial(at, bad(null)),
      TypeError,
      "Cannot configure transport 'fake': options must be an object of strings, got null",
    ],
    [
      () => transport.dial(at, bad({ cert: 5 })),
      TypeError,
      "Cannot configure transport 'fake': option 'cert' must be a string, got number",
    ],
    [
      () => transport.dial(at, {}, { signal: bad("x") }),
      TypeError,
      "Cannot dial: signal must be an AbortSignal, got string",
    ],
    [
      () => transport.connector(bad(null)),
      TypeError,
      "Cannot configure transport 'fake': options must be an object of strings, got null",
    ],
    [
      () => transport.connector(bad({ cert: 5 })),
      TypeError,
      "Cannot configure transport 'fake': option 'cert' must be a string, got number",
    ],
  ];
  for (const [call, Class, message] of cases) {
    await rejects(
      (async () => await call())(),
      (e: unknown) => e instanceof Class && e.message === message,
      message,
    );
  }
  const connector = transport.connector(bad(null));
  ok(connector instanceof Promise, "connector() rejects, never throws");
  await connector.catch(() => {});
  throws(
    () => transport.dialer(bad("x")),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot configure transport 'fake': options must be an object of strings, got string",
  );
});

Deno.test("an aborted dial through a PT closes its SOCKS connection to the PT at once", async () => {
  // The PT's SOCKS port is this listener: it takes the greeting and never answers,
  // as a PT does while its handshake with an unresponsive bridge goes on.
  using socks = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using pt = await launchClient(fake("ok", { env: { FAKE_PORT: `${socks.addr.port}` } }));
  const transport = pt.transports.get("fake")!;
  const connector = await transport.connector({ k: "v" });
  for (
    const dial of [
      (signal: AbortSignal) => connector.dial({ hostname: "192.0.2.1", port: 443, signal }),
      (signal: AbortSignal) =>
        transport.dialer()({ hostname: "192.0.2.1", port: 443 }, {}, { signal }),
    ]
  ) {
    const controller = new AbortController();
    const accepted = socks.accept();
    const dialing = dial(controller.signal);
    using conn = await accepted;
    const greeting = new Uint8Array(3);
    strictEqual(await conn.read(greeting), 3);
    controller.abort(new Error("given up"));
    await rejects(dialing, /given up/);
    // The adapter closed its end: the PT reads end of stream. Before, the
    // connection and its SOCKS timer stayed until the PT answered or 30 s.
    strictEqual(await conn.read(new Uint8Array(16)), null);
  }
  // An already aborted signal dials nothing.
  const controller = new AbortController();
  controller.abort(new Error("too late"));
  await rejects(
    transport.dial({ hostname: "192.0.2.1", port: 443 }, {}, { signal: controller.signal }),
    /too late/,
  );
  // Abort while the dial waits for a relaunch.
  await using dying = await launchClient(fake("ok", { restart: { initialDelay: 60000 } }));
  const exited = new Promise((resolve) => dying.addEventListener("exit", resolve, { once: true }));
  Deno.kill(dying.pid!, "SIGKILL");
  await exited;
  const waiting = new AbortController();
  const dialing = dying.transports.get("fake")!.dial({ hostname: "192.0.2.1", port: 443 }, {}, {
    signal: waiting.signal,
  });
  waiting.abort(new Error("no more waiting"));
  await rejects(dialing, /no more waiting/);
});

Deno.test("close() stops a PT that does not read its stdin while messages for it are queued", async () => {
  const pt = await launchClient(fake("deaf"));
  const pid = pt.pid!;
  // 10 messages of 16 KiB are more than a pipe holds: the last writes wait.
  const sends = Array.from(
    { length: 10 },
    () => pt.sendMessage("fake", new Uint8Array(16384)).then(() => "sent", () => "dropped"),
  );
  // Closing stdin waits behind those writes; the PT still gets SIGTERM after stopTimeout.
  await pt.close();
  ok(await gone(pid));
  const outcomes = await Promise.all(sends);
  ok(outcomes.includes("dropped"), String(outcomes));
  deepStrictEqual(await fakePids(), []);
});

Deno.test("pid is undefined once the PT has exited: killed and awaiting relaunch, or closed", async () => {
  // A pid kept after the exit may name another process once the system reuses it.
  await using pt = await launchClient(fake("ok", { restart: { initialDelay: 60000 } }));
  const exited = new Promise((resolve) => pt.addEventListener("exit", resolve, { once: true }));
  Deno.kill(pt.pid!, "SIGKILL");
  await exited;
  strictEqual(pt.pid, undefined);
  await using other = await launchClient(fake("ok"));
  ok(other.pid !== undefined);
  await other.close();
  strictEqual(other.pid, undefined);
});

Deno.test("a second CMETHOD for one transport is ignored and said, as tor keeps the first", async () => {
  const logs: PtLogEvent[] = [];
  const pt = new PtClient(fake("repeated-method"));
  pt.addEventListener("log", (e) => logs.push(e as PtLogEvent));
  try {
    await pt.start();
    deepStrictEqual(pt.transports.get("fake")!.address, { hostname: "127.0.0.1", port: 4242 });
    ok(
      logs.some((e) =>
        /Ignored a second CMETHOD for fake at 127\.0\.0\.1:4343 \(the first, at 127\.0\.0\.1:4242, is kept/
          .test(e.message)
      ),
      JSON.stringify(logs.map((e) => e.message)),
    );
  } finally {
    await pt.close();
  }
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient's failure never repeats a secret the PT echoed: the proxy's credentials, server options' keys", async () => {
  // Found as an adapter user (h41adapt): the failure quoted the PT's
  // PROXY-ERROR word for word (and its stderr), so a PT that echoes its
  // proxy URI put the password into ptkit's error.
  const error = await launchClient(fake("echo-secrets", {
    proxy: "socks5://alice:s3cr%3At-pass@127.0.0.1:1080",
    env: { TOR_PT_SERVER_TRANSPORT_OPTIONS: "fake:password=hunter2-long-secret;fake:iat-mode=0" },
  })).then(() => new Error("launched"), (error: Error) => error);
  match(error.message, /PROXY-ERROR cannot use socks5:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1080/);
  match(error.message, /options were fake:password=\*\*\*;fake:iat-mode=0/);
  for (const secret of ["alice", "s3cr", "hunter2"]) {
    ok(!error.message.includes(secret), `${secret} in: ${error.message}`);
  }
});

Deno.test("PtClientTransport.dialer(args) sends each dial's settings with its args, as connector() does (the Dialer contract)", async () => {
  // Found as a library user (h42lib): the dialer dropped its second
  // argument, so a connector dialing through it (createConnector's
  // `dialer`) lost every connection's settings, though Dialer's JSDoc says
  // a dialer that is itself a transport receives them.
  using socks = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using pt = await launchClient(fake("ok", { env: { FAKE_PORT: `${socks.addr.port}` } }));
  const dialer = pt.transports.get("fake")!.dialer({ cert: "c", "iat-mode": "0" });
  const controller = new AbortController();
  const accepted = socks.accept();
  const dialing = dialer({ hostname: "192.0.2.1", port: 443 }, { "iat-mode": "1", k: "v" }, {
    signal: controller.signal,
  });
  using conn = await accepted;
  const read = async (n: number) => {
    const out = new Uint8Array(n);
    for (let at = 0; at < n;) {
      const count = await conn.read(out.subarray(at));
      if (count === null) throw new Error("closed");
      at += count;
    }
    return out;
  };
  deepStrictEqual([...await read(3)], [5, 1, 2]); // Arguments: user/password offered.
  await conn.write(new Uint8Array([5, 2]));
  const [, ulen] = await read(2);
  const user = new TextDecoder().decode(await read(ulen!));
  controller.abort(new Error("enough"));
  await rejects(dialing, /enough/);
  // The dial's settings win over the dialer's arguments, as with connector().
  deepStrictEqual(user.split(";").sort(), ["cert=c", "iat-mode=1", "k=v"]);
  // Settings that are not an object of strings: a rejection, before the PT is reached.
  const bad = dialer({ hostname: "192.0.2.1", port: 443 }, { k: 5 } as unknown as { k: string });
  ok(bad instanceof Promise);
  await rejects(bad, {
    name: "TypeError",
    message: "Cannot configure transport 'fake': option 'k' must be a string, got number",
  });
});

Deno.test("a throwing event listener is reported as an uncaught error (EventTarget semantics, as documented); the adapter and the other listeners carry on", async () => {
  // Decided in session 42 (h42lib): a listener's exception goes to
  // globalThis's "error" event, as for Deno's WebSocket or Worker, which
  // ends the program unless a handler calls preventDefault(). What the
  // adapter must do is not be hurt by it: the PT's lines are still read,
  // the other listeners still called, close() still works.
  const reported: string[] = [];
  const onError = (event: ErrorEvent) => {
    reported.push(String(event.error?.message));
    event.preventDefault();
  };
  globalThis.addEventListener("error", onError);
  try {
    const seen: string[] = [];
    await using pt = new PtClient(fake("ok"));
    pt.addEventListener("log", () => {
      throw new Error("a listener's bug");
    });
    pt.addEventListener("log", (e) => seen.push((e as PtLogEvent).message));
    const statuses: PtStatusEvent[] = [];
    pt.addEventListener("status", (e) => statuses.push(e as PtStatusEvent));
    await pt.start();
    while (statuses.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    ok(seen.includes('hello "parent"\n'), JSON.stringify(seen));
    deepStrictEqual(reported.length, seen.length);
    ok(reported.every((message) => message === "a listener's bug"));
    deepStrictEqual([...pt.transports.keys()], ["fake"]);
  } finally {
    globalThis.removeEventListener("error", onError);
  }
  deepStrictEqual(await fakePids(), []);
});

Deno.test("launchClient takes a relative path with a slash from this process's working directory, whatever cwd is, as stateDir", async () => {
  // Found as a library user (h42lib): with cwd set, './pt' was looked for in
  // the PT's working directory and failed with 'Cannot launch PT ./pt: no
  // such file', while stateDir and cookieFile are taken from this process's.
  const path = relative(Deno.cwd(), FAKE);
  const dotted = path.startsWith(".") ? path : `./${path}`;
  const cwd = await Deno.makeTempDir();
  try {
    await using pt = await launchClient(fake("ok", { path: dotted, cwd }));
    deepStrictEqual([...pt.transports.keys()], ["fake"]);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});
