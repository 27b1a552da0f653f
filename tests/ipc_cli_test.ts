// Copyright the ptkit authors. MIT license.
// The friendly CLI: help texts, and clear usage errors (exit 64) for bad input.

import { deepStrictEqual, match, ok } from "node:assert";
import { runCli } from "../ipc/cli.ts";

async function run(args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(args, {
    stdout: (t) => out += t,
    stderr: (t) => err += t,
    getEnv: () => undefined,
    process: false,
  });
  return { code, out, err };
}

Deno.test("runCli prints help for each subcommand", async () => {
  for (
    const [sub, flag] of [["server", "--listen"], ["client", "--bridge"], ["start", "--socks"]]
  ) {
    const { code, out } = await run([sub!, "--help"]);
    deepStrictEqual(code, 0);
    ok(out.includes(flag!), out);
    ok(out.startsWith(`Usage: main.ts ${sub} [flags]`));
  }
  deepStrictEqual((await run(["client", "-h"])).code, 0);
});

Deno.test("runCli refuses bad input with a clear message and exit 64", async () => {
  const table: [string[], RegExp][] = [
    [["bogus"], /Unknown subcommand "bogus"/],
    [["server", "--bogus"], /Unknown flag --bogus/],
    [["server", "--listen"], /Flag --listen needs a value/],
    [["server", "--listen", "nowhere"], /Cannot parse --listen "nowhere"/],
    [["server", "--transport", "nope"], /Unknown transport "nope": available: plain, obfs4/],
    [["server", "stray"], /Unexpected argument "stray"/],
    [["client"], /Missing --bridge/],
    [["client", "--bridge", "obfs4"], /no address/],
    [["client", "--bridge", "127.0.0.1:1"], /No transport/],
    [["client", "--bridge", "nope 127.0.0.1:1"], /Unknown transport "nope"/],
    [["client", "--bridge", "plain 127.0.0.1:1 junk"], /expected key=value/],
    [["client", "--bridge", "plain 127.0.0.1:1", "--socks", "x", "--tcp", "y"], /not both/],
    [["start", "--socks", "nowhere"], /Cannot parse --socks/],
  ];
  for (const [args, pattern] of table) {
    const { code, err } = await run(args);
    deepStrictEqual(code, 64, args.join(" "));
    match(err, pattern);
  }
});

Deno.test("runCli server reports a listen failure and exits non-zero", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = await Deno.makeTempDir();
  const { code, err } = await run([
    "server",
    "--transport",
    "plain",
    "--listen",
    `127.0.0.1:${busy.addr.port}`,
    "--state",
    state,
  ]);
  deepStrictEqual(code, 1);
  match(err, /^Error: plain /m);
  await Deno.remove(state, { recursive: true });
});
