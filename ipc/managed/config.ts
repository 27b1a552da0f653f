// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

// The managed proxy's configuration, parsed once by one pure function:
// `TOR_PT_*` variables and flags in, a typed configuration or a typed
// error out (what goptlib's ClientSetup/ServerSetup and lyrebird's main
// check, as a table can test it). Nothing here touches the system.

import type { TransportOptions } from "../../transports/transport.ts";
import { bracketBareIpv6, type HostPort, parseHostPort } from "../../net/address.ts";
import { isIpLiteral } from "../../net/_ip_address.ts";
import { DestinationPolicy } from "../../net/destination_policy.ts";
import { parseUserinfo } from "../../net/_userinfo.ts";
import { parseTransportOptions } from "../lines/_args.ts";
import { parseLogSeverity } from "../lines/_output.ts";
import { RepeatedKeyLog } from "../lines/_first_value.ts";
import { suggestOptionKey } from "../../transports/_option_keys.ts";
import { ENV_VARS, FLAGS, isHelpFlag, parseFlags } from "./_flags.ts";
import { parseBindAddr } from "./_bind_addr.ts";
import { parseOutboundBind } from "./_outbound_bind.ts";
import { parseUpstreamProxy, type UpstreamProxy } from "./_proxy_uri.ts";
import { realmProblem, usernameProblem } from "../../udp/turn/_credential_limits.ts";

export type { UpstreamProxy };

/** The client side: SOCKS front ends, transparent TCP, or datagrams. */
export interface ClientConfig {
  /** The side. */
  readonly kind: "client";
  /** The negotiated IPC version: `"2"` when offered, else `"1"`. */
  readonly version: "1" | "2";
  /** Requested transport names, in order (unknown ones are skipped when starting). */
  readonly transports: readonly string[];
  /** Options per transport name (`*` applies to all): `-options`, `TOR_PT_SERVER_TRANSPORT_OPTIONS`. */
  readonly options: ReadonlyMap<string, TransportOptions>;
  /** The state directory (`-state`, `TOR_PT_STATE_LOCATION`); absent: the working directory. */
  readonly stateDir?: string;
  /** Exit when stdin closes (`TOR_PT_EXIT_ON_STDIN_CLOSE=1`). */
  readonly exitOnStdinClose: boolean;
  /** The least severe `LOG` line sent (`-logLevel`). */
  readonly logLevel: "error" | "warning" | "notice" | "info" | "debug";
  /** Things worth a `LOG` warning once started (a repeated option key), never with a value. */
  readonly warnings: readonly string[];
  /**
   * Processes that serve (`-workers`), sharing each listening port
   * (`SO_REUSEPORT`, Linux): the first prints the `CMETHOD`/`SMETHOD` lines
   * and owns the state directory, the others are its children. Absent: 1.
   */
  readonly workers?: number;
  /**
   * Where Prometheus metrics are served (`-metrics HOST:PORT`, a port alone
   * meaning 127.0.0.1; no variable): `GET /metrics`. Absent: not served.
   */
  readonly metrics?: HostPort;
  /**
   * The keys of the front end that gave `options` beside the transports'
   * (a SIP003 plugin's `state`, `loglevel`, ...): a transport's unknown
   * option close to one of them is logged with it as the "did you mean"
   * hint (`stat` for `state`). Absent: none.
   */
  readonly frontEndKeys?: readonly string[];
  /**
   * `socks5`: a SOCKS front end per transport; `transparent-TCP`: relay to
   * `target`; `transparent-UDP` / `STUN`: datagrams framed by length / by
   * their STUN headers, each application source a flow to `target`.
   */
  readonly mode: "socks5" | "transparent-TCP" | "transparent-UDP" | "STUN";
  /** Where to listen (port 0: a free one). */
  readonly listen: HostPort;
  /** The PT server to dial: transparent modes and free mode. */
  readonly target?: HostPort;
  /**
   * Free mode (socks5 mode with `target`): every connection goes to
   * `target`, and the application's SOCKS destination travels through the
   * transport to the server's embedded SOCKS5 target (names unresolved).
   */
  readonly free: boolean;
  /** Datagram modes: datagrams held while a flow connects (default 64). */
  readonly udpQueue?: number;
  /** Datagram modes: milliseconds without a datagram before a flow closes. */
  readonly udpIdleTimeout?: number;
  /** The upstream proxy every connection goes through, fail-closed. */
  readonly proxy?: UpstreamProxy;
  /**
   * Source addresses of outgoing connections to servers and to the upstream
   * proxy (`TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6`; loopback destinations
   * are dialed normally). Absent: the system's choice.
   */
  readonly outboundBind?: { readonly v4?: string; readonly v6?: string };
  /**
   * The options given at start are all a transport gets (a bridge line in
   * `main.ts client`, an `ss://` link, SIP003 plugin options): they are
   * checked as a whole at start, so a line without its keys fails with
   * `CMETHOD-ERROR` instead of failing every connection. Under tor (the
   * default, `false`) a client's arguments may still come with each SOCKS
   * request, so only options given at start are checked; the transparent
   * and datagram modes, which have no SOCKS request, are checked whole.
   */
  readonly optionsComplete?: boolean;
}

