// Copyright the ptkit authors. MIT license.
// The friendly standalone commands of main.ts (`server`, `client`, `start`):
// their own flags, turned into the managed proxy's typed configuration, and
// its typed lines turned into text for a person. Imported by main.ts only.

import type { Transport } from "../../transports/transport.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../../net/address.ts";
import { classifyIp, isIpLiteral } from "../../net/_ip_address.ts";
import { DestinationPolicy } from "../../net/destination_policy.ts";
import { parseCliFlags, type Spec } from "./_cli_flags.ts";
import { formatPtLine, type PtLine } from "../lines/pt_line.ts";
import { type BridgeLine, formatBridgeLine, parseBridgeLine } from "../lines/_bridge_line.ts";
import { RepeatedKeyLog } from "../lines/_first_value.ts";
import { logged, type LogSeverity, parseLogSeverity } from "../lines/_output.ts";
import {
  type ClientConfig,
  type ManagedConfigBase,
  parseMetricsAddress,
  type ServerConfig,
  workerCount,
} from "../managed/config.ts";
import { parseJsonSettings, parseTorArgs } from "../lines/_args.ts";
import { builtinTransports as defaultRegistry } from "../managed/_registry.ts";
import { runManaged } from "../managed/_run.ts";
import { dialedAddress } from "../managed/_check_options.ts";
import { CAUSE_REPORTED } from "../managed/_shutdown.ts";
import { inDirectory, perUserStateDir } from "../managed/_state_dir.ts";
import { fileErrorReason } from "../managed/_file_store.ts";
import { parseUpstreamProxy, type UpstreamProxy } from "../managed/_proxy_uri.ts";
import { MemoryStore } from "../../transports/memory_store.ts";
import { CLI_COMMANDS, cliError, methodErrorCode, SIP003_PLUGIN_KEYS } from "./_names.ts";
import { suggestOptionKey } from "../../transports/_option_keys.ts";
import { parseSsUri, type SsUri } from "./_ss_uri.ts";
import { layerTransports } from "../../transports/layer.ts";
import { oneLine, readValueFile, UsageError } from "./_value_file.ts";
import { optionsGivenIn } from "../_options_place.ts";

/** Options for {@linkcode runCli}. */
export interface CliOptions {
  /** How the program is invoked, for help texts. Defaults to `main.ts`. */
  readonly command?: string;
  /** Receives text for the user. Defaults to the process's stdout. */
  readonly stdout?: (text: string) => void;
  /** Receives errors and log lines. Defaults to the process's stderr. */
  readonly stderr?: (text: string) => void;
  /** Reads an environment variable (`HOME`, `XDG_STATE_HOME`). Defaults to `Deno.env.get`. */
  readonly getEnv?: (name: string) => string | undefined;
  /** The transports on offer. Defaults to the `main.ts` registry. */
  readonly registry?: ReadonlyMap<string, Transport>;
  /** Aborting it stops everything at once. */
  readonly signal?: AbortSignal;
  /**
   * Watch SIGINT and SIGTERM. Defaults to true. (The parent process is not
   * watched: like any daemon, the commands outlive the shell that started
   * them under `nohup` or `&`.)
   */
  readonly process?: boolean;
}

/** The subcommands {@linkcode runCli} understands. */
export { CLI_COMMANDS };

const LOG_LEVEL: Spec = {
  value: "LEVEL",
  help: "error, warning, notice, info, debug",
  fallback: "notice",
};

const SPECS: Record<string, Record<string, Spec>> = {
  server: {
    transport: { value: "NAME", help: "transport to serve", fallback: "obfs4" },
    listen: { value: "IP:PORT", help: "address to listen on", fallback: "0.0.0.0:0" },
    options: {
      value: "K=V;K=V",
      help: 'the transport\'s server options (as -options; JSON {"k":"v"} too), e.g.\n' +
        "shadowsocks: method=aes-256-gcm;password=...  webtunnel: url=https://host/path\n" +
        "(@FILE: read from FILE, keeping a password off the command line)",
    },
    target: {
      value: "socks|HOST:PORT",
      help: "socks: free mode (clients reach any public host); HOST:PORT: relay to one service",
      fallback: "socks",
    },
    allow: {
      value: "LIST",
      help: "with --target socks, also allow: loopback, private, link-local, multicast, ip:port",
    },
    "public-address": {
      value: "HOST:PORT",
      help: "address clients use, for the printed bridge line (default: --listen)",
    },
    metrics: {
      value: "HOST:PORT",
      help: "serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: 127.0.0.1)",
    },
    workers: {
      value: "N",
      help: "processes sharing the port (Linux; as -workers, but here the default is one)",
      fallback: "1",
    },
    state: { value: "DIR", help: "state directory (keys)", fallback: "<per-user>/ptkit/server" },
    "log-level": LOG_LEVEL,
    help: { help: "print this help" },
  },
  client: {
    bridge: {
      value: "LINE",
      help: "the server's bridge line: [name] ip:port [fingerprint] [k=v ...], the words after " +
        "'Bridge' in a torrc (@FILE: read from FILE)",
    },
    transport: { value: "NAME", help: "transport (default: the bridge line's first word)" },
    socks: {
      value: "IP:PORT",
      help: "SOCKS5 proxy address for applications (free mode)",
      fallback: "127.0.0.1:1080",
    },
    tcp: {
      value: "IP:PORT",
      help: "instead of --socks: plain TCP port relayed to the server's fixed target",
    },
    metrics: {
      value: "HOST:PORT",
      help: "serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: 127.0.0.1)",
    },
    proxy: {
      value: "URI",
      help: "upstream proxy every connection to the server goes through, fail-closed (as\n" +
        "TOR_PT_PROXY): socks5://[USER:PASS@]IP:PORT, socks4a://IP:PORT or\n" +
        "http://[USER:PASS@]IP:PORT (@FILE: read from FILE)",
    },
    state: {
      value: "DIR",
      help: "state directory (if the default cannot be made: kept in memory, said)",
      fallback: "<per-user>/ptkit/client",
    },
    "log-level": LOG_LEVEL,
    help: { help: "print this help" },
  },
  start: {
    transport: {
      value: "NAME",
      help: "obfs4, plain or shadowsocks (webtunnel and ssh: use server and client)",
      fallback: "obfs4",
    },
    socks: {
      value: "IP:PORT",
      help: "SOCKS5 address (a free port when 1080 is taken)",
      fallback: "127.0.0.1:1080",
    },
    allow: { value: "LIST", help: "also allow these destinations (e.g. loopback)" },
    state: { value: "DIR", help: "state directory", fallback: "<per-user>/ptkit/start" },
    "log-level": LOG_LEVEL,
    help: { help: "print this help" },
  },
};

