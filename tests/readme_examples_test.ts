// Copyright the ptkit authors. MIT license.
// Every TypeScript example in the README type-checks against the package's
// public entry points (a user copies them as they are).

import { ok } from "node:assert";

const root = new URL("../", import.meta.url);

Deno.test("every ```ts block of the README type-checks", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  // `ts ignore` blocks too: Deno's doc tests skip them, this checks them.
  const blocks = [...readme.matchAll(/```ts(?: ignore)?\n([^]*?)```/g)].map((m) => m[1]!);
  ok(blocks.length >= 3, `only ${blocks.length} ts blocks found`);
  const failures: string[] = [];
  for (const [i, block] of blocks.entries()) {
    // Inside the repository, so that deno.json maps @ptkit/ptkit/... here.
    const file = new URL(`_readme_example_${i}_${crypto.randomUUID()}.ts`, root);
    await Deno.writeTextFile(file, block);
    try {
      const { code, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--quiet", file.pathname],
        cwd: root.pathname,
        stdout: "null",
        stderr: "piped",
      }).output();
      if (code !== 0) {
        failures.push(`block ${i + 1}:\n${block}\n${new TextDecoder().decode(stderr)}`);
      }
    } finally {
      await Deno.remove(file);
    }
  }
  ok(failures.length === 0, failures.join("\n\n"));
});

Deno.test("deno test --doc README.md passes: a block that needs what a test run lacks (a PT binary, a bridge) is marked ts ignore, and still type-checked above", async () => {
  // The adapter's example dials 192.0.2.1 through obfs4proxy with cert=...:
  // a user who ran the README's examples as Deno runs them got
  // 'SocksReplyError: PT SOCKS5 port failed the request'.
  // Shadowsocks' default port is taken where shadowsocks-libev runs (Debian's
  // package starts ss-server on 127.0.0.1:8388): the Shadowsocks example
  // listened there and failed with AddrInUse. It is held here (when it is
  // free; when not, it is taken already), so an example on a fixed port fails.
  let held: Deno.Listener | undefined;
  try {
    held = Deno.listen({ hostname: "127.0.0.1", port: 8388 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  }
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--doc", "--allow-all", "README.md"],
    cwd: root.pathname,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => held?.close());
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  ok(code === 0, text);
  ok(/ok \| [1-9][0-9]* passed/.test(text), text);
});
