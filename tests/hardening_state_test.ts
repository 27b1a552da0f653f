// Copyright the ptkit authors. MIT license.
// A bridge's identity is never silently replaced (issue 11, acceptance 4):
// when obfs4_state.json is a dangling symbolic link (state on a volume not
// mounted yet), a link to another file, a directory, or a file of another
// owner, or when a .tmp link is planted, the server reports SMETHOD-ERROR
// naming the file, leaves everything as it was, and writes no key anywhere.

import { ShutdownWatch } from "../ipc/managed/_shutdown.ts";
import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert";
import { FileStore } from "../ipc/managed/_file_store.ts";
import { PtProcess, requireBinary } from "./ipc_util.ts";
import { startObfs4proxy } from "./obfs4_live_helpers.ts";

/** Every entry under `dir` (recursively) with its kind, link target or content. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (path: string, name: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      const key = `${name}${entry.name}`;
      if (entry.isSymlink) out[key] = `link -> ${await Deno.readLink(full)}`;
      else if (entry.isDirectory) {
        out[key] = "dir";
        await walk(full, `${key}/`);
      } else out[key] = `file ${await Deno.readTextFile(full)}`;
    }
  };
  await walk(dir, "");
  return out;
}

/**
 * Start an obfs4 server on `state` (with `env` and `args` added); returns
 * its protocol lines up to SMETHODS DONE.
 */
async function serverLines(
  state: string,
  env: Record<string, string> = {},
  args: string[] = [],
): Promise<string[]> {
  await using pt = new PtProcess(args, {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
    TOR_PT_ORPORT: "127.0.0.1:9",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    ...env,
  });
  await pt.waitFor(/^SMETHODS DONE$/);
  await pt.closeStdin();
  const { code, lines } = await pt.exit();
  strictEqual(code, 0);
  return lines;
}

/**
 * Prepare a state directory (inside `root`, next to a `volume` directory
 * for link targets), run the server, and check that it refused with an
 * error naming `file` and changed nothing under `root`.
 */
async function refuses(
  prepare: (state: string, volume: string) => Promise<void>,
  file: RegExp,
  env: Record<string, string> = {},
): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    await Deno.mkdir(`${root}/state`, { mode: 0o700 });
    await Deno.mkdir(`${root}/volume`);
    await prepare(`${root}/state`, `${root}/volume`);
    const before = await snapshot(root);
    const lines = await serverLines(`${root}/state`, env);
    const error = lines.find((l) => l.startsWith("SMETHOD-ERROR obfs4 "));
    ok(error !== undefined, `no SMETHOD-ERROR: ${JSON.stringify(lines)}`);
    match(error, file);
    ok(!lines.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(lines));
    deepStrictEqual(await snapshot(root), before, "something changed in the state directory");
    return error;
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("a dangling obfs4_state.json link (volume not mounted) gives SMETHOD-ERROR and no new key", async () => {
  const error = await refuses(async (state, volume) => {
    await Deno.symlink(`${volume}/not-mounted/obfs4_state.json`, `${state}/obfs4_state.json`);
  }, /obfs4_state\.json.*symbolic link/);
  ok(error.length < 300, error);
});

