// Copyright the ptkit authors. MIT license.

import { unexpectedArgument } from "../../net/_userinfo.ts";
import { suggestOptionKey } from "../../transports/_option_keys.ts";
import { CLI_COMMANDS } from "../cli/_names.ts";

/** One command-line flag of the managed proxy, and the variable it overrides. */
export interface FlagSpec {
  /** Names, without dashes (`-name` and `--name` both work; case is ignored). */
  readonly names: readonly string[];
  /** The key the value is stored under. */
  readonly key: string;
  /** Whether the flag takes no value (`-flag` or `-flag=true|false`). */
  readonly boolean?: boolean;
  /** The environment variable the flag overrides, if any. */
  readonly env?: string;
  /**
   * The usage text's note on the variables, when it is more than `env`
   * (a flag that stands for one variable on each side).
   */
  readonly envHelp?: string;
  /** Placeholder for the value in the usage text. */
  readonly value?: string;
  /** One-line description for the usage text. */
  readonly help: string;
}

/** The flags `main.ts` understands, in usage order. */
export const FLAGS: readonly FlagSpec[] = [
  {
    names: ["client"],
    key: "client",
    boolean: true,
    help: "run the client side (the default)",
  },
  {
    names: ["server"],
    key: "server",
    boolean: true,
    help: "run the server side (default when only TOR_PT_SERVER_TRANSPORTS is set)",
  },
  {
    names: ["ptversion", "version"],
    key: "version",
    env: "TOR_PT_MANAGED_TRANSPORT_VER",
    value: "LIST",
    help:
      "PT versions the parent supports, comma-separated (1 or 2); --version alone prints ptkit's version",
  },
  {
    names: ["transports"],
    key: "transports",
    env: "TOR_PT_CLIENT_TRANSPORTS",
    envHelp: "TOR_PT_CLIENT_TRANSPORTS; with -server TOR_PT_SERVER_TRANSPORTS",
    value: "LIST",
    help: "transports to start, comma-separated; unknown names are ignored",
  },
  {
    names: ["bindaddr"],
    key: "bindAddr",
    env: "TOR_PT_SERVER_BINDADDR",
    value: "LIST",
    help: "server: name-ip:port,... where each transport listens (default 127.0.0.1, free port)",
  },
  {
    names: ["orport"],
    key: "orPort",
    env: "TOR_PT_ORPORT",
    value: "IP:PORT",
    help: "server: relay decoded connections to this address",
  },
  {
    names: ["extorport"],
    key: "extOrPort",
    env: "TOR_PT_EXTENDED_SERVER_PORT",
    value: "IP:PORT",
    help: "server: relay through tor's Extended ORPort (wins over -orport; empty: unused)",
  },
  {
    names: ["authcookie"],
    key: "authCookie",
    env: "TOR_PT_AUTH_COOKIE_FILE",
    value: "FILE",
    help: "server: the Extended ORPort auth cookie file",
  },
  {
    names: ["state"],
    key: "state",
    env: "TOR_PT_STATE_LOCATION",
    value: "DIR",
    help: "state directory, created 0700 (default: the working directory)",
  },
  {
    names: ["exit-on-stdin-close"],
    key: "exitOnStdinClose",
    boolean: true,
    env: "TOR_PT_EXIT_ON_STDIN_CLOSE",
    help: "exit when stdin closes",
  },
  {
    names: ["proxy"],
    key: "proxy",
    env: "TOR_PT_PROXY",
    value: "URI",
    help:
      "upstream proxy: socks5://[user:pass@]ip:port, socks4a://[user@]ip:port, http://[user[:pass]@]ip:port (@FILE: read from FILE)",
  },
  {
    names: ["options"],
    key: "options",
    env: "TOR_PT_SERVER_TRANSPORT_OPTIONS",
    envHelp: "server: TOR_PT_SERVER_TRANSPORT_OPTIONS",
    value: "OPTS",
    help:
      'transport options: name:k=v;name:k=v, or JSON {"name":{"k":"v"}} or {"k":"v"} (@FILE: read from FILE)',
  },
  {
    names: ["mode"],
    key: "mode",
    value: "MODE",
    help:
      "client: socks5 (default), transparent-TCP, transparent-UDP or STUN; server: transparent-TCP (default), socks5 (= -target socks), transparent-UDP or STUN",
  },
  {
    names: ["proxylistenaddr"],
    key: "proxyListenAddr",
    value: "IP:PORT",
    help: "address to listen on (default 127.0.0.1, a free port)",
  },
  {
    names: ["target"],
    key: "target",
    value: "HOST:PORT",
    help:
      "client: the PT server to dial (transparent-TCP/-UDP, STUN, -free); server: HOST:PORT to relay to (UDP in the datagram modes), socks, or turn (STUN mode: the embedded TURN server)",
  },
  {
    names: ["free"],
    key: "free",
    boolean: true,
    help: "client, socks5 mode: carry each SOCKS destination to the server's SOCKS target",
  },
  {
    names: ["allow"],
    key: "allow",
    value: "LIST",
    help:
      "server, -target socks: also allow loopback, private, link-local, multicast or ip:port destinations; -target turn: loopback or private peers",
  },
  {
    names: ["udpidletimeout"],
    key: "udpIdleTimeout",
    value: "SECONDS",
    help: "transparent-UDP and STUN: close a flow after this long without a datagram (default 120)",
  },
  {
    names: ["udpqueue"],
    key: "udpQueue",
    value: "N",
    help:
      "client, transparent-UDP and STUN: datagrams held while a flow connects (default 64; 0 drops them, as PT 2.0 draft 1's Table 1)",
  },
  {
    names: ["turnuser"],
    key: "turnUser",
    value: "USER:PASSWORD",
    help:
      "server, -target turn: the TURN user (default: generated, printed in the SMETHOD ARGS; @FILE: read from FILE)",
  },
  {
    names: ["turnrealm"],
    key: "turnRealm",
    value: "REALM",
    help: "server, -target turn: the TURN realm (default ptkit)",
  },
  {
    names: ["workers"],
    key: "workers",
    value: "N",
    help:
      "processes sharing each listening port (SO_REUSEPORT, Linux): server default the number of CPUs, client default 1; 1 in the datagram modes",
  },
  {
    names: ["metrics"],
    key: "metrics",
    value: "HOST:PORT",
    help:
      "serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: on 127.0.0.1; no variable)",
  },
  {
    names: ["logLevel"],
    key: "logLevel",
    value: "LEVEL",
    help: "least severe LOG line sent: error, warning, notice (default), info, debug",
  },
  {
    names: ["enableLogging"],
    key: "enableLogging",
    boolean: true,
    help: "obfs4proxy's and lyrebird's: accepted, changes nothing (ptkit logs in LOG lines)",
  },
  {
    names: ["unsafeLogging"],
    key: "unsafeLogging",
    boolean: true,
    help: "obfs4proxy's and lyrebird's: accepted, changes nothing (ptkit never logs addresses)",
  },
  { names: ["help", "h"], key: "help", boolean: true, help: "print this help and exit" },
];

