// Copyright the ptkit authors. MIT license.
// The in-Worker front end (seed 4.3) passes the client-side IPC acceptance
// tests that need no separate process: the whole messages table (the same
// cases main.ts passes as a process), curl through its SOCKS5 front end, bad
// SOCKS input, and an upstream proxy that fails closed.

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { InWorkerPt, startInWorker } from "../ipc/adapter/in_worker.ts";
import { proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { cases, checkCase, state } from "./ipc_cases.ts";
import { requireBinary } from "./ipc_util.ts";

for (const c of cases) {
  Deno.test(`InWorkerPt ${c.name}`, async () => {
    const pt = new InWorkerPt({ args: c.args ?? [], env: c.env ?? {} });
    // Started, or exited on its own: either way, then "close stdin".
    await Promise.race([pt.ready.catch(() => {}), pt.exited]);
    const code = await pt.stop();
    const stdout = pt.lines.map((line) => `${line}\n`).join("");
    checkCase(c, code, stdout, pt.stderr);
  });
}

function curlPage(curl: string, socksPort: number, url: string) {
  return new Deno.Command(curl, {
    args: ["-sS", "--max-time", "20", "--socks5-hostname", `127.0.0.1:${socksPort}`, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

function socksPort(pt: InWorkerPt, name: string): number {
  const method = pt.methods.get(name);
  ok(method?.type === "CMETHOD", `no CMETHOD for ${name}`);
  return method.address.port;
}

Deno.test("InWorkerPt SOCKS5 front end carries curl through plain, survives garbage, stops cleanly", async () => {
  const curl = requireBinary("curl", "curl");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_worker_" });
  const page = "served through a Worker\n".repeat(500);
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(page),
  );
  await using bridge = await proxy(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: http.addr.port },
  });
  const pt = await startInWorker({
    env: {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_CLIENT_TRANSPORTS: "plain",
      TOR_PT_STATE_LOCATION: dir,
    },
  });
  strictEqual(pt.version, "1");
  const port = socksPort(pt, "plain");
  const first = await curlPage(curl, port, `http://localhost:${bridge.addr.port}/`);
  strictEqual(new TextDecoder().decode(first.stdout), page);

  // 200 connections of random bytes: each is closed, the front end stays up.
  await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(crypto.getRandomValues(new Uint8Array(1 + (i * 37) % 600)));
      const buffer = new Uint8Array(1024);
      while (await conn.read(buffer) !== null) { /* until closed */ }
    } catch {
      // Reset by the front end: also a close.
    } finally {
      conn.close();
    }
  }));
  const after = await curlPage(curl, port, `http://127.0.0.1:${bridge.addr.port}/`);
  strictEqual(after.code, 0);
  strictEqual(new TextDecoder().decode(after.stdout), page);

  strictEqual(await pt.stop(), 0);
  deepStrictEqual(pt.stderr, "");
  await http.shutdown();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("InWorkerPt upstream proxy fails closed: a dead proxy gives a SOCKS error and no direct connection", async () => {
  const curl = requireBinary("curl", "curl");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_worker_" });
  // On 127.0.0.2: the target below and the Worker's SOCKS port listen on
  // 127.0.0.1 on ports of the kernel's choice, which could be this one just
  // closed (then the 'dead' proxy would answer, as in secret_scan's 374423a).
  const dead = Deno.listen({ hostname: "127.0.0.2", port: 0 });
  const deadPort = dead.addr.port;
  dead.close();
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const accepting = (async () => {
    for await (const conn of target) {
      accepted++;
      conn.close();
    }
  })();
  await using pt = await startInWorker({
    args: [
      "-client",
      "-transports",
      "plain",
      "-state",
      dir,
      "-proxy",
      `socks5://127.0.0.2:${deadPort}`,
    ],
  });
  ok(pt.lines.includes("PROXY DONE"));
  const result = await curlPage(
    curl,
    socksPort(pt, "plain"),
    `http://127.0.0.1:${target.addr.port}/`,
  );
  ok(result.code !== 0, "curl must fail");
  ok(/SOCKS|connect/i.test(new TextDecoder().decode(result.stderr)));
  strictEqual(accepted, 0);
  target.close();
  await accepting;
  await Deno.remove(dir, { recursive: true });
});

Deno.test("startInWorker rejects with the error line and exit code", async () => {
  await rejects(
    startInWorker({
      env: {
        TOR_PT_MANAGED_TRANSPORT_VER: "1",
        TOR_PT_CLIENT_TRANSPORTS: "plain",
        TOR_PT_PROXY: "ftp://x",
      },
    }),
    /PROXY-ERROR.*exit code 69/,
  );
});

