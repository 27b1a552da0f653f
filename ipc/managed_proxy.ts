// Copyright the ptkit authors. MIT license.

import type { Transport, TransportOptions } from "../transports/transport.ts";
import { type HostPort, parseHostPort } from "../net/address.ts";
import { type Dialer, tcpDialer } from "../net/net_conn.ts";
import { ENV_VARS, FLAGS, parseFlags, usage } from "./flags.ts";
import { IpcOutput, type LogSeverity, parseLogSeverity } from "./ipc_output.ts";
import type { ClientSettings, RunningProxy } from "./managed_client.ts";
import { registry as defaultRegistry } from "./registry.ts";
import { ignoredOptionLog } from "./requested_transports.ts";
import { parseTransportOptions } from "./settings.ts";
import type { ServerSettings, ServerTarget } from "./managed_server.ts";
import { parseBindAddr } from "./bind_addr.ts";
import { isIpLiteral } from "../net/ip_address.ts";
import { bracketBareIpv6 } from "../net/address.ts";
import { DestinationPolicy } from "../net/destination_policy.ts";
import { outboundDialer, parseOutboundBind } from "./outbound_dialer.ts";
import { SignalHub } from "./signal_hub.ts";
import { RepeatedKeyLog } from "./first_value_pairs.ts";
import { MAX_MESSAGE_LINE_LENGTH } from "./message_line.ts";
import { parseUserinfo } from "../net/userinfo.ts";
import { PTKIT_VERSION } from "./version.ts";
import { releaseEarlySignals } from "./early_signals.ts";
import { chooseRuntimeCrypto } from "../net/native_crypto.ts";
import { describe as describeError } from "./describe_error.ts";

/** Exit codes of the managed proxy (PT 2.0 draft 1, sysexits.h). */
export const ExitCode = {
  /** Graceful exit. */
  ok: 0,
  /** `ENV-ERROR`, bad flags, or no parent at all (EX_USAGE). */
  usage: 64,
  /** `PROXY-ERROR` (EX_UNAVAILABLE). */
  unavailable: 69,
  /** `VERSION-ERROR` (EX_CONFIG). */
  config: 78,
} as const;

/** Options for {@linkcode runManagedProxy}. */
export interface ManagedProxyOptions {
  /** Command-line arguments. */
  readonly args: readonly string[];
  /** Reads an environment variable. Defaults to `Deno.env.get`. */
  readonly getEnv?: (name: string) => string | undefined;
  /** The transports on offer. Defaults to {@linkcode registry}. */
  readonly registry?: ReadonlyMap<string, Transport>;
  /** How the program is invoked, for the usage text. Defaults to `main.ts`. */
  readonly command?: string;
  /** Where lines go. Defaults to the process's stdout and stderr. */
  readonly stdout?: (line: string) => void;
  /** Where error lines (version 2) and plain text go. */
  readonly stderr?: (line: string) => void;
  /**
   * Aborting it shuts the proxy down at once (as SIGTERM does). The process
   * signals, stdin and parent watch are only used when `process` is true.
   */
  readonly signal?: AbortSignal;
  /** Watch SIGTERM, SIGINT, stdin and the parent process. Defaults to true. */
  readonly process?: boolean;
  /**
   * The parent's input in place of stdin (for `CMESSAGE` / `SMESSAGE` lines;
   * its end is stdin closing). Defaults to the process's stdin when
   * `process` is true and stdin is not a terminal.
   */
  readonly stdin?: ReadableStream<Uint8Array>;
}

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/**
 * Run the managed proxy until it should exit, and return the exit code:
 * read the configuration from flags and `TOR_PT_*` variables (flags win),
 * negotiate the version, check the upstream proxy, start the transports,
 * report them on stdout, then serve until stdin closes (with
 * `TOR_PT_EXIT_ON_STDIN_CLOSE=1`), SIGTERM, SIGINT (drain; a second one,
 * half a second or more later, exits: one Ctrl-C reaches a PT under
 * `deno task` twice), or the parent dies. Each transport gets `local` (files in the
 * state directory) and `signals`: what it writes becomes a `CMESSAGE` line
 * (client) or `SMESSAGE` line (server) on stdout, and the other kind read
 * on stdin (whenever stdin is not a terminal) is delivered to it; bad
 * lines are logged and ignored.
 *
 * @param options Arguments, environment and output.
 * @returns The exit code (see {@linkcode ExitCode}).
 *
 * @example Refusing a parent that speaks no known version
 * ```ts
 * import { runManagedProxy } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const lines: string[] = [];
 * const code = await runManagedProxy({
 *   args: ["-ptversion", "3", "-transports", "plain"],
 *   getEnv: () => undefined,
 *   stdout: (line) => lines.push(line),
 *   process: false,
 * });
 * deepStrictEqual([code, lines], [78, ["VERSION-ERROR no-version\n"]]);
 * ```
 */
