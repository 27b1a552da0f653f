// Copyright the ptkit authors. MIT license.
// parseManagedConfig as a table, in goptlib's style (pt_test.go's
// TestGetManagedTransportVer, TestGetClientTransports,
// TestGetServerBindaddrs, TestGetProxyURL, ...): variables and flags in,
// the typed configuration's relevant fields or the typed error out. Pure:
// nothing is started, so every row runs in microseconds.

import { deepStrictEqual, ok } from "node:assert";
import { type ManagedConfig, ManagedConfigError, parseManagedConfig } from "../ipc/mod.ts";

interface Row {
  /** What the row checks. */
  readonly name: string;
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly notUtf8?: readonly string[];
  /** The number of CPUs (the server's default -workers). */
  readonly cpus?: number;
  /** The transports on offer (`known`) and the free ones among them. */
  readonly known?: readonly string[];
  readonly free?: readonly string[];
  /** Fields the configuration must have (compared deeply), or the error. */
  readonly expect: Readonly<Record<string, unknown>> | ErrorExpect;
}

interface ErrorExpect {
  readonly error: ManagedConfigError["keyword"];
  readonly exitCode: 64 | 69 | 78;
  readonly version?: "1" | "2";
  readonly message: RegExp;
}

function isErrorExpect(expect: Row["expect"]): expect is ErrorExpect {
  return "error" in expect && "exitCode" in expect;
}

const client = { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_CLIENT_TRANSPORTS: "plain" };
const server = {
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_SERVER_TRANSPORTS: "plain",
  TOR_PT_ORPORT: "127.0.0.1:9001",
};
const hp = (hostname: string, port: number) => ({ hostname, port });

