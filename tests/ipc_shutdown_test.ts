// Copyright the ptkit authors. MIT license.
// Acceptance (e): how main.ts ends: stdin close (only when asked), SIGTERM,
// SIGINT (drain, a second one exits), parent death; exit codes.

import { deepStrictEqual, ok, rejects } from "node:assert";
import { MAIN, PtProcess, readN } from "./ipc_util.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

async function start(env: Record<string, string> = {}) {
  const state = await Deno.makeTempDir();
  const pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    ...env,
  });
  return { pt, port: (await pt.cmethod("plain")).port, state };
}

/** Open a relayed connection through the PT to a fresh service. */
async function openRelay(port: number) {
  const service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const p = service.addr.port;
  await conn.write(bytes(5, 1, 0));
  await readN(conn, 2);
  await conn.write(bytes(5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 255));
  const peer = await service.accept();
  deepStrictEqual((await readN(conn, 10))[1], 0);
  service.close();
  const roundTrip = async () => {
    await conn.write(bytes(7));
    deepStrictEqual(await readN(peer, 1), bytes(7));
    await peer.write(bytes(8));
    deepStrictEqual(await readN(conn, 1), bytes(8));
  };
  await roundTrip();
  return { conn, peer, roundTrip };
}

Deno.test("main.ts exits 0 when stdin closes with TOR_PT_EXIT_ON_STDIN_CLOSE=1", async () => {
  const { pt, port, state } = await start({ TOR_PT_EXIT_ON_STDIN_CLOSE: "1" });
  await using _ = pt;
  const { conn, peer } = await openRelay(port);
  const started = Date.now();
  await pt.closeStdin();
  const { code, stderr } = await pt.exit();
  console.log(`exited ${Date.now() - started} ms after stdin closed`);
  deepStrictEqual([code, stderr], [0, ""]);
  conn.close();
  peer.close();
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts ignores stdin close without TOR_PT_EXIT_ON_STDIN_CLOSE, exits 0 on SIGTERM", async () => {
  const { pt, port, state } = await start({ TOR_PT_EXIT_ON_STDIN_CLOSE: "0" });
  await using _ = pt;
  await pt.closeStdin();
  // Still serving after stdin closed.
  const { conn, peer, roundTrip } = await openRelay(port);
  await roundTrip();
  pt.child.kill("SIGTERM");
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  // The open connection was closed too.
  deepStrictEqual(await readN(conn, 1), bytes());
  conn.close();
  peer.close();
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts drains on SIGINT: no new connections, open ones go on, then exits 0", async () => {
  const { pt, port, state } = await start();
  await using _ = pt;
  const { conn, peer, roundTrip } = await openRelay(port);
  pt.child.kill("SIGINT");
  await pt.waitFor(/^LOG SEVERITY=notice MESSAGE="SIGINT: no new connections/);
  // A new client is refused, or (if it raced the listener's close) hung up on
  // without a SOCKS answer.
  try {
    using late = await Deno.connect({ hostname: "127.0.0.1", port });
    await late.write(bytes(5, 1, 0)).catch(() => {});
    deepStrictEqual(await readN(late, 2).catch(() => bytes()), bytes());
  } catch (error) {
    // Refused, or reset when the connection reached the backlog just before
    // the listener closed: either way no SOCKS answer.
    ok(
      error instanceof Deno.errors.ConnectionRefused ||
        error instanceof Deno.errors.ConnectionReset,
      String(error),
    );
  }
  await rejects(Deno.connect({ hostname: "127.0.0.1", port }), Deno.errors.ConnectionRefused);
  await roundTrip();
  // Ending the last connection lets the process exit, saying so.
  conn.close();
  peer.close();
  await pt.waitFor(
    /^LOG SEVERITY=notice MESSAGE="SIGINT: the open connections have ended; exiting"$/,
  );
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts counts SIGINTs that arrive together as one: one Ctrl-C under deno task drains", async () => {
  const { pt, port, state } = await start();
  await using _ = pt;
  const { conn, peer, roundTrip } = await openRelay(port);
  // A terminal's Ctrl-C and deno task's forwarded copy: back to back.
  pt.child.kill("SIGINT");
  pt.child.kill("SIGINT");
  pt.child.kill("SIGINT");
  await pt.waitFor(/SIGINT: no new connections/);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  // Still draining: the open connection carries on.
  await roundTrip();
  ok(!pt.lines.some((l) => /Shutting down/.test(l)), String(pt.lines));
  conn.close();
  peer.close();
  const { code, stderr, lines } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  deepStrictEqual(
    lines.filter((l) => /SIGINT: no new connections/.test(l)).length,
    1,
    String(lines),
  );
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts exits 0 on a second SIGINT (half a second later) while connections are open", async () => {
  const { pt, port, state } = await start();
  await using _ = pt;
  const { conn, peer } = await openRelay(port);
  pt.child.kill("SIGINT");
  await pt.waitFor(/SIGINT: no new connections/);
  // Another keypress, not the same one delivered twice.
  await new Promise((resolve) => setTimeout(resolve, 700));
  pt.child.kill("SIGINT");
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 0);
  // The last word is the second SIGINT's: the connections did not end, they were closed.
  deepStrictEqual(lines.filter((l) => l.startsWith("LOG ")).slice(-2), [
    'LOG SEVERITY=notice MESSAGE="SIGINT: no new connections; waiting for open ones to end (SIGINT again to exit now)"',
    'LOG SEVERITY=notice MESSAGE="Shutting down: second SIGINT"',
  ]);
  deepStrictEqual(await readN(conn, 1), bytes());
  conn.close();
  peer.close();
  await Deno.remove(state, { recursive: true });
});