/**
 * What both sides are configured with: the fields {@linkcode ClientConfig}
 * and {@linkcode ServerConfig} share, but for `kind`, `target` and
 * `outboundBind`. Internal (the `ipc` entry point does not export it).
 */
export type ManagedConfigBase = Omit<
  ClientConfig | ServerConfig,
  "kind" | "target" | "outboundBind"
>;

/** Where the server side sends decoded connections (internal shorthand). */
export type ServerTarget = ServerConfig["target"];

/**
 * The server side: transports in front of a target. The fields both sides
 * share (`version` to `frontEndKeys`) are those of {@linkcode ClientConfig}.
 */
export interface ServerConfig extends
  Pick<
    ClientConfig,
    | "version"
    | "transports"
    | "options"
    | "stateDir"
    | "exitOnStdinClose"
    | "logLevel"
    | "warnings"
    | "workers"
    | "metrics"
    | "frontEndKeys"
  > {
  /** The side. */
  readonly kind: "server";
  /** Where each transport listens (`TOR_PT_SERVER_BINDADDR`); others get 127.0.0.1, a free port. */
  readonly bindAddrs: ReadonlyMap<string, HostPort>;
  /**
   * More addresses a transport listens on besides its `bindAddrs` one (a
   * SIP003 server given several hosts: `ss-server -s 127.0.0.1 -s ::1`);
   * each gets its own `SMETHOD` line. Absent: none.
   */
  readonly moreBindAddrs?: ReadonlyMap<string, readonly HostPort[]>;
  /**
   * Where decoded connections go: tor's ORPort (bytes only), its Extended
   * ORPort (with the transport name and client address), any fixed TCP
   * service, the embedded SOCKS5 server (free mode), the destination each
   * connection of a free transport names (`free`: no `-target` when every
   * requested transport is free, as `shadowsocks`), UDP (transparent-UDP or
   * STUN toward a TURN server), or the embedded TURN server.
   */
  readonly target:
    | { readonly kind: "orport"; readonly address: HostPort }
    | {
      readonly kind: "extorport";
      readonly address: HostPort;
      readonly cookieFile: string;
      /**
       * How messages name the cookie file: `-authcookie` when the flag gave
       * it, else `TOR_PT_AUTH_COOKIE_FILE` (also what an absent one means).
       */
      readonly cookieFileFrom?: string;
    }
    | { readonly kind: "socks"; readonly policy: DestinationPolicy }
    | { readonly kind: "free"; readonly policy: DestinationPolicy }
    | {
      readonly kind: "udp";
      readonly address: HostPort;
      /** `length` (transparent-UDP) or `stun` (STUN mode toward a TURN server). */
      readonly framing: "length" | "stun";
      /** Milliseconds without a datagram before a flow closes. */
      readonly idleTimeout?: number;
    }
    | {
      readonly kind: "turn";
      readonly realm: string;
      /** The TURN user; absent: generated, and printed in the `SMETHOD` ARGS. */
      readonly credentials?: { readonly user: string; readonly password: string };
      readonly allowLoopbackPeers: boolean;
      readonly allowPrivatePeers: boolean;
      /** Address relayed sockets bind to; defaults to the transport's listen address. */
      readonly relayAddress?: string;
      /** `-udpidletimeout` in ms: a connection with no frame either way for this long, and no live allocation, ends. */
      readonly idleTimeout?: number;
    };
  /** Source addresses of outgoing connections (`TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6`). */
  readonly outboundBind: { readonly v4?: string; readonly v6?: string };
}

/**
 * What the arguments and variables ask for: `help` (print the usage),
 * `ptkit-version` (print ptkit's version), or a side to run.
 */
export type ManagedConfig =
  | { readonly kind: "help" }
  | { readonly kind: "ptkit-version" }
  | ClientConfig
  | ServerConfig;

/**
 * The configuration cannot run: the error line to send (`keyword`), the
 * exit code, and the version negotiated before the error, if any (a
 * `VERSION` line then comes first, and decides whether the error line goes
 * to stdout or stderr). No configuration at all has no keyword: print the
 * usage. Messages never hold a secret.
 *
 * @example Telling the parent why a configuration cannot run
 * ```ts
 * import { ManagedConfigError, parseManagedConfig } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * let error: unknown;
 * try {
 *   parseManagedConfig(["-client", "-transports", "plain", "-bogus"]);
 * } catch (caught) {
 *   error = caught;
 * }
 * ok(error instanceof ManagedConfigError);
 * // What a parent reads on stdout: `VERSION 2`, then `ENV-ERROR Unknown flag -bogus`.
 * deepStrictEqual([error.version, error.keyword, error.message], ["2", "ENV-ERROR", "Unknown flag -bogus"]);
 * deepStrictEqual(error.exitCode, 64);
 * ```
 */
