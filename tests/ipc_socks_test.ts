// Copyright the ptkit authors. MIT license.
// Acceptance (b): curl through main.ts's SOCKS5 front end, and per-connection
// arguments (PT 1.0 user/password, PT 2.0 JSON, SOCKS4 user id) reaching the
// transport intact. Reply codes mapped from real failures.

import { deepStrictEqual, ok } from "node:assert";
import { proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { formatTorArgs } from "../ipc/lines/_args.ts";
import { ECHO_MAIN, PtProcess, readN, requireBinary } from "./ipc_util.ts";

const encoder = new TextEncoder();

function env(state: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    ...extra,
  };
}

Deno.test("main.ts SOCKS5 front end carries curl to a page through plain and a ptkit proxy", async () => {
  const curl = requireBinary("curl", "curl");
  const state = await Deno.makeTempDir();
  const page = "hello through the transport\n".repeat(1000);
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(page),
  );
  await using bridge = await proxy(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: http.addr.port },
  });
  await using pt = new PtProcess([], env(state));
  const socks = await pt.cmethod("plain");
  for (const host of ["127.0.0.1", "localhost"]) {
    const result = await new Deno.Command(curl, {
      args: [
        "-sS",
        "--max-time",
        "20",
        "--socks5-hostname",
        `${socks.hostname}:${socks.port}`,
        `http://${host}:${bridge.addr.port}/`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    deepStrictEqual(new TextDecoder().decode(result.stderr), "");
    deepStrictEqual(result.code, 0);
    deepStrictEqual(new TextDecoder().decode(result.stdout), page);
  }
  await pt.closeStdin();
  const { code, stderr } = await pt.exit();
  deepStrictEqual(code, 0);
  deepStrictEqual(stderr, "");
  await http.shutdown();
  await Deno.remove(state, { recursive: true });
});

/** A minimal SOCKS client for the tests; returns the reply code and the conn. */
async function socksConnect(
  port: number,
  target: { port: number; hostname?: string },
  auth:
    | { kind: "none" }
    | { kind: "userpass"; user: Uint8Array; pass: Uint8Array }
    | { kind: "json"; method: number; body: string; framed: boolean }
    | { kind: "socks4"; userId: string },
): Promise<{ code: number; conn: Deno.Conn }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const p = target.port;
  const host = target.hostname ?? "127.0.0.1";
  if (auth.kind === "socks4") {
    const ip = host.split(".").map(Number);
    await conn.write(
      new Uint8Array([4, 1, p >> 8, p & 255, ...ip, ...encoder.encode(auth.userId), 0]),
    );
    const reply = await readN(conn, 8);
    return { code: reply[1] === 0x5a ? 0 : reply[1] ?? -1, conn };
  }
  const method = auth.kind === "none" ? 0 : auth.kind === "userpass" ? 2 : auth.method;
  await conn.write(new Uint8Array([5, 1, method]));
  deepStrictEqual(await readN(conn, 2), new Uint8Array([5, method]));
  if (auth.kind === "userpass") {
    await conn.write(
      new Uint8Array([1, auth.user.length, ...auth.user, auth.pass.length, ...auth.pass]),
    );
    deepStrictEqual(await readN(conn, 2), new Uint8Array([1, 0]));
  } else if (auth.kind === "json") {
    const body = encoder.encode(auth.body);
    const head = auth.framed
      ? [body.length >>> 24, (body.length >> 16) & 255, (body.length >> 8) & 255, body.length & 255]
      : [];
    await conn.write(new Uint8Array([...head, ...body]));
  }
  const address = /^[0-9.]+$/.test(host)
    ? [1, ...host.split(".").map(Number)]
    : [3, host.length, ...encoder.encode(host)];
  await conn.write(new Uint8Array([5, 1, 0, ...address, p >> 8, p & 255]));
  const reply = await readN(conn, 10);
  return { code: reply.length === 10 ? reply[1]! : -1, conn };
}

