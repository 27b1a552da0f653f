// Copyright the ptkit authors. MIT license.
// Acceptance 2 and bad input: every server variable and flag of main.ts,
// by spawning it the way tor does (stdin closed, so it exits after
// SMETHODS DONE).

import { deepStrictEqual, match, ok, strictEqual } from "node:assert";
import { childEnv, MAIN } from "./ipc_util.ts";
import { protocolLines } from "./ipc_cases.ts";
import { listenOn } from "../net/_listen.ts";
import { describe } from "../ipc/managed/_log.ts";

interface Case {
  name: string;
  args?: string[];
  env?: Record<string, string>;
  code: number;
  /** Expected stdout lines (LOG lines left out). */
  stdout: (string | RegExp)[];
  /** Regexps stderr must match. */
  stderr?: RegExp[];
}

const state = await Deno.makeTempDir({ prefix: "ptkit_srvmsg_" });
const sv1 = {
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_SERVER_TRANSPORTS: "plain",
  TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
  TOR_PT_ORPORT: "127.0.0.1:9",
  TOR_PT_STATE_LOCATION: `${state}/s`,
  TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
};
const PLAIN = /^SMETHOD plain 127\.0\.0\.1:[1-9][0-9]*$/;
const OBFS4 = (iat: number) =>
  new RegExp(
    `^SMETHOD obfs4 127\\.0\\.0\\.1:[1-9][0-9]* ARGS:cert=[A-Za-z0-9+/]{70},iat-mode=${iat}$`,
  );
const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const envError = (pattern: RegExp) => ["VERSION 1", pattern];