export class ManagedConfigError extends Error {
  /** `VERSION-ERROR`, `ENV-ERROR`, `PROXY-ERROR`, or undefined for no configuration at all. */
  readonly keyword: "VERSION-ERROR" | "ENV-ERROR" | "PROXY-ERROR" | undefined;
  /** The exit code: 64 (`ENV-ERROR`, usage), 69 (`PROXY-ERROR`), 78 (`VERSION-ERROR`). */
  readonly exitCode: 64 | 69 | 78;
  /** The version negotiated before the error, if it came that far. */
  readonly version: "1" | "2" | undefined;

  /**
   * Make the error.
   *
   * @param keyword The error line's keyword, or undefined for usage.
   * @param message The error line's message.
   * @param version The version negotiated so far.
   */
  constructor(
    keyword: ManagedConfigError["keyword"],
    message: string,
    version?: "1" | "2",
  ) {
    super(message);
    this.name = "ManagedConfigError";
    this.keyword = keyword;
    this.exitCode = keyword === "PROXY-ERROR" ? 69 : keyword === "VERSION-ERROR" ? 78 : 64;
    this.version = version;
  }
}

/** The flags whose value may be `@FILE` (see `readValueFile`), by key. */
const VALUE_FILE_FLAGS: readonly (readonly [string, string])[] = [
  ["options", "-options"],
  ["turnUser", "-turnuser"],
  ["proxy", "-proxy"],
];

/**
 * Parse the managed proxy's configuration: flags (`-flag value`,
 * `--flag=value`; flags win) over `TOR_PT_*` variables, PT 1.0 and PT 2.0
 * draft 1, as `main.ts` reads them (see its `--help` and the README).
 * Pure: it reads nothing but its input, creates nothing, prints nothing.
 *
 * @param args The command-line arguments.
 * @param env The `TOR_PT_*` variables that are set (others are ignored).
 * @param options `notUtf8`: variables that are set but not valid UTF-8
 * (`ENV-ERROR`, without echoing them); `known`: the transports on offer (a
 * fixed `-proxylistenaddr` port allows one of them; default: any name);
 * `free`: the free transports among them (a server of free transports
 * only needs no target: each connection names its destination; default:
 * none); `cpus`: the number of CPUs, the server's default `-workers` (default 1;
 * `runManagedProxy` gives `navigator.hardwareConcurrency`); `readValueFile`:
 * reads the file of a `-options`, `-turnuser` or `-proxy` value written
 * `@FILE` (given the path and the flag; what it throws is an `ENV-ERROR`;
 * default: none, the value is taken as written; `runManagedProxy` reads
 * the file).
 * @returns The configuration.
 * @throws {ManagedConfigError} What the parent must be told, and the exit
 * code.
 * @throws {TypeError} When `args` is not an array of strings, `env` not an
 * object whose `TOR_PT_*` values are strings, or `options` not an object
 * (`notUtf8` an array of strings, `cpus` a number): the message names the
 * argument or variable, never a value of the environment.
 *
 * @example The client side, as tor configures it
 * ```ts
 * import { parseManagedConfig } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const config = parseManagedConfig([], {
 *   TOR_PT_MANAGED_TRANSPORT_VER: "1",
 *   TOR_PT_CLIENT_TRANSPORTS: "obfs4,plain",
 *   TOR_PT_STATE_LOCATION: "/var/lib/tor/pt_state",
 *   TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
 * });
 * deepStrictEqual(config.kind === "client" && [config.version, config.transports], [
 *   "1",
 *   ["obfs4", "plain"],
 * ]);
 * ```
 *
 * @example Errors are values with their line and exit code
 * ```ts
 * import { ManagedConfigError, parseManagedConfig } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * try {
 *   parseManagedConfig(["-transports", "plain", "-mode", "bogus"]);
 *   ok(false);
 * } catch (error) {
 *   ok(error instanceof ManagedConfigError);
 *   deepStrictEqual([error.keyword, error.exitCode, error.version], ["ENV-ERROR", 64, "2"]);
 * }
 * ```
 */
