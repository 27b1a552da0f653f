// Copyright the ptkit authors. MIT license.
// Starts offline, as another user: after `deno install` (the README's setup
// step) the npm dependencies live in the checkout's node_modules/, so
// `deno run --cached-only -A main.ts` starts with a fresh, empty DENO_DIR and
// HOME and no registry (users of a PT are on censored networks), and as
// another user (tor runs PTs as its own), for which every file must be
// world-readable.

import { deepStrictEqual, ok } from "node:assert";

const ROOT = new URL("../", import.meta.url).pathname;
/** What a checkout needs to run main.ts (tests, bench and docs are not needed). */
const NEEDED = [
  "main.ts",
  "mod.ts",
  "client.ts",
  "server.ts",
  "deno.json",
  "deno.lock",
  "ipc",
  "net",
  "transports",
  "udp",
  "node_modules",
];
const NOBODY = 65534;

async function* walk(path: string): AsyncGenerator<[string, Deno.FileInfo]> {
  const info = await Deno.lstat(path);
  yield [path, info];
  if (info.isDirectory) {
    for await (const entry of Deno.readDir(path)) yield* walk(`${path}/${entry.name}`);
  }
}

/** A registry and proxy that refuse everything: any download attempt fails. */
const NO_NETWORK = {
  NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/",
  HTTP_PROXY: "http://127.0.0.1:9",
  HTTPS_PROXY: "http://127.0.0.1:9",
};

/** A child's whole environment: PATH, `home` as HOME, no colour, no registry. */
function isolatedEnv(home: string): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: home,
    NO_COLOR: "1",
    ...NO_NETWORK,
  };
}

