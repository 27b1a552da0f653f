// Copyright the ptkit authors. MIT license.
// Configuration and signals (issue 11, acceptance 6): TOR_PT_* values that
// are not valid UTF-8 give ENV-ERROR and exit 64; a host name in
// TOR_PT_ORPORT or -orport (or the Extended ORPort) gives ENV-ERROR, as
// goptlib accepts only IP addresses; SIGTERM or SIGINT at any moment once
// main.ts runs ends the PT with exit 0.

import { ok, strictEqual } from "node:assert";
import { ENV_VARS } from "../ipc/managed/_flags.ts";
import { assertProtocolOnly, childEnv, MAIN } from "./ipc_util.ts";

const SERVER_ENV = {
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_SERVER_TRANSPORTS: "obfs4",
  TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
  TOR_PT_ORPORT: "127.0.0.1:9",
  TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
};
const CLIENT_ENV = {
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_CLIENT_TRANSPORTS: "obfs4",
  TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
};

/** Run main.ts to its exit with `env`, plus `rawName` set to `rawValue` bytes (via bash's printf). */
async function run(
  env: Record<string, string>,
  options: { args?: string[]; rawName?: string; rawValue?: string } = {},
): Promise<{ code: number; lines: string[]; stdout: string; stderr: string }> {
  const state = await Deno.makeTempDir({ prefix: "ptkit_env_" });
  try {
    // bash sets the raw bytes: Deno.Command's env can only hold UTF-8.
    const script = options.rawName === undefined
      ? 'exec "$0" "$@"'
      : `export ${options.rawName}="$(printf '${options.rawValue}')"; exec "$0" "$@"`;
    const output = await new Deno.Command("bash", {
      args: ["-c", script, MAIN, ...(options.args ?? [])],
      env: childEnv({ TOR_PT_STATE_LOCATION: state, ...env }),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    return {
      code: output.code,
      lines: assertProtocolOnly(stdout),
      stdout,
      stderr: new TextDecoder().decode(output.stderr),
    };
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

Deno.test("every TOR_PT_* value that is not valid UTF-8 gives ENV-ERROR and exit 64, without echoing it", async () => {
  for (const [side, env] of [["server", SERVER_ENV], ["client", CLIENT_ENV]] as const) {
    for (const name of ENV_VARS) {
      for (const raw of ["\\xff", "obfs4\\xc3", "\\xed\\xa0\\x80secret"]) {
        const { code, lines, stderr } = await run(env, { rawName: name, rawValue: raw });
        const what = `${side} ${name}=${raw}: ${JSON.stringify(lines)} ${stderr}`;
        strictEqual(code, 64, what);
        const error = lines.find((l) => l.startsWith("ENV-ERROR "));
        ok(error?.includes(name) && error.includes("not valid UTF-8"), what);
        ok(!error!.includes("secret"), what);
        strictEqual(stderr, "", what);
      }
    }
  }
});

Deno.test("a SIP003 variable that is not valid UTF-8 gives an error naming it and exit 64, without echoing it", async () => {
  const plugin = {
    SS_REMOTE_HOST: "127.0.0.1",
    SS_REMOTE_PORT: "8388",
    SS_LOCAL_HOST: "127.0.0.1",
    SS_LOCAL_PORT: "1984",
  };
  for (const name of [...Object.keys(plugin), "SS_PLUGIN_OPTIONS"]) {
    const { code, stdout, stderr } = await run(plugin, {
      rawName: name,
      rawValue: "\\xed\\xa0\\x80secret",
    });
    const what = `${name}: ${stdout} ${stderr}`;
    strictEqual(code, 64, what);
    ok(stderr.includes(`Cannot start as a SIP003 plugin: ${name} is not valid UTF-8`), what);
    ok(!stderr.includes("secret") && stdout === "", what);
  }
});

Deno.test("a host name in TOR_PT_ORPORT, -orport or TOR_PT_EXTENDED_SERVER_PORT gives ENV-ERROR and exit 64", async () => {
  const long = `${"a".repeat(120 * 1024)}.example:9`;
  for (const orport of ["localhost:9", "example.com:443", "tor-relay:9001", long]) {
    const { code, lines } = await run({ ...SERVER_ENV, TOR_PT_ORPORT: orport });
    strictEqual(code, 64, JSON.stringify(lines).slice(0, 300));
    const error = lines.find((l) => l.startsWith("ENV-ERROR "));
    ok(error !== undefined && /TOR_PT_ORPORT.*IP address/.test(error), error?.slice(0, 300));
    ok(error.length < 1024, `ENV-ERROR line of ${error.length} bytes`);
  }
  const flag = await run({}, {
    args: ["-server", "-transports", "obfs4", "-orport", "localhost:9", "-ptversion", "1"],
  });
  strictEqual(flag.code, 64);
  ok(flag.lines.some((l) => /^ENV-ERROR .*IP address/.test(l)), JSON.stringify(flag.lines));
  const ext = await run({
    ...SERVER_ENV,
    TOR_PT_EXTENDED_SERVER_PORT: "localhost:9",
    TOR_PT_AUTH_COOKIE_FILE: "/nonexistent",
  });
  strictEqual(ext.code, 64);
  ok(ext.lines.some((l) => /^ENV-ERROR .*EXTENDED_SERVER_PORT.*IP address/.test(l)));
  // IP literals still work, IPv6 in brackets too.
  for (const orport of ["127.0.0.1:9", "[::1]:9"]) {
    const { code, lines } = await run({ ...SERVER_ENV, TOR_PT_ORPORT: orport });
    strictEqual(code, 0, JSON.stringify(lines));
    ok(lines.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(lines));
  }
});

Deno.test("main.ts server: an Extended ORPort auth cookie it cannot read is said once at start, naming the variable", async () => {
  const { code, lines } = await run({
    ...SERVER_ENV,
    TOR_PT_EXTENDED_SERVER_PORT: "127.0.0.1:9",
    TOR_PT_AUTH_COOKIE_FILE: "/nonexistent/extended_orport_auth_cookie",
  });
  strictEqual(code, 0, JSON.stringify(lines));
  ok(lines.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(lines));
  ok(
    lines.some((l) =>
      /^LOG SEVERITY=warning MESSAGE="The Extended ORPort auth cookie \(TOR_PT_AUTH_COOKIE_FILE\) cannot be read: .*each connection fails until it can"$/
        .test(l)
    ),
    JSON.stringify(lines),
  );
});

Deno.test("main.ts server: an auth cookie given by -authcookie that it cannot read is said at start naming the flag", async () => {
  const { code, lines } = await run(
    { ...SERVER_ENV, TOR_PT_EXTENDED_SERVER_PORT: "127.0.0.1:9" },
    { args: ["-authcookie", "/nonexistent/extended_orport_auth_cookie"] },
  );
  strictEqual(code, 0, JSON.stringify(lines));
  ok(lines.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(lines));
  ok(
    lines.some((l) =>
      /^LOG SEVERITY=warning MESSAGE="The Extended ORPort auth cookie \(-authcookie\) cannot be read: .*each connection fails until it can"$/
        .test(l)
    ),
    JSON.stringify(lines),
  );
});

/** Wait until process `pid` catches SIGINT and SIGTERM (SigCgt in /proc/PID/status). */
async function handlersInstalled(pid: number): Promise<void> {
  const wanted = (1n << 1n) | (1n << 14n); // SIGINT (2), SIGTERM (15)
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const caught = BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
    if ((caught & wanted) === wanted) return;
    if (Date.now() > deadline) throw new Error("main.ts never caught SIGTERM and SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

Deno.test("SIGTERM or SIGINT at any moment once main.ts runs ends the PT with exit 0", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_signal_" });
  const failures: string[] = [];
  try {
    for (const [side, env] of [["server", SERVER_ENV], ["client", CLIENT_ENV]] as const) {
      for (const signal of ["SIGTERM", "SIGINT"] as const) {
        // From the moment main.ts's first statement has run through loading,
        // configuration and start-up, to well after CMETHODS DONE / SMETHODS
        // DONE. Its handlers show in /proc once Deno has set up signal
        // handling, a few microseconds before the listener itself is in
        // place; Deno's own start-up (20-100 ms, before any of the
        // program's code can run) comes before.
        for (const delay of [2, 5, 10, 20, 40, 60, 80, 100, 150, 200, 300, 500]) {
          const child = new Deno.Command(MAIN, {
            env: childEnv({ ...env, TOR_PT_STATE_LOCATION: state }),
            clearEnv: true,
            stdin: "piped",
            stdout: "piped",
            stderr: "piped",
          }).spawn();
          const stdout = new Response(child.stdout).text();
          await handlersInstalled(child.pid);
          await new Promise((resolve) => setTimeout(resolve, delay));
          child.kill(signal);
          // The first SIGINT drains (nothing is open); a second one in case
          // the first arrived after the drain was over.
          const again = signal === "SIGINT"
            ? setTimeout(() => {
              try {
                child.kill("SIGINT");
              } catch {
                // Already exited.
              }
            }, 2000)
            : undefined;
          const status = await child.status;
          clearTimeout(again);
          const stderr = await new Response(child.stderr).text();
          await stdout;
          await child.stdin.close().catch(() => {});
          if (status.code !== 0 || status.signal !== null) {
            failures.push(`${side} ${signal} at ${delay} ms: ${JSON.stringify(status)} ${stderr}`);
          }
        }
      }
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
  strictEqual(failures.length, 0, failures.join("\n"));
});

/**
 * Wait until process `pid` is past `env`: SIGINT and SIGTERM are blocked
 * (the shebang's `env --block-signal`, while Deno starts) or caught (main.ts's
 * listeners, once it has unblocked them).
 */
async function pastEnv(pid: number): Promise<void> {
  const wanted = (1n << 1n) | (1n << 14n); // SIGINT (2), SIGTERM (15)
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const field = (name: string) =>
      BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)$`, "m").exec(status)![1]}`);
    if ((field("SigBlk") & wanted) === wanted || (field("SigCgt") & wanted) === wanted) return;
    if (Date.now() > deadline) {
      throw new Error("main.ts never blocked or caught SIGTERM and SIGINT");
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

Deno.test("SIGTERM or SIGINT while Deno itself starts (before main.ts's code runs) ends the PT with exit 0", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_signal_" });
  const failures: string[] = [];
  try {
    for (const [side, env] of [["server", SERVER_ENV], ["client", CLIENT_ENV]] as const) {
      for (const signal of ["SIGTERM", "SIGINT"] as const) {
        // The shebang blocks both signals across exec of deno; main.ts
        // unblocks them once its listeners exist, and the pending signal
        // reaches them. Deno's own start-up takes 20-100 ms.
        for (const delay of [0, 1, 2, 4, 8, 15, 30]) {
          const child = new Deno.Command(MAIN, {
            env: childEnv({ ...env, TOR_PT_STATE_LOCATION: state }),
            clearEnv: true,
            stdin: "piped",
            stdout: "null",
            stderr: "piped",
          }).spawn();
          await pastEnv(child.pid);
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          child.kill(signal);
          const again = signal === "SIGINT"
            ? setTimeout(() => {
              try {
                child.kill("SIGINT");
              } catch {
                // Already exited.
              }
            }, 2000)
            : undefined;
          const status = await child.status;
          clearTimeout(again);
          const stderr = await new Response(child.stderr).text();
          await child.stdin.close().catch(() => {});
          if (status.code !== 0 || status.signal !== null) {
            failures.push(`${side} ${signal} at ${delay} ms: ${JSON.stringify(status)} ${stderr}`);
          }
        }
      }
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
  strictEqual(failures.length, 0, failures.join("\n"));
});

Deno.test("main.ts catches SIGTERM and SIGINT before it prints anything (before the rest of ptkit loads)", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_signal_" });
  try {
    for (const [side, env] of [["server", SERVER_ENV], ["client", CLIENT_ENV]] as const) {
      const seen: string[] = [];
      // A run may be judged wrongly if this process is not scheduled for a
      // while (it sees the output before its next look at /proc): three tries.
      for (let attempt = 0; attempt < 3; attempt++) {
        const child = new Deno.Command(MAIN, {
          env: childEnv({ ...env, TOR_PT_STATE_LOCATION: state }),
          clearEnv: true,
          stdin: "piped",
          stdout: "piped",
          stderr: "null",
        }).spawn();
        let printed = false;
        const stdout = (async () => {
          for await (const _ of child.stdout) printed = true;
        })();
        await handlersInstalled(child.pid);
        seen.push(printed ? "output first" : "handlers first");
        child.kill("SIGTERM");
        strictEqual((await child.status).code, 0);
        await stdout;
        await child.stdin.close().catch(() => {});
        if (!printed) break;
      }
      strictEqual(seen.at(-1), "handlers first", `${side}: ${seen}`);
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});