const ROWS: readonly Row[] = [
  // TestGetManagedTransportVer: the highest version both know; none known is VERSION-ERROR.
  { name: "version 1", env: client, expect: { kind: "client", version: "1" } },
  {
    name: "version 1,1",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "1,1" },
    expect: { version: "1" },
  },
  {
    name: "version 1,2 picks 2",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "1,2" },
    expect: { version: "2" },
  },
  {
    name: "version 3,1 picks 1",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "3,1" },
    expect: { version: "1" },
  },
  {
    name: "version 3 only",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "3" },
    expect: { error: "VERSION-ERROR", exitCode: 78, message: /^no-version$/ },
  },
  {
    name: "empty version",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "" },
    expect: { error: "VERSION-ERROR", exitCode: 78, message: /^no-version/ },
  },
  // goptlib finds 1 in any list: empty items are ignored, not malformed.
  {
    name: "version list with a trailing comma",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "1," },
    expect: { version: "1" },
  },
  {
    name: "version list with empty items",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: ",1,,2," },
    expect: { version: "2" },
  },
  {
    name: "-ptversion list with a trailing comma",
    args: ["-ptversion", "2,", "-transports", "plain"],
    expect: { version: "2" },
  },
  {
    name: "version list of empty items only",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "," },
    expect: { error: "VERSION-ERROR", exitCode: 78, message: /^no-version$/ },
  },
  {
    name: "version list with a space in a version",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "1, 2" },
    expect: {
      error: "VERSION-ERROR",
      exitCode: 78,
      message: /^no-version \(malformed version list\)$/,
    },
  },
  {
    name: "version list with a control character in a version",
    env: { ...client, TOR_PT_MANAGED_TRANSPORT_VER: "1,2\x1b" },
    expect: {
      error: "VERSION-ERROR",
      exitCode: 78,
      message: /^no-version \(malformed version list\)$/,
    },
  },
  {
    name: "variables without a version",
    env: { TOR_PT_CLIENT_TRANSPORTS: "plain" },
    expect: { error: "VERSION-ERROR", exitCode: 78, message: /^no-version$/ },
  },
  {
    name: "-ptversion flag wins over the variable",
    args: ["-ptversion", "2"],
    env: client,
    expect: { version: "2" },
  },
  {
    name: "flags only default to version 2",
    args: ["-transports", "plain"],
    expect: { kind: "client", version: "2", transports: ["plain"] },
  },
  // TestGetClientTransports / TestGetServerTransports.
  {
    name: "client transports in order",
    env: { ...client, TOR_PT_CLIENT_TRANSPORTS: "obfs4,plain,obfs4" },
    expect: { transports: ["obfs4", "plain", "obfs4"] },
  },
  {
    name: "client transport list with empty items",
    env: { ...client, TOR_PT_CLIENT_TRANSPORTS: ",obfs4,,plain," },
    expect: { transports: ["obfs4", "plain"] },
  },
  {
    name: "server transport list with a trailing comma",
    env: { ...server, TOR_PT_SERVER_TRANSPORTS: "plain," },
    expect: { kind: "server", transports: ["plain"] },
  },
  {
    name: "empty client transport list",
    env: { ...client, TOR_PT_CLIENT_TRANSPORTS: "" },
    expect: { error: "ENV-ERROR", exitCode: 64, version: "1", message: /No transports/ },
  },
  {
    name: "server transports",
    env: server,
    expect: { kind: "server", transports: ["plain"] },
  },
  {
    name: "both transport variables",
    env: { ...server, TOR_PT_CLIENT_TRANSPORTS: "plain" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /Both TOR_PT_CLIENT_TRANSPORTS/ },
  },
  // lyrebird and obfs4proxy (ptIsClient) take an empty list for none: an
  // environment that clears the other side's variable is not both sides.
  {
    name: "client transports beside an empty server list",
    env: { ...client, TOR_PT_SERVER_TRANSPORTS: "" },
    expect: { kind: "client", transports: ["plain"] },
  },
  {
    name: "server transports beside an empty client list",
    env: { ...server, TOR_PT_CLIENT_TRANSPORTS: "" },
    expect: { kind: "server", transports: ["plain"] },
  },
  {
    name: "both transport lists empty",
    env: { ...client, TOR_PT_CLIENT_TRANSPORTS: "", TOR_PT_SERVER_TRANSPORTS: "" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /No transports requested/ },
  },
  {
    name: "-client and -server",
    args: ["-client", "-server", "-transports", "plain"],
    expect: { error: "ENV-ERROR", exitCode: 64, message: /Both -client and -server/ },
  },
  // TestGetServerBindaddrs.
  {
    name: "bind addresses, IPv4 and IPv6",
    env: { ...server, TOR_PT_SERVER_BINDADDR: "alpha-1.2.3.4:1111,beta-[1:2::3:4]:2222" },
    expect: {
      bindAddrs: new Map([["alpha", hp("1.2.3.4", 1111)], ["beta", hp("1:2::3:4", 2222)]]),
    },
  },
  {
    name: "bind address list with empty items",
    env: { ...server, TOR_PT_SERVER_BINDADDR: ",alpha-1.2.3.4:1111,,beta-[1:2::3:4]:2222," },
    expect: {
      bindAddrs: new Map([["alpha", hp("1.2.3.4", 1111)], ["beta", hp("1:2::3:4", 2222)]]),
    },
  },
  {
    name: "bind address list with a malformed item beside empty ones",
    env: { ...server, TOR_PT_SERVER_BINDADDR: "alpha-1.2.3.4:1111,,1.2.3.4:2222," },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /expected name-addr:port/ },
  },
  {
    name: "bind address without a port",
    env: { ...server, TOR_PT_SERVER_BINDADDR: "alpha-1.2.3.4" },
    expect: {
      error: "ENV-ERROR",
      exitCode: 64,
      message:
        /^Cannot parse TOR_PT_SERVER_BINDADDR address of 'alpha' "1\.2\.3\.4": expected host:port/,
    },
  },
  {
    name: "bind address without a name",
    env: { ...server, TOR_PT_SERVER_BINDADDR: "1.2.3.4:1111" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /expected name-addr:port/ },
  },
  {
    name: "bind address with a host name",
    env: { ...server, TOR_PT_SERVER_BINDADDR: "alpha-example.com:1111" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /not an IP address/ },
  },
  {
    name: "bind address name given twice",
    env: { ...server, TOR_PT_SERVER_BINDADDR: "alpha-1.2.3.4:1111,alpha-1.2.3.4:2222" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /given twice/ },
  },
  // TestGetORPort / Extended ORPort.
  {
    name: "ORPort",
    env: server,
    expect: { target: { kind: "orport", address: hp("127.0.0.1", 9001) } },
  },
  {
    name: "ORPort with a host name",
    env: { ...server, TOR_PT_ORPORT: "localhost:9001" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /must be an IP address/ },
  },
  {
    // Named as the operator wrote it (the message said TOR_PT_ORPORT).
    name: "-orport with a host name names the flag",
    args: ["-server", "-transports", "plain", "-orport", "localhost:9001"],
    expect: {
      error: "ENV-ERROR",
      exitCode: 64,
      message:
        /^Invalid -orport "localhost:9001": must be|^Invalid -orport "localhost:9001": the host must be an IP address/,
    },
  },
  {
    name: "-extorport without a cookie file names the flag",
    args: ["-server", "-transports", "plain", "-extorport", "127.0.0.1:9002"],
    expect: {
      error: "ENV-ERROR",
      exitCode: 64,
      message: /^-extorport needs TOR_PT_AUTH_COOKIE_FILE/,
    },
  },
  {
    name: "-proxylistenaddr with an IPv6 address without brackets is repaired, as -orport's is",
    args: ["-client", "-transports", "plain", "-proxylistenaddr", "::1:1080"],
    expect: { listen: hp("::1", 1080) },
  },
  {
    name: "Extended ORPort wins over the ORPort",
    env: {
      ...server,
      TOR_PT_EXTENDED_SERVER_PORT: "[::1]:9002",
      TOR_PT_AUTH_COOKIE_FILE: "/var/lib/tor/extended_orport_auth_cookie",
    },
    expect: {
      target: {
        kind: "extorport",
        address: hp("::1", 9002),
        cookieFile: "/var/lib/tor/extended_orport_auth_cookie",
        cookieFileFrom: "TOR_PT_AUTH_COOKIE_FILE",
      },
    },
  },
  {
    name: "-authcookie is named as the flag in messages",
    env: { ...server, TOR_PT_EXTENDED_SERVER_PORT: "127.0.0.1:9002" },
    args: ["-authcookie", "/run/cookie"],
    expect: {
      target: {
        kind: "extorport",
        address: hp("127.0.0.1", 9002),
        cookieFile: "/run/cookie",
        cookieFileFrom: "-authcookie",
      },
    },
  },
  {
    name: "Extended ORPort without a cookie file",
    env: { ...server, TOR_PT_EXTENDED_SERVER_PORT: "127.0.0.1:9002" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /needs TOR_PT_AUTH_COOKIE_FILE/ },
  },
  {
    name: "server without a target",
    env: { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_SERVER_TRANSPORTS: "plain" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /^No target/ },
  },
  // TestGetProxyURL: TOR_PT_PROXY; its errors are PROXY-ERROR (exit 69).
  {
    name: "socks5 proxy with credentials",
    env: { ...client, TOR_PT_PROXY: "socks5://user:pass@192.0.2.1:1080" },
    expect: {
      proxy: {
        scheme: "socks5",
        hostname: "192.0.2.1",
        port: 1080,
        username: "user",
        password: "pass",
      },
    },
  },
  {
    name: "http proxy on IPv6",
    env: { ...client, TOR_PT_PROXY: "http://[2001:db8::1]:8080" },
    expect: { proxy: { scheme: "http", hostname: "2001:db8::1", port: 8080 } },
  },
  {
    name: "socks4a proxy",
    env: { ...client, TOR_PT_PROXY: "socks4a://192.0.2.1:1080" },
    expect: { proxy: { scheme: "socks4a", hostname: "192.0.2.1", port: 1080 } },
  },
  {
    name: "proxy with an unknown scheme",
    env: { ...client, TOR_PT_PROXY: "ftp://192.0.2.1:21" },
    expect: { error: "PROXY-ERROR", exitCode: 69, version: "1", message: /ftp/ },
  },
  {
    name: "proxy with a host name",
    env: { ...client, TOR_PT_PROXY: "socks5://proxy.example:1080" },
    expect: { error: "PROXY-ERROR", exitCode: 69, message: /./ },
  },
  {
    name: "proxy without a port",
    env: { ...client, TOR_PT_PROXY: "socks5://192.0.2.1" },
    expect: { error: "PROXY-ERROR", exitCode: 69, message: /./ },
  },
  {
    name: "a proxy error never echoes the password",
    env: { ...client, TOR_PT_PROXY: "gopher://user:s3cret@192.0.2.1:70" },
    expect: { error: "PROXY-ERROR", exitCode: 69, message: /^(?![\s\S]*s3cret)/ },
  },
  // TestGetServerTransportOptions.
  {
    name: "server transport options",
    env: { ...server, TOR_PT_SERVER_TRANSPORT_OPTIONS: "plain:a=b;plain:c=d\\;e" },
    expect: { options: new Map([["plain", { a: "b", c: "d;e" }]]) },
  },
  {
    name: "transport options without a transport name",
    env: { ...server, TOR_PT_SERVER_TRANSPORT_OPTIONS: "a=b" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /./ },
  },
  // State, stdin, log level, modes.
  {
    name: "state location and exit on stdin close",
    env: { ...client, TOR_PT_STATE_LOCATION: "/tmp/pt", TOR_PT_EXIT_ON_STDIN_CLOSE: "1" },
    expect: { stateDir: "/tmp/pt", exitOnStdinClose: true },
  },
  {
    // A launcher that sets every variable, empty when unused (ptadapter):
    // the working directory, said in a notice, as when it is unset.
    name: "an empty state location is none",
    env: { ...client, TOR_PT_STATE_LOCATION: "" },
    expect: { stateDir: undefined },
  },
  {
    name: "exit on stdin close is only 1",
    env: { ...client, TOR_PT_EXIT_ON_STDIN_CLOSE: "0" },
    expect: { exitOnStdinClose: false },
  },
  {
    name: "log level",
    args: ["-logLevel", "debug"],
    env: client,
    expect: { logLevel: "debug" },
  },
  {
    name: "bad log level",
    args: ["-logLevel", "chatty"],
    env: client,
    expect: { error: "ENV-ERROR", exitCode: 64, message: /chatty/ },
  },
  {
    name: "client defaults",
    env: client,
    expect: { mode: "socks5", listen: hp("127.0.0.1", 0), free: false, exitOnStdinClose: false },
  },
  {
    name: "free mode",
    args: ["-free", "-target", "192.0.2.7:443"],
    env: client,
    expect: { mode: "socks5", free: true, target: hp("192.0.2.7", 443) },
  },
  {
    name: "free mode without a target",
    args: ["-free"],
    env: client,
    expect: { error: "ENV-ERROR", exitCode: 64, message: /-free needs -target/ },
  },
  {
    name: "unknown mode",
    args: ["-mode", "bogus"],
    env: client,
    expect: { error: "ENV-ERROR", exitCode: 64, message: /Invalid -mode "bogus"/ },
  },
  {
    name: "server SOCKS target with an allow-list",
    args: ["-target", "socks", "-allow", "loopback"],
    env: { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_SERVER_TRANSPORTS: "plain" },
    expect: { target: "socks" },
  },
  // Free transports (shadowsocks): each connection names its destination.
  {
    name: "server of free transports only needs no target",
    args: ["-server", "-transports", "shadowsocks", "-bindaddr", "shadowsocks-127.0.0.1:8388"],
    known: ["plain", "obfs4", "shadowsocks"],
    free: ["shadowsocks"],
    expect: {
      target: { kind: "free", policy: "none" },
      bindAddrs: new Map([["shadowsocks", hp("127.0.0.1", 8388)]]),
    },
  },
  {
    name: "server of free transports with -allow loopback",
    args: ["-server", "-transports", "shadowsocks", "-allow", "loopback"],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { target: { kind: "free", policy: "loopback" } },
  },
  {
    name: "server of free transports, an unknown name beside them",
    args: ["-server", "-transports", "shadowsocks,bogus"],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { target: { kind: "free", policy: "none" } },
  },
  {
    name: "server of free transports with -orport relays there (tor's bridge)",
    args: ["-server", "-transports", "shadowsocks", "-orport", "127.0.0.1:9001"],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { target: { kind: "orport", address: hp("127.0.0.1", 9001) } },
  },
  {
    name: "server of free transports with -target socks",
    args: ["-server", "-transports", "shadowsocks", "-target", "socks", "-allow", "private"],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { target: "socks" },
  },
  {
    name: "server mixing free and bound transports needs a target",
    args: ["-server", "-transports", "shadowsocks,plain"],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { error: "ENV-ERROR", exitCode: 64, message: /No target/ },
  },
  {
    name: "server of free transports with a bad -allow",
    args: ["-server", "-transports", "shadowsocks", "-allow", "everything"],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { error: "ENV-ERROR", exitCode: 64, message: /everything/ },
  },
  {
    name: "server -allow with an ORPort",
    args: [
      "-server",
      "-transports",
      "shadowsocks",
      "-orport",
      "127.0.0.1:9001",
      "-allow",
      "loopback",
    ],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: { error: "ENV-ERROR", exitCode: 64, message: /-allow needs -target socks/ },
  },
  {
    name: "free transport unknown to the parser still needs a target",
    args: ["-server", "-transports", "shadowsocks"],
    expect: { error: "ENV-ERROR", exitCode: 64, message: /No target/ },
  },
  {
    name: "client of a free transport in free mode",
    args: [
      ...["-client", "-transports", "shadowsocks", "-free", "-target", "192.0.2.7:8388"],
      ...[
        "-proxylistenaddr",
        "127.0.0.1:1080",
        "-options",
        '{"method":"aes-256-gcm","password":"x"}',
      ],
    ],
    known: ["plain", "shadowsocks"],
    free: ["shadowsocks"],
    expect: {
      mode: "socks5",
      free: true,
      target: hp("192.0.2.7", 8388),
      listen: hp("127.0.0.1", 1080),
      options: new Map([["*", { method: "aes-256-gcm", password: "x" }]]),
    },
  },
  {
    name: "server STUN mode toward the embedded TURN server",
    args: ["-mode", "STUN", "-target", "turn", "-turnuser", "u:p", "-allow", "loopback"],
    env: { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_SERVER_TRANSPORTS: "plain" },
    expect: {
      target: {
        kind: "turn",
        realm: "ptkit",
        credentials: { user: "u", password: "p" },
        allowLoopbackPeers: true,
        allowPrivatePeers: false,
      },
    },
  },
  // -metrics: a flag only (TOR_PT_METRICS is not a tor variable), both sides.
  { name: "no -metrics", env: client, expect: { metrics: undefined } },
  {
    name: "-metrics HOST:PORT on the client",
    args: ["-metrics", "127.0.0.1:9100"],
    env: client,
    expect: { kind: "client", metrics: hp("127.0.0.1", 9100) },
  },
  {
    name: "-metrics PORT alone means loopback, on the server",
    args: ["--metrics=9100"],
    env: server,
    expect: { kind: "server", metrics: hp("127.0.0.1", 9100) },
  },
  {
    name: "-metrics [::1]:0 (a free port)",
    args: ["-metrics", "[::1]:0"],
    env: client,
    expect: { metrics: hp("::1", 0) },
  },
  {
    name: "TOR_PT_METRICS is not read",
    env: { ...server, TOR_PT_METRICS: "127.0.0.1:9100" },
    expect: { kind: "server", metrics: undefined },
  },
  {
    name: "-metrics port out of range",
    args: ["-metrics", "70000"],
    env: client,
    expect: { error: "ENV-ERROR", exitCode: 64, version: "1", message: /Invalid -metrics port/ },
  },
  {
    name: "-metrics HOST:PORT port out of range",
    args: ["-metrics", "127.0.0.1:65536"],
    env: server,
    expect: { error: "ENV-ERROR", exitCode: 64, version: "1", message: /-metrics/ },
  },
  {
    name: "-metrics without a port",
    args: ["-metrics", "localhost"],
    env: client,
    expect: { error: "ENV-ERROR", exitCode: 64, version: "1", message: /-metrics/ },
  },
  {
    name: "-metrics with nothing after it",
    args: ["-metrics"],
    env: client,
    expect: { error: "ENV-ERROR", exitCode: 64, message: /metrics/ },
  },
  {
    name: "a variable that is not UTF-8",
    env: client,
    notUtf8: ["TOR_PT_STATE_LOCATION"],
    expect: { error: "ENV-ERROR", exitCode: 64, message: /TOR_PT_STATE_LOCATION is not valid/ },
  },
  {
    name: "no configuration at all",
    expect: { error: undefined, exitCode: 64, message: /No configuration/ },
  },
  // -workers: server default the CPUs, client default 1, datagram modes 1.
  { name: "server workers default: the CPUs", env: server, cpus: 8, expect: { workers: 8 } },
  { name: "server workers without a CPU count", env: server, expect: { workers: 1 } },
  { name: "client workers default 1", env: client, cpus: 8, expect: { workers: 1 } },
  {
    name: "-workers 3 on the server",
    args: ["-workers", "3"],
    env: server,
    expect: { workers: 3 },
  },
  { name: "--workers=2 on the client", args: ["--workers=2"], env: client, expect: { workers: 2 } },
  {
    name: "server datagram mode defaults to 1 worker",
    args: ["-mode", "transparent-UDP", "-target", "127.0.0.1:53"],
    env: { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_SERVER_TRANSPORTS: "plain" },
    cpus: 8,
    expect: { workers: 1 },
  },
  ...["0", "-1", "1.5", "257", "two", "", "99999999999"].map((n) => ({
    name: `-workers ${JSON.stringify(n)}`,
    args: ["-workers", n],
    env: server,
    expect: { error: "ENV-ERROR", exitCode: 64, message: /^Invalid -workers .*1 to 256$/ } as const,
  })),
  {
    name: "-workers 2 in a datagram mode",
    args: ["-mode", "STUN", "-target", "turn", "-workers", "2"],
    env: { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_SERVER_TRANSPORTS: "plain" },
    expect: { error: "ENV-ERROR", exitCode: 64, message: /-workers above 1 needs a TCP mode/ },
  },
  {
    name: "-workers needs a value",
    args: ["-workers"],
    env: server,
    expect: { error: "ENV-ERROR", exitCode: 64, message: /Flag -workers needs a value/ },
  },
  // Options for a transport that is not started are ignored, and said so:
  // SMETHOD's "ARGS:cert=..." pasted whole, or a misspelt name, would
  // otherwise leave the transport without them and no word why.
  {
    name: "-options for a transport not started: a warning naming it, with a near miss",
    args: ["-transports", "obfs4", "-options", "obfs:iat-mode=1"],
    env: server,
    expect: {
      warnings: [
        "Ignored -options for transport 'obfs': it is not among the transports started (obfs4; did you mean 'obfs4'?)",
      ],
    },
  },
  {
    name: "-options with SMETHOD's ARGS: pasted: a warning",
    args: ["-transports", "obfs4", "-options", "ARGS:cert=AAAA,iat-mode=0"],
    env: client,
    expect: {
      warnings: [
        "Ignored -options for transport 'ARGS': it is not among the transports started (obfs4)",
      ],
    },
  },
  {
    name:
      "TOR_PT_SERVER_TRANSPORT_OPTIONS for a transport not started: a warning; a name that is no transport name is not quoted",
    env: { ...server, TOR_PT_SERVER_TRANSPORT_OPTIONS: "plain:a=b;pass=wo rd:k=v;plain2:x=y" },
    expect: {
      warnings: [
        "Ignored TOR_PT_SERVER_TRANSPORT_OPTIONS under a name that is not a transport name (not shown): the transports started are plain",
        "Ignored TOR_PT_SERVER_TRANSPORT_OPTIONS for transport 'plain2': it is not among the transports started (plain; did you mean 'plain'?)",
      ],
    },
  },
  {
    name: "-options for every transport started, or JSON for all: no warning",
    args: ["-transports", "obfs4,plain", "-options", "obfs4:iat-mode=1;plain:k=v"],
    env: server,
    expect: { warnings: [] },
  },
  { name: "--help", args: ["--help"], expect: { kind: "help" } },
  { name: "--version", args: ["--version"], expect: { kind: "ptkit-version" } },
];