const SUMMARY: Record<string, string> = {
  server: "Run a transport server. With --target socks (the default) it ends in a SOCKS5\n" +
    "server, so clients reach any public host (free mode); it prints the bridge line\n" +
    "and the client command.",
  client: "Run a transport client: a SOCKS5 proxy on --socks whose connections travel\n" +
    "through the transport to the server and on to their destination (names are\n" +
    "resolved by the server, never here). In place of --bridge, a Shadowsocks link\n" +
    "(ss://..., SIP002, as Outline shares them; with plugin=ptkit;transport=obfs4;...\n" +
    "Shadowsocks runs over that transport) may be given, before or after the flags;\n" +
    "@FILE reads it from FILE, keeping its password off the command line.",
  start: "Run a server and a client on loopback in one process (free mode), with a demo\n" +
    "page, and print a curl command to try. Ctrl-C stops.",
};

/**
 * The help text of a subcommand.
 *
 * @param subcommand `server`, `client` or `start`.
 * @param command How the program is invoked.
 * @returns The text, ending with a newline.
 */
export function cliUsage(subcommand: string, command: string): string {
  const specs = SPECS[subcommand];
  if (specs === undefined) throw new RangeError(`Unknown subcommand ${JSON.stringify(subcommand)}`);
  const usage = subcommand === "client" ? "[flags] (or: ss://LINK|@FILE [flags])" : "[flags]";
  const lines = [`Usage: ${command} ${subcommand} ${usage}`, "", SUMMARY[subcommand]!, ""];
  for (const [name, spec] of Object.entries(specs)) {
    const left = `--${name}${spec.value ? ` ${spec.value}` : ""}`;
    // A help text of several lines continues under its first.
    const help = spec.help.replaceAll("\n", `\n${" ".repeat(29)}`);
    lines.push(`  ${left.padEnd(26)} ${help}${spec.fallback ? ` (default ${spec.fallback})` : ""}`);
  }
  lines.push("", "Examples:");
  if (subcommand === "server") {
    lines.push(`  ${command} server --transport obfs4 --listen 0.0.0.0:443 --target socks`);
  } else if (subcommand === "client") {
    lines.push(
      `  ${command} client --bridge 'obfs4 203.0.113.7:443 cert=... iat-mode=0' --socks 127.0.0.1:1080`,
      `  ${command} client 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@203.0.113.7:8388#box' --socks 127.0.0.1:1080`,
    );
  } else {
    lines.push(`  deno task start`);
  }
  lines.push("");
  return lines.join("\n");
}

/**
 * The friendly standalone command line on top of the managed proxy:
 * `server`, `client` and `start` (both on loopback, for a first try).
 * Flags are translated into the managed proxy's flags, so the same checks,
 * transports and shutdown rules apply; protocol lines become plain text.
 *
 * @param args The arguments, starting with the subcommand.
 * @param options Output, environment and shutdown.
 * @returns The exit code.
 */