export async function runManagedProxy(options: ManagedProxyOptions): Promise<number> {
  const readEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const command = options.command ?? "main.ts";
  const flags = parseFlags(options.args);
  const env: Record<string, string> = {};
  const notUtf8: string[] = [];
  for (const name of ENV_VARS) {
    let value: string | undefined;
    try {
      value = readEnv(name);
    } catch (error) {
      // Deno throws InvalidData for a value that is not valid UTF-8.
      if (!(error instanceof Deno.errors.InvalidData)) throw error;
      notUtf8.push(name);
      continue;
    }
    if (value !== undefined) env[name] = value;
  }
  const getEnv = (name: string) => ENV_VARS.includes(name) ? env[name] : readEnv(name);
  const plainOut = options.stdout ??
    ((line: string) => writeAll(Deno.stdout, new TextEncoder().encode(line)));
  const plainErr = options.stderr ??
    ((line: string) => writeAll(Deno.stderr, new TextEncoder().encode(line)));
  if (flags.values.help === "true") {
    plainOut(usage(command));
    return ExitCode.ok;
  }
  if (asksForVersion(options.args)) {
    plainOut(`ptkit ${PTKIT_VERSION}\n`);
    return ExitCode.ok;
  }
  if (options.args.length === 0 && Object.keys(env).length === 0 && notUtf8.length === 0) {
    plainErr(usage(command));
    plainErr("No configuration: this program is started by tor or with flags.\n");
    return ExitCode.usage;
  }
  const value = (key: string): string | undefined => {
    const flag = FLAGS.find((f) => f.key === key);
    return flags.values[key] ?? (flag?.env === undefined ? undefined : env[flag.env]);
  };

  let logLevel: LogSeverity = "notice";
  let logLevelError: string | undefined;
  try {
    logLevel = parseLogSeverity(value("logLevel") ?? "notice");
  } catch (error) {
    logLevelError = (error as Error).message;
  }
  const output = new IpcOutput({ stdout: plainOut, stderr: plainErr, logLevel });

  const notUtf8Message = () =>
    `${notUtf8.join(", ")} ${notUtf8.length === 1 ? "is" : "are"} not valid UTF-8`;

  try {
    // 1. Version.
    if (notUtf8.includes("TOR_PT_MANAGED_TRANSPORT_VER") && flags.values.version === undefined) {
      output.error("ENV-ERROR", notUtf8Message());
      throw new Exit(ExitCode.usage);
    }
    const offered = value("version");
    let versions: string[];
    if (offered === undefined) {
      if (Object.keys(env).length > 0) {
        output.error("VERSION-ERROR", "no-version");
        throw new Exit(ExitCode.config);
      }
      versions = ["2"]; // Standalone use with flags only.
    } else {
      versions = offered.split(",");
      if (!versions.every((v) => /^[\x21-\x2b\x2d-\x7e]+$/.test(v))) {
        output.error("VERSION-ERROR", "no-version (malformed version list)");
        throw new Exit(ExitCode.config);
      }
    }
    const version = versions.includes("2") ? "2" : versions.includes("1") ? "1" : undefined;
    if (version === undefined) {
      output.error("VERSION-ERROR", "no-version");
      throw new Exit(ExitCode.config);
    }
    output.version(version);
    // pt-spec's version report (tor records it). Older arti refuses a
    // STATUS line without TRANSPORT=, so one comes first, naming ptkit.
    output.status("ptkit", { TYPE: "version", IMPLEMENTATION: "ptkit", VERSION: PTKIT_VERSION });

    // 2. Configuration.
    const envError = (message: string): never => {
      // A value quoted in the message may be huge (a 128 KiB host name):
      // keep its start and the reason at its end.
      output.error(
        "ENV-ERROR",
        message.length > 512 ? `${message.slice(0, 256)}...${message.slice(-200)}` : message,
      );
      throw new Exit(ExitCode.usage);
    };
    if (notUtf8.length > 0) envError(notUtf8Message());
    if (flags.errors.length > 0) envError(flags.errors.join("; "));
    if (logLevelError !== undefined) envError(logLevelError);
    const serverFlag = flags.values.server === "true";
    const clientFlag = flags.values.client === "true";
    if (serverFlag && clientFlag) envError("Both -client and -server given");
    if (
      !clientFlag && env.TOR_PT_CLIENT_TRANSPORTS !== undefined &&
      env.TOR_PT_SERVER_TRANSPORTS !== undefined
    ) {
      envError("Both TOR_PT_CLIENT_TRANSPORTS and TOR_PT_SERVER_TRANSPORTS are set");
    }
    const server = serverFlag ||
      (!clientFlag && env.TOR_PT_SERVER_TRANSPORTS !== undefined &&
        env.TOR_PT_CLIENT_TRANSPORTS === undefined);
    const exitOnStdinClose = flags.values.exitOnStdinClose !== undefined
      ? flags.values.exitOnStdinClose === "true"
      : env.TOR_PT_EXIT_ON_STDIN_CLOSE === "1";
    const transportList = flags.values.transports ??
      (server ? env.TOR_PT_SERVER_TRANSPORTS : env.TOR_PT_CLIENT_TRANSPORTS);
    if (transportList === undefined || transportList.trim() === "") {
      envError(
        `No transports requested (TOR_PT_${
          server ? "SERVER" : "CLIENT"
        }_TRANSPORTS or -transports)`,
      );
    }
    const transports = transportList!.split(",").map((t) => t.trim()).filter((t) => t !== "");
    const registry = options.registry ?? defaultRegistry;
    // Unknown names get no CMETHOD-ERROR (the spec says to ignore them, and
    // arti fails on one), but the operator is told.
    const logUnknown = () => {
      for (const name of new Set(transports.filter((t) => !registry.has(t)))) {
        output.log(
          "warning",
          `Unknown transport ${JSON.stringify(name.slice(0, 64))} ignored (available: ${
            [...registry.keys()].join(", ")
          })`,
        );
      }
    };
    let transportOptions = new Map<string, TransportOptions>();
    const optionsText = value("options");
    if (optionsText !== undefined) {
      const source = flags.values.options !== undefined
        ? "-options"
        : "TOR_PT_SERVER_TRANSPORT_OPTIONS";
      const repeated = new RepeatedKeyLog((message) => output.log("warning", message));
      try {
        transportOptions = parseTransportOptions(optionsText, {
          onRepeatedKey: (key, name) => repeated.report(`${source} for '${name}'`, key),
        });
      } catch (error) {
        envError((error as Error).message);
      }
    }
    const stateDir = await makeStateDir(value("state"), envError);
    const hub = new SignalHub(server ? "server" : "client", output);
    const signals = (name: string) => hub.pipe(name);
    const onIgnoredOption = ignoredOptionLog(output);
    const watchOptions: ShutdownOptions = {
      exitOnStdinClose,
      process: options.process ?? true,
      onLine: (line) => hub.handleLine(line),
      onClose: () => hub.close(),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
    };
    if (server) {
      const settings = serverSettings(flags.values, value, getEnv, envError);
      const watch = new ShutdownWatch(watchOptions);
      logUnknown();
      // Each side loads only its own modules: a PT starts quickly.
      const { startServer } = await import("./managed_server.ts");
      const running = await startServer({
        ...settings,
        transports,
        registry,
        options: transportOptions,
        stateDir,
        signals,
        onIgnoredOption,
      }, output);
      chooseCryptoAfterStart(output);
      return await watch.serve(running, output);
    }
    for (const key of ["bindAddr", "allow"]) {
      if (flags.values[key] !== undefined) {
        envError(`-${key.toLowerCase()} is a server flag (add -server)`);
      }
    }

    const mode = flags.values.mode ?? "socks5";
    if (!["socks5", "transparent-TCP", "transparent-UDP", "STUN"].includes(mode)) {
      envError(
        `Invalid -mode ${
          JSON.stringify(mode)
        }: expected socks5, transparent-TCP, transparent-UDP or STUN`,
      );
    }
    const datagrams = mode === "transparent-UDP" || mode === "STUN";
    for (const key of ["turnUser", "turnRealm"]) {
      if (flags.values[key] !== undefined) envError(`-${key.toLowerCase()} is a server flag`);
    }
    if (!datagrams) {
      for (const key of ["udpIdleTimeout", "udpQueue"]) {
        if (flags.values[key] !== undefined) {
          envError(`-${key.toLowerCase()} needs -mode transparent-UDP or STUN`);
        }
      }
    }
    let udpQueue: number | undefined;
    if (flags.values.udpQueue !== undefined) {
      udpQueue = Number(flags.values.udpQueue);
      if (!/^[0-9]+$/.test(flags.values.udpQueue) || udpQueue > 65536) {
        envError(
          `Invalid -udpqueue ${JSON.stringify(flags.values.udpQueue)}: expected 0-65536 datagrams`,
        );
      }
    }
    const idleTimeout = udpIdleTimeout(flags.values, envError);
    const free = flags.values.free === "true";
    if (free && mode !== "socks5") envError("-free needs -mode socks5");
    let listen: HostPort = { hostname: "127.0.0.1", port: 0 };
    if (flags.values.proxyListenAddr !== undefined) {
      try {
        listen = parseHostPort(flags.values.proxyListenAddr, "-proxylistenaddr");
      } catch (error) {
        envError((error as Error).message);
      }
      const known = transports.filter((t) => registry.has(t));
      if (listen.port !== 0 && new Set(known).size > 1) {
        envError("-proxylistenaddr with a fixed port allows only one transport");
      }
    }
    let target: HostPort | undefined;
    if (flags.values.target !== undefined) {
      if (mode === "socks5" && !free) {
        envError("-target needs -mode transparent-TCP (or -free)");
      }
      try {
        target = parseHostPort(flags.values.target, "-target");
        if (target.port === 0) throw new RangeError("Invalid -target: port 0");
      } catch (error) {
        envError((error as Error).message);
      }
    } else if (mode !== "socks5" || free) {
      envError(`${free ? "-free" : `-mode ${mode}`} needs -target`);
    }

    // 3. Upstream proxy, before any transport starts.
    let dialer: Dialer = tcpDialer;
    const proxyText = value("proxy");
    if (proxyText !== undefined && proxyText !== "") {
      try {
        const { parseUpstreamProxy, upstreamProxyDialer } = await import("./upstream_proxy.ts");
        dialer = upstreamProxyDialer(parseUpstreamProxy(proxyText));
      } catch (error) {
        output.error("PROXY-ERROR", (error as Error).message);
        throw new Exit(ExitCode.unavailable);
      }
      output.line("PROXY", "DONE");
    }

    // 4. Transports.
    const watch = new ShutdownWatch(watchOptions);
    logUnknown();
    const { startClient } = await import("./managed_client.ts");
    const running = await startClient({
      transports,
      registry,
      mode: mode as ClientSettings["mode"],
      ...(udpQueue === undefined ? {} : { udpQueue }),
      ...(idleTimeout === undefined ? {} : { udpIdleTimeout: idleTimeout }),
      listen,
      ...(target === undefined ? {} : { target }),
      free,
      options: transportOptions,
      dialer,
      stateDir,
      signals,
      onIgnoredOption,
    }, output);
    chooseCryptoAfterStart(output);

    // 5. Serve until told to stop.
    return await watch.serve(running, output);
  } catch (error) {
    if (error instanceof Exit) return error.code;
    throw error;
  }
}

