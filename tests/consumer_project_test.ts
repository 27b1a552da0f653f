// Copyright the ptkit authors. MIT license.
// A Deno project of its own, set up as the README's "Using the library from
// your own project" says (`links` to this checkout, Deno's default compiler
// options rather than ptkit's stricter ones), imports every entry point:
// `deno install`, `deno check` and `deno run` all succeed. ptkit's own
// `deno task check` runs with its `exactOptionalPropertyTypes` and would not
// see code that only type-checks under it.

import { deepStrictEqual, ok } from "node:assert";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

async function deno(args: string[], cwd: string): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, text: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

Deno.test("a project linking this checkout with Deno's default options installs, type-checks and runs every entry point", async () => {
  const exports = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).exports as Record<
    string,
    string
  >;
  const specifiers = Object.keys(exports).map((key) =>
    key === "." ? "@ptkit/ptkit" : `@ptkit/ptkit${key.slice(1)}`
  );
  const dir = await Deno.makeTempDir({ prefix: "ptkit-consumer-" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        links: [ROOT],
        imports: {
          "@ptkit/ptkit": "jsr:@ptkit/ptkit@^0.1.0",
          "@ptkit/ptkit/": "jsr:/@ptkit/ptkit@^0.1.0/",
        },
        nodeModulesDir: "auto",
      }),
    );
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      specifiers.map((s, i) => `import * as m${i} from "${s}";\n`).join("") +
        `console.log([${specifiers.map((_, i) => `Object.keys(m${i}).length`)}].join(" "));\n`,
    );
    const install = await deno(["install"], dir);
    deepStrictEqual(install.code, 0, install.text);
    const check = await deno(["check", "main.ts"], dir);
    deepStrictEqual(check.code, 0, check.text);
    const run = await deno(["run", "-A", "main.ts"], dir);
    deepStrictEqual(run.code, 0, run.text);
    const counts = run.text.trim().split("\n").at(-1)!.split(" ").map(Number);
    deepStrictEqual(counts.length, specifiers.length, run.text);
    ok(counts.every((n) => n > 0), run.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
