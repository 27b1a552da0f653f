// Copyright the ptkit authors. MIT license.
// The table of managed-proxy cases (acceptance (a) of the client IPC issue):
// messages, exit codes, flags and variables. Run against main.ts as a
// process (ipc_messages_test.ts) and in a Worker (adapter_in_worker_test.ts).

import { deepStrictEqual, match } from "node:assert";
import { assertProtocolOnly, MAIN } from "./ipc_util.ts";

export interface Case {
  name: string;
  args?: string[];
  env?: Record<string, string>;
  code: number;
  /** Expected stdout lines; `CMETHOD x socks5 *` matches any address. */
  stdout: (string | RegExp)[];
  /** Regexps stderr must match (in any order), or exact "" for empty. */
  stderr?: RegExp[] | "";
}

export const state = await Deno.makeTempDir({ prefix: "ptkit_ipc_" });
const base = { TOR_PT_STATE_LOCATION: `${state}/s`, TOR_PT_EXIT_ON_STDIN_CLOSE: "1" };
export const v1 = { ...base, TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_CLIENT_TRANSPORTS: "plain" };
const v2 = { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "2" };
const SOCKS = /^CMETHOD plain socks5 127\.0\.0\.1:[0-9]+$/;
const freePort = (() => {
  using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return l.addr.port;
})();

