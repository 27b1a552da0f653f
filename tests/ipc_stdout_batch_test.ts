// Copyright the ptkit authors. MIT license.

import { deepStrictEqual, strictEqual } from "node:assert";

Deno.test("stdout's queue writes the lines that queued meanwhile together: each line whole, in order, none lost", async () => {
  const count = 3000;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      new URL("./ipc_stdout_batch_main.ts", import.meta.url).pathname,
      String(count),
    ],
    stdout: "piped",
    stderr: "inherit",
  });
  const { code, stdout } = await child.output();
  strictEqual(code, 0);
  const lines = new TextDecoder().decode(stdout).split("\n");
  strictEqual(lines.pop(), "");
  deepStrictEqual(lines.slice(0, 2), ["VERSION 1", "CMETHODS DONE"]);
  const expected = Array.from(
    { length: count },
    (_, i) => `STATUS TRANSPORT=obfs4 ADDRESS=192.0.2.${i % 250}:${1000 + i} CONNECT=Success`,
  );
  deepStrictEqual(lines.slice(2), expected);
});
