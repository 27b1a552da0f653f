// Copyright the ptkit authors. MIT license.
// Acceptance (a): messages, exit codes, flags and variables, by spawning
// main.ts the way tor does (exec by path, stdin closed for exit).

import { deepStrictEqual, match, ok } from "node:assert";
import { childEnv, MAIN } from "./ipc_util.ts";
import { cases, checkCase, state, v1 } from "./ipc_cases.ts";

for (const c of cases) {
  Deno.test(`main.ts ${c.name}`, async () => {
    const output = await new Deno.Command(MAIN, {
      args: c.args ?? [],
      env: childEnv(c.env ?? {}),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    checkCase(c, output.code, decode(output.stdout), decode(output.stderr));
  });
}

Deno.test("main.ts creates the state directory 0700 and writes nothing else", async () => {
  const dir = `${state}/deep/er/state`;
  const output = await new Deno.Command(MAIN, {
    env: childEnv({ ...v1, TOR_PT_STATE_LOCATION: dir }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  deepStrictEqual(output.code, 0);
  deepStrictEqual((await Deno.stat(dir)).mode! & 0o777, 0o700);
  deepStrictEqual([...Deno.readDirSync(dir)], []);
});

Deno.test("main.ts is executable and its shebang grants no blanket env access", async () => {
  ok(((await Deno.stat(MAIN)).mode! & 0o111) !== 0);
  const first = (await Deno.readTextFile(MAIN)).split("\n")[0]!;
  match(first, /^#!\/usr\/bin\/env -S --block-signal=INT,TERM deno run .*--allow-env=TOR_PT_\*/);
  ok(first.length < 256, "Linux truncates shebang lines at 256 bytes");
  // Modules behind an import() load when it runs, not all before main.ts starts.
  ok(first.split(" ").includes("--unstable-lazy-dynamic-imports"), first);
});

Deno.test({
  name: "main.ts cleanup of temporary state",
  fn: async () => {
    await Deno.remove(state, { recursive: true });
  },
});