const cases: Case[] = [
  {
    name: "plain with tor's variables",
    env: sv1,
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "STUN mode with the embedded TURN server prints generated credentials in the ARGS",
    args: ["-mode", "STUN", "-target", "turn"],
    env: { ...sv1, TOR_PT_SERVER_TRANSPORTS: "obfs4", TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0" },
    code: 0,
    stdout: [
      "VERSION 1",
      /^SMETHOD obfs4 127\.0\.0\.1:[0-9]+ ARGS:cert=[^,]+,iat-mode=0,turn-password=[0-9a-f]{24},turn-realm=ptkit,turn-user=ptkit$/,
      "SMETHODS DONE",
    ],
  },
  {
    name: "transparent-UDP reports its address like any SMETHOD",
    args: ["-mode", "transparent-UDP", "-target", "127.0.0.1:9", "-udpidletimeout", "30"],
    env: sv1,
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "obfs4 reports its cert and iat-mode in sorted ARGS",
    env: { ...sv1, TOR_PT_SERVER_TRANSPORTS: "obfs4", TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0" },
    code: 0,
    stdout: ["VERSION 1", OBFS4(0), "SMETHODS DONE"],
  },
  {
    name: "TOR_PT_SERVER_TRANSPORT_OPTIONS reach the transport",
    env: {
      ...sv1,
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
      TOR_PT_SERVER_TRANSPORT_OPTIONS: "obfs4:iat-mode=1",
      TOR_PT_STATE_LOCATION: `${state}/iat1`,
    },
    code: 0,
    stdout: ["VERSION 1", OBFS4(1), "SMETHODS DONE"],
  },
  {
    name: "unknown transports are skipped, order follows the list",
    env: {
      ...sv1,
      TOR_PT_SERVER_TRANSPORTS: "bogus,obfs4,plain",
      TOR_PT_SERVER_BINDADDR: "bogus-127.0.0.1:0,obfs4-127.0.0.1:0,plain-127.0.0.1:0",
    },
    code: 0,
    stdout: ["VERSION 1", OBFS4(0), PLAIN, "SMETHODS DONE"],
  },
  {
    name: "a transport with no bindaddr entry gets a free loopback port",
    env: { ...sv1, TOR_PT_SERVER_TRANSPORTS: "plain,obfs4" },
    code: 0,
    stdout: ["VERSION 1", PLAIN, OBFS4(0), "SMETHODS DONE"],
  },
  {
    name: "no TOR_PT_SERVER_BINDADDR at all",
    env: (() => {
      const { TOR_PT_SERVER_BINDADDR: _, ...rest } = sv1;
      return rest;
    })(),
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "IPv6 bindaddr in brackets",
    env: { ...sv1, TOR_PT_SERVER_BINDADDR: "plain-[::1]:0" },
    code: 0,
    stdout: ["VERSION 1", /^SMETHOD plain \[::1\]:[1-9][0-9]*$/, "SMETHODS DONE"],
  },
  {
    name: "a busy port gives SMETHOD-ERROR and the others still start",
    env: {
      ...sv1,
      TOR_PT_SERVER_TRANSPORTS: "plain,obfs4",
      TOR_PT_SERVER_BINDADDR: `plain-127.0.0.1:${busy.addr.port},obfs4-127.0.0.1:0`,
    },
    code: 0,
    stdout: ["VERSION 1", /^SMETHOD-ERROR plain /, OBFS4(0), "SMETHODS DONE"],
  },
  {
    name: "a transport that rejects its options gives SMETHOD-ERROR",
    env: {
      ...sv1,
      TOR_PT_SERVER_TRANSPORTS: "obfs4",
      TOR_PT_SERVER_TRANSPORT_OPTIONS: "obfs4:iat-mode=9",
    },
    code: 0,
    stdout: ["VERSION 1", /^SMETHOD-ERROR obfs4 .*iat-mode/, "SMETHODS DONE"],
  },
  {
    name: "an empty TOR_PT_EXTENDED_SERVER_PORT means the ORPort",
    env: { ...sv1, TOR_PT_EXTENDED_SERVER_PORT: "" },
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "outbound bind addresses are accepted",
    env: {
      ...sv1,
      TOR_PT_OUTBOUND_BIND_ADDRESS_V4: "127.0.0.2",
      TOR_PT_OUTBOUND_BIND_ADDRESS_V6: "[::1]",
    },
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "flags only: version 2",
    args: [
      "-server",
      "-transports",
      "plain",
      "-bindaddr",
      "plain-127.0.0.1:0",
      "-orport",
      "127.0.0.1:9",
      "-state",
      `${state}/flags`,
      "-exit-on-stdin-close",
    ],
    code: 0,
    stdout: ["VERSION 2", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "flags override variables (-extorport with -authcookie, -target socks)",
    args: [
      "-extorport",
      "127.0.0.1:9",
      "-authcookie",
      "/nonexistent",
      "-bindaddr",
      "plain-127.0.0.1:0",
    ],
    env: { ...sv1, TOR_PT_ORPORT: "" },
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "-mode socks5 on the server (free mode)",
    args: ["-mode", "socks5", "-allow", "loopback,private"],
    env: sv1,
    code: 0,
    stdout: ["VERSION 1", PLAIN, "SMETHODS DONE"],
  },
  {
    name: "version 2 sends error lines to stderr",
    env: { ...sv1, TOR_PT_MANAGED_TRANSPORT_VER: "2", TOR_PT_SERVER_BINDADDR: "plain-nowhere:1" },
    code: 64,
    stdout: ["VERSION 2"],
    stderr: [
      /^ENV-ERROR Cannot parse TOR_PT_SERVER_BINDADDR item "plain-nowhere:1": not an IP address$/m,
    ],
  },
  // Bad input: bindaddr.
  ...[
    ["plain", /expected name-addr:port/],
    ["plain-", /invalid host|expected host:port/],
    ["-127.0.0.1:1", /expected name-addr:port/],
    ["plain-localhost:80", /not an IP address/],
    ["plain-127.0.0.1", /expected host:port/],
    ["plain-127.0.0.1:99999", /port/],
    ["plain-127.0.0.1:-1", /invalid port/],
    ["plain-[::1:80", /expected \[ipv6\]:port/],
    ["plain-127.0.0.1:1,plain-127.0.0.1:2", /'plain' given twice/],
    ["pl ain-127.0.0.1:1", /invalid transport name/],
  ].map(([text, pattern]) => ({
    name: `bindaddr ${JSON.stringify(text)} is an ENV-ERROR`,
    env: { ...sv1, TOR_PT_SERVER_BINDADDR: text as string },
    code: 64,
    stdout: envError(new RegExp(`^ENV-ERROR .*${(pattern as RegExp).source}`)),
  })),
  // Bad input: options.
  ...[
    ["plain", /has no 'name:'/],
    [":k=v", /has no 'name:'/],
    ["plain:novalue", /has no '='/],
    ["plain:=v", /empty key/],
    ["plain:k=v\\", /trailing backslash|has no/],
    ['{"plain":', /Cannot parse transport options/],
  ].map(([text, pattern]) => ({
    name: `options ${JSON.stringify(text)} is an ENV-ERROR`,
    env: { ...sv1, TOR_PT_SERVER_TRANSPORT_OPTIONS: text as string },
    code: 64,
    stdout: envError(new RegExp(`^ENV-ERROR .*${(pattern as RegExp).source}`)),
  })),
  // Bad input: ORPort, ExtORPort and the rest.
  ...[
    [{ TOR_PT_ORPORT: "nowhere" }, /Cannot parse TOR_PT_ORPORT/],
    [{ TOR_PT_ORPORT: "127.0.0.1" }, /Cannot parse TOR_PT_ORPORT/],
    // The range said is the range taken (it said 0-65535, then refused 0).
    [
      { TOR_PT_ORPORT: "127.0.0.1:0" },
      /Invalid port 0 for TOR_PT_ORPORT .*: must be an integer in 1-65535$/,
    ],
    [{ TOR_PT_ORPORT: "127.0.0.1:70000" }, /Invalid port 70000 .*: must be an integer in 1-65535$/],
    [{ TOR_PT_ORPORT: "" }, /No target/],
    [{ TOR_PT_EXTENDED_SERVER_PORT: "127.0.0.1:1" }, /needs TOR_PT_AUTH_COOKIE_FILE/],
    [
      { TOR_PT_EXTENDED_SERVER_PORT: "[::1", TOR_PT_AUTH_COOKIE_FILE: "/x" },
      /Cannot parse TOR_PT_EXTENDED_SERVER_PORT/,
    ],
    [{ TOR_PT_OUTBOUND_BIND_ADDRESS_V4: "::1" }, /not an IPv4 address/],
    [{ TOR_PT_OUTBOUND_BIND_ADDRESS_V6: "127.0.0.1" }, /not an IPv6 address/],
    [{ TOR_PT_CLIENT_TRANSPORTS: "plain" }, /Both TOR_PT_CLIENT_TRANSPORTS and TOR_PT_SERVER/],
    [{ TOR_PT_SERVER_TRANSPORTS: "" }, /No transports requested/],
  ].map(([env, pattern]) => ({
    name: `${JSON.stringify(env)} is an ENV-ERROR`,
    env: { ...sv1, ...(env as Record<string, string>) },
    code: 64,
    stdout: envError(pattern as RegExp),
  })),
  ...[
    [["-allow", "everything", "-target", "socks"], /Cannot parse allowed destination "everything"/],
    [["-allow", "loopback"], /-allow needs -target socks/],
    [["-mode", "socks5", "-target", "127.0.0.1:1"], /takes no -target address/],
    [["-mode", "datagrams"], /Invalid -mode "datagrams"/],
    [["-mode", "transparent-UDP"], /-mode transparent-UDP needs -target HOST:PORT/],
    [["-mode", "STUN"], /-mode STUN needs -target: a TURN server's HOST:PORT, or turn/],
    [
      ["-mode", "STUN", "-target", "turn", "-turnuser", "nocolon"],
      /Invalid -turnuser: expected USER:PASSWORD/,
    ],
    [["-mode", "STUN", "-target", "turn", "-allow", "public"], /Invalid -allow "public"/],
    // Before: 'Cannot parse -target "turn": expected host:port', though README gives -target turn.
    [["-mode", "transparent-UDP", "-target", "turn"], /-target turn needs -mode STUN/],
    [["-target", "turn"], /-target turn needs -mode STUN/],
    // An empty realm is refused at start, naming the flag (long ones: below).
    [["-mode", "STUN", "-target", "turn", "-turnrealm", ""], /Invalid -turnrealm: it is empty/],
    [
      ["-mode", "STUN", "-target", "127.0.0.1:3478", "-turnrealm", "r"],
      /-turnrealm needs -mode STUN -target turn/,
    ],
    [
      ["-mode", "transparent-UDP", "-target", "127.0.0.1:9", "-udpidletimeout", "0"],
      /Invalid -udpidletimeout "0"/,
    ],
    [
      ["-mode", "transparent-UDP", "-target", "127.0.0.1:9", "-udpidletimeout", "2147484"],
      /Invalid -udpidletimeout "2147484": at most 2147483 seconds/,
    ],
    [["-udpidletimeout", "5"], /-udpidletimeout needs -mode transparent-UDP or STUN/],
    [
      ["-mode", "transparent-UDP", "-target", "127.0.0.1:9", "-udpqueue", "1"],
      /-udpqueue is a client flag/,
    ],
    [["-target", "nowhere"], /Cannot parse -target "nowhere"/],
    [["-free"], /-free is a client flag/],
    [["-proxylistenaddr", "127.0.0.1:1"], /-proxylistenaddr is a client flag/],
    // Given to a server, the upstream proxy was silently ignored (its
    // connections went out directly); the other side's flags are refused.
    [["-proxy", "socks5://127.0.0.1:9"], /-proxy is a client flag/],
  ].map(([args, pattern]) => ({
    name: `${(args as string[]).join(" ")} is an ENV-ERROR`,
    args: args as string[],
    env: sv1,
    code: 64,
    stdout: envError(pattern as RegExp),
  })),
];

for (const c of cases) {
  Deno.test(`main.ts server: ${c.name}`, async () => {
    const output = await new Deno.Command(MAIN, {
      args: c.args ?? [],
      env: childEnv(c.env ?? {}),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    const context = `stdout: ${stdout}\nstderr: ${stderr}`;
    const lines = protocolLines(stdout, context);
    deepStrictEqual(output.code, c.code, context);
    deepStrictEqual(lines.length, c.stdout.length, context);
    c.stdout.forEach((expected, i) => {
      if (typeof expected === "string") deepStrictEqual(lines[i], expected, context);
      else match(lines[i] ?? "", expected, context);
    });
    for (const pattern of c.stderr ?? []) match(stderr, pattern, context);
  });
}

Deno.test("main.ts server: cleanup", async () => {
  busy.close();
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts server: a -turnrealm or -turnuser no TURN client can send back (RFC 8489: REALM under 128 characters, USERNAME under 509 bytes) is an ENV-ERROR naming the flag, never the value", async () => {
  const run = async (flag: string, value: string) => {
    const output = await new Deno.Command(MAIN, {
      args: ["-mode", "STUN", "-target", "turn", flag, value],
      env: childEnv(sv1),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
  };
  const realm = await run("-turnrealm", "é".repeat(128));
  strictEqual(realm.code, 64, realm.stdout);
  match(
    realm.stdout,
    /^ENV-ERROR Invalid -turnrealm: 128 characters, RFC 8489 allows at most 127$/m,
  );
  ok(!realm.stdout.includes("é"), realm.stdout);
  const user = await run("-turnuser", `${"u".repeat(509)}:S3CRET`);
  strictEqual(user.code, 64, user.stdout);
  match(
    user.stdout,
    /^ENV-ERROR Invalid -turnuser: a user name of 509 bytes, RFC 8489 allows at most 508$/m,
  );
  ok(!user.stdout.includes("uuu") && !user.stdout.includes("S3CRET"), user.stdout);
});

Deno.test("A listen refused on a port below 1024 (tor's user lacks the capability) says what to do, in the SMETHOD-ERROR's text too; a higher port's refusal does not", () => {
  // Found as a bridge operator following README ('ServerTransportListenAddr
  // obfs4 0.0.0.0:443') with the PT run as another user: tor logged only
  // 'Cannot listen on 0.0.0.0:443: Permission denied (os error 13)', and the
  // README's `setcap ... deno` on deno's usual path (a link: npm's global
  // install) fails with 'Invalid file'.
  const refused = () => {
    throw new Deno.errors.PermissionDenied("Permission denied (os error 13)");
  };
  const failure = (port: number): unknown => {
    try {
      listenOn({ hostname: "0.0.0.0", port }, refused);
    } catch (error) {
      return error;
    }
    throw new Error("listenOn did not throw");
  };
  const low = failure(443);
  ok(low instanceof Deno.errors.PermissionDenied, String(low));
  const hint =
    "; a port below 1024 needs the capability to bind it (CAP_NET_BIND_SERVICE: setcap cap_net_bind_service=+ep on the deno executable itself, not a link to it: readlink -f $(command -v deno)), or take a port from 1024";
  strictEqual(low.message, `Cannot listen on 0.0.0.0:443: Permission denied (os error 13)${hint}`);
  // describe() makes the SMETHOD-ERROR and LOG text from the parts.
  strictEqual(
    describe(low),
    `Cannot listen on 0.0.0.0:443: Permission denied (os error 13)${hint}`,
  );
  strictEqual(
    describe(failure(8443)),
    "Cannot listen on 0.0.0.0:8443: Permission denied (os error 13)",
  );
});
