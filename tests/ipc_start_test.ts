// Copyright the ptkit authors. MIT license.
// Acceptance 4: `deno task start` prints a SOCKS5 address and a curl line
// that works, and stops cleanly on SIGINT.

import { deepStrictEqual, match, ok } from "node:assert";
import { requireBinary } from "./ipc_util.ts";
import { curl, TextProcess } from "./cli_util.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("deno task start runs server and client, its curl line works, SIGINT stops it", async () => {
  requireBinary("curl", "curl");
  const home = await Deno.makeTempDir({ prefix: "ptkit_start_" });
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  await using start = new TextProcess("deno", ["task", "--cwd", root, "start"], {
    HOME: home,
    DENO_DIR: denoDir,
  });
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