async function readLine(conn: Deno.Conn): Promise<string> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  while (bytes.length < 65536) {
    const n = await conn.read(one);
    if (n === null || one[0] === 10) break;
    bytes.push(one[0]!);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

Deno.test("main.ts per-connection arguments reach the transport intact", async () => {
  const state = await Deno.makeTempDir();
  using target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const acceptLoop = (async () => {
    for await (const conn of target) accepted.push(conn);
  })();
  await using pt = new PtProcess(
    ["-options", "echo:base=from-options"],
    env(state, { TOR_PT_CLIENT_TRANSPORTS: "echo" }),
    { program: ECHO_MAIN },
  );
  const socks = await pt.cmethod("echo");
  const dest = { port: target.addr.port };

  // PT 1.0: 300+ bytes of escaped k=v;k=v split across user name and password.
  const args = {
    cert: "a;b\\c=d" + "x".repeat(150),
    "iat-mode": "0",
    long: "y".repeat(120),
    "k=ey": "v;",
  };
  const text = encoder.encode(formatTorArgs(args));
  ok(text.length > 300 && text.length <= 510, `args are ${text.length} bytes`);
  const cases: [string, Parameters<typeof socksConnect>[2], Record<string, string>][] = [
    ["PT 1.0 args split at 255", {
      kind: "userpass",
      user: text.subarray(0, 255),
      pass: text.subarray(255),
    }, args],
    ["PT 1.0 short args with a NUL password", {
      kind: "userpass",
      user: encoder.encode("a=1;b=2\\;3"),
      pass: new Uint8Array([0]),
    }, { a: "1", b: "2;3" }],
    ["PT 2.0 JSON after 0x80, unframed", {
      kind: "json",
      method: 0x80,
      body: JSON.stringify({ "shared-secret": "rahasia", "secrets-file": "/tmp/blob" }),
      framed: false,
    }, { "shared-secret": "rahasia", "secrets-file": "/tmp/blob" }],
    ["PT 2.0 JSON after 0x80, length-framed", {
      kind: "json",
      method: 0x80,
      body: JSON.stringify({ k: 'v}{"', n: 3 }),
      framed: true,
    }, { k: 'v}{"', n: "3" }],
    ["PT 2.0 draft 3 JSON after 0x09", {
      kind: "json",
      method: 0x09,
      body: JSON.stringify({ big: "z".repeat(2000) }),
      framed: true,
    }, { big: "z".repeat(2000) }],
    ["SOCKS4 user id", { kind: "socks4", userId: "s4=yes;t=\\\\" }, { s4: "yes", t: "\\" }],
    ["no arguments", { kind: "none" }, {}],
  ];
  const instances = new Map<string, number>();
  for (const [name, auth, expected] of cases) {
    for (let round = 0; round < 2; round++) {
      const { code, conn } = await socksConnect(socks.port, dest, auth);
      try {
        deepStrictEqual(code, 0, name);
        const echoed = JSON.parse(await readLine(conn));
        deepStrictEqual(echoed.config, { base: "from-options", ...expected }, name);
        // Same arguments, same connector; different arguments, a new one.
        const key = JSON.stringify(expected);
        if (round === 1) deepStrictEqual(echoed.instance, instances.get(key), name);
        else {
          ok(![...instances.values()].includes(echoed.instance), name);
          instances.set(key, echoed.instance);
        }
        // Bytes pass through both ways after the echo line.
        await conn.write(encoder.encode("ping"));
        let peer: Deno.Conn | undefined;
        while ((peer = accepted.shift()) === undefined) {
          await new Promise((r) => setTimeout(r, 5));
        }
        deepStrictEqual(new TextDecoder().decode(await readN(peer, 4)), "ping");
        await peer.write(encoder.encode("pong"));
        deepStrictEqual(new TextDecoder().decode(await readN(conn, 4)), "pong");
        peer.close();
      } finally {
        conn.close();
      }
    }
  }
  await pt.closeStdin();
  deepStrictEqual((await pt.exit()).code, 0);
  target.close();
  await acceptLoop;
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts SOCKS replies name the real failure", async () => {
  const state = await Deno.makeTempDir();
  // On 127.0.0.2, not 127.0.0.1: the PT below listens on 127.0.0.1 on ports
  // of the kernel's choice, which could be this one just closed (then the
  // "refused" dial reached the PT's own SOCKS port, as secret_scan's did).
  const closedHost = "127.0.0.2";
  const closedPort = (() => {
    using l = Deno.listen({ hostname: closedHost, port: 0 });
    return l.addr.port;
  })();
  const closed = { hostname: closedHost, port: closedPort };
  await using pt = new PtProcess(
    [],
    env(state, { TOR_PT_CLIENT_TRANSPORTS: "echo,plain" }),
    { program: ECHO_MAIN },
  );
  const echo = await pt.cmethod("echo");
  const plainAddr = await pt.cmethod("plain");
  const cases: [
    string,
    number,
    Parameters<typeof socksConnect>[1],
    Parameters<
      typeof socksConnect
    >[2],
    number,
  ][] = [
    ["refused", plainAddr.port, closed, { kind: "none" }, 0x05],
    ["unresolvable name", plainAddr.port, { port: 80, hostname: "nonexistent.invalid" }, {
      kind: "none",
    }, 0x04],
    ["args that do not parse", echo.port, closed, {
      kind: "userpass",
      user: encoder.encode("novalue"),
      pass: new Uint8Array([0]),
    }, 0x12],
    ["JSON that does not parse", echo.port, closed, {
      kind: "json",
      method: 0x09,
      body: "{not json}",
      framed: true,
    }, 0x12],
    ["args the transport rejects", echo.port, closed, {
      kind: "json",
      method: 0x80,
      body: '{"fail":"1"}',
      framed: false,
    }, 0x13],
    // Keys a transport does not know are ignored: the dial goes ahead (and
    // is refused by the closed port).
    ["plain given arguments it does not know", plainAddr.port, closed, {
      kind: "userpass",
      user: encoder.encode("k=v"),
      pass: new Uint8Array([0]),
    }, 0x05],
    ["SOCKS4 refused", plainAddr.port, closed, { kind: "socks4", userId: "" }, 0x5b],
  ];
  for (const [name, port, target, auth, expected] of cases) {
    const { code, conn } = await socksConnect(port, target, auth);
    conn.close();
    deepStrictEqual(code, expected, name);
  }
  await pt.closeStdin();
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 0);
  ok(
    lines.some((l) =>
      new RegExp(
        `^STATUS TRANSPORT=plain ADDRESS=127\\.0\\.0\\.2:${closedPort} CONNECT=Failed ERRSTR="`,
      )
        .test(l)
    ),
    String(lines),
  );
  // Failures are logged, but never with an address: only pt-spec's STATUS
  // lines name the destination (the PT server), never the client.
  const destinations = new Set(
    cases.map(([, , target]) => `${target.hostname ?? "127.0.0.1"}:${target.port}`),
  );
  for (const line of lines) {
    const status = /^STATUS TRANSPORT=\S+ ADDRESS=(\S+) CONNECT=/.exec(line);
    if (status !== null) {
      ok(destinations.has(status[1]!), line);
      ok(!/127\.0\.0\.1:[0-9]/.test(line.slice(status[0].length)), line);
      continue;
    }
    ok(!/127\.0\.0\.1:[0-9]/.test(line) || line.startsWith("CMETHOD "), line);
  }
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts SOCKS reply 13 when a transport's required arguments are missing (none given at start or per connection), as when malformed", async () => {
  const state = await Deno.makeTempDir();
  const closedPort = (() => {
    using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return l.addr.port;
  })();
  await using pt = new PtProcess(
    [],
    env(state, { TOR_PT_CLIENT_TRANSPORTS: "obfs4,shadowsocks,webtunnel" }),
  );
  const userpass = (text: string) => ({
    kind: "userpass" as const,
    user: encoder.encode(text),
    pass: new Uint8Array([0]),
  });
  const cases: [string, string, Parameters<typeof socksConnect>[2]][] = [
    ["obfs4 without arguments", "obfs4", { kind: "none" }],
    ["obfs4 without cert", "obfs4", userpass("iat-mode=0")],
    ["shadowsocks without arguments", "shadowsocks", { kind: "none" }],
    ["shadowsocks without password", "shadowsocks", userpass("method=aes-256-gcm")],
    ["shadowsocks with a bad method", "shadowsocks", userpass("method=bogus;password=x")],
    ["webtunnel without arguments", "webtunnel", { kind: "none" }],
  ];
  for (const [name, transport, auth] of cases) {
    const at = await pt.cmethod(transport);
    const { code, conn } = await socksConnect(at.port, { port: closedPort }, auth);
    conn.close();
    deepStrictEqual(code, 0x13, name);
  }
  await pt.closeStdin();
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 0);
  // Each such failure is a STATUS line, as a failed dial's is (arguments a
  // transport refused at its configuration were a LOG line only).
  const failed = lines.filter((line) =>
    line.startsWith(`STATUS TRANSPORT=`) &&
    line.includes(`ADDRESS=127.0.0.1:${closedPort} CONNECT=Failed ERRSTR="`)
  );
  deepStrictEqual(failed.length, cases.length, lines.join("\n"));
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts warns once about a bridge line's refused arguments, however often tor retries it (it warned up to 10 times every 10 s)", async () => {
  const state = await Deno.makeTempDir();
  const closedPort = (() => {
    using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return l.addr.port;
  })();
  await using pt = new PtProcess(
    ["-logLevel", "info"],
    env(state, { TOR_PT_CLIENT_TRANSPORTS: "obfs4" }),
  );
  const at = await pt.cmethod("obfs4");
  const userpass = (text: string) => ({
    kind: "userpass" as const,
    user: encoder.encode(text),
    pass: new Uint8Array([0]),
  });
  // tor's retries of one bridge line: the same arguments each time. A
  // cert cut short, one that does not parse, and another bridge's fault.
  const attempts: [string, Parameters<typeof socksConnect>[2], number][] = [
    ...Array.from({ length: 5 }, () => ["short cert", userpass("cert=AAAA;iat-mode=0"), 0x13]),
    ...Array.from({ length: 5 }, () => ["no value", userpass("novalue"), 0x12]),
    ["iat-mode 7", userpass("cert=AAAA;iat-mode=7"), 0x13],
  ] as [string, Parameters<typeof socksConnect>[2], number][];
  for (const [name, auth, expected] of attempts) {
    const { code, conn } = await socksConnect(at.port, { port: closedPort }, auth);
    conn.close();
    deepStrictEqual(code, expected, name);
  }
  await pt.closeStdin();
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 0);
  const said = (severity: string, pattern: RegExp) =>
    lines.filter((line) => line.startsWith(`LOG SEVERITY=${severity} `) && pattern.test(line))
      .length;
  // Each complaint once at warning, its repeats at info.
  deepStrictEqual(said("warning", /rejected its arguments.*'cert' has 4 characters/), 1);
  deepStrictEqual(said("info", /rejected its arguments.*'cert' has 4 characters/), 4);
  deepStrictEqual(said("warning", /SOCKS handshake failed/), 1);
  deepStrictEqual(said("info", /SOCKS handshake failed/), 4);
  deepStrictEqual(said("warning", /rejected its arguments/), 2, lines.join("\n"));
  // Every attempt still fails in its own STATUS line (tor logs them at info).
  const failed = lines.filter((line) =>
    line.startsWith("STATUS TRANSPORT=obfs4 ") &&
    line.includes(`ADDRESS=127.0.0.1:${closedPort} CONNECT=Failed ERRSTR="`)
  );
  deepStrictEqual(failed.length, attempts.length, lines.join("\n"));
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts: a connection attempt given up during the transport's handshake says why in its STATUS line, as in its LOG line", async () => {
  const state = await Deno.makeTempDir();
  // A bridge that accepts and never answers: obfs4's handshake waits.
  using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using pt = new PtProcess([], env(state, { TOR_PT_CLIENT_TRANSPORTS: "obfs4" }));
  const at = await pt.cmethod("obfs4");
  const cert = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(52))));
  const args = encoder.encode(`cert=${cert.replace(/=+$/, "")};iat-mode=0`);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: at.port });
  await conn.write(new Uint8Array([5, 1, 2]));
  deepStrictEqual(await readN(conn, 2), new Uint8Array([5, 2]));
  await conn.write(new Uint8Array([1, args.length, ...args, 1, 0]));
  deepStrictEqual(await readN(conn, 2), new Uint8Array([1, 0]));
  const p = silent.addr.port;
  await conn.write(new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 255]));
  // Dialed: the handshake is under way. A byte now (before the reply) gives
  // the attempt up at once, as the client's leaving does 5 s after its FIN.
  using _bridgeSide = await silent.accept();
  await conn.write(new Uint8Array([0x16]));
  deepStrictEqual((await readN(conn, 10))[1], 0x01);
  await pt.closeStdin();
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 0);
  const why = "data sent before the reply";
  ok(lines.some((l) => l.startsWith("LOG ") && l.includes(why)), lines.join("\n"));
  const status = lines.filter((l) => l.includes("CONNECT=Failed"));
  deepStrictEqual(status.length, 1, lines.join("\n"));
  // It said "Transport connection closed": the PT's own closing, not the reason.
  ok(status[0]!.includes(why), status[0]);
  await Deno.remove(state, { recursive: true });
});