/** Every environment variable the managed proxy reads. */
export const ENV_VARS: readonly string[] = [
  "TOR_PT_MANAGED_TRANSPORT_VER",
  "TOR_PT_STATE_LOCATION",
  "TOR_PT_EXIT_ON_STDIN_CLOSE",
  "TOR_PT_CLIENT_TRANSPORTS",
  "TOR_PT_SERVER_TRANSPORTS",
  "TOR_PT_PROXY",
  "TOR_PT_SERVER_TRANSPORT_OPTIONS",
  "TOR_PT_SERVER_BINDADDR",
  "TOR_PT_ORPORT",
  "TOR_PT_EXTENDED_SERVER_PORT",
  "TOR_PT_AUTH_COOKIE_FILE",
  "TOR_PT_OUTBOUND_BIND_ADDRESS_V4",
  "TOR_PT_OUTBOUND_BIND_ADDRESS_V6",
];

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags {
  /** Values by {@linkcode FlagSpec.key}; booleans are `"true"` or `"false"`. */
  readonly values: Readonly<Record<string, string>>;
  /** Problems found (unknown flags, missing values), in order. */
  readonly errors: readonly string[];
}

/**
 * Parse command-line flags against {@linkcode FLAGS}: `-name value`,
 * `-name=value`, `--name value` and `--name=value`. Problems are collected,
 * not thrown, so the caller can report them after version negotiation.
 *
 * @param args The arguments.
 * @returns The values and the problems.
 */
