// Copyright the ptkit authors. MIT license.
// Acceptance 4: `deno task start` prints a SOCKS5 address and a curl line
// that works, and stops cleanly on SIGINT.

import { deepStrictEqual, match, ok } from "node:assert";
import { denoDir, MAIN, requireBinary } from "./ipc_util.ts";
import { curl, TextProcess } from "./cli_util.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("deno task start runs server and client, its curl line works, SIGINT stops it", async () => {
  requireBinary("curl", "curl");
  const home = await Deno.makeTempDir({ prefix: "ptkit_start_" });
  await using start = new TextProcess("deno", ["task", "--cwd", root, "start"], {
    HOME: home,
    DENO_DIR: denoDir(),
  });
  const socks = (await start.waitFor(/SOCKS5 proxy: (127\.0\.0\.1:[0-9]+)/))[1]!;
  const line =
    (await start.waitFor(/^ {2}(curl --socks5-hostname \S+ http:\/\/localhost:[0-9]+\/)$/m))[1]!;
  ok(line.includes(socks), line);
  const [, ...curlArgs] = line.split(" ");
  const result = await curl(curlArgs);
  deepStrictEqual(result.code, 0, result.err);
  match(result.out, /^Hello from ptkit: this page came through obfs4/);
  // The server refuses other loopback destinations (free mode's default policy).
  const refused = await curl(["--socks5-hostname", socks, "http://localhost:9/"]);
  deepStrictEqual(refused.code, 97, refused.err);
  match(refused.err, /\(2\)/);
  const code = await start.interrupt();
  deepStrictEqual(code, 0, `exit code ${code}; stderr: ${start.stderr}`);
  ok(!/^Error:/m.test(start.stderr), start.stderr);
  // State went to the per-user directory.
  ok((await Deno.stat(`${home}/.local/state/ptkit/start/server/obfs4_state.json`)).isFile);
  await Deno.remove(home, { recursive: true });
});