for (const row of ROWS) {
  Deno.test(`parseManagedConfig: ${row.name}`, () => {
    let config: ManagedConfig | undefined;
    let error: unknown;
    try {
      config = parseManagedConfig(row.args ?? [], row.env ?? {}, {
        ...(row.notUtf8 === undefined ? {} : { notUtf8: row.notUtf8 }),
        ...(row.cpus === undefined ? {} : { cpus: row.cpus }),
        ...(row.known === undefined ? {} : { known: row.known }),
        ...(row.free === undefined ? {} : { free: row.free }),
      });
    } catch (e) {
      error = e;
    }
    const expect = row.expect;
    if (isErrorExpect(expect)) {
      ok(error instanceof ManagedConfigError, `expected an error, got ${String(error ?? "none")}`);
      deepStrictEqual([error.keyword, error.exitCode], [expect.error, expect.exitCode]);
      if (expect.version !== undefined) deepStrictEqual(error.version, expect.version);
      ok(expect.message.test(error.message), error.message);
      return;
    }
    if (error !== undefined) throw error;
    const got = config as unknown as Record<string, unknown>;
    for (const [key, want] of Object.entries(expect)) {
      if (key === "target" && want === "socks") {
        deepStrictEqual((got.target as { kind: string }).kind, "socks");
        continue;
      }
      if (key === "target" && (want as { kind?: string }).kind === "free") {
        const target = got.target as { kind: string; policy: { toString(): string } };
        deepStrictEqual(
          { kind: target.kind, policy: target.policy.toString() },
          want,
          `target of ${row.name}`,
        );
        continue;
      }
      deepStrictEqual(got[key], want, `${key} of ${row.name}`);
    }
  });
}