export function parseManagedConfig(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  options: {
    readonly notUtf8?: readonly string[];
    readonly known?: Iterable<string>;
    readonly free?: Iterable<string>;
    readonly cpus?: number;
    readonly readValueFile?: (path: string, what: string) => string;
  } = {},
): ManagedConfig {
  checkArguments(args, env, options);
  const vars: Record<string, string> = {};
  for (const name of ENV_VARS) {
    const value = env[name];
    if (value !== undefined) vars[name] = value;
  }
  const notUtf8 = (options.notUtf8 ?? []).filter((name) => ENV_VARS.includes(name));
  let flags = parseFlags(args);
  // Both asked for (`--version --help`): the first one given, as GNU tools do.
  const versionAt = versionRequest(args);
  const helpAt = flags.values.help === "true" ? args.findIndex(isHelpFlag) : -1;
  if (helpAt >= 0 && (versionAt < 0 || helpAt < versionAt)) return { kind: "help" };
  if (versionAt >= 0) return { kind: "ptkit-version" };
  if (args.length === 0 && Object.keys(vars).length === 0 && notUtf8.length === 0) {
    throw new ManagedConfigError(
      undefined,
      "No configuration: this program is started by tor or with flags.",
    );
  }
  const value = (key: string): string | undefined => {
    const flag = FLAGS.find((f) => f.key === key);
    return flags.values[key] ?? (flag?.env === undefined ? undefined : vars[flag.env]);
  };
  const notUtf8Message = () =>
    `${notUtf8.join(", ")} ${notUtf8.length === 1 ? "is" : "are"} not valid UTF-8`;

  // 1. Version.
  if (notUtf8.includes("TOR_PT_MANAGED_TRANSPORT_VER") && flags.values.version === undefined) {
    throw new ManagedConfigError("ENV-ERROR", notUtf8Message());
  }
  const offered = value("version");
  let versions: string[];
  if (offered === undefined) {
    const set = Object.keys(vars);
    if (set.length > 0) {
      // Flags with a variable left in the environment (exported by hand, or
      // by a service manager): say which one made this a parent's run.
      throw new ManagedConfigError(
        "VERSION-ERROR",
        args.length === 0
          ? "no-version"
          : `no-version (TOR_PT_MANAGED_TRANSPORT_VER is not set, but ${set.join(", ")} ${
            set.length === 1 ? "is" : "are"
          }: give -ptversion, or unset ${set.length === 1 ? "it" : "them"})`,
      );
    }
    versions = ["2"]; // Standalone use with flags only.
  } else {
    // Empty items (`1,`, `,2`, `1,,2`) are ignored, as goptlib finds `1` in
    // any list; a version with a space or control character is malformed.
    versions = offered.split(",").filter((v) => v !== "");
    if (!versions.every((v) => /^[\x21-\x2b\x2d-\x7e]+$/.test(v))) {
      throw new ManagedConfigError("VERSION-ERROR", "no-version (malformed version list)");
    }
  }
  const version = versions.includes("2") ? "2" : versions.includes("1") ? "1" : undefined;
  if (version === undefined) throw new ManagedConfigError("VERSION-ERROR", "no-version");

  // 2. Everything else; errors from here on come after the VERSION line.
  const envError = (message: string): never => {
    // A value quoted in the message may be huge (a 128 KiB host name): keep
    // its start and the reason at its end.
    throw new ManagedConfigError(
      "ENV-ERROR",
      message.length > 512 ? `${message.slice(0, 256)}...${message.slice(-200)}` : message,
      version,
    );
  };
  const attempt = <T>(f: () => T): T => {
    try {
      return f();
    } catch (error) {
      return envError((error as Error).message);
    }
  };
  if (notUtf8.length > 0) envError(notUtf8Message());
  if (flags.errors.length > 0) envError(flags.errors.join("; "));
  // `-options @FILE`, `-turnuser @FILE`, `-proxy @FILE`: a value that holds
  // a password, read from a file so that it never shows in the process list.
  const read = options.readValueFile;
  if (read !== undefined) {
    const values = { ...flags.values };
    for (const [key, flag] of VALUE_FILE_FLAGS) {
      const given = values[key];
      if (given?.startsWith("@")) values[key] = attempt(() => read(given.slice(1), flag));
    }
    flags = { ...flags, values };
  }
  const logLevel = attempt(() => parseLogSeverity(value("logLevel") ?? "notice", "-logLevel"));
  const serverFlag = flags.values.server === "true";
  const clientFlag = flags.values.client === "true";
  if (serverFlag && clientFlag) envError("Both -client and -server given");
  const clientEnv = vars.TOR_PT_CLIENT_TRANSPORTS;
  const serverEnv = vars.TOR_PT_SERVER_TRANSPORTS;
  // An empty list is none, as lyrebird and obfs4proxy take it: a parent
  // that clears the other side's variable asks for one side.
  const clientListed = clientEnv !== undefined && clientEnv.trim() !== "";
  if (!clientFlag && clientListed && serverEnv !== undefined && serverEnv.trim() !== "") {
    envError("Both TOR_PT_CLIENT_TRANSPORTS and TOR_PT_SERVER_TRANSPORTS are set");
  }
  const server = serverFlag || (!clientFlag && serverEnv !== undefined && !clientListed);
  const exitOnStdinClose = flags.values.exitOnStdinClose !== undefined
    ? flags.values.exitOnStdinClose === "true"
    : vars.TOR_PT_EXIT_ON_STDIN_CLOSE === "1";
  const transportList = flags.values.transports ?? (server ? serverEnv : clientEnv);
  if (transportList === undefined || transportList.trim() === "") {
    envError(
      `No transports requested (TOR_PT_${server ? "SERVER" : "CLIENT"}_TRANSPORTS or -transports)`,
    );
  }
  const transports = transportList!.split(",").map((t) => t.trim()).filter((t) => t !== "");
  const warnings: string[] = [];
  let transportOptions = new Map<string, TransportOptions>();
  const optionsText = value("options");
  if (optionsText !== undefined) {
    const where = flags.values.options !== undefined
      ? "-options"
      : "TOR_PT_SERVER_TRANSPORT_OPTIONS";
    const repeated = new RepeatedKeyLog((message) => warnings.push(message));
    transportOptions = attempt(() =>
      parseTransportOptions(optionsText, {
        onRepeatedKey: (key, name) => repeated.report(`${where} for '${name}'`, key),
      })
    );
    warnings.push(...unstartedOptions(where, [...transportOptions.keys()], transports));
  }
  // Empty is none (a launcher that sets every variable, as ptadapter does):
  // the working directory then, with the notice an unset one gets.
  const stateDir = value("state") || undefined;
  const metrics = flags.values.metrics === undefined
    ? undefined
    : attempt(() => parseMetricsAddress(flags.values.metrics!, "-metrics"));
  const base = {
    version,
    transports,
    options: transportOptions,
    ...(stateDir === undefined ? {} : { stateDir }),
    exitOnStdinClose,
    logLevel,
    warnings,
    ...(metrics === undefined ? {} : { metrics }),
  } as const;
  const side = server
    ? serverConfig(base, flags.values, value, vars, envError, attempt, onlyFree(base, options))
    : clientConfig(base, flags.values, value, vars, options.known, envError, attempt, version);
  return { ...side, workers: workerCount(side, flags.values.workers, options.cpus, envError) };
}