/**
 * Once `*METHODS DONE` is out, load the crypto backend transports will use
 * (so the first connection does not wait for it) and log the choice once.
 */
function chooseCryptoAfterStart(output: IpcOutput): void {
  setTimeout(() => {
    chooseRuntimeCrypto().then(
      ({ backend, reason }) => output.log("info", `Crypto: ${backend.name}, as ${reason}`),
      (error) => output.log("warning", `Crypto: cannot load a backend: ${describeError(error)}`),
    );
  }, 0);
}

/**
 * Whether the arguments ask for ptkit's version: `--version` (or
 * `-version`) with nothing after it or a flag after it. `-version LIST`
 * stays the PT 2.0 draft 1 spelling of `-ptversion`.
 */
function asksForVersion(args: readonly string[]): boolean {
  return args.some((arg, i) =>
    /^--?version$/i.test(arg) && (i + 1 >= args.length || args[i + 1]!.startsWith("-"))
  );
}

async function makeStateDir(
  given: string | undefined,
  envError: (message: string) => never,
): Promise<string> {
  let stateDir = given ?? Deno.cwd();
  if (!stateDir.startsWith("/")) stateDir = `${Deno.cwd()}/${stateDir}`;
  try {
    await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    envError(`Cannot create state directory: ${(error as Error).message}`);
  }
  return stateDir;
}