export function parseFlags(args: readonly string[]): ParsedFlags {
  const values: Record<string, string> = {};
  const errors: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    // obfsproxy's mode word, still in torrc lines written for it
    // (`exec /usr/bin/obfs4proxy managed`): obfs4proxy and lyrebird ignore it.
    if (i === 0 && arg === "managed") continue;
    const match = /^(--?)([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (match === null) {
      // A stray value may be a credential: it is never echoed. A first
      // argument close to a command (`main.ts serve`) gets the command named.
      const command = i === 0
        ? /^help$/i.test(arg)
          ? "--help"
          : /^version$/i.test(arg)
          ? "--version"
          : suggestOptionKey(arg, [...CLI_COMMANDS, "turn"])
        : undefined;
      errors.push(
        unexpectedArgument(arg, i + 1) +
          (command === undefined ? "" : `; did you mean ${command}?`),
      );
      continue;
    }
    const [, dashes, name, inline] = match;
    const spec = findFlag(name!);
    const foreign = UNSUPPORTED_FLAGS.get(plainName(name!));
    if (spec === undefined && foreign !== undefined) {
      // Off (`=false`) is what ptkit does anyway; on is refused, not ignored.
      if (inline === undefined || !/^(false|0)$/i.test(inline)) {
        errors.push(
          `Flag ${dashes}${name} (${foreign}) is not supported: remove it from the torrc exec line`,
        );
      }
      continue;
    }
    if (spec === undefined) {
      // -v and -V mean the version elsewhere: --version, not -h (one letter away).
      const similar = suggestOptionKey(name!, FLAGS.flatMap((f) => f.names));
      const near = /^v$/i.test(name!)
        ? "--version"
        : similar === undefined
        ? undefined
        : `${dashes}${similar}`;
      errors.push(
        `Unknown flag ${dashes}${name}${near === undefined ? "" : ` (did you mean ${near}?)`}`,
      );
      continue;
    }
    if (spec.boolean) {
      if (inline === undefined || /^(true|1)$/i.test(inline)) values[spec.key] = "true";
      else if (/^(false|0)$/i.test(inline)) values[spec.key] = "false";
      else errors.push(`Flag -${name} takes no value, got ${JSON.stringify(inline)}`);
    } else if (inline !== undefined) {
      values[spec.key] = inline;
    } else if (i + 1 < args.length && !isFlag(args[i + 1]!)) {
      values[spec.key] = args[++i]!;
    } else {
      // A value left out before the next flag (`-state -transports obfs4`)
      // is named as such, not taken as the value.
      errors.push(
        `Flag -${name} needs a value${
          i + 1 < args.length ? ` (the next argument is the flag ${args[i + 1]})` : ""
        }`,
      );
    }
  }
  return { values, errors };
}

/**
 * Boolean flags of obfs4proxy and lyrebird that ptkit cannot honour, by
 * {@linkcode plainName}, with what each does: a torrc line carrying one is
 * told so by name (an `ENV-ERROR`), never served without it unsaid.
 */
const UNSUPPORTED_FLAGS: ReadonlyMap<string, string> = new Map([
  ["obfs4distbias", "obfs4proxy's and lyrebird's biased obfs4 packet-length tables"],
]);

/** A flag's name in any case, with or without dashes inside: -logLevel, -loglevel, -log-level. */
function plainName(name: string): string {
  return name.toLowerCase().replaceAll("-", "");
}

/** The flag named `name`, in any case, with or without dashes inside: -logLevel, -loglevel, -log-level. */
function findFlag(name: string): (typeof FLAGS)[number] | undefined {
  const lower = plainName(name);
  return FLAGS.find((f) => f.names.some((n) => plainName(n) === lower));
}

/**
 * Whether `arg` asks for the usage: `-help` or `-h` in any spelling the
 * flags take (`--HELP`, `-he-lp`), with or without `=true`.
 */
export function isHelpFlag(arg: string): boolean {
  const match = /^--?([A-Za-z][A-Za-z0-9-]*)(?:=(true|1))?$/i.exec(arg);
  return match !== null && findFlag(match[1]!)?.key === "help";
}

/** Whether `arg` is one of the flags, without a value (`-transports`). */
function isFlag(arg: string): boolean {
  const match = /^--?([A-Za-z][A-Za-z0-9-]*)$/.exec(arg);
  return match !== null && findFlag(match[1]!) !== undefined;
}

/**
 * The usage text: every flag and the variable it overrides.
 *
 * @param command How the program is invoked, for the first line.
 * @returns The text, ending with a newline.
 */
export function usage(command: string): string {
  const lines = [
    `Usage: ${command} [flags]`,
    "",
    "A Pluggable Transports managed proxy (tor's ClientTransportPlugin and",
    "ServerTransportPlugin, PT 1.0 and 2.0 IPC). Flags override the TOR_PT_* environment",
    "variables; -flag and --flag both work. Friendlier standalone commands (each",
    "takes --help):",
    `  ${command} server    a transport server that prints its bridge line`,
    `  ${command} client    a SOCKS5 proxy through a bridge line`,
    `  ${command} start     a server and a client on loopback, to try`,
    `  ${command} turn      a TURN server (RFC 8656) over UDP`,
    `${command} --version prints ptkit's version.`,
    "",
  ];
  for (const flag of FLAGS) {
    const name = `${flag.names.map((n) => `-${n}`).join(", ")}${
      flag.value ? ` ${flag.value}` : ""
    }`;
    const env = flag.envHelp ?? flag.env;
    const note = env === undefined ? "" : ` [${env}]`;
    lines.push(`  ${name.padEnd(26)} ${flag.help}${note}`);
  }
  lines.push(
    "",
    "Example:",
    `  ${command} -client -transports plain -mode transparent-TCP \\`,
    "    -proxylistenaddr 127.0.0.1:5000 -target 127.0.0.1:6000 -state /tmp/pt",
    `  ${command} -server -transports obfs4 -bindaddr obfs4-0.0.0.0:443 \\`,
    "    -orport 127.0.0.1:9001 -state /var/lib/ptkit",
    "",
  );
  return lines.join("\n");
}

/**
 * The argument that makes the main module a worker child (`-workers`): its
 * setup comes on stdin. Here, not with the workers, so that a start that
 * has none does not load them.
 */
export const WORKER_ARG = "--ptkit-worker";