/**
 * Warnings for options given to a transport that is not started (`*`, JSON
 * settings for every transport, excepted): a misspelt name, or SMETHOD's
 * `ARGS:k=v,...` pasted whole, leaves the transport without them. A name
 * that is not a transport name (a C identifier) may be a piece of a
 * password, and is not shown.
 */
function unstartedOptions(
  where: string,
  names: readonly string[],
  transports: readonly string[],
): string[] {
  const warnings: string[] = [];
  for (const name of names) {
    if (name === "*" || transports.includes(name)) continue;
    const started = transports.join(", ");
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) {
      warnings.push(
        `Ignored ${where} under a name that is not a transport name (not shown): the transports started are ${started}`,
      );
      continue;
    }
    const near = suggestOptionKey(name, transports);
    warnings.push(
      `Ignored ${where} for transport '${name}': it is not among the transports started (${started}${
        near === undefined ? "" : `; did you mean '${near}'?`
      })`,
    );
  }
  return warnings;
}

/** What a value is, for an error: `null`, `array` or its `typeof`. */
function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/**
 * Flags and `TOR_PT_*` variables as a library caller gives them, checked for
 * shape: an array of strings and an object whose `TOR_PT_*` values are
 * strings (the variable is named, never its value). Internal:
 * `parseManagedConfig` and `startInWorker`.
 *
 * @param args The flags.
 * @param env The variables.
 * @param caller Who was given them, for the message (`parseManagedConfig`).
 * @throws {TypeError} When either is not of that shape.
 */
export function checkArgsAndEnv(args: unknown, env: unknown, caller: string): void {
  if (!Array.isArray(args)) {
    throw new TypeError(
      `Invalid args for ${caller}: expected an array of strings, got ${typeName(args)}`,
    );
  }
  args.forEach((arg, i) => {
    if (typeof arg !== "string") {
      throw new TypeError(
        `Invalid args[${i}] for ${caller}: expected a string, got ${typeName(arg)}`,
      );
    }
  });
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError(
      `Invalid env for ${caller}: expected an object of strings, got ${typeName(env)}`,
    );
  }
  for (const name of ENV_VARS) {
    const value = (env as Record<string, unknown>)[name];
    if (value !== undefined && typeof value !== "string") {
      throw new TypeError(
        `Invalid env ${name} for ${caller}: expected a string, got ${typeName(value)}`,
      );
    }
  }
}

/** parseManagedConfig's arguments, checked for shape (a library caller's mistake). */
function checkArguments(args: unknown, env: unknown, options: unknown): void {
  checkArgsAndEnv(args, env, "parseManagedConfig");
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `Invalid options for parseManagedConfig: expected an object, got ${typeName(options)}`,
    );
  }
  const { notUtf8, cpus } = options as { notUtf8?: unknown; cpus?: unknown };
  if (
    notUtf8 !== undefined &&
    (!Array.isArray(notUtf8) || !notUtf8.every((name) => typeof name === "string"))
  ) {
    throw new TypeError(
      `Invalid options.notUtf8 for parseManagedConfig: expected an array of variable names, got ${
        typeName(notUtf8)
      }`,
    );
  }
  if (cpus !== undefined && typeof cpus !== "number") {
    throw new TypeError(
      `Invalid options.cpus for parseManagedConfig: expected a number, got ${typeName(cpus)}`,
    );
  }
}

/** Most worker processes `-workers` accepts. */
const MAX_WORKERS = 256;

/**
 * `-workers N`: 1 to 256; default the number of CPUs on the server, 1 on
 * the client (tor starts one client PT per user). The datagram modes run in
 * one process: their flows and the embedded TURN server hold state.
 * (`main.ts server --workers` too.)
 *
 * @param config The side.
 * @param text The flag's value, if given.
 * @param cpus The default for a server.
 * @param envError Throws the error for a bad value.
 * @returns The number of processes.
 */