/** A shell's environment that makes the main.ts it starts a managed client PT. */
function shellEnv(state: string): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/",
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
  };
}

Deno.test("main.ts exits when its parent dies (stdin not watched)", async () => {
  const state = await Deno.makeTempDir();
  const log = `${state}/stdout`;
  // The shell starts main.ts in the background, prints its pid, then becomes
  // `sleep` (same pid), which is main.ts's parent.
  const parent = new Deno.Command("/bin/sh", {
    args: ["-c", `"$0" >"$1" 2>&1 </dev/null & echo $!; exec sleep 600`, MAIN, log],
    env: shellEnv(state),
    clearEnv: true,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let pidText = "";
  while (!pidText.includes("\n")) pidText += (await reader.read()).value ?? "";
  const pid = Number(pidText.trim());
  ok(pid > 0);
  // Wait for the PT to be up, then kill its parent.
  while (!(await Deno.readTextFile(log).catch(() => "")).includes("CMETHODS DONE")) {
    await new Promise((r) => setTimeout(r, 20));
  }
  parent.kill("SIGKILL");
  await parent.status;
  await reader.cancel();
  const alive = async () => {
    const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
    return status !== "" && !/^State:\s+Z/m.test(status);
  };
  // Poll until gone; a process that never notices would fail the test here.
  let rounds = 0;
  while (await alive()) {
    if (++rounds > 600) {
      Deno.kill(pid, "SIGKILL");
      throw new Error("main.ts outlived its parent by a minute");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  ok((await Deno.readTextFile(log)).includes("Shutting down: parent process exited"));
  await Deno.remove(state, { recursive: true });
});

/** Whether a process lives (not a zombie). */
async function alive(pid: number): Promise<boolean> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  return status !== "" && !/^State:\s+Z/m.test(status);
}

/** Wait until `pid` is gone; SIGKILL it and fail after a minute. */
async function gone(pid: number, what: string): Promise<void> {
  for (let rounds = 0; await alive(pid); rounds++) {
    if (rounds > 600) {
      Deno.kill(pid, "SIGKILL");
      throw new Error(`${what} did not exit within a minute`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Read `file` until it holds `text`. */
async function waitForText(file: string, text: string): Promise<string> {
  for (let rounds = 0;; rounds++) {
    const content = await Deno.readTextFile(file).catch(() => "");
    if (content.includes(text)) return content;
    if (rounds > 1200) throw new Error(`${file} never held ${text}: ${content}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (
  const [command, args] of [
    ["server", ["--transport", "plain", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9"]],
    ["client", ["--bridge", "plain 127.0.0.1:9", "--socks", "127.0.0.1:0"]],
  ] as const
) {
  Deno.test(`main.ts ${command} (standalone) outlives the shell that started it under nohup`, async () => {
    const state = await Deno.makeTempDir();
    const log = `${state}/out`;
    // As a person types it: `nohup main.ts ... &`, then (once it runs) the
    // shell exits.
    const shell = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        `nohup "$0" ${command} "$@" --state "${state}" >"${log}" 2>&1 </dev/null & echo $!; ` +
        `until grep -q "Ctrl-C stops the" "${log}" 2>/dev/null; do sleep 0.1; done`,
        MAIN,
        ...args,
      ],
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/" },
      clearEnv: true,
      stdout: "piped",
      stderr: "null",
    }).output();
    const pid = Number(new TextDecoder().decode((await shell).stdout).trim());
    ok(pid > 0);
    try {
      await waitForText(log, "Ctrl-C stops the");
      // The parent-death watch polls once a second: three rounds.
      await new Promise((r) => setTimeout(r, 3500));
      ok(
        await alive(pid),
        `main.ts ${command} exited with its shell: ${await Deno.readTextFile(log)}`,
      );
      Deno.kill(pid, "SIGTERM");
      await gone(pid, `main.ts ${command}`);
      const text = await Deno.readTextFile(log);
      ok(!text.includes("parent process exited"), text);
      deepStrictEqual(text.match(/Shutting down: .*/g), ["Shutting down: SIGTERM"]);
    } finally {
      if (await alive(pid)) Deno.kill(pid, "SIGKILL");
      await Deno.remove(state, { recursive: true });
    }
  });
}

Deno.test("main.ts notices a parent that died while it started (ppid already 1) when its stdin pipe ends", async () => {
  const state = await Deno.makeTempDir();
  // The shell starts main.ts in the background and exits at once: main.ts's
  // code runs with init as its parent. The test holds the pipe's other end.
  const shell = new Deno.Command("/bin/sh", {
    args: ["-c", `"$0" >"$1/out" 2>&1 & echo $! >"$1/pid"`, MAIN, state],
    env: shellEnv(state),
    clearEnv: true,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pid = Number((await waitForText(`${state}/pid`, "\n")).trim());
  try {
    await shell.status;
    await waitForText(`${state}/out`, "CMETHODS DONE");
    // The parent tor died: its end of the pipe closes.
    await shell.stdin.close();
    await gone(pid, "main.ts orphaned at start");
    ok((await Deno.readTextFile(`${state}/out`)).includes("Shutting down: parent process exited"));
  } finally {
    if (await alive(pid)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(state, { recursive: true });
  }
});
