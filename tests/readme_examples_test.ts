// Copyright the ptkit authors. MIT license.
// Every TypeScript example in the README type-checks against the package's
// public entry points (a user copies them as they are).

import { ok } from "node:assert";

const root = new URL("../", import.meta.url);

Deno.test("every ```ts block of the README type-checks", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const blocks = [...readme.matchAll(/```ts\n([^]*?)```/g)].map((m) => m[1]!);
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