Deno.test("parseManagedConfig reads -options, -turnuser and -proxy written @FILE through readValueFile; other flags and the environment are taken as written", () => {
  const files: Record<string, string> = {
    "/o": "plain:k=v",
    "/u": "alice:S3CRET",
    "/p": "socks5://u:S3CRET@127.0.0.1:1080",
  };
  const asked: string[] = [];
  const readValueFile = (path: string, flag: string) => {
    asked.push(`${flag} ${path}`);
    const text = files[path];
    if (text === undefined) throw new Error(`Cannot read ${flag} from ${path}: not found`);
    return text;
  };
  const client = parseManagedConfig(
    ["-client", "-transports", "plain", "-proxy", "@/p", "-state", "@/s"],
    {},
    { readValueFile },
  );
  ok(client.kind === "client");
  deepStrictEqual(client.proxy?.password, "S3CRET");
  const turn = parseManagedConfig(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn", "-turnuser", "@/u"],
    {},
    { readValueFile },
  );
  ok(turn.kind === "server");
  deepStrictEqual(asked, ["-proxy /p", "-turnuser /u"]);
  // An @ in the environment is tor's value, never a file.
  try {
    parseManagedConfig([], {
      TOR_PT_MANAGED_TRANSPORT_VER: "1",
      TOR_PT_CLIENT_TRANSPORTS: "plain",
      TOR_PT_STATE_LOCATION: "/tmp/x",
      TOR_PT_PROXY: "@/p",
    }, { readValueFile });
    ok(false, "TOR_PT_PROXY=@/p was taken");
  } catch (error) {
    ok(error instanceof ManagedConfigError && error.keyword === "PROXY-ERROR", String(error));
  }
  deepStrictEqual(asked.length, 2);
  // A file that cannot be read: ENV-ERROR after the VERSION line.
  try {
    parseManagedConfig(["-client", "-transports", "plain", "-proxy", "@/nope"], {}, {
      readValueFile,
    });
    ok(false, "a missing file was taken");
  } catch (error) {
    ok(error instanceof ManagedConfigError, String(error));
    deepStrictEqual([error.keyword, error.version], ["ENV-ERROR", "2"]);
    deepStrictEqual(error.message, "Cannot read -proxy from /nope: not found");
  }
});
