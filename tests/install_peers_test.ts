// Copyright the ptkit authors. MIT license.
// The README's test command installs the Debian peers the tests need
// (tests/install_peers.sh, run first by `deno task test`): it says what is
// missing, installs as root, and when it cannot (not root, no apt-get, not
// Debian) says exactly what to run and fails. Run on copies of the script
// with a list that names a package that does not exist, so nothing is
// installed on the test machine.

import { deepStrictEqual, match, ok } from "node:assert";

const TESTS = new URL("./", import.meta.url).pathname;
const NOBODY = 65534;
const FAKE = "ptkit-test-no-such-package";

/** A copy of the script and a package list in a temporary checkout. */
async function checkout(list: string[]): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "ptkit_peers_" });
  await Deno.chmod(root, 0o755);
  await Deno.mkdir(`${root}/tests`, { mode: 0o755 });
  await Deno.copyFile(`${TESTS}install_peers.sh`, `${root}/tests/install_peers.sh`);
  await Deno.writeTextFile(`${root}/tests/debian_peers.txt`, `# comment\n${list.join("\n")}\n`);
  await Deno.chmod(`${root}/tests/debian_peers.txt`, 0o644);
  return root;
}

async function runScript(
  root: string,
  options: { path?: string; asNobody?: boolean } = {},
): Promise<{ code: number; output: string }> {
  const script = ["bash", `${root}/tests/install_peers.sh`];
  const [program, ...args] = options.asNobody
    ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", ...script]
    : script;
  const result = await new Deno.Command(program!, {
    args,
    clearEnv: true,
    env: { PATH: options.path ?? Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

/** A directory of links to the given commands only (a PATH without the rest). */
async function pathWith(root: string, commands: string[]): Promise<string> {
  const bin = `${root}/bin`;
  await Deno.mkdir(bin);
  for (const command of commands) {
    const which = await new Deno.Command("bash", { args: ["-c", `command -v ${command}`] })
      .output();
    ok(which.success, `${command} not found`);
    await Deno.symlink(new TextDecoder().decode(which.stdout).trim(), `${bin}/${command}`);
  }
  return bin;
}

Deno.test("install_peers.sh passes quietly when the listed peers are installed", async () => {
  const root = await checkout(["bash", "coreutils"]);
  try {
    const { code, output } = await runScript(root);
    deepStrictEqual(code, 0, output);
    match(output, /the peers are installed \(bash coreutils\)/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("install_peers.sh names what is missing and what to run when it cannot install", async () => {
  const root = await checkout(["bash", FAKE]);
  try {
    // No apt-get on PATH.
    const noApt = await runScript(root, {
      path: await pathWith(root, ["bash", "dpkg-query", "id"]),
    });
    deepStrictEqual(noApt.code, 1, noApt.output);
    match(noApt.output, new RegExp(`missing: ${FAKE}\\n`));
    match(noApt.output, /apt-get is not available/);
    // Not Debian at all.
    const bin2 = `${root}/bin2`;
    await Deno.mkdir(bin2);
    await Deno.symlink(`${root}/bin/bash`, `${bin2}/bash`);
    const noDpkg = await runScript(root, { path: bin2 });
    deepStrictEqual(noDpkg.code, 1, noDpkg.output);
    match(noDpkg.output, /not a Debian system/);
    match(noDpkg.output, new RegExp(`bash ${FAKE}`));
    // Not root (when the tests run as root, as nobody).
    if (Deno.uid() === 0) {
      const notRoot = await runScript(root, { asNobody: true });
      deepStrictEqual(notRoot.code, 1, notRoot.output);
      match(notRoot.output, new RegExp(`missing: ${FAKE}\\n`));
      match(
        notRoot.output,
        new RegExp(`sudo apt-get update && sudo apt-get install -y ${FAKE}\\n`),
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deno task test and .ci/run use the one package list", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  match(config.tasks.test, /^bash tests\/install_peers\.sh && deno install && /);
  const ci = await Deno.readTextFile(`${root}.ci/run`);
  match(ci, /\n\s*NO_COLOR=1 deno task test 2>&1/);
  ok(!/apt-get install/.test(ci), "the package list lives in tests/debian_peers.txt only");
  // Every package a test names when its binary is missing is in the list.
  const list = await Deno.readTextFile(`${root}tests/debian_peers.txt`);
  for await (const entry of Deno.readDir(`${root}tests`)) {
    if (!entry.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(`${root}tests/${entry.name}`);
    for (const [, pkg] of text.matchAll(/requireBinary\("[^"]+", "([a-z0-9.+-]+)"\)/g)) {
      ok(new RegExp(`^${pkg}$`, "m").test(list), `${pkg} (${entry.name}) is not in the list`);
    }
  }
  // The README's paragraph on the test command names every package of the
  // list (a newcomer reads it there).
  const readme = await Deno.readTextFile(`${root}README.md`);
  const paragraph = readme.match(
    /\*\*`deno task test`\*\* does everything[^]*?when\s+some\s+are\s+missing/,
  );
  ok(paragraph, "README.md has the paragraph on `deno task test`");
  for (const pkg of list.split("\n").filter((line) => line && !line.startsWith("#"))) {
    ok(paragraph[0].includes(`\`${pkg}\``), `README.md's package list lacks ${pkg}`);
  }
});
