// Copyright the ptkit authors. MIT license.
// Internal: main.ts as a SIP003 plugin (Shadowsocks' plugin interface, as
// ss-local/ss-server, shadowsocks-rust and Outline start one): the
// SS_REMOTE_* / SS_LOCAL_* variables and SS_PLUGIN_OPTIONS turned into the
// managed proxy's typed configuration (a transparent-TCP client from
// SS_LOCAL to SS_REMOTE, or a server on SS_REMOTE in front of SS_LOCAL),
// run by the same runner as tor's PT, with text on stderr.

import type { TransportOptions } from "../../transports/transport.ts";
import {
  bracketBareIpv6,
  formatHostPort,
  type HostPort,
  parseHostPort,
} from "../../net/address.ts";
import { formatPluginOptions, parsePluginOptions } from "../lines/_args.ts";
import { logged, type LogSeverity, parseLogSeverity } from "../lines/_output.ts";
import type { PtLine } from "../lines/pt_line.ts";
import type { ClientConfig, ServerConfig } from "./config.ts";
import { perUserStateDir } from "./_state_dir.ts";
import { FileStore } from "./_file_store.ts";
import { MemoryStore } from "../../transports/memory_store.ts";
import { CAUSE_REPORTED } from "./_shutdown.ts";
import { cliError, methodErrorCode, methodErrorText, SIP003_PLUGIN_KEYS } from "../cli/_names.ts";
import { optionsGivenIn } from "../_options_place.ts";

/** The SIP003 variables: the four addresses a plugin host sets, then the plugin options. */
export const SIP003_VARS: readonly string[] = [
  "SS_REMOTE_HOST",
  "SS_REMOTE_PORT",
  "SS_LOCAL_HOST",
  "SS_LOCAL_PORT",
  "SS_PLUGIN_OPTIONS",
];

/** The plugin options ptkit reads itself; the others are the transport's. */
const PLUGIN_KEYS = SIP003_PLUGIN_KEYS;

/** The file the server writes the client's plugin options to, in its state directory. */
export const CLIENT_OPTIONS_FILE = "sip003_client_options.txt";

/** A SIP003 plugin run: its side's configuration and the log level. */
export interface Sip003Plan {
  /** The side, as the managed proxy runs it. */
  readonly config: ClientConfig | ServerConfig;
  /** The chosen transport. */
  readonly transport: string;
  /** The least severe log line printed (`loglevel=`, default notice). */
  readonly logLevel: LogSeverity;
}

/**
 * Turn the SIP003 variables into a side to run. Client (no `server` key,
 * or `server=false`): listen on SS_LOCAL, carry each connection over
 * `transport` (default obfs4) with the remaining options as its arguments
 * to SS_REMOTE. Server (`server` alone or `server=true`): listen on
 * SS_REMOTE with the transport, relay decoded connections to SS_LOCAL;
 * state from `state=` (else `defaultState`). A transport's key given twice
 * keeps its first value, with a warning. Pure.
 *
 * @param env The variables (`SS_*`).
 * @param defaultState The server's state directory when `state=` is absent.
 * @returns The plan.
 * @throws {TypeError} When an address variable is missing.
 * @throws {SyntaxError} On malformed options (never quoting a transport's
 * value), another value of `server`, a plugin key (`server`, `transport`,
 * `state`, `loglevel`) given twice, or an empty `state=`.
 * @throws {RangeError} On a malformed address or port, or an unknown
 * `loglevel=`.
 */
