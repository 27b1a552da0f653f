// Copyright the ptkit authors. MIT license.
// Tor's current pt-spec lines: the version report after VERSION (with a
// TRANSPORT= key first, which older arti requires on every STATUS line),
// `main.ts --version`, and a LOG line (never CMETHOD-ERROR) for a transport
// name ptkit does not have.

import { deepStrictEqual, match, ok } from "node:assert";
import { MAIN } from "./ipc_util.ts";
import { TextProcess } from "./cli_util.ts";
import { parsePtLine } from "../ipc/mod.ts";

const { version } = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
) as { version: string };

async function main(args: string[], env: Record<string, string> = {}) {
  await using pt = new TextProcess(MAIN, args, env);
  const { code } = await pt.child.status;
  await pt.done;
  return { code, stdout: pt.stdout, stderr: pt.stderr };
}

Deno.test("main.ts --version prints ptkit's version from deno.json and exits 0", async () => {
  for (const args of [["--version"], ["-version"], ["--VERSION"], ["--version", "--help"]]) {
    const { code, stdout, stderr } = await main(args);
    deepStrictEqual([code, stdout, stderr], [0, `ptkit ${version}\n`, ""], args.join(" "));
  }
  // With a list after it, -version stays PT 2.0 draft 1's -ptversion.
  const state = await Deno.makeTempDir();
  const { code, stdout } = await main(
    ["-version", "1", "-transports", "plain", "-state", state, "-exit-on-stdin-close"],
  );
  deepStrictEqual(code, 0);
  match(stdout, /^VERSION 1\n/);
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts prints its usage for -help in every spelling the flags take, and for --help before --version", async () => {
  for (const args of [["--help"], ["-HELP"], ["-he-lp"], ["-h=true"], ["--help", "--version"]]) {
    const { code, stdout, stderr } = await main(args);
    deepStrictEqual([code, stdout.startsWith("Usage: "), stderr], [0, true, ""], args.join(" "));
  }
});

Deno.test("main.ts reports STATUS TYPE=version right after VERSION, on both sides, in a form strict parsers take", async () => {
  const state = await Deno.makeTempDir();
  const runs = [
    { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_CLIENT_TRANSPORTS: "plain" },
    { TOR_PT_MANAGED_TRANSPORT_VER: "1,2", TOR_PT_CLIENT_TRANSPORTS: "plain" },
    {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_SERVER_TRANSPORTS: "plain",
      TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
      TOR_PT_ORPORT: "127.0.0.1:9",
    },
    // Even when the configuration then fails.
    { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_CLIENT_TRANSPORTS: "" },
  ];
  for (const env of runs) {
    const { stdout } = await main(["-exit-on-stdin-close"], {
      ...env,
      TOR_PT_STATE_LOCATION: state,
    });
    const lines = stdout.split("\n");
    match(lines[0]!, /^VERSION [12]$/);
    deepStrictEqual(
      lines[1],
      `STATUS TRANSPORT=ptkit TYPE=version IMPLEMENTATION=ptkit VERSION=${version}`,
      stdout,
    );
    // ptkit's own parser of PT lines (strict like arti's) takes it.
    deepStrictEqual(parsePtLine(lines[1]!), {
      type: "STATUS",
      transport: "ptkit",
      fields: { TYPE: "version", IMPLEMENTATION: "ptkit", VERSION: version },
    });
  }
  // No VERSION, no version report.
  const refused = await main([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "7",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
  });
  deepStrictEqual(refused.stdout, "VERSION-ERROR no-version\n");
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts takes TOR_PT_CLIENT_TRANSPORTS=* as an unknown name (tor never sends it), saying pt-spec has no wildcard", async () => {
  const state = await Deno.makeTempDir();
  try {
    const { code, stdout } = await main(["-exit-on-stdin-close"], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_STATE_LOCATION: state,
      TOR_PT_CLIENT_TRANSPORTS: "*",
    });
    deepStrictEqual(code, 0, stdout);
    const lines = stdout.trimEnd().split("\n");
    ok(!lines.some((l) => /METHOD-ERROR/.test(l)), stdout);
    deepStrictEqual(lines.filter((l) => /Unknown transport/.test(l)), [
      'LOG SEVERITY=warning MESSAGE="Unknown transport \\"*\\" ignored: pt-spec has no wildcard, list the transports by name (available: plain, obfs4, webtunnel, shadowsocks, ssh)"',
    ]);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts logs unknown transport names (client and server) and sends no METHOD-ERROR for them", async () => {
  const state = await Deno.makeTempDir();
  for (
    const env of [
      { TOR_PT_CLIENT_TRANSPORTS: "bogus,plain,snowflake,bogus" },
      {
        TOR_PT_SERVER_TRANSPORTS: "bogus,plain,snowflake,bogus",
        TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
        TOR_PT_ORPORT: "127.0.0.1:9",
      },
    ]
  ) {
    const { code, stdout } = await main(["-exit-on-stdin-close"], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_STATE_LOCATION: state,
      ...env,
    });
    deepStrictEqual(code, 0, stdout);
    const lines = stdout.trimEnd().split("\n");
    ok(!lines.some((l) => /METHOD-ERROR/.test(l)), stdout);
    ok(lines.some((l) => /^[CS]METHOD plain /.test(l)), stdout);
    const logged = lines.filter((l) => /Unknown transport/.test(l));
    deepStrictEqual(logged, [
      'LOG SEVERITY=warning MESSAGE="Unknown transport \\"bogus\\" ignored (available: plain, obfs4, webtunnel, shadowsocks, ssh)"',
      'LOG SEVERITY=warning MESSAGE="Unknown transport \\"snowflake\\" ignored (available: plain, obfs4, webtunnel, shadowsocks, ssh)"',
    ]);
    // Before the METHOD lines, so tor logs it next to the transport list.
    ok(
      lines.findIndex((l) => l.startsWith("LOG ")) <
        lines.findIndex((l) => /^[CS]METHOD /.test(l)),
      stdout,
    );
  }
  await Deno.remove(state, { recursive: true });
});