/** Parse `-udpidletimeout` (seconds) into milliseconds. */
function udpIdleTimeout(
  flags: Readonly<Record<string, string>>,
  envError: (message: string) => never,
): number | undefined {
  const text = flags.udpIdleTimeout;
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || seconds <= 0) {
    envError(
      `Invalid -udpidletimeout ${JSON.stringify(text)}: expected a positive number of seconds`,
    );
  }
  return seconds * 1000;
}

/** The server's target in transparent-UDP and STUN mode. */
function datagramTarget(
  mode: "transparent-UDP" | "STUN",
  flags: Readonly<Record<string, string>>,
  envError: (message: string) => never,
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
    let user = "ptkit";
    let password = [...crypto.getRandomValues(new Uint8Array(12))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const generated = flags.turnUser === undefined;
    if (!generated) {
      // The user name ends at the first ":"; the value is never echoed (it
      // holds the password).
      const given = parseUserinfo(flags.turnUser!);
      if (given.username === "" || !given.password) {
        envError("Invalid -turnuser: expected USER:PASSWORD, both non-empty");
      }
      user = given.username;
      password = given.password!;
    }
    return {
      kind: "turn",
      realm: flags.turnRealm ?? "ptkit",
      user,
      password,
      generated,
      allowLoopbackPeers: allowed.includes("loopback"),
      allowPrivatePeers: allowed.includes("private"),
    };
  }
  for (const key of ["allow", "turnUser", "turnRealm"]) {
    if (flags[key] !== undefined) envError(`-${key.toLowerCase()} needs -mode STUN -target turn`);
  }
  let address: HostPort;
  try {
    address = parseHostPort(text, "-target");
  } catch (error) {
    return envError((error as Error).message);
  }
  if (address.port === 0) envError("Invalid -target: port 0");
  const idleTimeout = udpIdleTimeout(flags, envError);
  return {
    kind: "udp",
    address,
    framing: mode === "STUN" ? "stun" : "length",
    ...(idleTimeout === undefined ? {} : { idleTimeout }),
  };
}