/** Start `command` (main.ts's client with obfs4 and plain) and wait for its METHOD lines. */
async function start(
  command: string[],
  options: { cwd: string; home: string; denoDir: string; asNobody: boolean },
): Promise<string> {
  const args = [
    ...command,
    ...["-client", "-ptversion", "1", "-transports", "obfs4,plain"],
    ...["-state", `${options.home}/state`, "-exit-on-stdin-close", "-loglevel", "info"],
  ];
  const [program, ...rest] = options.asNobody
    ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", ...args]
    : args;
  const child = new Deno.Command(program!, {
    args: rest,
    cwd: options.cwd,
    clearEnv: true,
    env: { ...isolatedEnv(options.home), DENO_DIR: options.denoDir },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const errors = new Response(child.stderr).text();
  // Read until the METHOD lines are done and the crypto backend (loaded
  // right after them) is logged, or the output ends; then close stdin: with
  // -exit-on-stdin-close it exits 0.
  let text = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    if (text.includes("CMETHODS DONE\n") && text.includes("Crypto: ")) {
      await stdin.close().catch(() => {});
    }
  }
  await stdin.close().catch(() => {});
  const status = await child.status;
  const stderr = await errors;
  deepStrictEqual(status.code, 0, `exit ${status.code}\nstdout: ${text}\nstderr: ${stderr}`);
  return text;
}

Deno.test("main.ts starts offline with an empty DENO_DIR and HOME after deno install, also as another user", async () => {
  try {
    await Deno.stat(`${ROOT}node_modules/libsodium-wrappers`);
  } catch {
    throw new Error(
      "node_modules/ is missing: run `deno install` in the checkout first (the README's setup step)",
    );
  }
  // tor runs the PT as its own user: everything it needs must be readable
  // (and directories searchable) by others.
  const unreadable: string[] = [];
  for (const name of NEEDED) {
    for await (const [path, info] of walk(`${ROOT}${name}`)) {
      if (info.isSymlink) continue;
      const mode = info.mode ?? 0;
      if ((mode & 0o004) === 0 || (info.isDirectory && (mode & 0o001) === 0)) {
        unreadable.push(`${path} ${(mode & 0o777).toString(8)}`);
      }
    }
  }
  deepStrictEqual(unreadable, [], "files another user cannot read");

  // A copy of what a fresh clone holds after `deno install`, modes and
  // links kept, somewhere every user can reach.
  const base = await Deno.makeTempDir({ prefix: "ptkit_offline_" });
  await Deno.chmod(base, 0o755);
  const checkout = `${base}/ptkit`;
  await Deno.mkdir(checkout, { mode: 0o755 });
  await Deno.chmod(checkout, 0o755);
  const copy = await new Deno.Command("cp", {
    args: ["-a", ...NEEDED.map((n) => `${ROOT}${n}`), checkout],
  }).output();
  ok(copy.success, new TextDecoder().decode(copy.stderr));

  const isRoot = Deno.uid() === 0;
  const runs: { asNobody: boolean; command: string[] }[] = [
    { asNobody: false, command: [Deno.execPath(), "run", "--cached-only", "-A", "main.ts"] },
    // Exec'd by path as tor does (the shebang's own flags).
    { asNobody: false, command: [`${checkout}/main.ts`] },
  ];
  if (isRoot) {
    runs.push(
      { asNobody: true, command: [Deno.execPath(), "run", "--cached-only", "-A", "main.ts"] },
      { asNobody: true, command: [`${checkout}/main.ts`] },
    );
  } else {
    console.log("Not root: the runs as another user (nobody) are skipped.");
  }
  try {
    for (const run of runs) {
      const home = await Deno.makeTempDir({ dir: base, prefix: "home_" });
      const denoDir = await Deno.makeTempDir({ dir: base, prefix: "deno_dir_" });
      if (run.asNobody) {
        for (const dir of [home, denoDir]) await Deno.chown(dir, NOBODY, NOBODY);
      }
      const stdout = await start(run.command, {
        cwd: checkout,
        home,
        denoDir,
        asNobody: run.asNobody,
      });
      const what = `${run.asNobody ? "as nobody: " : ""}${run.command.join(" ")}`;
      ok(/^CMETHOD obfs4 socks5 127\.0\.0\.1:[0-9]+$/m.test(stdout), `${what}\n${stdout}`);
      ok(/^CMETHOD plain socks5 127\.0\.0\.1:[0-9]+$/m.test(stdout), `${what}\n${stdout}`);
      ok(/^CMETHODS DONE$/m.test(stdout), `${what}\n${stdout}`);
      // Both grant FFI (the shebang has --allow-ffi): native libsodium loads
      // from node_modules/, offline and as another user.
      ok(/Crypto: sodium-native .*--allow-ffi is granted/.test(stdout), `${what}\n${stdout}`);
      // Nothing was fetched into the fresh DENO_DIR's npm cache.
      const npm = [];
      try {
        for await (const entry of Deno.readDir(`${denoDir}/npm`)) npm.push(entry.name);
      } catch {
        // No npm cache at all.
      }
      deepStrictEqual(npm, [], `${what}: npm packages were fetched`);
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

/** A copy of the checkout without node_modules (its setup step not run), in a fresh directory. */
async function checkoutWithoutModules(): Promise<string> {
  const base = await Deno.makeTempDir({ prefix: "ptkit_no_modules_" });
  const copy = await new Deno.Command("cp", {
    args: ["-a", ...NEEDED.filter((n) => n !== "node_modules").map((n) => `${ROOT}${n}`), base],
  }).output();
  if (!copy.success) await Deno.remove(base, { recursive: true });
  ok(copy.success, new TextDecoder().decode(copy.stderr));
  return base;
}

Deno.test("a checkout whose setup step did not run names it: deno install", async () => {
  const base = await checkoutWithoutModules();
  try {
    const child = new Deno.Command(`${base}/main.ts`, {
      args: [
        ...["-server", "-transports", "shadowsocks,obfs4", "-workers", "1"],
        ...["-bindaddr", "shadowsocks-127.0.0.1:0,obfs4-127.0.0.1:0", "-orport", "127.0.0.1:9"],
        ...["-options", "shadowsocks:password=correct-horse-battery-staple"],
        ...["-state", `${base}/state`, "-exit-on-stdin-close", "-loglevel", "info"],
      ],
      clearEnv: true,
      env: isolatedEnv(base),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Version 2 (the flags) sends *-ERROR lines to stderr.
    const errors = new Response(child.stderr).text();
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("SMETHODS DONE\n") && text.includes("Crypto: ")) {
        await child.stdin.close().catch(() => {});
      }
    }
    await child.stdin.close().catch(() => {});
    await child.status;
    text += await errors;
    const install = '(run "deno install" once where ptkit\'s deno.json is)';
    ok(
      text.includes(
        'SMETHOD-ERROR shadowsocks Cannot load transport "shadowsocks": npm package ' +
          `@noble/hashes@2.4.0 is not installed in node_modules/ ${install}`,
      ),
      text,
    );
    ok(/^SMETHOD obfs4 127\.0\.0\.1:[0-9]+ /m.test(text), text);
    ok(
      text.includes(
        "Crypto: cannot load a backend: Cannot load the WebAssembly crypto backend: npm package " +
          "libsodium-wrappers@0.7.13 is not installed in node_modules/",
      ),
      text,
    );
    ok(!text.includes("auto-install"), text);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a bridge with an Extended ORPort whose setup step did not run names deno install in SMETHOD-ERROR", async () => {
  // tor logs SMETHOD-ERROR lines, not a PT's stderr: a stack trace and exit 1
  // left an operator with "terminated with status code 1" and nothing else.
  const base = await checkoutWithoutModules();
  try {
    await Deno.writeFile(`${base}/cookie`, new Uint8Array(64));
    const child = new Deno.Command(`${base}/main.ts`, {
      clearEnv: true,
      env: {
        ...isolatedEnv(base),
        TOR_PT_MANAGED_TRANSPORT_VER: "1",
        TOR_PT_SERVER_TRANSPORTS: "obfs4",
        TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
        TOR_PT_ORPORT: "127.0.0.1:9",
        TOR_PT_EXTENDED_SERVER_PORT: "127.0.0.1:9",
        TOR_PT_AUTH_COOKIE_FILE: `${base}/cookie`,
        TOR_PT_STATE_LOCATION: `${base}/state`,
        TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const errors = new Response(child.stderr).text();
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("SMETHODS DONE\n")) await child.stdin.close().catch(() => {});
    }
    await child.stdin.close().catch(() => {});
    const status = await child.status;
    const stderr = await errors;
    ok(
      text.includes(
        "SMETHOD-ERROR obfs4 Cannot load the Extended ORPort client (TOR_PT_EXTENDED_SERVER_PORT):" +
          ' npm package @noble/hashes@2.4.0 is not installed in node_modules/ (run "deno install"' +
          " once where ptkit's deno.json is)\n",
      ),
      text + stderr,
    );
    ok(text.includes("SMETHODS DONE\n"), text + stderr);
    ok(status.code === 0, `exit ${status.code}: ${stderr}`);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
