// Copyright the ptkit authors. MIT license.
// Acceptance 4: `deno task start` prints a SOCKS5 address and a curl line
// that works, and stops cleanly on SIGINT.

import { deepStrictEqual, match, ok } from "node:assert";
import { requireBinary } from "./ipc_util.ts";
import { curl, TextProcess } from "./cli_util.ts";

/** The `start` task of deno.json (the lead sets it to exactly this). */
export const START_TASK =
  "deno run --allow-net --allow-read --allow-write --allow-env=HOME,XDG_STATE_HOME,TOR_PT_* main.ts start";

const root = new URL("..", import.meta.url).pathname;

async function startCommand(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  const task: string = config.tasks?.start ?? "";
  if (task === START_TASK) return ["deno", "task", "--cwd", root, "start"];
  // Until deno.json carries the task, run the same command line directly.
  ok(/not implemented/.test(task), `deno.json's start task differs from ${START_TASK}: ${task}`);
  return START_TASK.replace(" main.ts ", ` ${root}main.ts `).split(" ");
}

Deno.test("deno task start runs server and client, its curl line works, SIGINT stops it", async () => {
  requireBinary("curl", "curl");
  const home = await Deno.makeTempDir({ prefix: "ptkit_start_" });
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  const [program, ...args] = await startCommand();
  await using start = new TextProcess(program!, args, { HOME: home, DENO_DIR: denoDir });
  const socks = (await start.waitFor(/SOCKS5 proxy: (127\.0\.0\.1:[0-9]+)/))[1]!;
  const line =
    (await start.waitFor(/^ {2}(curl --socks5-hostname \S+ http:\/\/localhost:[0-9]+\/)$/m))[1]!;
  ok(line.includes(socks), line);
  const [, ...curlArgs] = line.split(" ");
  const result = await curl(curlArgs);
  deepStrictEqual(result.code, 0, result.err);
  match(result.out, /^Hello from ptkit: this page came through obfs4/);
  // The server refuses other loopback destinations (free mode's default policy).
  const refused = await curl(["--socks5-hostname", socks, "http://localhost:9/"]);
  deepStrictEqual(refused.code, 97, refused.err);
  match(refused.err, /\(2\)/);
  const code = await start.interrupt();
  deepStrictEqual(code, 0, `exit code ${code}; stderr: ${start.stderr}`);
  ok(!/^Error:/m.test(start.stderr), start.stderr);
  // State went to the per-user directory.
  ok((await Deno.stat(`${home}/.local/state/ptkit/start/server/obfs4_state.json`)).isFile);
  await Deno.remove(home, { recursive: true });
});