export function parseSip003(
  env: Readonly<Record<string, string | undefined>>,
  defaultState: (role: "client" | "server") => string,
): Sip003Plan {
  const missing = SIP003_VARS.slice(0, 4).filter((name) => env[name] === undefined);
  if (missing.length > 0) {
    throw new TypeError(
      `Cannot start as a SIP003 plugin: ${missing.slice(0, -1).join(", ")}${
        missing.length > 1 ? " and " : ""
      }${missing.at(-1)} ${
        missing.length === 1 ? "is" : "are"
      } not set (a plugin host sets SS_REMOTE_HOST, SS_REMOTE_PORT, SS_LOCAL_HOST and SS_LOCAL_PORT)`,
    );
  }
  const repeated: string[] = [];
  const options = parsePluginOptions(env.SS_PLUGIN_OPTIONS ?? "", {
    onRepeatedKey: (key) => repeated.push(key),
  });
  // The plugin's own keys choose what runs: given twice, neither value is
  // the obvious one. (A transport's key given twice keeps its first value,
  // as in a bridge line, with a warning.)
  const twice = repeated.find((key) => PLUGIN_KEYS.includes(key));
  if (twice !== undefined) {
    throw new SyntaxError(
      `Invalid plugin options: the key '${twice}' is given more than once: give it once`,
    );
  }
  const server = serverOption(options.server);
  if (options.state === "") {
    throw new SyntaxError(
      "Invalid plugin option state: it is empty: give a directory (state=/var/lib/ptkit-ss), " +
        "or leave state out for the per-user default",
    );
  }
  const transport = options.transport ?? "obfs4";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(transport)) {
    throw new SyntaxError(
      `Invalid plugin option transport ${
        JSON.stringify(transport.slice(0, 64))
      }: expected a transport name`,
    );
  }
  // Named as the plugin option it is, as server= and transport= are.
  const logLevel: LogSeverity = parseLogSeverity(
    options.loglevel ?? "notice",
    "plugin option loglevel",
  );
  const args: Record<string, string> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!PLUGIN_KEYS.includes(key)) args[key] = value;
  }
  // ss-libev passes every `-s` host, joined by `|` (`127.0.0.1|::1`).
  const remotes = addresses(env.SS_REMOTE_HOST!, env.SS_REMOTE_PORT!, "SS_REMOTE");
  const locals = addresses(env.SS_LOCAL_HOST!, env.SS_LOCAL_PORT!, "SS_LOCAL");
  const remote = remotes[0]!;
  const local = locals[0]!;
  const warnings: string[] = repeated.map((key) =>
    `The plugin options give ${
      JSON.stringify(key.slice(0, 64))
    } more than once; using its first value`
  );
  if (locals.length > 1) {
    warnings.push(`SS_LOCAL_HOST lists ${locals.length} hosts: the first is used`);
  }
  if (!server && remotes.length > 1) {
    warnings.push(`SS_REMOTE_HOST lists ${remotes.length} hosts: the client dials the first`);
  }
  const base = {
    version: "2",
    transports: [transport],
    options: new Map<string, TransportOptions>([[transport, args]]),
    // A client's transports (plain, obfs4, webtunnel) keep nothing: without
    // state= it has no state directory (runSip003 keeps its store in
    // memory), so a service user who may write nowhere can run it.
    ...(options.state !== undefined
      ? { stateDir: options.state }
      : server
      ? { stateDir: defaultState("server") }
      : {}),
    exitOnStdinClose: false,
    logLevel,
    warnings,
    workers: 1,
    // The transport is given the other keys: a mistyped plugin key gets its hint.
    frontEndKeys: PLUGIN_KEYS,
  } as const;
  if (server) {
    // A host name (ss-server -s localhost) is listened on as ss-server
    // listens itself: on the name's first address. With both wildcards
    // (-s 0.0.0.0 -s ::), [::] goes first: dual-stack, it serves IPv4 too,
    // and 0.0.0.0 then finds its port taken (the side says so, no error).
    const wildcard6 = remotes.findIndex((at) => at.hostname === "::");
    if (wildcard6 > 0 && remotes.some((at) => at.hostname === "0.0.0.0")) {
      remotes.unshift(...remotes.splice(wildcard6, 1));
    }
    const remote = remotes[0]!;
    return {
      transport,
      logLevel,
      config: {
        ...base,
        kind: "server",
        bindAddrs: new Map([[transport, remote]]),
        ...(remotes.length > 1 ? { moreBindAddrs: new Map([[transport, remotes.slice(1)]]) } : {}),
        target: { kind: "orport", address: local },
        outboundBind: {},
      },
    };
  }
  return {
    transport,
    logLevel,
    config: {
      ...base,
      kind: "client",
      mode: "transparent-TCP",
      listen: local,
      target: remote,
      free: false,
      optionsComplete: true,
    },
  };
}

/**
 * Whether the plugin options choose the server: the key `server` alone (as
 * ss-server's `--plugin-opts "server;..."` gives it) or `server=true`;
 * absent or `server=false`: the client.
 */
function serverOption(value: string | undefined): boolean {
  if (value === undefined || /^false$/i.test(value)) return false;
  if (value === "" || /^true$/i.test(value)) return true;
  throw new SyntaxError(
    `Invalid plugin option server ${
      JSON.stringify(value.slice(0, 64))
    }: expected server alone, server=true or server=false`,
  );
}

/**
 * A transport's message as a SIP003 plugin's user meets it: where it
 * says to give an option on the command line of main.ts server or tor
 * (`--options`, torrc's `ServerTransportOptions`, a bridge line), the
 * plugin options (`--plugin-opts`, `SS_PLUGIN_OPTIONS`) are named instead.
 *
 * @param message The message (an error or a log line).
 * @param server The side: ss-server's plugin or ss-local's.
 * @returns The message.
 */