export async function runCli(args: readonly string[], options: CliOptions = {}): Promise<number> {
  const encoder = new TextEncoder();
  const out = options.stdout ?? ((t: string) => Deno.stdout.writeSync(encoder.encode(t)));
  const err = options.stderr ?? ((t: string) => Deno.stderr.writeSync(encoder.encode(t)));
  const command = options.command ?? "main.ts";
  const [subcommand, ...rest] = args;
  // `client ss://...`: a Shadowsocks link in place of --bridge, before,
  // between or after the flags.
  let link: string | undefined;
  // An Outline dynamic access key (ssconf://) is taken to be refused with
  // what to do, not as a stray argument.
  let dynamicKey = false;
  const takeLink = (arg: string): boolean => {
    if (subcommand === "client" && /^\s*ssconf:\/\//i.test(arg)) {
      dynamicKey = true;
      return true;
    }
    // White space around a link copied from a web page is not the link's.
    if (subcommand !== "client" || link !== undefined || !/^\s*(ss:\/\/|@)/i.test(arg)) {
      return false;
    }
    link = arg.trim();
    return true;
  };
  const specs = SPECS[subcommand ?? ""];
  if (specs === undefined) {
    // Named only when it is a command mistyped (or `help`, `version`): anything else
    // may be a value given in the wrong place (a password), not shown.
    const known = [...CLI_COMMANDS, "turn"];
    // `help` and `version` are the flags' words, as the managed proxy's hints say.
    const flag = subcommand === "help" || subcommand === "version" ? `--${subcommand}` : undefined;
    const guess = suggestOptionKey(subcommand ?? "", known) ?? flag;
    const shown = guess !== undefined;
    err(
      cliError(
        `Unknown command ${shown ? JSON.stringify(subcommand) : "(not shown)"}${
          guess === undefined ? "" : ` (did you mean ${guess}?)`
        }: expected ${known.join(", ")}, or flags as tor gives them (${command} --help)`,
      ),
    );
    return 64;
  }
  // The other commands' flags this one lacks, each named with its command.
  const elsewhere: Record<string, string> = {};
  for (const [other, otherSpecs] of Object.entries(SPECS)) {
    if (other === subcommand) continue;
    for (const flag of Object.keys(otherSpecs)) {
      if (!Object.hasOwn(specs, flag)) elsewhere[flag] ??= `${command} ${other}`;
    }
  }
  const parsed = parseCliFlags(rest, specs, args.length - rest.length, takeLink, undefined, {
    command: `${command} ${subcommand}`,
    elsewhere,
  });
  if (typeof parsed === "string") {
    err(`${cliError(parsed)}\n${cliUsage(subcommand!, command)}`);
    return 64;
  }
  if (parsed.help !== undefined) {
    out(cliUsage(subcommand!, command));
    return 0;
  }
  if (dynamicKey) {
    err(cliError(DYNAMIC_KEY));
    return 64;
  }
  // `@FILE`: the value (a password's carrier) is read from a file, so that
  // it never shows in the process list.
  try {
    if (parsed.options?.startsWith("@")) {
      parsed.options = readValueFile(parsed.options, "--options");
    }
    // A bridge line's or a link's file may carry comments (ptkit's own
    // obfs4_bridgeline.txt does): its one other line is the value.
    if (parsed.bridge?.startsWith("@")) {
      parsed.bridge = oneLine(readValueFile(parsed.bridge, "--bridge"), parsed.bridge);
    }
    if (parsed.proxy?.startsWith("@")) {
      parsed.proxy = oneLine(readValueFile(parsed.proxy, "--proxy"), parsed.proxy);
    }
    if (link?.startsWith("@")) {
      link = oneLine(readValueFile(link, "the ss:// link"), link);
      if (/^ssconf:\/\//i.test(link)) throw new UsageError(DYNAMIC_KEY);
      if (!/^ss:\/\//i.test(link)) {
        throw new UsageError("The ss:// link's file does not hold an ss:// link");
      }
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    err(cliError(error.message));
    return 64;
  }
  const known = options.registry ?? defaultRegistry;
  const wanted = link !== undefined ? undefined : parsed.transport ??
    (subcommand === "client" ? parsedBridgeTransport(parsed.bridge) : "obfs4");
  if (wanted !== undefined && !known.has(wanted)) {
    err(
      cliError(
        `Unknown transport ${JSON.stringify(wanted)}: available: ${[...known.keys()].join(", ")}`,
      ),
    );
    return 64;
  }
  const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const context = { out, err, getEnv, command, options };
  try {
    if (subcommand === "server") return await server(parsed, context);
    if (link !== undefined) return await ssClient(link, parsed, context);
    if (subcommand === "client") return await client(parsed, context);
    return await start(parsed, context);
  } catch (error) {
    if (error instanceof UsageError) {
      err(cliError(error.message));
      return 64;
    }
    throw error;
  }
}

/**
 * An Outline dynamic access key (`ssconf://HOST/PATH`) names where to fetch
 * the server's settings, over https: ptkit does not fetch it. Its address
 * is not repeated (whoever holds it gets the password).
 */
const DYNAMIC_KEY = "An ssconf:// key (an Outline dynamic access key) is not a server link but " +
  "the address of one, and ptkit does not fetch it: fetch it with https:// in place of " +
  "ssconf:// (curl -s 'https://...'), then give the ss:// link it returns, or, for JSON, " +
  "its method, password, server and server_port as --bridge " +
  "'shadowsocks SERVER:SERVER_PORT method=... password=...' (@FILE keeps the password off the command line)";

function parsedBridgeTransport(bridge: string | undefined): string | undefined {
  if (bridge === undefined) return undefined;
  try {
    return parseBridgeLine(bridge).transport;
  } catch {
    return undefined;
  }
}

interface Context {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly getEnv: (name: string) => string | undefined;
  readonly command: string;
  readonly options: CliOptions;
  /**
   * A transport's message in the words of this command (where its options
   * come from): `ss://` names the link's plugin options, not a bridge line.
   */
  readonly wording?: (message: string) => string;
}

function stateDir(given: string | undefined, role: string, getEnv: Context["getEnv"]): string {
  return given ?? perUserStateDir(role, getEnv);
}

/**
 * The state directory of a command that keeps keys (`server`, `start`):
 * --state's, or the per-user default, made here, so that a default that
 * cannot be made (a service user with no home, run from a directory it may
 * not write) is refused with the flag that fixes it. Keys cannot live in
 * memory as a client's state may: each start would print a new cert.
 */
function keysStateDir(given: string | undefined, role: string, context: Context): string {
  const dir = stateDir(given, role, context.getEnv);
  if (given !== undefined) return dir;
  // Without Deno's permission (a run without the shebang's --allow-write),
  // main.ts names the flags to grant, in the order the start needs them.
  if (Deno.permissions.querySync({ name: "write", path: dir }).state !== "granted") return dir;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    // Something in the way (a dangling link): the start names it.
    if (error instanceof Deno.errors.AlreadyExists) return dir;
    throw new UsageError(
      `Cannot use state directory ${JSON.stringify(dir)} (the default, as no --state was given): ${
        fileErrorReason(error)
      }; give --state DIR, a directory this user may write, where the keys stay across starts`,
    );
  }
  return dir;
}

/** What the managed proxy reports, as text for a person. */
function humanLines(
  context: Context,
  level: LogSeverity,
  onMethod: (line: Extract<PtLine, { type: "CMETHOD" | "SMETHOD" }>) => void,
  onError: (code: number) => void,
): (line: PtLine) => void {
  return (given) => {
    const line = context.wording !== undefined &&
        (given.type === "LOG" || given.type === "CMETHOD-ERROR" || given.type === "SMETHOD-ERROR")
      ? { ...given, message: context.wording(given.message) }
      : given;
    switch (line.type) {
      case "LOG":
        if (logged(line.severity, level)) {
          context.err(`[${line.severity}] ${line.message.replace(/[^\x20-\x7e]/g, "?")}\n`);
        }
        return;
      case "STATUS":
        // (The version report is for tor; a person asks main.ts --version.
        // Each connection's success is news only at level info.)
        if (
          line.fields.TYPE !== "version" &&
          (line.fields.CONNECT !== "Success" || logged("info", level))
        ) {
          context.err(`[status] ${formatPtLine(line).slice(7)}\n`);
        }
        return;
      case "CMETHOD":
      case "SMETHOD":
        onMethod(line);
        return;
      case "CMESSAGE":
      case "SMESSAGE": {
        // For the operator of the other side (the ssh client's key): the
        // line itself on stdout, to pass on as it is. A server's message
        // (ssh's host key) is for information: a client takes its pin from
        // its configuration only.
        const byHand = line.transport === "ssh"
          ? ", or append it to the file sshAuthorizedKeys in the server's state directory"
          : "";
        context.err(
          line.type === "CMESSAGE"
            ? `[message] ${line.transport} has a message for the server: pass the next line, exactly, to the server's stdin (a pipe: a PT does not read a terminal)${byHand}\n`
            : `[message] ${line.transport} says, for the client's operator (its bridge line carries the same; a client takes nothing from it):\n`,
        );
        context.out(`${formatPtLine(line)}\n`);
        return;
      }
      case "VERSION-ERROR":
      case "ENV-ERROR":
      case "PROXY-ERROR":
        context.err(cliError(line.message));
        onError(line.type === "ENV-ERROR" ? 64 : 1);
        return;
      case "CMETHOD-ERROR":
      case "SMETHOD-ERROR": {
        // A transport's options (a bridge line's) and its state file are
        // configuration: 64, as a bad flag (the options' message names the
        // transport already); a transport that cannot start (its port taken): 1.
        const code = methodErrorCode(line.message);
        context.err(
          cliError(
            /^Cannot configure /.test(line.message)
              ? line.message
              : code === 64 && !/^Cannot /.test(line.message)
              ? `Cannot configure ${line.transport}: ${line.message}`
              : `Cannot start ${line.transport}: ${line.message}`,
          ),
        );
        onError(code);
        return;
      }
    }
  };
}

function abortable(context: Context): AbortController {
  const stop = new AbortController();
  const outer = context.options.signal;
  if (outer?.aborted) stop.abort();
  outer?.addEventListener("abort", () => stop.abort(), { once: true });
  return stop;
}

/** The part of the configuration every subcommand shares. */
function common(
  transport: string,
  state: string | undefined,
  logLevel: LogSeverity,
  options: ReadonlyMap<string, Record<string, string>> = new Map(),
): ManagedConfigBase {
  return {
    version: "2",
    transports: [transport],
    options,
    ...(state === undefined ? {} : { stateDir: state }),
    exitOnStdinClose: false,
    logLevel,
    warnings: [],
  };
}

/** Run one side as the managed proxy would, lines to `emit`. */
function run(
  config: ClientConfig | ServerConfig,
  context: Context,
  emit: (line: PtLine) => void,
  signal: AbortSignal,
  shutdownNotices = true,
  onListening?: (transport: string, address: HostPort) => void,
  local?: MemoryStore,
): Promise<number> {
  return runManaged(config, {
    shutdownNotices,
    emit,
    ...(local === undefined ? {} : { local }),
    ...(onListening === undefined ? {} : { onListening }),
    ...(context.options.registry ? { registry: context.options.registry } : {}),
    process: context.options.process ?? true,
    // A command a person starts (under nohup, say) outlives its shell.
    watchParent: false,
    signal,
  });
}

/**
 * Run one side until it ends, its lines as text for a person; a method
 * that fails to start stops it (exit 1 if it would have exited 0).
 */
async function runSide(
  config: ClientConfig | ServerConfig,
  context: Context,
  level: LogSeverity,
  onMethod: Parameters<typeof humanLines>[2],
  onListening?: (transport: string, address: HostPort) => void,
  local?: MemoryStore,
): Promise<number> {
  const stop = abortable(context);
  let failed: number | undefined;
  const lines = humanLines(context, level, onMethod, (code) => {
    failed ??= code;
    stop.abort(CAUSE_REPORTED);
  });
  const code = await run(config, context, lines, stop.signal, true, onListening, local);
  return failed !== undefined && code === 0 ? failed : code;
}

function logLevel(flags: Record<string, string>): LogSeverity {
  try {
    return parseLogSeverity(flags["log-level"] ?? "notice", "--log-level");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function allowed(list: string | undefined): DestinationPolicy {
  try {
    return DestinationPolicy.parse(list ?? "");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function server(flags: Record<string, string>, context: Context): Promise<number> {
  const transport = flags.transport ?? "obfs4";
  const listen = address(flags.listen ?? "0.0.0.0:0", "--listen");
  if (!isIpLiteral(listen.hostname)) {
    throw new UsageError(
      `Invalid --listen ${JSON.stringify(flags.listen)}: expected an IP address`,
    );
  }
  const publicAddress = flags["public-address"] === undefined
    ? undefined
    : address(flags["public-address"], "--public-address");
  // Tor's bridge lines take an IP address, never a name.
  if (publicAddress !== undefined && !isIpLiteral(publicAddress.hostname)) {
    throw new UsageError(
      `Invalid --public-address ${
        JSON.stringify(flags["public-address"])
      }: expected IP:PORT (bridge lines take an IP address, not a name)`,
    );
  }
  const given = serverOptions(flags.options, context);
  const target = flags.target ?? "socks";
  const isFree = target === "socks";
  if (!isFree && flags.allow !== undefined) throw new UsageError("--allow needs --target socks");
  const policy = isFree ? allowed(flags.allow) : undefined;
  const state = keysStateDir(flags.state, "server", context);
  const level = logLevel(flags);
  const side: ServerConfig = {
    ...common(transport, state, level, new Map([[transport, given]])),
    ...metrics(flags),
    kind: "server",
    bindAddrs: new Map([[transport, listen]]),
    target: policy !== undefined
      ? { kind: "socks", policy }
      : { kind: "orport", address: destination(target, "--target") },
    outboundBind: {},
  };
  const usage = (message: string): never => {
    throw new UsageError(message.replace(/-workers/g, "--workers"));
  };
  const config: ServerConfig = {
    ...side,
    workers: workerCount(side, flags.workers ?? "1", 1, usage),
  };
  // Where the transport listens: an SMETHOD's address is what the bridge
  // line says, which for WebTunnel is a placeholder (clients reach it
  // through the front web server).
  let bound: HostPort | undefined;
  // A Shadowsocks server's password (or key) is never printed: the client
  // command names it as a placeholder to fill in.
  const secret = transport !== "shadowsocks"
    ? undefined
    : given.key !== undefined
    ? { name: "key", placeholder: SECRET_PLACEHOLDERS.key }
    : { name: "password", placeholder: SECRET_PLACEHOLDERS.password };
  return await runSide(config, context, level, (method) => {
    const listening = bound ?? method.address;
    const line = formatBridgeLine({
      transport: method.transport,
      address: publicAddress ?? method.address,
      options: method.type === "SMETHOD"
        ? { ...method.args, ...(secret && { [secret.name]: secret.placeholder }) }
        : {},
    });
    // plain authenticates nobody: in free mode, off loopback, it is an open proxy.
    if (transport === "plain" && isFree && classifyIp(listening.hostname) !== "loopback") {
      context.err(
        `Warning: plain has no authentication: anyone who reaches ${
          formatHostPort(listening)
        } can use this SOCKS5 proxy; listen on 127.0.0.1, or use obfs4 or shadowsocks\n`,
      );
    }
    // 0.0.0.0 and :: mean "every interface", not an address to dial.
    const said = method.address;
    const unreachable = publicAddress === undefined &&
      (said.hostname === "0.0.0.0" || said.hostname === "::");
    if (unreachable) {
      context.err(
        `Warning: the bridge line below says ${
          formatHostPort(said)
        }, which clients cannot dial: use --public-address IP:${said.port}\n`,
      );
    }
    context.out(
      [
        `ptkit server: ${method.transport} listening on ${formatHostPort(listening)}, ${
          isFree ? "ending in a SOCKS5 server (free mode)" : `relaying to ${target}`
        }`,
        `State (keys): ${state}`,
        "",
        "Bridge line for clients:",
        `  ${line}`,
        "",
        "Client command:",
        `  ${context.command} client --bridge '${line}' ${
          isFree ? "--socks 127.0.0.1:1080" : "--tcp 127.0.0.1:5000"
        }`,
        ...(policy !== undefined
          ? ["", policyText(policy, refusalShows(transport, context), false)]
          : []),
        ...(unreachable
          ? [
            "",
            `Warning: ${
              formatHostPort(said)
            } in this bridge line is the listen address, which no client can`,
            "dial: replace it with this machine's public IP address, or restart with",
            `--public-address IP:${said.port}.`,
          ]
          : []),
        ...(secret === undefined ? [] : [
          "",
          `Replace ${secret.placeholder} with the server's ${secret.name} (never printed).`,
        ]),
        "",
        "Ctrl-C stops the server.",
        "",
      ].join("\n"),
    );
  }, (_transport, address) => bound = address);
}

/**
 * What the server's printed bridge line and client command say in place of
 * a Shadowsocks secret, which is never printed. A client given one of them
 * verbatim would start, then see every connection held unanswered by the
 * server (it cannot authenticate it), so `client` refuses them.
 */
const SECRET_PLACEHOLDERS = { password: "<PASSWORD>", key: "<KEY>" } as const;

/** The placeholders of a bridge line in `obfs4_bridgeline.txt` (as obfs4proxy's). */
const ADDRESS_PLACEHOLDERS = ["<IP ADDRESS>", "<PORT>", "<FINGERPRINT>"] as const;

/**
 * `main.ts server --options`: the transport's options as `k=v;k=v` (tor's
 * form, backslash escapes) or a JSON object; errors never quote a value.
 */
function serverOptions(text: string | undefined, context: Context): Record<string, string> {
  if (text === undefined) return {};
  const json = text.trimStart().startsWith("{");
  let options: Record<string, string>;
  // A repeated key keeps its first value and is said once (never a value).
  const repeated = new RepeatedKeyLog((message) => context.err(`ptkit server: ${message}\n`));
  const onRepeatedKey = (key: string) => repeated.report("--options", key);
  try {
    options = {
      ...(json
        ? parseJsonSettings(text, { onRepeatedKey })
        : parseTorArgs(text, { onRepeatedKey })),
    };
  } catch (error) {
    throw new UsageError(`Invalid --options: ${(error as Error).message}`);
  }
  // Options written as a bridge line's, with spaces ('method=... password=...'):
  // one option whose value swallowed the others, a password with them. The
  // value is never quoted, nor a key unless it is a plain name.
  const entries = Object.entries(options);
  if (!json && entries.length === 1 && /\s[A-Za-z][A-Za-z0-9_-]*=/.test(entries[0]![1])) {
    const key = entries[0]![0];
    throw new UsageError(
      `Invalid --options: the value of ${
        /^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(key) ? `'${key}'` : "the option"
      } holds another k=v after a space: separate options with ';' (k=v;k=v), not spaces`,
    );
  }
  return options;
}

async function client(flags: Record<string, string>, context: Context): Promise<number> {
  if (flags.bridge === undefined) {
    // What a user coming from tor's torrc or obfs4proxy has in hand: the
    // words after 'Bridge', as the bridge's operator or bridges.torproject.org
    // gives them.
    throw new UsageError(
      "Missing --bridge: give the bridge line of the bridge to use, the words after 'Bridge' in " +
        "tor's torrc (from bridges.torproject.org, or from the bridge's operator: main.ts server " +
        "prints it, and obfs4_bridgeline.txt holds it), such as --bridge 'obfs4 203.0.113.7:443 " +
        "FINGERPRINT cert=... iat-mode=0', or --bridge @FILE",
    );
  }
  for (const placeholder of ADDRESS_PLACEHOLDERS) {
    if (flags.bridge.includes(placeholder)) {
      throw new UsageError(
        `The bridge line still holds the placeholder ${placeholder} (as obfs4_bridgeline.txt writes it): replace it with the bridge's own value`,
      );
    }
  }
  let bridge: BridgeLine;
  try {
    const repeated = new RepeatedKeyLog((message) => context.err(`ptkit client: ${message}\n`));
    bridge = parseBridgeLine(flags.bridge, {
      onRepeatedKey: (key) => repeated.report("bridge line arguments", key),
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const transport = flags.transport ?? bridge.transport;
  if (transport === undefined) {
    throw new UsageError("No transport: give --transport or start the bridge line with its name");
  }
  if (
    flags.transport !== undefined && bridge.transport !== undefined &&
    flags.transport !== bridge.transport
  ) {
    throw new UsageError(
      `The bridge line's transport ${bridge.transport} disagrees with --transport ${flags.transport}: give one of them`,
    );
  }
  if (flags.tcp !== undefined && flags.socks !== undefined) {
    throw new UsageError("Give --socks or --tcp, not both");
  }
  for (const [name, placeholder] of Object.entries(SECRET_PLACEHOLDERS)) {
    if (bridge.options[name] === placeholder) {
      throw new UsageError(
        `The bridge line's ${name} is the placeholder ${placeholder}: replace it with the server's ${name} (the server never prints it)`,
      );
    }
  }
  const state = clientState(flags, context);
  const level = logLevel(flags);
  const tcp = flags.tcp !== undefined;
  const config: ClientConfig = {
    ...common(transport, state.dir, level, new Map([[transport, { ...bridge.options }]])),
    ...metrics(flags),
    ...upstreamProxy(flags),
    kind: "client",
    mode: tcp ? "transparent-TCP" : "socks5",
    listen: address(flags.tcp ?? flags.socks ?? "127.0.0.1:1080", tcp ? "--tcp" : "--socks"),
    target: bridge.address,
    free: !tcp,
    optionsComplete: true,
  };
  // What is dialed: the bridge line's address, or where the transport's
  // plan goes instead (WebTunnel's URL host or addr=; the address is a placeholder).
  const known = (context.options.registry ?? defaultRegistry).get(transport);
  const dialed = formatHostPort(await dialedAddress(known, bridge.address, bridge.options));
  return await runSide(
    config,
    context,
    level,
    (method) => {
      const addr = formatHostPort(method.address);
      context.out(
        method.type === "CMETHOD" && method.mode === "socks5"
          ? socksClientText(`${method.transport} to ${dialed}`, addr, known?.free !== true)
          : `ptkit client: ${method.transport} to ${dialed}; TCP port ${addr} relays to the server's target.\n`,
      );
    },
    undefined,
    state.local,
  );
}

/**
 * A client's state: --state's directory (an error at start if unusable), or
 * the per-user default, which, where it cannot be made (a service user with
 * no home), gives way to memory for this run, said on stderr: a client
 * needs no state to connect (obfs4, Shadowsocks, WebTunnel keep none).
 */
function clientState(
  flags: Record<string, string>,
  context: Context,
): { dir?: string; local?: MemoryStore } {
  const dir = stateDir(flags.state, "client", context.getEnv);
  if (flags.state !== undefined) return { dir };
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return { dir };
  } catch (error) {
    context.err(
      `[warning] Cannot use state directory ${JSON.stringify(dir)}: ${
        fileErrorReason(error)
      }; client state is kept in memory for this run (--state DIR keeps it)\n`,
    );
    return { local: new MemoryStore() };
  }
}

/** --proxy: the upstream proxy (a usage error names the flag; never the password). */
function upstreamProxy(flags: Record<string, string>): { proxy?: UpstreamProxy } {
  if (flags.proxy === undefined) return {};
  try {
    return { proxy: parseUpstreamProxy(flags.proxy) };
  } catch (error) {
    throw new UsageError(`Invalid --proxy: ${(error as Error).message}`);
  }
}

/**
 * What a client with a SOCKS5 front end tells its user once it listens;
 * `bound`: the transport's server relays to one target, so it must be one
 * that ends in SOCKS (a free transport's server, such as any Shadowsocks
 * server, relays to each connection's destination itself).
 */
function socksClientText(what: string, addr: string, bound: boolean): string {
  return [
    `ptkit client: ${what}`,
    `SOCKS5 proxy: ${addr} (names are resolved by the server)`,
    "",
    "Try it:",
    `  curl --socks5-hostname ${addr} https://example.com/`,
    ...(bound
      ? [
        "(The server must relay to its clients' destinations: \`main.ts server\`, or -target socks.",
        "A tor bridge's line is for tor: put it in torrc with ClientTransportPlugin.)",
      ]
      : []),
    "",
    "Ctrl-C stops the client.",
    "",
  ].join("\n");
}

/** ptkit's own plugin names in an `ss://` link (the SIP003 plugin is main.ts). */
const PTKIT_PLUGIN = /^(ptkit|.*\/main\.ts|main\.ts)$/;

/**
 * `client ss://...`: a SOCKS5 proxy whose connections go to the link's
 * Shadowsocks server, each carrying its destination (names unresolved);
 * with ptkit's plugin (`plugin=ptkit;transport=obfs4;cert=...`), Shadowsocks
 * runs over that transport, as ss-local with main.ts as its plugin would.
 */
async function ssClient(
  link: string,
  flags: Record<string, string>,
  context: Context,
): Promise<number> {
  for (const flag of ["bridge", "transport", "tcp"]) {
    if (flags[flag] !== undefined) throw new UsageError(`--${flag} does not go with an ss:// link`);
  }
  let uri: SsUri;
  try {
    const repeated = new RepeatedKeyLog((message) => context.err(`ptkit client: ${message}\n`));
    uri = parseSsUri(link, {
      onRepeatedKey: (key) => repeated.report("The link's plugin options", key),
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  // Outline's connection prefix (the first bytes of each connection's
  // salt) is the transport's `prefix` option, which decodes it.
  const credentials: Record<string, string> = {
    method: uri.method,
    password: uri.password,
    ...(uri.prefix === undefined ? {} : { prefix: uri.prefix }),
  };
  let transport = "shadowsocks";
  let options: Record<string, string> = credentials;
  let registry = context.options.registry ?? defaultRegistry;
  if (uri.plugin !== undefined) {
    if (!PTKIT_PLUGIN.test(uri.plugin.name)) {
      throw new UsageError(
        `The link's plugin ${
          JSON.stringify(uri.plugin.name.slice(0, 64))
        } is not ptkit: run ss-local with that plugin (ptkit's is plugin=ptkit;transport=...)`,
      );
    }
    // The SIP003 plugin's own keys (server, state, loglevel: pasted with
    // the server plugin's options) are not the transport's: --state and
    // --log-level set those here, and the keys are ignored.
    const { transport: outerName = "obfs4", ...pluginOptions } = uri.plugin.options;
    const outerOptions = Object.fromEntries(
      Object.entries(pluginOptions).filter(([key]) => !SIP003_PLUGIN_KEYS.includes(key)),
    );
    const outer = registry.get(outerName);
    const inner = registry.get("shadowsocks");
    if (outer === undefined || inner === undefined || outer.free) {
      throw new UsageError(
        `Unknown plugin transport ${JSON.stringify(outerName.slice(0, 64))}: available: ${
          [...registry.values()].filter((t) => !t.free).map((t) => t.name).join(", ")
        }`,
      );
    }
    // Shadowsocks inside, the plugin's transport on the wire.
    transport = `shadowsocks_over_${outer.name}`;
    options = {};
    for (const [key, value] of Object.entries(credentials)) options[`shadowsocks.${key}`] = value;
    for (const [key, value] of Object.entries(outerOptions)) {
      options[`${outer.name}.${key}`] = value;
    }
    registry = new Map([[transport, layerTransports(transport, [inner, outer])]]);
  }
  const state = clientState(flags, context);
  const level = logLevel(flags);
  const config: ClientConfig = {
    ...common(transport, state.dir, level, new Map([[transport, options]])),
    ...metrics(flags),
    ...upstreamProxy(flags),
    kind: "client",
    mode: "socks5",
    listen: address(flags.socks ?? "127.0.0.1:1080", "--socks"),
    target: uri.server,
    free: true,
    optionsComplete: true,
  };
  const label = uri.tag === "" ? "" : ` (${printableTag(uri.tag)})`;
  // Over WebTunnel the plugin dials its URL's host (or addr=), not the link's.
  const dialed = formatHostPort(
    await dialedAddress(registry.get(transport), uri.server, options),
  );
  // The transport's options come from the link: its hints say so, and a
  // layer's refusal is told as the plugin transport's own (the link names no
  // stack of layers).
  const wording = (message: string) =>
    optionsGivenIn(
      message,
      "the link's plugin options (plugin=ptkit;transport=obfs4;cert=...;iat-mode=0), as the bridge's operator gives them",
    )
      .replace(
        /^Cannot configure transport 'shadowsocks_over_[^']*': its layer '[^']*' refused its options: /,
        "",
      )
      .replace(/\bthe bridge line's\b/g, "the link's plugin option");
  return await runSide(
    config,
    {
      ...context,
      options: { ...context.options, registry },
      ...(uri.plugin === undefined ? {} : { wording }),
    },
    level,
    (method) => {
      const addr = formatHostPort(method.address);
      const over = uri.plugin === undefined
        ? ""
        : ` over ${transport.slice("shadowsocks_over_".length)}`;
      context.out(
        socksClientText(`Shadowsocks ${uri.method}${over} to ${dialed}${label}`, addr, false),
      );
    },
    undefined,
    state.local,
  );
}

/**
 * The transports `start` cannot run alone in one process, and why: each
 * needs something from outside that a demo cannot make up.
 */
const NOT_STARTABLE: Record<string, string> = {
  webtunnel: "its server sits behind a front web server (url=...)",
  ssh: "its server must be given the client's public key",
};

/**
 * The server options `start` runs a transport with: a fresh password for
 * Shadowsocks (both sides are in this process; it is never printed), none
 * for the others.
 */
function startOptions(transport: string): Record<string, string> {
  const why = NOT_STARTABLE[transport];
  if (why !== undefined) {
    throw new UsageError(
      `Cannot run ${transport} with start: ${why}; run "main.ts server --transport ${transport}" ` +
        `and "main.ts client" instead (see the README)`,
    );
  }
  if (transport !== "shadowsocks") return {};
  const password = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(24))));
  return { method: "chacha20-ietf-poly1305", password };
}

async function start(flags: Record<string, string>, context: Context): Promise<number> {
  const transport = flags.transport ?? "obfs4";
  const options = startOptions(transport);
  const state = keysStateDir(flags.state, "start", context);
  const level = logLevel(flags);
  let socks = address(flags.socks ?? "127.0.0.1:1080", "--socks");
  // The default taken (another proxy, a second start): a free port, and the line says why.
  const taken = flags.socks === undefined && !portFree(socks) ? formatHostPort(socks) : undefined;
  if (taken !== undefined) socks = { ...socks, port: 0 };
  const stop = abortable(context);
  const page = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, () =>
    new Response(
      `Hello from ptkit: this page came through ${transport} and the server's SOCKS5 target.\n`,
    ));
  const pageUrl = `http://localhost:${page.addr.port}/`;
  const allow = [`127.0.0.1:${page.addr.port}`, ...(flags.allow ? [flags.allow] : [])].join(",");
  let failed: number | undefined;
  const fail = (code: number) => {
    failed ??= code;
    stop.abort(CAUSE_REPORTED);
  };
  try {
    const serverConfig: ServerConfig = {
      ...common(transport, inDirectory(state, "server"), level, new Map([[transport, options]])),
      kind: "server",
      bindAddrs: new Map([[transport, { hostname: "127.0.0.1", port: 0 }]]),
      target: { kind: "socks", policy: allowed(allow) },
      outboundBind: {},
    };
    const smethod = Promise.withResolvers<Extract<PtLine, { type: "SMETHOD" }>>();
    const serverLines = humanLines(context, level, (line) => {
      if (line.type === "SMETHOD") smethod.resolve(line);
    }, fail);
    const serverDone = run(serverConfig, context, serverLines, stop.signal)
      .finally(() => smethod.reject(new Error("Server ended before it started")));
    let served: Extract<PtLine, { type: "SMETHOD" }>;
    try {
      served = await smethod.promise;
    } catch {
      const code = await serverDone;
      return code !== 0 ? code : failed ?? 1;
    }
    const serverAddr = formatHostPort(served.address);
    const clientConfig: ClientConfig = {
      ...common(
        transport,
        inDirectory(state, "client"),
        level,
        new Map([[transport, { ...served.args, ...options }]]),
      ),
      kind: "client",
      mode: "socks5",
      listen: socks,
      target: served.address,
      free: true,
      optionsComplete: true,
    };
    const cmethod = Promise.withResolvers<string>();
    const clientLines = humanLines(
      context,
      level,
      (line) => cmethod.resolve(formatHostPort(line.address)),
      fail,
    );
    // One process, one line per signal: the server side announces them.
    const clientDone = run(clientConfig, context, clientLines, stop.signal, false)
      .finally(() => cmethod.reject(new Error("Client ended before it started")));
    let socksAddr: string | undefined;
    try {
      socksAddr = await cmethod.promise;
    } catch {
      stop.abort(CAUSE_REPORTED);
    }
    if (socksAddr !== undefined) {
      context.out(
        [
          `ptkit is running: the ${transport} server on ${serverAddr} (free mode: it ends in a SOCKS5`,
          "server) and its client, in this process.",
          "",
          `SOCKS5 proxy: ${socksAddr}${taken === undefined ? "" : ` (${taken} is taken)`}`,
          "",
          "Try it (a demo page served by this process, fetched through the transport):",
          `  curl --socks5-hostname ${socksAddr} ${pageUrl}`,
          "",
          "Any public site works the same way when this machine is online:",
          `  curl --socks5-hostname ${socksAddr} https://example.com/`,
          "",
          policyText(allowed(flags.allow), refusalShows(transport, context), true),
          "Press Ctrl-C to stop.",
          "",
        ].join("\n"),
      );
    }
    const codes = await Promise.all([serverDone, clientDone]);
    const code = codes.find((c) => c !== 0) ?? 0;
    return failed !== undefined && code === 0 ? failed : code;
  } finally {
    await page.shutdown();
  }
}

/** An address of each scope `--allow` names, to ask a policy whether it refuses the scope. */
const SCOPE_SAMPLES = {
  loopback: "127.0.0.1",
  private: "10.0.0.1",
  "link-local": "169.254.0.1",
  multicast: "224.0.0.1",
} as const;

/**
 * What a free-mode server (`server`, `start`) refuses, from the `--allow`
 * list it was given: the scopes refused, those allowed, and how a refusal
 * shows (`how`). `start`'s demo page is allowed besides.
 *
 * @param policy The `--allow` list (without the demo page).
 * @param how How a refused destination reaches the application.
 * @param demoPage Whether the demo page of `start` is allowed besides.
 * @returns One sentence.
 */
export function policyText(policy: DestinationPolicy, how: string, demoPage: boolean): string {
  const scopes = Object.keys(SCOPE_SAMPLES) as (keyof typeof SCOPE_SAMPLES)[];
  const refused = scopes.filter((scope) => policy.refusal(SCOPE_SAMPLES[scope], 9) !== undefined);
  const allowedScopes = scopes.filter((scope) => !refused.includes(scope));
  const list = (names: string[]) =>
    names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  // Exact ip:port items of --allow are allowed too, whatever their scope.
  const exact = policy.toString().split(",").some((item) => item.includes(":"));
  const besides = [
    ...(demoPage ? ["the demo page"] : []),
    ...(exact ? ["the --allow list's addresses"] : []),
  ].join(" and ");
  if (refused.length === 0) {
    return `The server allows ${list(allowedScopes)} destinations (--allow).`;
  }
  const allowedText = allowedScopes.length === 0
    ? ""
    : `allows ${list(allowedScopes)} destinations (--allow) and `;
  return `The server ${allowedText}refuses ${list(refused)} destinations${
    besides === "" ? "" : ` except ${besides}`
  } (${how}${allowedScopes.length === 0 && !exact ? "; see --allow" : ""}).`;
}

/** How a destination the server refuses reaches a client's application. */
function refusalShows(transport: string, context: Context): string {
  return (context.options.registry ?? defaultRegistry).get(transport)?.free
    ? `${transport} carries no answer back: the connection just closes`
    : "SOCKS reply 02";
}

/** A host and a port that can be dialed. */
function destination(text: string, what: string): HostPort {
  return address(text, what, 1);
}

/** `--metrics`, when given: where the side serves its metrics. */
function metrics(flags: Record<string, string>): { readonly metrics?: HostPort } {
  if (flags.metrics === undefined) return {};
  try {
    return { metrics: parseMetricsAddress(flags.metrics, "--metrics") };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function address(text: string, what: string, min = 0): HostPort {
  try {
    return parseHostPort(text, what, min);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function portFree(at: HostPort): boolean {
  try {
    Deno.listen({ hostname: at.hostname, port: at.port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * A link's `#tag` as text for a terminal: UTF-8 as given (emoji, accents),
 * control and format characters (a bidi override) as `?` but the emoji
 * joiner, at most 64 characters.
 */
function printableTag(tag: string): string {
  return Array.from(tag.replace(/(?!\u200d)[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "?"))
    .slice(0, 64).join("");
}
