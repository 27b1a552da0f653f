// Copyright the ptkit authors. MIT license.
// The public docs (deno doc of every entry point in deno.json's exports), as
// issue 21 asks of them: examples import public specifiers
// (`@ptkit/ptkit/...`), never a file by its path, and the specification is
// called by its name (PT 2.0 draft 1), not "the seed".

import { deepStrictEqual, ok } from "node:assert";

const ROOT = new URL("../", import.meta.url).pathname;

/** Every JSDoc text of the public API, with where it is. */
async function publicDocs(): Promise<{ where: string; doc: string }[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const entries = Object.values(config.exports as Record<string, string>);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", ...entries],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  deepStrictEqual(code, 0, new TextDecoder().decode(stderr));
  const json = JSON.parse(new TextDecoder().decode(stdout));
  const docs: { where: string; doc: string }[] = [];
  const walk = (value: unknown, where: string) => {
    if (Array.isArray(value)) {
      for (const item of value) walk(item, where);
    } else if (typeof value === "object" && value !== null) {
      const named = (value as { name?: unknown }).name;
      const here = typeof named === "string" ? `${where} ${named}` : where;
      for (const [key, item] of Object.entries(value)) {
        if (key === "doc" && typeof item === "string") docs.push({ where: here, doc: item });
        else walk(item, here);
      }
    }
  };
  for (const [module, node] of Object.entries(json.nodes as Record<string, unknown>)) {
    walk(node, module.slice(`file://${ROOT}`.length));
  }
  return docs;
}

Deno.test("public docs: examples import @ptkit/ptkit specifiers and the specification is named PT 2.0 draft 1, not 'the seed'", async () => {
  const docs = await publicDocs();
  ok(docs.length > 100, `only ${docs.length} doc texts found`);
  deepStrictEqual(
    docs.filter(({ doc }) => /\bfrom\s+["']\.\.?\//.test(doc)).map(({ where }) => where),
    [],
    "an example imports a file by its path",
  );
  deepStrictEqual(
    docs.filter(({ doc }) => /\bthe seed\b/i.test(doc)).map(({ where }) => where),
    [],
    "a doc says 'the seed' (write PT 2.0 draft 1)",
  );
});