export function pluginWording(message: string, server: boolean): string {
  const where = `${server ? "ss-server" : "ss-local"} --plugin-opts or SS_PLUGIN_OPTIONS`;
  // The side comes from the options alone: a plugin under ss-server without
  // `server` tries ss-server's own SS_LOCAL port, one under ss-local with
  // it the remote server's address. Say so where that is what the error
  // most likely means.
  if (!server && /^Cannot listen on \S+: Address already in use\b/.test(message)) {
    message += " (SS_LOCAL: under ss-server, ss-server listens there itself: give the plugin " +
      "'server' in its options, --plugin-opts \"server;transport=...\")";
  } else if (server && /^Cannot listen on \S+: Cannot assign requested address\b/.test(message)) {
    message += " (SS_REMOTE is no address of this machine: under ss-local the plugin is the " +
      "client: leave 'server' out of --plugin-opts)";
  }
  const worded = optionsGivenIn(
    message,
    `${where} (cert=...;iat-mode=0, as the server plugin prints them)`,
  )
    .replace(
      /given as --options '([^']*)', or under tor as 'ServerTransportOptions [^']*' in torrc/g,
      `given as $1 in the plugin options: ${where}`,
    )
    .replace(/\(the bridge line's ([^)]*)\)/g, `(the plugin option $1, in ${where})`)
    .replace(/\bthe bridge line's\b/g, "the plugin options'");
  // A transport's refusal of its options that says what is wrong but not
  // where to fix it (obfs4's missing cert, its iat-mode 7): the plugin
  // options are that place.
  if (/^Cannot configure /.test(worded) && !worded.includes("SS_PLUGIN_OPTIONS")) {
    return `${worded}; fix it in ${where}${
      server ? "" : " (the server plugin prints the client's)"
    }`;
  }
  return worded;
}

/**
 * The addresses of a `_HOST` list (ss-libev joins several `-s` hosts with
 * `|`, as simple-obfs and v2ray-plugin read them) at one port.
 */
function addresses(hosts: string, port: string, what: string): HostPort[] {
  // A host listed twice would be a second listener on the same address.
  const list = [...new Set(hosts.split("|").map((host) => host.trim()))].filter((host) =>
    host !== ""
  );
  if (list.length === 0) throw new RangeError(`Invalid ${what}_HOST: no host`);
  return list.map((host) => {
    return parseHostPort(bracketBareIpv6(`${host}:${port}`), `${what}_HOST:${what}_PORT`, 1);
  });
}

/** What a plugin run reports, as text on stderr; records failures. */
export interface Sip003Output {
  /** Receives the managed proxy's lines. */
  readonly emit: (line: PtLine) => void;
  /** Whether a transport failed to start (or the state directory could not be made). */
  readonly failed: () => boolean;
  /**
   * The exit code of the first failure: 64 for configuration (an
   * `ENV-ERROR`, a transport's options or state file), 1 otherwise; 0 when
   * nothing failed.
   */
  readonly failureCode: () => number;
  /** Resolves with the client's plugin options once the server listens. */
  readonly clientOptions: Promise<string | undefined>;
  /**
   * Records where the server listens, before its `SMETHOD` line: that
   * line's address is what a bridge line carries (WebTunnel's is a
   * placeholder), not the SS_REMOTE address.
   */
  readonly onListening: (transport: string, address: HostPort) => void;
}

/**
 * The plugin's output: log lines at `plan.logLevel` and errors as
 * `ptkit: ...` text; on the server, the client's plugin options
 * (`transport=obfs4;cert=...;iat-mode=0`) once it listens.
 *
 * @param plan The run.
 * @param write Receives text for stderr.
 * @param dialed On the client, where the transport dials when its options
 * say (WebTunnel's url= host), not SS_REMOTE; named in its first line.
 * @returns The emitter and what it saw.
 */
export function sip003Output(
  plan: Sip003Plan,
  write: (text: string) => void,
  dialed?: HostPort,
): Sip003Output {
  // The first failure's exit code; 0 while nothing failed.
  let code = 0;
  // Where the server listens (one address per host of a host list) and the
  // first SMETHOD's arguments: said once, when every address is known.
  let listening: HostPort | undefined;
  const served: HostPort[] = [];
  let args: Record<string, string> | undefined;
  let resolve: (text: string | undefined) => void = () => {};
  const clientOptions = new Promise<string | undefined>((r) => resolve = r);
  const say = (text: string) => write(`ptkit: ${text.replace(/[^\x20-\x7e]/g, "?")}\n`);
  const server = plan.config.kind === "server";
  return {
    failed: () => code !== 0,
    failureCode: () => code,
    clientOptions,
    onListening: (_transport, address) => listening = address,
    emit: (line) => {
      switch (line.type) {
        case "LOG":
          if (logged(line.severity, plan.logLevel)) {
            say(`[${line.severity}] ${pluginWording(line.message, server)}`);
          }
          return;
        case "CMETHOD":
          say(
            `${plan.transport} client on ${
              formatHostPort(line.address)
            } (SS_LOCAL), carrying connections to ${
              dialed === undefined
                ? "SS_REMOTE"
                : `${formatHostPort(dialed)} (from the plugin options; SS_REMOTE is not used)`
            }`,
          );
          return;
        case "SMETHOD":
          // One line per address of a host list: the options once, at SMETHODS DONE.
          served.push(listening ?? line.address);
          listening = undefined;
          args ??= { ...line.args };
          return;
        case "CMETHOD-ERROR":
        case "SMETHOD-ERROR":
        case "ENV-ERROR":
          code ||= line.type === "ENV-ERROR" ? 64 : methodErrorCode(line.message);
          write(
            cliError(
              line.type === "ENV-ERROR"
                ? line.message.replace(/[^\x20-\x7e]/g, "?")
                : methodErrorText(
                  line.transport,
                  pluginWording(line.message, server).replace(/[^\x20-\x7e]/g, "?"),
                ),
            ),
          );
          return;
        case "CMETHODS-DONE":
          resolve(undefined);
          return;
        case "SMETHODS-DONE": {
          if (args === undefined) {
            resolve(undefined);
            return;
          }
          const options = formatPluginOptions({ transport: plan.transport, ...args });
          say(
            `${plan.transport} server on ${
              served.map(formatHostPort).join(" and ")
            } (SS_REMOTE); the client's --plugin-opts:`,
          );
          write(`${options}\n`);
          // SIP002 percent-encodes the plugin and its options in a link.
          say(`in an ss:// link: /?plugin=${encodeURIComponent(`ptkit;${options}`)}`);
          resolve(options);
          return;
        }
      }
    },
  };
}

/** Options for {@linkcode runSip003}. */
export interface Sip003RunOptions {
  /** Reads an environment variable (`SS_*`, `HOME`, `XDG_STATE_HOME`). */
  readonly getEnv: (name: string) => string | undefined;
  /** Receives text for stderr. */
  readonly stderr: (text: string) => void;
}

/**
 * Run main.ts as a SIP003 plugin until its parent goes (SIGTERM, SIGINT,
 * the parent process exiting, or stdin closing when it is a pipe).
 *
 * @param options The environment and stderr.
 * @returns The exit code: 0, 64 on bad variables, options or state (as
 * `main.ts client` and `server`), 1 when the transport could not start
 * otherwise (its address taken).
 */
export async function runSip003(options: Sip003RunOptions): Promise<number> {
  const env: Record<string, string | undefined> = {};
  for (const name of SIP003_VARS) {
    try {
      env[name] = options.getEnv(name);
    } catch {
      options.stderr(cliError(`Cannot start as a SIP003 plugin: ${name} is not valid UTF-8`));
      return 64;
    }
  }
  let plan: Sip003Plan;
  try {
    plan = parseSip003(env, (role) => perUserStateDir(`sip003-${role}`, options.getEnv));
  } catch (error) {
    options.stderr(cliError((error as Error).message));
    return 64;
  }
  const { builtinTransports: registry } = await import("./_registry.ts");
  const chosen = registry.get(plan.transport);
  if (chosen === undefined || chosen.free) {
    const bound = [...registry.values()].filter((t) => !t.free).map((t) => t.name);
    const name = JSON.stringify(plan.transport);
    options.stderr(
      cliError(
        `${
          chosen === undefined
            ? `Unknown transport ${name}`
            : `Transport ${name} cannot carry a Shadowsocks connection: it is a free transport ` +
              "(each connection names its own destination; Shadowsocks itself is ss-local's " +
              "and ss-server's part)"
        }: expected one of ${bound.join(", ")}`,
      ),
    );
    return 64;
  }
  // A transport that plans its connections (WebTunnel dials its url='s
  // host) does not dial SS_REMOTE: the client's line names what it dials.
  let dialed: HostPort | undefined;
  const remote = plan.config.kind === "client" ? plan.config.target : undefined;
  if (remote !== undefined) {
    const { dialedAddress } = await import("./_check_options.ts");
    const address = await dialedAddress(
      chosen,
      remote,
      plan.config.options.get(plan.transport) ?? {},
    );
    if (formatHostPort(address) !== formatHostPort(remote)) dialed = address;
  }
  const output = sip003Output(plan, options.stderr, dialed);
  // Options the transport refuses fail here, before the state directory is
  // made (a mistyped option left an empty directory behind).
  try {
    const { checkOptionsInMemory } = await import("./_check_options.ts");
    await checkOptionsInMemory(
      chosen,
      plan.config.kind,
      plan.config.options.get(plan.transport) ?? {},
    );
  } catch (error) {
    const { describe } = await import("./_log.ts");
    output.emit({
      type: plan.config.kind === "server" ? "SMETHOD-ERROR" : "CMETHOD-ERROR",
      transport: plan.transport,
      message: describe(error),
    });
    return output.failureCode();
  }
  const stop = new AbortController();
  let stateDir = plan.config.stateDir ?? Deno.cwd();
  if (!stateDir.startsWith("/")) stateDir = `${Deno.cwd()}/${stateDir}`;
  // Written before the run releases the state directory's lock: a second
  // plugin starting on the directory waits for it, and never finds (nor
  // removes as a crash's) this one's half-written temporary file.
  const written = output.clientOptions.then(async (text) => {
    if (output.failed()) stop.abort(CAUSE_REPORTED);
    if (text === undefined) return;
    // What the client needs, beside the state it comes from (0600: the
    // obfs4 cert is the bridge's secret for its users), written as every
    // state file is: a symbolic link or another user's file in its place is
    // refused and left as it was, never followed.
    const onNotice = (message: string) => output.emit({ type: "LOG", severity: "notice", message });
    const store = new FileStore(stateDir, { onNotice });
    const file = store.describe(CLIENT_OPTIONS_FILE);
    try {
      await store.set(CLIENT_OPTIONS_FILE, `${text}\n`);
      output.emit({ type: "LOG", severity: "notice", message: `Wrote ${file}` });
    } catch (error) {
      // The store's errors name the file and say why (no secret in them).
      output.emit({
        type: "LOG",
        severity: "warning",
        message: error instanceof Error && error.message.startsWith("Cannot ")
          ? error.message
          : `Cannot write ${CLIENT_OPTIONS_FILE}: ${(error as Error).name}`,
      });
    }
  });
  const { runManaged } = await import("./_run.ts");
  // The runner watches signals and the parent process; stdin is watched
  // here (the runner reads none: its input never ends).
  watchParentInput(() => {
    output.emit({ type: "LOG", severity: "notice", message: "Shutting down: parent closed stdin" });
    stop.abort(CAUSE_REPORTED);
  });
  const code = await runManaged(plan.config, {
    emit: output.emit,
    onListening: output.onListening,
    process: true,
    signal: stop.signal,
    stdin: new ReadableStream(),
    whileLocked: () => written,
    // A client without state=: nothing on disk (see parseSip003).
    ...(plan.config.stateDir === undefined ? { local: new MemoryStore() } : {}),
  });
  return code !== 0 ? code : output.failureCode();
}

/**
 * Whether stdin is a pipe or socket (a parent's) or not (/dev/null, a file),
 * as the kernel says (statx through FFI); `undefined` where it cannot be
 * asked (no FFI permission, not Linux).
 */
async function stdinIsPipe(): Promise<boolean | undefined> {
  try {
    const { openLibc } = await import("../../net/_libc.ts");
    return openLibc()?.isPipeOrSocket(0);
  } catch {
    return undefined;
  }
}

/** How long after start an end of stdin means "no parent's pipe" (/dev/null). */
const NO_PIPE_MS = 1000;

/**
 * Call `onClose` when the parent's stdin pipe ends. A terminal, /dev/null
 * (ss-libev under systemd) or a file is no parent's pipe: the parent's death
 * and signals end the plugin instead. Where the system cannot say what stdin
 * is, a stdin that ends within {@linkcode NO_PIPE_MS} without a byte is taken
 * for /dev/null.
 */
function watchParentInput(onClose: () => void): void {
  if (Deno.stdin.isTerminal()) return;
  const started = Date.now();
  (async () => {
    const pipe = await stdinIsPipe();
    if (pipe === false) return;
    const buffer = new Uint8Array(4096);
    let seen = false;
    for (;;) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buffer);
      } catch {
        n = null; // A broken stdin counts as closed.
      }
      if (n === null) break;
      seen = true;
    }
    if (pipe || seen || Date.now() - started >= NO_PIPE_MS) onClose();
  })();
}