export function workerCount(
  config: ClientConfig | ServerConfig,
  text: string | undefined,
  cpus: number | undefined,
  envError: EnvError,
): number {
  const datagrams = config.kind === "server"
    ? config.target.kind === "udp" || config.target.kind === "turn"
    : config.mode === "transparent-UDP" || config.mode === "STUN";
  if (text === undefined) {
    if (config.kind === "client" || datagrams) return 1;
    const count = Math.floor(cpus ?? 1);
    return Number.isFinite(count) ? Math.min(Math.max(count, 1), MAX_WORKERS) : 1;
  }
  const workers = Number(text);
  if (!/^[0-9]{1,4}$/.test(text) || workers < 1 || workers > MAX_WORKERS) {
    envError(
      `Invalid -workers ${
        JSON.stringify(text.slice(0, 32))
      }: expected a whole number from 1 to ${MAX_WORKERS}`,
    );
  }
  if (workers > 1 && datagrams) {
    envError("-workers above 1 needs a TCP mode: the datagram modes run in one process");
  }
  return workers;
}

/** Whether every known requested transport is free (and one is requested). */
function onlyFree(
  base: ManagedConfigBase,
  options: { readonly known?: Iterable<string>; readonly free?: Iterable<string> },
): boolean {
  const free = new Set(options.free ?? []);
  const known = options.known === undefined ? undefined : new Set(options.known);
  const started = base.transports.filter((t) => known?.has(t) ?? true);
  return started.length > 0 && started.every((t) => free.has(t));
}

type Flags = Readonly<Record<string, string>>;
/** Throws the configuration error `message` names. */
export type EnvError = (message: string) => never;
type Attempt = <T>(f: () => T) => T;

function clientConfig(
  base: ManagedConfigBase,
  flags: Flags,
  value: (key: string) => string | undefined,
  env: Readonly<Record<string, string>>,
  known: Iterable<string> | undefined,
  envError: EnvError,
  attempt: Attempt,
  version: "1" | "2",
): ClientConfig {
  // Flags only (tor sets no variable of the other side): one given here
  // would be ignored, and the run would not do what was asked.
  for (const key of ["bindAddr", "allow", "orPort", "extOrPort", "authCookie"]) {
    if (flags[key] !== undefined) envError(`-${key.toLowerCase()} is a server flag (add -server)`);
  }
  const mode = flags.mode ?? "socks5";
  if (!["socks5", "transparent-TCP", "transparent-UDP", "STUN"].includes(mode)) {
    envError(
      `Invalid -mode ${
        JSON.stringify(mode)
      }: expected socks5, transparent-TCP, transparent-UDP or STUN`,
    );
  }
  const datagrams = mode === "transparent-UDP" || mode === "STUN";
  for (const key of ["turnUser", "turnRealm"]) {
    if (flags[key] !== undefined) envError(`-${key.toLowerCase()} is a server flag`);
  }
  if (!datagrams) {
    for (const key of ["udpIdleTimeout", "udpQueue"]) {
      if (flags[key] !== undefined) {
        envError(`-${key.toLowerCase()} needs -mode transparent-UDP or STUN`);
      }
    }
  }
  let udpQueue: number | undefined;
  if (flags.udpQueue !== undefined) {
    udpQueue = Number(flags.udpQueue);
    if (!/^[0-9]+$/.test(flags.udpQueue) || udpQueue > 65536) {
      envError(`Invalid -udpqueue ${JSON.stringify(flags.udpQueue)}: expected 0-65536 datagrams`);
    }
  }
  const udpIdleTimeout = idleTimeout(flags, envError);
  const free = flags.free === "true";
  if (free && mode !== "socks5") envError("-free needs -mode socks5");
  let listen: HostPort = { hostname: "127.0.0.1", port: 0 };
  if (flags.proxyListenAddr !== undefined) {
    // An IPv6 address without brackets is repaired, as -bindaddr's and -orport's are.
    listen = attempt(() =>
      parseHostPort(bracketBareIpv6(flags.proxyListenAddr!), "-proxylistenaddr")
    );
    const offered = known === undefined ? undefined : new Set(known);
    const started = new Set(base.transports.filter((t) => offered?.has(t) ?? true));
    if (listen.port !== 0 && started.size > 1) {
      envError("-proxylistenaddr with a fixed port allows only one transport");
    }
  }
  let target: HostPort | undefined;
  if (flags.target !== undefined) {
    if (mode === "socks5" && !free) envError("-target needs -mode transparent-TCP (or -free)");
    target = attempt(() => destination(flags.target!, "-target"));
  } else if (mode !== "socks5" || free) {
    envError(`${free ? "-free" : `-mode ${mode}`} needs -target`);
  }
  // tor sets these for client PTs too (pt-spec's common variables).
  const outboundBind = attempt(() =>
    parseOutboundBind(env.TOR_PT_OUTBOUND_BIND_ADDRESS_V4, env.TOR_PT_OUTBOUND_BIND_ADDRESS_V6)
  );
  // The upstream proxy is checked last: its error is PROXY-ERROR.
  let proxy: UpstreamProxy | undefined;
  const proxyText = value("proxy");
  if (proxyText !== undefined && proxyText !== "") {
    try {
      proxy = parseUpstreamProxy(proxyText);
    } catch (error) {
      throw new ManagedConfigError("PROXY-ERROR", (error as Error).message, version);
    }
  }
  return {
    ...base,
    kind: "client",
    mode: mode as ClientConfig["mode"],
    listen,
    ...(target === undefined ? {} : { target }),
    free,
    ...(udpQueue === undefined ? {} : { udpQueue }),
    ...(udpIdleTimeout === undefined ? {} : { udpIdleTimeout }),
    ...(proxy === undefined ? {} : { proxy }),
    ...(outboundBind.v4 === undefined && outboundBind.v6 === undefined ? {} : { outboundBind }),
  };
}