Deno.test("startInWorker's failure to start any transport says what the front end logged about it", async () => {
  // Found as a library user (h42lib): a misspelt transport failed with only
  // 'Front end failed to start: it started none of its transports (exit
  // code 0)', while the front end had said why in a LOG warning that no
  // listener could hear yet (startInWorker returns once started).
  const dir = await Deno.makeTempDir();
  try {
    await rejects(
      startInWorker({ args: ["-client", "-transports", "obfs5", "-state", dir] }),
      (error: Error) =>
        error.message ===
          "Front end failed to start: it started none of its transports (it logged: Unknown " +
            'transport "obfs5" ignored (available: plain, obfs4, webtunnel, shadowsocks, ssh)) ' +
            "(exit code 0)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("InWorkerPt keeps the start-up lines and a bounded tail of what a long-running front end prints", async () => {
  const dir = await Deno.makeTempDir();
  const pt = await startInWorker({ args: ["-client", "-transports", "plain", "-state", dir] });
  try {
    // Each message delivered gives a LOG line, as each connection gives a STATUS line.
    const count = 5000;
    let logs = 0;
    const severities = new Set<string>();
    // The listener's event is typed (a PtLogEvent): before, InWorkerPt's
    // events were plain Events, and event.severity did not type-check.
    const logged = new Promise<void>((resolve) =>
      pt.addEventListener("log", (event) => {
        severities.add(event.severity);
        if (++logs === count) resolve();
      })
    );
    for (let i = 0; i < count; i++) pt.sendMessage("plain", new Uint8Array([i & 0xff]));
    await logged;
    ok(pt.lines.length <= 2000, `${pt.lines.length} lines kept`);
    deepStrictEqual(pt.lines.slice(0, 1), ["VERSION 2"]);
    ok(pt.lines.includes("CMETHODS DONE"));
    ok(severities.size > 0 && [...severities].every((s) => typeof s === "string"));
    // The latest line is kept (delivered, or refused while 64 wait).
    ok(/^LOG SEVERITY=\w+ MESSAGE=".*SMESSAGE.*plain/.test(pt.lines.at(-1)!), pt.lines.at(-1));
  } finally {
    strictEqual(await pt.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("InWorkerPt.sendMessage refuses once the front end stops, as ManagedPt.sendMessage does", async () => {
  const dir = await Deno.makeTempDir();
  const pt = await startInWorker({ args: ["-client", "-transports", "plain", "-state", dir] });
  pt.sendMessage("plain", new Uint8Array([1])); // Running: delivered.
  const stopped = pt.stop();
  throws(
    () => pt.sendMessage("plain", new Uint8Array([2])),
    /Cannot send SMESSAGE: the front end is not running/,
  );
  strictEqual(await stopped, 0);
  throws(() => pt.sendMessage("plain", new Uint8Array([3])), /the front end is not running/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("startInWorker refuses a startTimeout no timer holds, before starting anything", async () => {
  // -1 gave 'did not finish starting within -1 ms' and a runtime warning on stderr.
  for (const startTimeout of [-1, Number.NaN, 2 ** 40]) {
    await rejects(
      startInWorker({ args: ["-client", "-transports", "plain"], startTimeout }),
      /Cannot start in a Worker: invalid startTimeout/,
    );
  }
});

Deno.test("startInWorker refuses options, args or env of the wrong shape with a TypeError naming them, before a Worker starts", async () => {
  // Before: null failed with 'reading 'startTimeout'', args: "-client" was
  // split into one-letter arguments the front end refused (exit 64), and an
  // env value 1 failed inside the Worker with '(list ?? "2").split is not a
  // function'.
  const cases: [unknown, string][] = [
    [null, "Cannot start in a Worker: options must be an object, got null"],
    [
      { args: "-client" },
      "Invalid args for startInWorker: expected an array of strings, got string",
    ],
    [{ args: ["-client", 5] }, "Invalid args[1] for startInWorker: expected a string, got number"],
    [{ env: "x" }, "Invalid env for startInWorker: expected an object of strings, got string"],
    [
      { env: { TOR_PT_MANAGED_TRANSPORT_VER: 1 } },
      "Invalid env TOR_PT_MANAGED_TRANSPORT_VER for startInWorker: expected a string, got number",
    ],
  ];
  for (const [options, message] of cases) {
    await rejects(
      startInWorker(options as Parameters<typeof startInWorker>[0]),
      (e: unknown) => e instanceof TypeError && e.message === message,
      message,
    );
  }
});

Deno.test("InWorkerPt cleanup of temporary state", async () => {
  await Deno.remove(state, { recursive: true }).catch(() => {});
});

Deno.test("InWorkerPt.ready rejects with a whole sentence saying the front end failed to start, as startInWorker does", async () => {
  // Found as a library user (h42lib): ready rejected with the fragments
  // startInWorker builds on ('it exited', 'it rejected its environment:
  // ENV-ERROR ...'), and those were all a caller of new InWorkerPt() saw.
  const pt = new InWorkerPt({
    env: {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_CLIENT_TRANSPORTS: "plain",
      TOR_PT_PROXY: "ftp://x",
    },
  });
  await rejects(
    pt.ready,
    /^Error: Front end failed to start: it rejected the upstream proxy: PROXY-ERROR /,
  );
  strictEqual(await pt.stop(), 69);
  const dir = await Deno.makeTempDir();
  try {
    const early = new InWorkerPt({ args: ["-client", "-transports", "plain", "-state", dir] });
    strictEqual(await early.stop(), 0);
    await rejects(early.ready, /^Error: Front end failed to start: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