Deno.test("a state directory that is a dangling link (volume not mounted), or lies below one, gives ENV-ERROR saying so; nothing is created", async () => {
  const root = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    await Deno.mkdir(`${root}/volume`);
    await Deno.symlink(`${root}/volume/not-mounted/pt_state`, `${root}/state`);
    await Deno.symlink(`${root}/volume/not-mounted`, `${root}/data`);
    // A link to a directory that exists is followed, as before.
    await Deno.symlink(`${root}/volume`, `${root}/mounted`);
    const before = await snapshot(root);
    for (
      const [state, link, target] of [
        [`${root}/state`, `${root}/state`, `${root}/volume/not-mounted/pt_state`],
        [`${root}/data/pt_state`, `${root}/data`, `${root}/volume/not-mounted`],
      ]
    ) {
      await using pt = new PtProcess([], {
        TOR_PT_MANAGED_TRANSPORT_VER: "1",
        TOR_PT_SERVER_TRANSPORTS: "obfs4",
        TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
        TOR_PT_ORPORT: "127.0.0.1:9",
        TOR_PT_STATE_LOCATION: state!,
      });
      const { code, lines } = await pt.exit();
      strictEqual(code, 64, JSON.stringify(lines));
      deepStrictEqual(lines.filter((l) => l.startsWith("ENV-ERROR")), [
        `ENV-ERROR Cannot use state directory ${JSON.stringify(state)}: ${
          link === state ? "it" : JSON.stringify(link)
        } is a symbolic link to ${
          JSON.stringify(target)
        }, which does not exist (a volume not mounted yet?); nothing was created`,
      ]);
      deepStrictEqual(await snapshot(root), before, "something was created");
    }
    await serverLines(`${root}/mounted/pt_state`);
    ok((await Deno.stat(`${root}/volume/pt_state/obfs4_state.json`)).isFile);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an obfs4_state.json link to another file gives SMETHOD-ERROR; both are left as they were", async () => {
  await refuses(async (state, volume) => {
    await Deno.writeTextFile(`${volume}/elsewhere.json`, "{}");
    await Deno.symlink(`${volume}/elsewhere.json`, `${state}/obfs4_state.json`);
  }, /obfs4_state\.json.*symbolic link/);
});

Deno.test("a damaged obfs4_state.json gives SMETHOD-ERROR naming its path (as obfs4proxy), no secret, and is left as it was", async () => {
  const secret = "ab".repeat(32);
  const error = await refuses(async (state) => {
    await Deno.writeTextFile(`${state}/obfs4_state.json`, `{"private-key": "${secret}",`);
  }, /Cannot parse \/.*\/state\/obfs4_state\.json: invalid JSON/);
  ok(!error.includes(secret), error);
});

Deno.test("a damaged obfs4_state.json (cut short, or empty after a full disk) says it is kept and what to do: restore it, or move it away for new keys", async () => {
  // Under tor the operator reads only this line ("Server managed proxy
  // encountered a method error"): it must say why the file is not replaced
  // and the two ways out, as the ssh transport's damaged key does.
  const advice =
    /; it is not replaced \(new keys change cert=, so every client's bridge line\): restore it from a backup, or move it away for a new identity$/;
  const cut = await refuses(async (state) => {
    await Deno.writeTextFile(`${state}/obfs4_state.json`, `{"node-id": "00",`);
  }, /^SMETHOD-ERROR obfs4 Cannot parse \/.*\/state\/obfs4_state\.json: invalid JSON; /);
  match(cut, advice);
  const empty = await refuses(async (state) => {
    await Deno.writeTextFile(`${state}/obfs4_state.json`, "");
  }, /^SMETHOD-ERROR obfs4 Cannot parse \/.*\/state\/obfs4_state\.json: the file is empty; /);
  match(empty, advice);
  const missing = await refuses(async (state) => {
    await Deno.writeTextFile(`${state}/obfs4_state.json`, "{}");
  }, /obfs4_state\.json: 'node-id', 'private-key' and 'drbg-seed' are missing; /);
  match(missing, advice);
});

Deno.test("a directory in place of obfs4_state.json gives SMETHOD-ERROR", async () => {
  await refuses(async (state) => {
    await Deno.mkdir(`${state}/obfs4_state.json`);
  }, /obfs4_state\.json.*directory/);
});

Deno.test("a planted obfs4_state.json.tmp link gives SMETHOD-ERROR and is not followed", async () => {
  await refuses(async (state, volume) => {
    await Deno.symlink(`${volume}/victim`, `${state}/obfs4_state.json.tmp`);
  }, /obfs4_state\.json\.tmp.*symbolic link/);
  await refuses(async (state, volume) => {
    await Deno.writeTextFile(`${volume}/victim`, "precious");
    await Deno.symlink(`${volume}/victim`, `${state}/obfs4_state.json.tmp`);
  }, /obfs4_state\.json\.tmp.*symbolic link/);
});

Deno.test("an obfs4_bridgeline.txt link stops the first run before any key is written", async () => {
  await refuses(async (state, volume) => {
    await Deno.symlink(`${volume}/bridgeline`, `${state}/obfs4_bridgeline.txt`);
  }, /obfs4_bridgeline\.txt.*symbolic link/);
});

Deno.test("an obfs4_bridgeline.txt link on a later run (iat-mode given) stops the start; the state is left as it was", async () => {
  const stored = JSON.stringify({
    "node-id": "00".repeat(20),
    "private-key": "11".repeat(32),
    "drbg-seed": "22".repeat(24),
    "iat-mode": 0,
  });
  await refuses(
    async (state, volume) => {
      await Deno.writeTextFile(`${state}/obfs4_state.json`, stored, { mode: 0o600 });
      await Deno.writeTextFile(`${volume}/bridgeline`, "precious");
      await Deno.symlink(`${volume}/bridgeline`, `${state}/obfs4_bridgeline.txt`);
    },
    /obfs4_bridgeline\.txt.*symbolic link/,
    { TOR_PT_SERVER_TRANSPORT_OPTIONS: "obfs4:iat-mode=2" },
  );
});

Deno.test({
  name:
    "an obfs4_state.json of another owner gives SMETHOD-ERROR saying how to hand it over (needs root to chown)",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await refuses(
      async (state) => {
        await Deno.writeTextFile(`${state}/obfs4_state.json`, "{}", { mode: 0o644 });
        await Deno.chown(`${state}/obfs4_state.json`, 65534, 65534);
      },
      new RegExp(
        "obfs4_state\\.json: it belongs to user 65534, not to this process's user 0 " +
          "\\(if it is this PT's own, chown it to user 0, the user this PT runs as\\); " +
          "it is left untouched",
      ),
    );
  },
});