function serverConfig(
  base: ManagedConfigBase,
  flags: Flags,
  value: (key: string) => string | undefined,
  env: Readonly<Record<string, string>>,
  envError: EnvError,
  attempt: Attempt,
  onlyFree: boolean,
): ServerConfig {
  if (flags.proxyListenAddr !== undefined) {
    envError("-proxylistenaddr is a client flag: use -bindaddr");
  }
  if (flags.free !== undefined) envError("-free is a client flag");
  if (flags.proxy !== undefined) envError("-proxy is a client flag");
  const bindAddrs = attempt(() =>
    parseBindAddr(
      value("bindAddr") ?? "",
      flags.bindAddr === undefined ? "TOR_PT_SERVER_BINDADDR" : "-bindaddr",
    )
  );
  const mode = flags.mode ?? "transparent-TCP";
  if (!["socks5", "transparent-TCP", "transparent-UDP", "STUN"].includes(mode)) {
    envError(
      `Invalid -mode ${
        JSON.stringify(mode)
      }: expected transparent-TCP, socks5, transparent-UDP or STUN`,
    );
  }
  const targetText = flags.target;
  const datagrams = mode === "transparent-UDP" || mode === "STUN";
  if (!datagrams) {
    for (const key of ["udpIdleTimeout", "turnUser", "turnRealm"]) {
      if (flags[key] !== undefined) {
        envError(`-${key.toLowerCase()} needs -mode transparent-UDP or STUN`);
      }
    }
  }
  if (flags.udpQueue !== undefined) envError("-udpqueue is a client flag");
  // The embedded TURN server frames as STUN: the other modes cannot end there.
  if (targetText === "turn" && mode !== "STUN") {
    envError(`-target turn needs -mode STUN (the embedded TURN server), not ${mode}`);
  }
  let target: ServerTarget;
  if (datagrams) {
    target = datagramTarget(mode as "transparent-UDP" | "STUN", flags, envError, attempt);
  } else if (mode === "socks5" || targetText === "socks") {
    if (targetText !== undefined && targetText !== "socks") {
      envError("-mode socks5 on the server takes no -target address (it is the SOCKS target)");
    }
    target = { kind: "socks", policy: attempt(() => DestinationPolicy.parse(flags.allow ?? "")) };
  } else if (
    onlyFree && targetText === undefined && !value("extOrPort") && !value("orPort")
  ) {
    // Free transports only: each connection names its destination.
    target = { kind: "free", policy: attempt(() => DestinationPolicy.parse(flags.allow ?? "")) };
  } else {
    if (flags.allow !== undefined) {
      envError("-allow needs -target socks (or free transports only, without a target)");
    }
    // goptlib resolves neither: tor gives IP addresses, and a host name
    // would be looked up for every connection.
    const ipAddress = (what: string, text: string) => {
      const parsed = attempt(() => destination(bracketBareIpv6(text), what));
      if (!isIpLiteral(parsed.hostname)) {
        envError(`Invalid ${what} ${JSON.stringify(text)}: the host must be an IP address`);
      }
      return parsed;
    };
    const ext = value("extOrPort");
    const orPort = value("orPort");
    // Errors name what the operator wrote: the flag, or the variable.
    const named = (key: string, variable: string) =>
      flags[key] === undefined ? variable : `-${key.toLowerCase()}`;
    if (targetText !== undefined) {
      target = { kind: "orport", address: attempt(() => destination(targetText, "-target")) };
    } else if (ext !== undefined && ext !== "") {
      const cookieFile = value("authCookie");
      if (cookieFile === undefined || cookieFile === "") {
        envError(
          `${named("extOrPort", "TOR_PT_EXTENDED_SERVER_PORT")} needs ` +
            "TOR_PT_AUTH_COOKIE_FILE (-authcookie)",
        );
      }
      target = {
        kind: "extorport",
        address: ipAddress(named("extOrPort", "TOR_PT_EXTENDED_SERVER_PORT"), ext),
        cookieFile: cookieFile!,
        cookieFileFrom: named("authCookie", "TOR_PT_AUTH_COOKIE_FILE"),
      };
    } else if (orPort !== undefined && orPort !== "") {
      target = { kind: "orport", address: ipAddress(named("orPort", "TOR_PT_ORPORT"), orPort) };
    } else {
      return envError(
        "No target: set TOR_PT_ORPORT, TOR_PT_EXTENDED_SERVER_PORT, -target HOST:PORT or -target socks",
      );
    }
  }
  const outboundBind = attempt(() =>
    parseOutboundBind(env.TOR_PT_OUTBOUND_BIND_ADDRESS_V4, env.TOR_PT_OUTBOUND_BIND_ADDRESS_V6)
  );
  return { ...base, kind: "server", bindAddrs, target, outboundBind };
}

