// Copyright the ptkit authors. MIT license.
// The public docs (deno doc of every entry point in deno.json's exports), as
// issue 21 asks of them: examples import public specifiers
// (`@ptkit/ptkit/...`), never a file by its path, and the specification is
// called by its name (PT 2.0 draft 1), not "the seed"; and the public API
// stays small: at most 120 names over all entry points (issue 21, point 3).

import { deepStrictEqual, ok, rejects } from "node:assert";

const ROOT = new URL("../", import.meta.url).pathname;

/** The public API as deno doc sees it: the entry points of deno.json's exports. */
interface DocJson {
  readonly nodes: Record<string, { readonly symbols: readonly { readonly name: string }[] }>;
}

/** `deno doc --json` over every entry point of deno.json's exports. */
async function docJson(): Promise<DocJson> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const entries = Object.values(config.exports as Record<string, string>);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", ...entries],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  deepStrictEqual(code, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout));
}

/** Every JSDoc text of the public API, with where it is. */
function publicDocs(json: DocJson): { where: string; doc: string }[] {
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
  const docs = publicDocs(await docJson());
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

Deno.test("public API: at most 120 distinct names over the entry points of deno.json's exports (issue 21, point 3), and README's count is theirs", async () => {
  const json = await docJson();
  const names = new Set<string>();
  for (const node of Object.values(json.nodes)) {
    for (const symbol of node.symbols) names.add(symbol.name);
  }
  ok(names.size > 50, `only ${names.size} names found: deno doc --json changed its shape?`);
  ok(
    names.size <= 120,
    `${names.size} public names, over issue 21's limit of 120: write an option or result shape inline where it is used, or keep the file internal (_*.ts) instead of exporting it. Names: ${
      [...names].sort().join(", ")
    }`,
  );
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const said = readme.match(/(\d+) names in all/);
  ok(said !== null, "README no longer says how many names there are ('N names in all')");
  deepStrictEqual(Number(said[1]), names.size, "README's 'N names in all' is not the count");
});

/** The `@throws` tags of an exported function, as `{ type, doc }`. */
function throwsTags(json: DocJson, name: string): { type: string; doc: string }[] {
  const tags: { type: string; doc: string }[] = [];
  for (const node of Object.values(json.nodes)) {
    for (
      const symbol of node.symbols as unknown as readonly {
        name: string;
        declarations: readonly {
          jsDoc?: { tags?: readonly { kind: string; tsType?: { repr: string }; doc?: string }[] };
        }[];
      }[]
    ) {
      if (symbol.name !== name) continue;
      for (const declaration of symbol.declarations) {
        for (const tag of declaration.jsDoc?.tags ?? []) {
          if (tag.kind === "throws") {
            tags.push({ type: tag.tsType?.repr ?? "", doc: tag.doc ?? "" });
          }
        }
      }
    }
  }
  return tags;
}

Deno.test("public docs: createConnector, listen, proxy, serveUdpClient and serveUdpServer document the RangeError a transport's configuration throws (obfs4's iat-mode 3), as they pass it on", async () => {
  const { createConnector } = await import("../client.ts");
  const { listen, proxy } = await import("../server.ts");
  const { serveUdpClient, serveUdpServer } = await import("../udp/mod.ts");
  const { obfs4 } = await import("../transports/obfs4/mod.ts");
  const cert = "p5Fy0zBBNW2IhjKzdh0WQmDtgrU1JJE4nWhnkTGmeP4yETOjFLXpAJfGXAHvOmWN7FNmIw";
  const here = { hostname: "127.0.0.1", port: 0 };
  const target = { hostname: "127.0.0.1", port: 9 };
  // What each does with a configuration out of the transport's range: a RangeError.
  const calls: Record<string, () => Promise<unknown>> = {
    createConnector: () => createConnector(obfs4, { cert, "iat-mode": "3" }),
    listen: () => listen(obfs4, { "iat-mode": "3" }, here),
    proxy: () => proxy(obfs4, { "iat-mode": "3" }, { ...here, target }),
    serveUdpClient: () =>
      serveUdpClient({
        transport: obfs4,
        config: { cert, "iat-mode": "3" },
        framing: "length",
        server: target,
        ...here,
      }),
    serveUdpServer: () =>
      serveUdpServer({
        transport: obfs4,
        config: { "iat-mode": "3" },
        framing: "length",
        target,
        ...here,
      }),
  };
  const json = await docJson();
  for (const [name, call] of Object.entries(calls)) {
    await rejects(call, RangeError, `${name} with iat-mode 3`);
    const tags = throwsTags(json, name);
    ok(tags.length > 0, `${name}: no @throws tags found: deno doc --json changed its shape?`);
    ok(
      tags.some(({ type, doc }) => type === "RangeError" && /configuration/.test(doc)),
      `${name} does not document the RangeError a transport's configuration throws: ${
        JSON.stringify(tags)
      }`,
    );
  }
});

Deno.test("public docs: launchClient and launchServer document the RangeError of an option out of range (startTimeout -1) and the abort of their signal", async () => {
  const { launchClient, launchServer } = await import("../ipc/adapter/mod.ts");
  const base = { path: "obfs4proxy", transports: ["obfs4"] };
  const calls: Record<string, (options: Record<string, unknown>) => Promise<unknown>> = {
    launchClient: (options) => launchClient({ ...base, ...options }),
    launchServer: (options) => launchServer({ ...base, orport: "127.0.0.1:9", ...options }),
  };
  const json = await docJson();
  for (const [name, call] of Object.entries(calls)) {
    // Both are refused before a PT is started.
    await rejects(call({ startTimeout: -1 }), RangeError, `${name} with startTimeout -1`);
    await rejects(call({ restart: { maxAttempts: -1 } }), RangeError, `${name} maxAttempts -1`);
    const reason = new Error("given up");
    await rejects(call({ signal: AbortSignal.abort(reason) }), (error) => error === reason);
    const tags = throwsTags(json, name);
    ok(tags.length > 0, `${name}: no @throws tags found: deno doc --json changed its shape?`);
    ok(
      tags.some(({ type, doc }) => type === "RangeError" && /startTimeout/.test(doc)),
      `${name} does not document the RangeError of startTimeout: ${JSON.stringify(tags)}`,
    );
    ok(
      tags.some(({ doc }) => /signal/.test(doc)),
      `${name} does not document that it rejects with its signal's reason: ${JSON.stringify(tags)}`,
    );
  }
});