/** The server-only settings, from flags and variables. */
function serverSettings(
  flags: Readonly<Record<string, string>>,
  value: (key: string) => string | undefined,
  getEnv: (name: string) => string | undefined,
  envError: (message: string) => never,
): Pick<ServerSettings, "bindAddrs" | "defaultListen" | "target" | "dialer"> {
  const attempt = <T>(f: () => T): T => {
    try {
      return f();
    } catch (error) {
      return envError((error as Error).message);
    }
  };
  if (flags.proxyListenAddr !== undefined) {
    envError("-proxylistenaddr is a client flag: use -bindaddr");
  }
  if (flags.free !== undefined) envError("-free is a client flag");
  const bindAddrs = attempt(() => parseBindAddr(value("bindAddr") ?? ""));
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
  let target: ServerTarget;
  if (datagrams) {
    target = datagramTarget(mode as "transparent-UDP" | "STUN", flags, envError);
  } else if (mode === "socks5" || targetText === "socks") {
    if (targetText !== undefined && targetText !== "socks") {
      envError("-mode socks5 on the server takes no -target address (it is the SOCKS target)");
    }
    target = {
      kind: "socks",
      policy: attempt(() => DestinationPolicy.parse(flags.allow ?? "")),
    };
  } else {
    if (flags.allow !== undefined) envError("-allow needs -target socks");
    const address = (what: string, text: string) =>
      attempt(() => {
        const parsed = parseHostPort(text, what);
        if (parsed.port === 0) throw new RangeError(`Invalid ${what}: port 0`);
        return parsed;
      });
    // goptlib resolves neither: tor gives IP addresses, and a host name
    // would be looked up for every connection.
    const ipAddress = (what: string, text: string) => {
      const parsed = address(what, text);
      if (!isIpLiteral(parsed.hostname)) {
        envError(`Invalid ${what} ${JSON.stringify(text)}: the host must be an IP address`);
      }
      return parsed;
    };
    const ext = value("extOrPort");
    const orPort = value("orPort");
    if (targetText !== undefined) {
      target = { kind: "orport", address: address("-target", targetText) };
    } else if (ext !== undefined && ext !== "") {
      const cookieFile = value("authCookie");
      if (cookieFile === undefined || cookieFile === "") {
        envError("TOR_PT_EXTENDED_SERVER_PORT needs TOR_PT_AUTH_COOKIE_FILE (-authcookie)");
      }
      target = {
        kind: "extorport",
        address: ipAddress("TOR_PT_EXTENDED_SERVER_PORT", bracketBareIpv6(ext)),
        cookieFile: cookieFile!,
      };
    } else if (orPort !== undefined && orPort !== "") {
      target = { kind: "orport", address: ipAddress("TOR_PT_ORPORT", bracketBareIpv6(orPort)) };
    } else {
      return envError(
        "No target: set TOR_PT_ORPORT, TOR_PT_EXTENDED_SERVER_PORT, -target HOST:PORT or -target socks",
      );
    }
  }
  const bind = attempt(() =>
    parseOutboundBind(
      getEnv("TOR_PT_OUTBOUND_BIND_ADDRESS_V4"),
      getEnv("TOR_PT_OUTBOUND_BIND_ADDRESS_V6"),
    )
  );
  return {
    bindAddrs,
    defaultListen: { hostname: "127.0.0.1", port: 0 },
    target,
    dialer: outboundDialer(bind),
  };
}