/** The process group of `pid` (from /proc). */
async function processGroup(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

Deno.test("deno task start drains on one SIGINT to its process group: a transfer in flight completes intact", async () => {
  requireBinary("curl", "curl");
  requireBinary("setsid", "util-linux");
  // A slow page: 4 MiB in 64 KiB chunks, one every 40 ms.
  const body = crypto.getRandomValues(new Uint8Array(64 * 1024));
  const chunks = 64;
  const expected = new Uint8Array(body.length * chunks);
  for (let i = 0; i < chunks; i++) expected.set(body.map((b) => b ^ i), i * body.length);
  const page = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === chunks) return controller.close();
          await new Promise((resolve) => setTimeout(resolve, 40));
          controller.enqueue(expected.slice(sent * body.length, (sent + 1) * body.length));
          sent++;
        },
      }),
    );
  });
  const home = await Deno.makeTempDir({ prefix: "ptkit_start_" });
  // Its own session and process group, as a terminal's foreground job.
  await using start = new TextProcess("setsid", [
    ...["deno", "task", "--cwd", root, "start"],
    ...["--allow", `127.0.0.1:${page.addr.port}`, "--state", `${home}/state`],
  ], { HOME: home, DENO_DIR: denoDir() });
  const socks = (await start.waitFor(/SOCKS5 proxy: (127\.0\.0\.1:[0-9]+)/))[1]!;
  await start.waitFor(/Press Ctrl-C to stop/);
  const group = await processGroup(start.child.pid);
  deepStrictEqual(group, start.child.pid, "deno task leads its own process group");
  const file = `${home}/page`;
  const transfer = new Deno.Command("curl", {
    args: [
      "-sS",
      "-m",
      "120",
      "--socks5-hostname",
      socks,
      "-o",
      file,
      `http://127.0.0.1:${page.addr.port}/`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  // Once some of it has arrived: one Ctrl-C, as a terminal sends it, to
  // deno task and the PT alike.
  for (;;) {
    const size = await Deno.stat(file).then((s) => s.size, () => 0);
    if (size >= 256 * 1024) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  Deno.kill(-group, "SIGINT");
  const result = await transfer;
  deepStrictEqual(result.code, 0, new TextDecoder().decode(result.stderr));
  const received = await Deno.readFile(file);
  deepStrictEqual(received.length, expected.length, "the transfer was cut");
  ok(received.every((b, i) => b === expected[i]), "the transfer arrived corrupted");
  const status = await start.child.status;
  await start.done;
  deepStrictEqual(status.code, 0, start.stderr);
  match(start.stderr, /SIGINT: no new connections/);
  ok(!/second SIGINT|Shutting down/.test(start.stderr), start.stderr);
  await page.shutdown();
  await Deno.remove(home, { recursive: true });
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`main.ts start says once why it stops (${signal}), though it runs two sides`, async () => {
    const home = await Deno.makeTempDir({ prefix: "ptkit_start_once_" });
    const main = new URL("../main.ts", import.meta.url).pathname;
    await using start = new TextProcess(main, ["start", "--socks", "127.0.0.1:0"], { HOME: home });
    await start.waitFor(/SOCKS5 proxy: /);
    start.child.kill(signal);
    deepStrictEqual((await start.child.status).code, 0);
    await start.done;
    const expected = signal === "SIGINT"
      ? ["SIGINT: no new connections; waiting for open ones to end (SIGINT again to exit now)"]
      : ["Shutting down: SIGTERM"];
    deepStrictEqual(
      start.stderr.match(/(Shutting down: .*|SIGINT: no new connections.*)/g),
      expected,
      start.stderr,
    );
    await Deno.remove(home, { recursive: true });
  });
}

Deno.test("main.ts start takes --log-level as main.ts server and client do: info lines show (the crypto line once, though it runs two sides), a bad level is a usage error (64)", async () => {
  // start had no --log-level ('Unknown flag --log-level'): a user whose demo
  // failed could not see the info lines server and client show.
  const home = await Deno.makeTempDir({ prefix: "ptkit_start_level_" });
  const main = new URL("../main.ts", import.meta.url).pathname;
  {
    await using start = new TextProcess(main, [
      "start",
      "--socks",
      "127.0.0.1:0",
      "--log-level",
      "info",
    ], { HOME: home });
    await start.waitFor(/SOCKS5 proxy: /);
    // Log lines go to stderr (waitFor reads stdout).
    for (let i = 0; i < 600 && !/^\[info\] Crypto: /m.test(start.stderr); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    match(start.stderr, /^\[info\] Crypto: /m);
    // A connection through both sides: each has loaded its crypto by now.
    requireBinary("curl", "curl");
    const line =
      (await start.waitFor(/^ {2}(curl --socks5-hostname \S+ http:\/\/localhost:[0-9]+\/)$/m))[1]!;
    const fetched = await curl(line.split(" ").slice(1));
    deepStrictEqual(fetched.code, 0, fetched.err);
    start.child.kill("SIGTERM");
    deepStrictEqual((await start.child.status).code, 0);
    await start.done;
    // One process, one backend: the line came once, not once per side.
    deepStrictEqual(start.stderr.match(/Crypto: /g)?.length, 1, start.stderr);
  }
  {
    await using bad = new TextProcess(main, ["start", "--log-level", "loud"], { HOME: home });
    deepStrictEqual((await bad.child.status).code, 64);
    await bad.done;
    match(bad.stderr, /^ptkit: error: Invalid --log-level "loud": expected one of error, warning/);
  }
  await Deno.remove(home, { recursive: true });
});

Deno.test("main.ts run through a symbolic link from another directory (/usr/local/bin/ptkit) says to run it by its path, on stderr and to tor as ENV-ERROR; a link to the checkout's directory runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_link_" });
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const real = await Deno.realPath(MAIN);
  const said = `main.ts was started through a symbolic link to ${real}: Deno looks for ptkit's ` +
    `modules and deno.json beside the link; run ${real} by its path, or make the link a two-line ` +
    `script: #!/bin/sh, then exec ${real} "$@"`;
  try {
    // As an operator installs a PT on PATH: ln -s /opt/ptkit/main.ts /usr/local/bin/ptkit.
    const link = `${dir}/ptkit`;
    await Deno.symlink(MAIN, link);
    const version = await new Deno.Command(link, { args: ["--version"], stdin: "null" }).output();
    deepStrictEqual(
      [version.code, text(version.stdout), text(version.stderr)],
      [64, "", `ptkit: error: ${said}\n`],
    );
    const managed = await new Deno.Command(link, {
      stdin: "null",
      env: {
        TOR_PT_MANAGED_TRANSPORT_VER: "1",
        TOR_PT_CLIENT_TRANSPORTS: "plain",
        TOR_PT_STATE_LOCATION: `${dir}/state`,
        TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
      },
    }).output();
    deepStrictEqual([managed.code, text(managed.stdout)], [64, `ENV-ERROR ${said}\n`]);
    // A link to the checkout's directory finds everything beside main.ts.
    await Deno.symlink(real.slice(0, real.lastIndexOf("/")), `${dir}/checkout`);
    const through = await new Deno.Command(`${dir}/checkout/main.ts`, {
      args: ["--version"],
      stdin: "null",
    }).output();
    deepStrictEqual(through.code, 0, text(through.stderr));
    match(text(through.stdout), /^ptkit [0-9]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts start --state DIR/ (a final slash) names its state files without a doubled slash", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_start_slash_" });
  // A damaged server state: the start stops, naming the file.
  await Deno.mkdir(`${state}/server`, { mode: 0o700 });
  await Deno.writeTextFile(`${state}/server/obfs4_state.json`, "{", { mode: 0o600 });
  const main = new URL("../main.ts", import.meta.url).pathname;
  await using start = new TextProcess(main, [
    ...["start", "--socks", "127.0.0.1:0", "--state", `${state}/`],
  ]);
  deepStrictEqual((await start.child.status).code, 64);
  await start.done;
  ok(start.stderr.includes(`${state}/server/obfs4_state.json`), start.stderr);
  ok(!start.stderr.includes("//"), start.stderr);
  await Deno.remove(state, { recursive: true });
});