Deno.test("a first run writes the state and bridge line (0600), and the next run keeps them", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    const first = await serverLines(state);
    const smethod = first.find((l) => l.startsWith("SMETHOD obfs4 "));
    ok(smethod, JSON.stringify(first));
    const saved = await snapshot(state);
    deepStrictEqual(Object.keys(saved).sort(), ["obfs4_bridgeline.txt", "obfs4_state.json"]);
    strictEqual((await Deno.stat(`${state}/obfs4_state.json`)).mode! & 0o777, 0o600);
    const second = await serverLines(state);
    strictEqual(
      second.find((l) => l.startsWith("SMETHOD obfs4 "))!.split(" ")[3],
      smethod.split(" ")[3],
    );
    deepStrictEqual(await snapshot(state), saved);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("FileStore: a .tmp left by a crash is replaced; links, directories and FIFOs are refused for reads and writes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    const store = new FileStore(dir);
    await Deno.writeTextFile(`${dir}/key.tmp`, "half-written");
    await store.set("key", "value");
    strictEqual(await store.get("key"), "value");
    await rejects(Deno.lstat(`${dir}/key.tmp`), Deno.errors.NotFound);

    await Deno.symlink(`${dir}/key`, `${dir}/link`);
    await rejects(store.get("link"), /link.*symbolic link/);
    await rejects(store.set("link", "x"), /link.*symbolic link/);
    strictEqual(await Deno.readLink(`${dir}/link`), `${dir}/key`);
    strictEqual(await store.get("key"), "value");

    await Deno.mkdir(`${dir}/sub`);
    await rejects(store.get("sub"), /sub.*directory/);
    await rejects(store.set("sub", "x"), /sub.*directory/);

    const mkfifo = new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).outputSync();
    ok(mkfifo.success, "mkfifo failed");
    await rejects(store.get("fifo"), /fifo.*not a regular file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileStore: names its files without a doubled slash when its directory is / or is given with a final slash", async () => {
  // A PT started with no -state in / (a systemd service's working
  // directory) or with TOR_PT_STATE_LOCATION ending in a slash.
  strictEqual(new FileStore("/").describe("obfs4_state.json"), "/obfs4_state.json");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    for (const given of [`${dir}/`, `${dir}//`]) {
      const store = new FileStore(given);
      strictEqual(store.describe("key"), `${dir}/key`);
      await Deno.mkdir(`${dir}/sub`, { recursive: true });
      await rejects(store.get("sub"), (error: Error) => {
        ok(error.message.includes(`${dir}/sub`) && !error.message.includes("//"), error.message);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileStore: reads values whole across read sizes, and refuses a file over 1 MiB, naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    const store = new FileStore(dir);
    for (const length of [0, 1, 16383, 16384, 16385, 100_000, 1 << 20]) {
      const value = "é".repeat(length >> 1) + "x".repeat(length & 1);
      await Deno.writeTextFile(`${dir}/v`, value, { mode: 0o600 });
      strictEqual(await store.get("v"), value, `a value of ${length} bytes`);
    }
    await Deno.writeFile(`${dir}/big`, new Uint8Array((1 << 20) + 1));
    await rejects(store.get("big"), (error: Error) => {
      match(error.message, /big.*larger than 1048576 bytes/);
      return error instanceof RangeError;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The `cert=... iat-mode=N` of the Bridge line in the file `path`. */
async function bridgeArgs(path: string): Promise<string | undefined> {
  const text = await Deno.readTextFile(path);
  return /^Bridge obfs4 .* (cert=\S+ iat-mode=\d)$/m.exec(text)?.[1];
}

/** The SMETHOD line's `cert` and `iat-mode`, as `cert=... iat-mode=N`. */
function smethodArgs(lines: string[]): string {
  const smethod = lines.find((l) => l.startsWith("SMETHOD obfs4 "));
  ok(smethod !== undefined, JSON.stringify(lines));
  const args = /ARGS:cert=([^,]+),iat-mode=(\d)/.exec(smethod)!;
  return `cert=${args[1]} iat-mode=${args[2]}`;
}

Deno.test("obfs4proxy's obfs4_state.json alone: the bridge line is written on every start, and an iat-mode option is saved as obfs4proxy saves it", async () => {
  const root = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  const obfs4proxy = requireBinary("obfs4proxy", "obfs4proxy");
  const env = (state: string) => ({
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
    TOR_PT_ORPORT: "127.0.0.1:9",
    TOR_PT_STATE_LOCATION: state,
  });
  const runObfs4proxy = async (state: string) => {
    const pt = await startObfs4proxy(env(state), [obfs4proxy]);
    await pt.stop();
    const args = pt.method.find((a) => a.startsWith("ARGS:"))!;
    return args.replace(/^ARGS:/, "").replace(",", " ");
  };
  try {
    // obfs4proxy makes the keys; only obfs4_state.json is copied (the backup).
    const made = await runObfs4proxy(`${root}/obfs4proxy`);
    const original = JSON.parse(await Deno.readTextFile(`${root}/obfs4proxy/obfs4_state.json`));
    const state = `${root}/restored`;
    await Deno.mkdir(state, { mode: 0o700 });
    await Deno.copyFile(`${root}/obfs4proxy/obfs4_state.json`, `${state}/obfs4_state.json`);
    const bridgeLine = `${state}/obfs4_bridgeline.txt`;

    strictEqual(smethodArgs(await serverLines(state)), made);
    strictEqual(await bridgeArgs(bridgeLine), made);
    // Unchanged text is not written again (same inode); a deleted file is.
    const inode = (await Deno.stat(bridgeLine)).ino;
    await serverLines(state);
    strictEqual((await Deno.stat(bridgeLine)).ino, inode);
    await Deno.remove(bridgeLine);
    await serverLines(state);
    strictEqual(await bridgeArgs(bridgeLine), made);

    // iat-mode=2 in the options: the SMETHOD line, the bridge line and the
    // state agree; the keys are obfs4proxy's, unchanged.
    const iat2 = made.replace("iat-mode=0", "iat-mode=2");
    const lines = await serverLines(state, { TOR_PT_SERVER_TRANSPORT_OPTIONS: "obfs4:iat-mode=2" });
    strictEqual(smethodArgs(lines), iat2);
    ok(
      lines.some((line) =>
        /^LOG SEVERITY=notice MESSAGE="obfs4_state\.json: iat-mode changed from 0 to 2 .*the keys are unchanged"$/
          .test(line)
      ),
      lines.join("\n"),
    );
    strictEqual(await bridgeArgs(bridgeLine), iat2);
    deepStrictEqual(
      JSON.parse(await Deno.readTextFile(`${state}/obfs4_state.json`)),
      { ...original, "iat-mode": 2 },
    );
    strictEqual((await Deno.stat(`${state}/obfs4_state.json`)).mode! & 0o777, 0o600);
    deepStrictEqual((await snapshot(state))["obfs4_state.json.tmp"], undefined);

    // The option is kept without being given again, by ptkit and by obfs4proxy.
    strictEqual(smethodArgs(await serverLines(state)), iat2);
    strictEqual(await runObfs4proxy(state), iat2);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("PTs started at once on a new state directory all serve the one identity that is saved", async () => {
  // Before: each read no obfs4_state.json, made its own keys and renamed
  // them over the others': a PT announced a cert that no file kept (and a
  // restart gave the bridge another identity). Four at once, three times.
  const root = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    for (let round = 0; round < 3; round++) {
      const state = `${root}/state${round}`;
      const runs = await Promise.all(
        Array.from({ length: 4 }, () => serverLines(state, {}, ["-workers", "1"])),
      );
      const saved = await bridgeArgs(`${state}/obfs4_bridgeline.txt`);
      for (const lines of runs) strictEqual(smethodArgs(lines), saved, lines.join("\n"));
      deepStrictEqual(Object.keys(await snapshot(state)).sort(), [
        "obfs4_bridgeline.txt",
        "obfs4_state.json",
      ]);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a PT waits for the state directory's lock while another starts, says so, and SIGTERM ends the wait", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  // This test is the other process, caught in the middle of its start.
  const held = await Deno.open(state, { read: true });
  await held.lock(true);
  let released = false;
  try {
    await using pt = new PtProcess(["-workers", "1"], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
      TOR_PT_ORPORT: "127.0.0.1:9",
      TOR_PT_STATE_LOCATION: state,
    });
    await pt.waitFor(/^LOG SEVERITY=notice MESSAGE="Waiting for another process starting/);
    pt.child.kill("SIGTERM");
    // Released only if the PT has not ended by itself within 20 s.
    const release = setTimeout(() => {
      released = true;
      held.close();
    }, 20_000);
    const { code, lines } = await pt.exit();
    clearTimeout(release);
    strictEqual(released, false, "the PT ended only once the lock was released");
    strictEqual(code, 0);
    ok(lines.includes('LOG SEVERITY=notice MESSAGE="Shutting down: SIGTERM"'), lines.join("\n"));
    ok(!lines.some((l) => l.startsWith("SMETHOD")), lines.join("\n"));
    deepStrictEqual(await snapshot(state), {});
  } finally {
    if (!released) held.close();
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("a PT waiting for the state directory's lock ends when its stdin closes (TOR_PT_EXIT_ON_STDIN_CLOSE), and says so", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  // This test is the other process, caught in the middle of its start.
  const held = await Deno.open(state, { read: true });
  await held.lock(true);
  let released = false;
  try {
    await using pt = new PtProcess(["-workers", "1"], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
      TOR_PT_ORPORT: "127.0.0.1:9",
      TOR_PT_STATE_LOCATION: state,
      TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    });
    await pt.waitFor(/^LOG SEVERITY=notice MESSAGE="Waiting for another process starting/);
    // tor gone (its end of the pipe closed) while the holder never finishes.
    await pt.closeStdin();
    // Released only if the PT has not ended by itself within 20 s.
    const release = setTimeout(() => {
      released = true;
      held.close();
    }, 20_000);
    const { code, lines } = await pt.exit();
    clearTimeout(release);
    strictEqual(released, false, "the PT ended only once the lock was released");
    strictEqual(code, 0);
    ok(
      lines.includes('LOG SEVERITY=notice MESSAGE="Shutting down: stdin closed"'),
      lines.join("\n"),
    );
    ok(!lines.some((l) => l.startsWith("SMETHOD")), lines.join("\n"));
    deepStrictEqual(await snapshot(state), {});
  } finally {
    if (!released) held.close();
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("ShutdownWatch.watchEarly holds the input's lines until the side serves, then gives them in order", async () => {
  const input = new TransformStream<Uint8Array, Uint8Array>();
  const seen: string[] = [];
  const watch = new ShutdownWatch({
    exitOnStdinClose: true,
    process: false,
    watchParent: false,
    stdin: input.readable,
    onLine: (line) => seen.push(line),
    onTooLong: () => {},
    onClose: () => {},
  });
  const writer = input.writable.getWriter();
  watch.watchEarly();
  await writer.write(new TextEncoder().encode("CMESSAGE a 1\nCMESSAGE a 2\n"));
  await new Promise((resolve) => setTimeout(resolve, 0));
  deepStrictEqual(seen, [], "no line before the side serves");
  let closed = 0;
  const serving = watch.serve({
    drain: () => Promise.resolve(),
    close: () => Promise.resolve(void closed++),
  }, () => {});
  deepStrictEqual(seen, ["CMESSAGE a 1", "CMESSAGE a 2"]);
  await writer.write(new TextEncoder().encode("CMESSAGE a 3\n"));
  await writer.close();
  await serving;
  deepStrictEqual(seen, ["CMESSAGE a 1", "CMESSAGE a 2", "CMESSAGE a 3"]);
  strictEqual(closed, 1);
});

Deno.test("FileStore: after the rename, the state directory itself is flushed (fsync), so the new file survives a power loss", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  // What the store does, traced: which paths it opens, renames, and flushes.
  const events: string[] = [];
  const paths = new WeakMap<Deno.FsFile, string>();
  const open = Deno.open;
  const rename = Deno.rename;
  const proto = Deno.FsFile.prototype;
  const { sync, syncData } = proto;
  Deno.open = async (path, options) => {
    const file = await open(path, options);
    paths.set(file, String(path));
    return file;
  };
  Deno.rename = async (from, to) => {
    await rename(from, to);
    events.push(`rename ${to}`);
  };
  proto.sync = function (this: Deno.FsFile) {
    events.push(`sync ${paths.get(this)}`);
    return sync.call(this);
  };
  proto.syncData = function (this: Deno.FsFile) {
    events.push(`syncData ${paths.get(this)}`);
    return syncData.call(this);
  };
  try {
    await new FileStore(dir).set("key", "value");
  } finally {
    Object.assign(Deno, { open, rename });
    Object.assign(proto, { sync, syncData });
  }
  try {
    deepStrictEqual(events, [`syncData ${dir}/key.tmp`, `rename ${dir}/key`, `sync ${dir}`]);
    strictEqual(await Deno.readTextFile(`${dir}/key`), "value");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a start removes the obfs4_state.json.tmp an interrupted write left, and says so in a LOG line", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    await Deno.writeTextFile(`${state}/obfs4_state.json.tmp`, '{"node-id":"half', { mode: 0o600 });
    const lines = await serverLines(state);
    ok(lines.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(lines));
    deepStrictEqual(
      lines.filter((l) => l.includes(".tmp")),
      [
        `LOG SEVERITY=notice MESSAGE="Removed ${state}/obfs4_state.json.tmp, left by an interrupted write"`,
      ],
    );
    const saved = await snapshot(state);
    deepStrictEqual(Object.keys(saved).sort(), ["obfs4_bridgeline.txt", "obfs4_state.json"]);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("an obfs4_state.json that other users may read (copied with a umask of 022) is a warning naming it and its mode, once; the bridge serves and no key is printed", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_state_" });
  try {
    const first = await serverLines(state, {}, ["-workers", "2"]);
    ok(first.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(first));
    ok(!first.some((l) => l.includes("may be read by other users")), JSON.stringify(first));
    await Deno.chmod(`${state}/obfs4_state.json`, 0o644);
    const stored = JSON.parse(await Deno.readTextFile(`${state}/obfs4_state.json`));
    const lines = await serverLines(state, {}, ["-workers", "2"]);
    ok(lines.some((l) => l.startsWith("SMETHOD obfs4 ")), JSON.stringify(lines));
    const warnings = lines.filter((l) => l.includes("may be read by other users"));
    deepStrictEqual(warnings, [
      `LOG SEVERITY=warning MESSAGE="State file ${state}/obfs4_state.json may be read by other users (mode 0644); ptkit keeps state files 0600, as they may hold keys: chmod 600 it"`,
    ]);
    for (const key of ["private-key", "drbg-seed"]) {
      ok(!lines.some((l) => l.includes(stored[key])), `${key} printed`);
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});