/** The server's target in transparent-UDP and STUN mode. */
function datagramTarget(
  mode: "transparent-UDP" | "STUN",
  flags: Flags,
  envError: EnvError,
  attempt: Attempt,
): ServerTarget {
  const text = flags.target;
  if (text === undefined) {
    return envError(
      mode === "STUN"
        ? "-mode STUN needs -target: a TURN server's HOST:PORT, or turn for the embedded one"
        : "-mode transparent-UDP needs -target HOST:PORT (where datagrams go)",
    );
  }
  if (mode === "STUN" && text === "turn") {
    const allowed = (flags.allow ?? "").split(",").map((a) => a.trim()).filter((a) => a !== "");
    for (const a of allowed) {
      if (a !== "loopback" && a !== "private") {
        envError(
          `Invalid -allow ${JSON.stringify(a)} for -target turn: expected loopback or private`,
        );
      }
    }
    let credentials: { user: string; password: string } | undefined;
    if (flags.turnUser !== undefined) {
      // The user name ends at the first ":"; the value is never echoed (it
      // holds the password).
      const given = parseUserinfo(flags.turnUser);
      if (given.username === "" || !given.password) {
        envError("Invalid -turnuser: expected USER:PASSWORD, both non-empty");
      }
      const problem = usernameProblem(given.username);
      if (problem !== undefined) envError(`Invalid -turnuser: ${problem}`);
      credentials = { user: given.username, password: given.password! };
    }
    const realmTrouble = flags.turnRealm === undefined ? undefined : realmProblem(flags.turnRealm);
    if (realmTrouble !== undefined) envError(`Invalid -turnrealm: ${realmTrouble}`);
    const idle = idleTimeout(flags, envError);
    return {
      kind: "turn",
      realm: flags.turnRealm ?? "ptkit",
      ...(credentials === undefined ? {} : { credentials }),
      allowLoopbackPeers: allowed.includes("loopback"),
      allowPrivatePeers: allowed.includes("private"),
      ...(idle === undefined ? {} : { idleTimeout: idle }),
    };
  }
  for (const key of ["allow", "turnUser", "turnRealm"]) {
    if (flags[key] !== undefined) envError(`-${key.toLowerCase()} needs -mode STUN -target turn`);
  }
  const address = attempt(() => destination(text, "-target"));
  const idle = idleTimeout(flags, envError);
  return {
    kind: "udp",
    address,
    framing: mode === "STUN" ? "stun" : "length",
    ...(idle === undefined ? {} : { idleTimeout: idle }),
  };
}

/** `host:port` with a port that can be dialed (1-65535). */
function destination(text: string, what: string): HostPort {
  return parseHostPort(text, what, 1);
}

/**
 * Where metrics are served: `HOST:PORT` (IPv6 in brackets), or a port
 * alone for 127.0.0.1. Internal (the managed proxy's `-metrics`, the CLI's
 * `--metrics`).
 *
 * @param text The value.
 * @param what The flag, for the error message.
 * @returns The address.
 * @throws {SyntaxError} When it is not of that form.
 * @throws {RangeError} When the port is out of 0-65535.
 */
export function parseMetricsAddress(text: string, what: string): HostPort {
  if (!/^[0-9]+$/.test(text)) return parseHostPort(text, what);
  const port = Number(text);
  if (port > 65535) throw new RangeError(`Invalid ${what} port ${text}: must be 0-65535`);
  return { hostname: "127.0.0.1", port };
}

/** The longest -udpidletimeout, in seconds: a timer waits at most 2^31 - 1 ms. */
const MAX_IDLE_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** `-udpidletimeout` (seconds) in milliseconds. */
function idleTimeout(flags: Flags, envError: EnvError): number | undefined {
  const text = flags.udpIdleTimeout;
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || seconds <= 0) {
    envError(
      `Invalid -udpidletimeout ${JSON.stringify(text)}: expected a positive number of seconds`,
    );
  } else if (seconds > MAX_IDLE_SECONDS) {
    // The longest a timer waits (2^31 - 1 ms, about 24.8 days).
    envError(
      `Invalid -udpidletimeout ${JSON.stringify(text)}: at most ${MAX_IDLE_SECONDS} seconds`,
    );
  }
  return seconds * 1000;
}

/**
 * Where the arguments ask for ptkit's version (-1: they do not):
 * `--version` (or `-version`) with nothing after it or a flag after it.
 * `-version LIST` stays the PT 2.0 draft 1 spelling of `-ptversion`.
 */
function versionRequest(args: readonly string[]): number {
  return args.findIndex((arg, i) =>
    /^--?version$/i.test(arg) && (i + 1 >= args.length || args[i + 1]!.startsWith("-"))
  );
}