interface ShutdownOptions {
  readonly exitOnStdinClose: boolean;
  readonly process: boolean;
  readonly signal?: AbortSignal;
  readonly stdin?: ReadableStream<Uint8Array>;
  /** Each line of the parent's input (without its newline). */
  readonly onLine: (line: string) => void;
  /** Called once when serving ends. */
  readonly onClose: () => void;
}

/**
 * How long after the first SIGINT another one counts as a second (exit at
 * once) rather than the same keypress delivered twice.
 */
const SECOND_SIGINT_AFTER_MS = 500;

/**
 * Watches what should end the proxy. Started before any transport so that a
 * signal arriving during start-up is not lost (Deno's default action would
 * kill the process with a non-zero status).
 */
class ShutdownWatch {
  #cleanups: (() => void)[] = [];
  #pending: "now" | "drain" | undefined;
  #why = "";
  #onEvent: ((kind: "now" | "drain", why: string) => void) | undefined;

  constructor(options: ShutdownOptions) {
    const fire = (kind: "now" | "drain", why: string) => {
      if (this.#onEvent) this.#onEvent(kind, why);
      else if (this.#pending !== "now") {
        this.#pending = kind;
        this.#why = why;
      }
    };
    this.#cleanups.push(options.onClose);
    let input: ReadableStream<Uint8Array> | undefined = options.stdin;
    if (
      input === undefined && options.process &&
      (options.exitOnStdinClose || !Deno.stdin.isTerminal())
    ) {
      input = stdinStream();
    }
    if (input !== undefined) {
      const reader = input.getReader();
      this.#cleanups.push(() => reader.cancel().catch(() => {}));
      readLines(reader, options.onLine).then(() => {
        if (options.exitOnStdinClose) fire("now", "stdin closed");
      });
    }
    if (options.signal) {
      if (options.signal.aborted) fire("now", "aborted");
      else options.signal.addEventListener("abort", () => fire("now", "aborted"), { once: true });
    }
    if (!options.process) return;
    const onTerm = () => fire("now", "SIGTERM");
    Deno.addSignalListener("SIGTERM", onTerm);
    this.#cleanups.push(() => Deno.removeSignalListener("SIGTERM", onTerm));
    // One Ctrl-C in a terminal reaches every process of the foreground
    // group, and `deno task` forwards its own copy to its child: one
    // keypress arrives twice within a millisecond. A SIGINT counts as the
    // second only when it comes SECOND_SIGINT_AFTER_MS after the first.
    let firstInterrupt: number | undefined;
    const onInt = () => {
      const now = performance.now();
      if (firstInterrupt === undefined) {
        firstInterrupt = now;
        fire("drain", "SIGINT");
      } else if (now - firstInterrupt >= SECOND_SIGINT_AFTER_MS) {
        fire("now", "second SIGINT");
      }
    };
    Deno.addSignalListener("SIGINT", onInt);
    this.#cleanups.push(() => Deno.removeSignalListener("SIGINT", onInt));
    // main.ts ended the process on these signals until now.
    releaseEarlySignals();
    if (!options.exitOnStdinClose) {
      const parent = Deno.ppid;
      const timer = setInterval(() => {
        if (Deno.ppid !== parent) fire("now", "parent process exited");
      }, 1000);
      this.#cleanups.push(() => clearInterval(timer));
    }
  }

  /** Serve until an event says stop; returns the exit code. */
  async serve(running: RunningProxy, output: IpcOutput): Promise<number> {
    try {
      await new Promise<void>((resolve) => {
        const handle = (kind: "now" | "drain", why: string) => {
          if (kind === "now") {
            output.log("notice", `Shutting down: ${why}`);
            running.close().then(resolve, resolve);
          } else {
            const drained = running.drain();
            output.log(
              "notice",
              "SIGINT: no new connections; waiting for open ones to end (SIGINT again to exit now)",
            );
            drained.then(resolve, resolve);
          }
        };
        this.#onEvent = handle;
        if (this.#pending !== undefined) handle(this.#pending, this.#why);
      });
    } finally {
      this.dispose();
    }
    return ExitCode.ok;
  }

  dispose(): void {
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
  }
}

/** The process's stdin as a stream that ends (rather than errors) when it breaks. */
function stdinStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      const buffer = new Uint8Array(4096);
      let n: number | null = null;
      try {
        n = await Deno.stdin.read(buffer);
      } catch {
        // A broken stdin counts as closed.
      }
      if (n === null) controller.close();
      else controller.enqueue(buffer.subarray(0, n));
    },
  }, { highWaterMark: 0 });
}

/**
 * Split the parent's input into lines (a trailing `\r` is kept for the
 * handler); over-long lines are dropped whole. Resolves at its end.
 */
async function readLines(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = "";
  let discarding = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (discarding) discarding = false;
        else onLine(line);
      }
      if (buffer.length > MAX_MESSAGE_LINE_LENGTH + 1) {
        if (!discarding) onLine(buffer.slice(0, MAX_MESSAGE_LINE_LENGTH + 2));
        discarding = true;
        buffer = "";
      }
    }
  } catch {
    // A broken input counts as closed.
  }
}

function writeAll(target: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  try {
    let offset = 0;
    while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
  } catch {
    // The parent stopped reading (it exited): nothing to tell it any more.
  }
}