export const cases: Case[] = [
  { name: "no parent prints usage", code: 64, stdout: [], stderr: [/Usage: /] },
  { name: "--help prints usage on stdout", args: ["--help"], code: 0, stdout: [/^Usage: /] },
  { name: "-h prints usage", args: ["-h"], code: 0, stdout: [/^Usage: /] },
  {
    name: "version 1 starts plain",
    env: v1,
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    name: "any well-formed list picks 2",
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "1,1a,2,this_is_a_valid_version" },
    code: 0,
    stdout: ["VERSION 2", SOCKS, "CMETHODS DONE"],
  },
  {
    name: "a list with 1 but not 2 picks 1",
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "0,1,3" },
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
  },
  {
    name: "no compatible version",
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "3,4" },
    code: 78,
    stdout: ["VERSION-ERROR no-version"],
  },
  {
    name: "a trailing comma in the version list is ignored, as goptlib ignores it",
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "1," },
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    // torrc lines written for obfsproxy, still in guides for obfs4proxy:
    // `ClientTransportPlugin obfs4 exec /usr/bin/obfs4proxy managed`.
    name:
      "obfsproxy's 'managed' word before the flags is skipped, as obfs4proxy and lyrebird skip it",
    args: ["managed", "-logLevel", "error"],
    env: v1,
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    // Under tor a stray word comes from the torrc exec line; tor logs stderr
    // at info only, the ENV-ERROR's text as an error (its LOG line).
    name: "a stray word where tor starts it is an ENV-ERROR on stdout, as a stray flag is",
    args: ["bogus", "-logLevel", "error"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Unexpected argument 1/],
  },
  {
    name: "'managed' anywhere but first is an unexpected argument",
    args: ["-logLevel", "error", "managed"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Unexpected argument 3/],
  },
  {
    name: "malformed version list",
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "1, 2" },
    code: 78,
    stdout: [/^VERSION-ERROR no-version/],
  },
  {
    name: "empty version list",
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "" },
    code: 78,
    stdout: [/^VERSION-ERROR no-version/],
  },
  {
    name: "parent variables without a version",
    env: { ...base, TOR_PT_CLIENT_TRANSPORTS: "plain" },
    code: 78,
    stdout: ["VERSION-ERROR no-version"],
  },
  {
    name: "flags with a parent's variable but no version name the variable",
    args: ["-client", "-transports", "plain"],
    env: { TOR_PT_STATE_LOCATION: `${state}/s` },
    code: 78,
    stdout: [
      "VERSION-ERROR no-version (TOR_PT_MANAGED_TRANSPORT_VER is not set, but TOR_PT_STATE_LOCATION is: give -ptversion, or unset it)",
    ],
  },
  {
    name: "-ptversion overrides the variable",
    args: ["-ptversion", "1"],
    env: { ...v1, TOR_PT_MANAGED_TRANSPORT_VER: "3" },
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
  },
  {
    name: "--version=2 overrides the variable",
    args: ["--version=2"],
    env: v1,
    code: 0,
    stdout: ["VERSION 2", SOCKS, "CMETHODS DONE"],
  },
  {
    name: "-transports overrides the variable",
    args: ["-transports", "plain"],
    env: { ...v1, TOR_PT_CLIENT_TRANSPORTS: "bogus" },
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
  },
  {
    name: "unknown transports are ignored silently",
    env: { ...v1, TOR_PT_CLIENT_TRANSPORTS: "bogus,plain,obfs9" },
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    name: "only unknown transports still ends with CMETHODS DONE",
    env: { ...v1, TOR_PT_CLIENT_TRANSPORTS: "bogus" },
    code: 0,
    stdout: ["VERSION 1", "CMETHODS DONE"],
  },
  {
    name: "no transports is an ENV-ERROR on stdout with version 1",
    env: { ...base, TOR_PT_MANAGED_TRANSPORT_VER: "1" },
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR No transports requested/],
  },
  {
    name: "no transports is an ENV-ERROR on stderr with version 2",
    env: { ...base, TOR_PT_MANAGED_TRANSPORT_VER: "2" },
    code: 64,
    stdout: ["VERSION 2"],
    stderr: [/^ENV-ERROR No transports requested/m],
  },
  {
    name: "client and server transports both set",
    env: { ...v1, TOR_PT_SERVER_TRANSPORTS: "plain" },
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Both TOR_PT_CLIENT_TRANSPORTS and TOR_PT_SERVER/],
  },
  {
    // lyrebird and obfs4proxy take an empty list for none.
    name: "client transports beside an empty server list start the client",
    env: { ...v1, TOR_PT_SERVER_TRANSPORTS: "" },
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    name: "-server with only client variables has no server transports",
    args: ["-server"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR No transports requested \(TOR_PT_SERVER_TRANSPORTS/],
  },
  {
    name: "unknown flag",
    args: ["-bogus", "x"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Unknown flag -bogus/],
  },
  {
    name: "flag without its value",
    args: ["-state"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", "ENV-ERROR Flag -state needs a value"],
  },
  {
    name:
      "obfs4proxy's and lyrebird's logging flags are accepted: -enableLogging -logLevel WARN -unsafeLogging",
    args: ["-enableLogging", "-logLevel", "WARN", "-unsafeLogging"],
    env: v1,
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    name:
      "obfs4proxy's and lyrebird's -obfs4-distBias is refused, saying what it is and what to do",
    args: ["-enableLogging", "-obfs4-distBias"],
    env: v1,
    code: 64,
    stdout: [
      "VERSION 1",
      /^ENV-ERROR Flag -obfs4-distBias \(obfs4proxy's and lyrebird's biased obfs4 packet-length tables\) is not supported: remove it from the torrc exec line$/,
    ],
  },
  {
    name: "-log-level and -loglevel are -logLevel, INFO is info",
    args: ["-log-level", "INFO"],
    env: v1,
    code: 0,
    stdout: ["VERSION 1", SOCKS, "CMETHODS DONE"],
    stderr: "",
  },
  {
    name: "bad -logLevel",
    args: ["-logLevel", "loud"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Invalid -logLevel "loud": expected one of/],
  },
  {
    name: "bad -mode",
    args: ["-mode", "udp"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Invalid -mode "udp"/],
  },
  {
    name: "transparent-TCP without -target",
    args: ["-mode", "transparent-TCP"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", "ENV-ERROR -mode transparent-TCP needs -target"],
  },
  {
    name: "-target without transparent-TCP",
    args: ["-target", "127.0.0.1:1"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", "ENV-ERROR -target needs -mode transparent-TCP (or -free)"],
  },
  {
    name: "bad -proxylistenaddr",
    args: ["-proxylistenaddr", "nowhere"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Cannot parse -proxylistenaddr "nowhere"/],
  },
  {
    name: "malformed -options",
    args: ["-options", "plain:novalue"],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Cannot parse transport options: pair 1 has no '='$/],
  },
  {
    name: "state location that is a file",
    env: { ...v1, TOR_PT_STATE_LOCATION: MAIN },
    code: 64,
    stdout: ["VERSION 1", /^ENV-ERROR Cannot use state directory "[^"]+": /],
  },
  {
    name: "-proxylistenaddr picks the port",
    args: ["-proxylistenaddr", `127.0.0.1:${freePort}`],
    env: v1,
    code: 0,
    stdout: ["VERSION 1", `CMETHOD plain socks5 127.0.0.1:${freePort}`, "CMETHODS DONE"],
  },
  {
    name: "good proxy: PROXY DONE before any CMETHOD",
    env: { ...v1, TOR_PT_PROXY: "socks5://tor:test1234@127.0.0.1:9" },
    code: 0,
    stdout: ["VERSION 1", "PROXY DONE", SOCKS, "CMETHODS DONE"],
  },
  {
    name: "-proxy overrides the variable",
    args: ["-proxy", "http://127.0.0.1:9"],
    env: { ...v1, TOR_PT_PROXY: "gopher://127.0.0.1:9" },
    code: 0,
    stdout: ["VERSION 1", "PROXY DONE", SOCKS, "CMETHODS DONE"],
  },
  ...[
    "socks5://proxy.example:1080",
    "socks4a://u:p@127.0.0.1:1080",
    "ftp://127.0.0.1:21",
    "socks5://127.0.0.1",
    "socks5://127.0.0.1:99999",
    "socks5://u@127.0.0.1:1080",
    "http://127.0.0.1:8080/path",
    `socks5://${"u".repeat(256)}:p@127.0.0.1:1080`,
  ].map((proxy): Case => ({
    name: `bad proxy ${proxy.slice(0, 40)} is a PROXY-ERROR`,
    env: { ...v1, TOR_PT_PROXY: proxy },
    code: 69,
    stdout: ["VERSION 1", /^PROXY-ERROR /],
  })),
  {
    name: "bad proxy with version 2: PROXY-ERROR on stderr",
    env: { ...v2, TOR_PT_PROXY: "socks5://proxy.example:1080" },
    code: 69,
    stdout: ["VERSION 2"],
    stderr: [/^PROXY-ERROR /m],
  },
  {
    name: "transport that rejects its options: CMETHOD-ERROR on stdout with version 1",
    args: [
      ...["-transports", "obfs4", "-mode", "transparent-TCP", "-target", "127.0.0.1:9"],
      ...["-options", "obfs4:cert=bad;obfs4:iat-mode=0;obfs4:color=blue"],
    ],
    env: v1,
    code: 0,
    stdout: [
      "VERSION 1",
      /^CMETHOD-ERROR obfs4 Cannot configure transport 'obfs4': 'cert' has \d+ characters: expected 70 of base64/,
      "CMETHODS DONE",
    ],
  },
  {
    name: "transport that rejects its options: CMETHOD-ERROR on stderr with version 2",
    args: [
      ...["-transports", "obfs4", "-mode", "transparent-TCP", "-target", "127.0.0.1:9"],
      ...["-options", '{"obfs4":{"iat-mode":"0"}}'],
    ],
    env: v2,
    code: 0,
    stdout: ["VERSION 2", "CMETHODS DONE"],
    stderr: [/^CMETHOD-ERROR obfs4 Cannot configure transport 'obfs4': missing option 'cert'/m],
  },
  // The transparent modes take no per-connection arguments: -options is all a
  // transport gets there, so a transport given none (or options under another
  // name) fails at start, not on every connection or datagram.
  ...(["transparent-TCP", "transparent-UDP"] as const).map((mode): Case => ({
    name: `${mode} with no -options for a transport that needs them: CMETHOD-ERROR at start`,
    args: ["-transports", "obfs4", "-mode", mode, "-target", "127.0.0.1:9"],
    env: v1,
    code: 0,
    stdout: [
      "VERSION 1",
      /^CMETHOD-ERROR obfs4 Cannot configure transport 'obfs4': missing option 'iat-mode' and option 'cert'/,
      "CMETHODS DONE",
    ],
  })),
  {
    name: "a transport ignores options it does not know, and says so",
    args: ["-mode", "transparent-TCP", "-target", "127.0.0.1:9", "-options", "plain:k=v"],
    env: v1,
    code: 0,
    stdout: ["VERSION 1", /^CMETHOD plain transparent-TCP 127\.0\.0\.1:[0-9]+$/, "CMETHODS DONE"],
  },
  {
    name: "flags alone: transparent-TCP",
    args: [
      "-client",
      "-transports",
      "plain",
      "-mode",
      "transparent-TCP",
      "-proxylistenaddr",
      `127.0.0.1:${freePort}`,
      "-target",
      "127.0.0.1:6000",
      "-state",
      `${state}/flags`,
      "-exit-on-stdin-close",
    ],
    code: 0,
    stdout: ["VERSION 2", `CMETHOD plain transparent-TCP 127.0.0.1:${freePort}`, "CMETHODS DONE"],
    stderr: "",
  },
  {
    name: "flags alone: transparent-UDP",
    args: [
      ...["-client", "-transports", "plain", "-mode", "transparent-UDP", "-target", "127.0.0.1:7"],
      ...[
        "-udpqueue",
        "0",
        "-udpidletimeout",
        "30",
        "-state",
        `${state}/udp`,
        "-exit-on-stdin-close",
      ],
    ],
    code: 0,
    stdout: ["VERSION 2", /^CMETHOD plain transparent-UDP 127\.0\.0\.1:[0-9]+$/, "CMETHODS DONE"],
  },
  {
    name: "flags alone: STUN",
    args: [
      ...["-client", "-transports", "plain", "-mode", "STUN", "-target", "127.0.0.1:7"],
      ...["-state", `${state}/stun`, "-exit-on-stdin-close"],
    ],
    code: 0,
    stdout: ["VERSION 2", /^CMETHOD plain STUN 127\.0\.0\.1:[0-9]+$/, "CMETHODS DONE"],
  },
  ...[
    [["-mode", "STUN"], /-mode STUN needs -target/],
    [
      ["-mode", "transparent-UDP", "-target", "127.0.0.1:7", "-udpqueue", "x"],
      /Invalid -udpqueue "x"/,
    ],
    [["-udpqueue", "4"], /-udpqueue needs -mode transparent-UDP or STUN/],
    [["-turnuser", "u:p"], /-turnuser is a server flag/],
    // Given to a client these were silently ignored, as -bindaddr is not.
    [["-orport", "127.0.0.1:9"], /-orport is a server flag \(add -server\)/],
    [["-extorport", "127.0.0.1:9"], /-extorport is a server flag \(add -server\)/],
    [["-authcookie", "/nonexistent"], /-authcookie is a server flag \(add -server\)/],
  ].map(([args, pattern]): Case => ({
    name: `${(args as string[]).join(" ")} is an ENV-ERROR`,
    args: args as string[],
    env: v1,
    code: 64,
    stdout: ["VERSION 1", pattern as RegExp],
  })),
  {
    name: "double-dash flags alone: socks5",
    args: ["--client", "--transports=plain", `--state=${state}/flags2`, "--exit-on-stdin-close"],
    code: 0,
    stdout: ["VERSION 2", SOCKS, "CMETHODS DONE"],
  },
];

/** Check one run's exit code and output against its case. */
/** The `STATUS TYPE=version` line that follows `VERSION`. */
export const VERSION_STATUS =
  /^STATUS TRANSPORT=ptkit TYPE=version IMPLEMENTATION=ptkit VERSION=[0-9]+\.[0-9]+\.[0-9]+$/;

/**
 * stdout's protocol lines without `LOG` lines and the version report, which
 * must follow `VERSION` at once wherever there is one.
 */
export function protocolLines(stdout: string, context: string): string[] {
  const all = assertProtocolOnly(stdout);
  const versionAt = all.findIndex((l) => /^VERSION [0-9]/.test(l));
  if (versionAt >= 0) match(all[versionAt + 1] ?? "", VERSION_STATUS, context);
  return all.filter((l) => !l.startsWith("LOG ") && !VERSION_STATUS.test(l));
}

export function checkCase(c: Case, code: number, stdout: string, stderr: string): void {
  const context = `stdout: ${stdout}\nstderr: ${stderr}`;
  const usageCase = c.stdout.length > 0 && String(c.stdout[0]).includes("Usage");
  const lines = usageCase ? stdout.split("\n") : protocolLines(stdout, context);
  deepStrictEqual(code, c.code, context);
  if (!usageCase) deepStrictEqual(lines.length, c.stdout.length, context);
  c.stdout.forEach((expected, i) => {
    if (typeof expected === "string") deepStrictEqual(lines[i], expected, context);
    else match(lines[i] ?? "", expected, context);
  });
  if (c.stderr === "") deepStrictEqual(stderr, "", context);
  else for (const pattern of c.stderr ?? []) match(stderr, pattern, context);
}
