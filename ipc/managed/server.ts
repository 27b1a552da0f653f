// Copyright the ptkit authors. MIT license.

import type { LocalStore, Transport, TransportOptions } from "../../transports/transport.ts";
import type { HostPort } from "../../net/address.ts";
import { checkHostPort } from "../../net/address.ts";
import type { Dialer } from "../../net/net_conn.ts";
import { SourceLimiter } from "../../net/source_limits.ts";
import type { ListenOptions, ProxyOptions } from "../../server.ts";
import { bindServer, type BoundServer, closeBound } from "../../net/_server_bind.ts";
import type { TurnServer } from "../../udp/turn/_turn_server.ts";
import type { ServerConfig, ServerTarget } from "./config.ts";
import {
  checkRunArguments,
  guardEmit,
  type RunningProxy,
  runningSide,
  type RunOptions,
} from "./runner.ts";
import { sideTransports } from "./_requested_transports.ts";
import { acceptErrorLogger, describe, digestLog } from "./_log.ts";
import type { MetricsRegistry } from "../../net/metrics.ts";
import { classifyIp } from "../../net/_ip_address.ts";
import { restateMissingPackage } from "../../transports/_npm_package.ts";
import { checkTransportSide } from "../../transports/_transport_name.ts";
import { checkFactoryOptions } from "../../transports/_factory_options.ts";
import { inDirectory } from "./_state_dir.ts";
import type * as Serving from "./_server_serving.ts";

/**
 * The modules that serve connections (proxy(), its accept loop and relays,
 * the targets), loaded once, after SMETHODS DONE: the transports are bound
 * before it, and the kernel's backlog holds connections until they accept.
 */
let servingModule: Promise<typeof Serving> | undefined;
function loadServing(): Promise<typeof Serving> {
  return servingModule ??= import("./_server_serving.ts");
}

/**
 * Run the server side of the managed proxy: for each known requested
 * transport, listen where `bindAddrs` says (and on each of its
 * `moreBindAddrs`; else on 127.0.0.1, a free port), report `SMETHOD <name> <addr> [ARGS:...]` or `SMETHOD-ERROR`, then
 * `SMETHODS DONE`; every connection whose transport handshake succeeds
 * goes to the target through `proxy()` (the ORPort, the Extended ORPort
 * after its handshake, free mode's SOCKS5 target, the embedded TURN
 * server) or to a UDP pool. A failed connection is logged (never with an
 * address) and closed; the others go on.
 *
 * @param config The configuration (see `parseManagedConfig`); its state
 * directory exists.
 * @param options Where lines go, the transports, signals, the dialer and
 * connection limits.
 * @returns The running side.
 * @throws {TypeError} When `config` is not a server configuration
 * (`parseManagedConfig`'s `kind: "server"`), or an option is of the wrong
 * type (`emit` missing or not a function, say).
 *
 * @example Serving `plain` in front of a TCP service
 * ```ts
 * import { parseManagedConfig, type PtLine, runServer } from "@ptkit/ptkit/ipc";
 * import { ok } from "node:assert";
 *
 * const config = parseManagedConfig([
 *   ...["-server", "-transports", "plain", "-orport", "127.0.0.1:9", "-state", "."],
 * ]);
 * if (config.kind !== "server") throw new Error("not a server");
 * const lines: PtLine[] = [];
 * const running = await runServer(config, { emit: (line) => lines.push(line) });
 * ok(lines[0]?.type === "SMETHOD" && lines[0].address.hostname === "127.0.0.1");
 * ok(lines[1]?.type === "SMETHODS-DONE");
 * await running.close();
 * ```
 */
export async function runServer(config: ServerConfig, options: RunOptions): Promise<RunningProxy> {
  checkRunArguments(config, options, "server");
  options = guardEmit(options, "runServer");
  const { emit } = options;
  const log = (severity: "error" | "warning" | "notice" | "info" | "debug", message: string) =>
    emit({ type: "LOG", severity, message });
  const target = config.target;
  const { metrics } = options;
  // The metrics modules load only when a registry is given.
  const withMode = metrics === undefined
    ? undefined
    : (await import("../../net/metrics.ts")).withMode;
  // Per-connection lines, digested: a flood of probes must not flood the parent.
  const digested = digestLog(log);
  const running: RunningProxy[] = [];
  // Transports bound before SMETHODS DONE, served after it.
  const deferred: DeferredServer[] = [];
  // How targets are dialed (once the serving modules have loaded).
  let base: Dialer | undefined;
  // A target's modules that cannot load (a checkout without `deno install`)
  // fail each transport with SMETHOD-ERROR naming the fix, which tor logs,
  // rather than the process with a stack trace on stderr, which it does not.
  let handlers: TargetHandlers = {};
  let handlersFailed: unknown;
  try {
    handlers = await loadTargetHandlers(target);
  } catch (error) {
    handlersFailed = restateMissingPackage(error, TARGET_WHAT[target.kind]);
  }
  if (target.kind === "extorport" && handlersFailed === undefined) {
    // Read again for every connection (tor may rewrite it), but a file that
    // cannot be read now is said once, at start, not only per connection.
    await handlers.readCookieFile!(target.cookieFile).catch((error) =>
      log(
        "warning",
        `${cookieWhat(target)} cannot be read: ${
          describe(error)
        }; each connection fails until it can`,
      )
    );
  }
  const requested = sideTransports(config, options);
  const turn = target.kind === "turn"
    ? new EmbeddedTurn(target, requested[0]?.env.local, metrics, config.outboundBind)
    : undefined;
  // Each transport on each of its addresses (several only for a SIP003
  // server given a host list).
  const listens = requested.flatMap((wanted) => {
    const first = options.listenAt?.get(wanted.name) ?? config.bindAddrs.get(wanted.name) ??
      { hostname: "127.0.0.1", port: 0 };
    const more = options.listenAt?.has(wanted.name)
      ? []
      : config.moreBindAddrs?.get(wanted.name) ?? [];
    return [first, ...more].map((at) => ({ ...wanted, at }));
  });
  // Where each transport listens, as `name host port`: a dual-stack [::]
  // takes 0.0.0.0's connections too.
  const listening = new Set<string>();
  for (const { name, transport, env, options: settings, at } of listens) {
    const onAcceptError = acceptErrorLogger(log, name);
    const limits = options.limits === undefined ? {} : { limits: options.limits };
    try {
      if (handlersFailed !== undefined) throw handlersFailed;
      // The embedded TURN server's connections are flows, as a UDP pool's:
      // the most one source holds is decided where it gives up its idlest
      // (targetOf), not by the listener, which refused the newcomer (the same
      // race serveUdpServer settles: a client at its maxFlows closes its
      // idlest flow and dials a new one at once).
      const perSource = target.kind === "turn"
        ? new SourceLimiter(options.limits, { what: "listen" }).limits.maxConnectionsPerSource
        : Infinity;
      let addr: Deno.NetAddr;
      let clientOptions: TransportOptions;
      let bridgeAddress: HostPort | undefined;
      if (target.kind === "udp") {
        // UDP's modules are evaluated only when asked for.
        const [{ serveUdpServer }, { outboundSource }] = await Promise.all([
          import("../../udp/server_pool.ts"),
          import("./_outbound_dialer.ts"),
        ]);
        const pool = await serveUdpServer({
          transport,
          config: settings,
          env,
          hostname: at.hostname,
          port: at.port,
          target: target.address,
          ...udpSource(outboundSource(config.outboundBind, target.address.hostname)),
          framing: target.framing,
          ...(target.idleTimeout === undefined ? {} : { idleTimeout: target.idleTimeout }),
          ...limits,
          onAcceptError,
          onError: (error) => digested("info", `${name}: UDP flow failed: ${describe(error)}`),
          ...(metrics === undefined ? {} : { metrics }),
        });
        running.push({ drain: () => pool.close(), close: () => pool.close() });
        ({ addr, clientOptions } = pool);
      } else {
        // Failed transport handshakes and bad SOCKS requests are what probes,
        // scanners and clients cause: info, so they cannot flood the parent's
        // log. Failures to reach tor are the operator's business: warning.
        const quiet = target.kind === "socks" || target.kind === "free" ||
          target.kind === "turn";
        const listenOptions: ListenOptions = {
          hostname: at.hostname,
          port: at.port,
          ...(options.reusePort ? { reusePort: true } : {}),
          env,
          ...(target.kind === "turn"
            ? { limits: { ...options.limits, maxConnectionsPerSource: Infinity } }
            : limits),
          onAcceptError,
          // A transport's helper (the ssh server's sshd) keeps its files in
          // the state directory and logs through LOG lines.
          helperDirectory: inDirectory(config.stateDir ?? Deno.cwd(), `${name}-helper`),
          onHelperLog: (severity, message) => log(severity, `${name}: ${message}`),
        };
        const turnServer = await turn?.server(at.hostname);
        // Bound now, served once SMETHODS DONE is out (the kernel's backlog
        // holds connections until then): proxy() and the modules that serve
        // connections load after it.
        const bound = await bindServer(transport, settings, listenOptions);
        try {
          checkBound(bound);
        } catch (error) {
          await closeBound(bound);
          throw error;
        }
        const server = new DeferredServer(name, transport, settings, bound, (serving) => {
          base ??= options.dialer ?? serving.outboundDialer(config.outboundBind);
          return {
            ...listenOptions,
            target: serving.targetOf(
              target,
              name,
              transport.free === true,
              base,
              digested,
              handlers,
              {
                turn: turnServer,
                perSource,
                ...(metrics === undefined ? {} : { metrics }),
                cookieName: target.kind === "extorport" ? cookieWhat(target) : "",
              },
            ),
            ...(metrics === undefined ? {} : {
              metrics: withMode!(
                metrics,
                target.kind === "socks" || target.kind === "free"
                  ? "socks5"
                  : target.kind === "turn"
                  ? "STUN"
                  : "transparent-TCP",
              ),
            }),
            onError: (error, stage) =>
              digested(
                stage === "handshake" || quiet || serving.clientFailures.has(error as object)
                  ? "info"
                  : "warning",
                `${name}: connection failed${stage === "handshake" ? " in the handshake" : ""}: ${
                  serving.dialFailures.has(error as object) ? DIAL_WHAT[target.kind] ?? "" : ""
                }${describe(error)}`,
              ),
          };
        });
        running.push(server);
        deferred.push(server);
        addr = bound.helper?.addr ?? bound.tcp.addr;
        // What the bridge line carries, when not the listen address
        // (WebTunnel's placeholder).
        bridgeAddress = bound.side.bridgeAddress;
        clientOptions = { ...bound.side.clientOptions, ...turn?.clientOptions };
      }
      if (transport.name === "webtunnel" && !loopbackOnly(addr.hostname)) {
        // Its client address (for the Extended ORPort) is the first
        // X-Forwarded-For value: anyone who connects directly can forge it.
        log(
          "warning",
          `${name}: listening on a non-loopback address; WebTunnel trusts X-Forwarded-For ` +
            "from whoever connects, so put it behind the front web server on 127.0.0.1 " +
            "(or firewall the port)",
        );
      }
      listening.add(`${name} ${addr.hostname} ${addr.port}`);
      options.onListening?.(name, { hostname: addr.hostname, port: addr.port });
      emit({
        type: "SMETHOD",
        transport: name,
        address: bridgeAddress ?? { hostname: addr.hostname, port: addr.port },
        args: clientOptions,
      });
    } catch (error) {
      // Given 0.0.0.0 and :: (ss-server -s 0.0.0.0 -s ::), [::] is dual-stack
      // (Linux's default): it serves IPv4 already, where ss-libev binds two
      // sockets, the IPv6 one IPv6-only.
      const dualStack = `${name} :: ${at.port}`;
      if (
        error instanceof Deno.errors.AddrInUse && at.hostname === "0.0.0.0" &&
        listening.has(dualStack)
      ) {
        log(
          "notice",
          `${name}: 0.0.0.0:${at.port} is served by [::]:${at.port}, which takes IPv4 connections too`,
        );
        continue;
      }
      emit({ type: "SMETHOD-ERROR", transport: name, message: describe(error) });
    }
  }
  emit({ type: "SMETHODS-DONE" });
  if (deferred.length > 0) {
    // Started at once: the first connection waits only for the load.
    loadServing().then(
      (serving) => {
        for (const server of deferred) {
          server.start(serving).catch((error) =>
            log("error", `${server.name}: cannot serve: ${describe(error)}`)
          );
        }
      },
      (error) => {
        for (const server of deferred) server.close().catch(() => {});
        log("error", `Cannot serve: ${describe(error)}`);
      },
    );
  }
  return runningSide(running, (closed) => {
    if (closed) turn?.close();
    digested.stop();
  });
}

/** The state key of the embedded TURN server's generated password. */
const TURN_PASSWORD_KEY = "turnPassword";

/** The embedded TURN server of `-mode STUN -target turn`, shared by the transports. */
class EmbeddedTurn {
  #options: Extract<ServerTarget, { kind: "turn" }>;
  #local: LocalStore | undefined;
  #credentials: { readonly user: string; readonly password: string } | undefined;
  #server: TurnServer | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;

  #metrics: MetricsRegistry | undefined;
  #outboundBind: ServerConfig["outboundBind"];

  constructor(
    options: Extract<ServerTarget, { kind: "turn" }>,
    local: LocalStore | undefined,
    metrics?: MetricsRegistry,
    outboundBind: ServerConfig["outboundBind"] = {},
  ) {
    this.#options = options;
    this.#local = local;
    this.#metrics = metrics;
    this.#credentials = options.credentials;
    this.#outboundBind = outboundBind;
  }

  /** The credentials clients need, when they were generated (once {@linkcode server} ran). */
  get clientOptions(): TransportOptions {
    if (this.#options.credentials !== undefined || this.#credentials === undefined) return {};
    const { user, password } = this.#credentials;
    return { "turn-user": user, "turn-password": password, "turn-realm": this.#options.realm };
  }

  /**
   * The generated password, kept in the state directory: the bridge line's
   * `turn-password` stays the same across restarts. A value there that
   * ptkit did not write is refused, never replaced.
   */
  async #generated(): Promise<{ readonly user: string; readonly password: string }> {
    const stored = await this.#local?.get(TURN_PASSWORD_KEY);
    if (stored !== undefined) {
      if (!/^[0-9a-f]{24}$/.test(stored.trim())) {
        throw new SyntaxError(
          `Cannot use state file ${TURN_PASSWORD_KEY} (in the state directory): not a TURN password ptkit wrote (24 hex digits); remove it to make a new one`,
        );
      }
      return { user: "ptkit", password: stored.trim() };
    }
    const password = [...crypto.getRandomValues(new Uint8Array(12))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    await this.#local?.set(TURN_PASSWORD_KEY, `${password}\n`);
    return { user: "ptkit", password };
  }

  /**
   * The server, made on first use with relays bound near `listenHost`: the
   * relay address when one was given, else, for each family `listenHost`
   * serves (both on `::`), that family's outbound bind address
   * (`TOR_PT_OUTBOUND_BIND_ADDRESS_V4`/`_V6`: the source of the server's
   * outgoing packets, relayed datagrams to peers among them, and so the
   * relayed address clients are given), else `listenHost`.
   */
  async server(listenHost: string): Promise<TurnServer> {
    if (this.#server !== undefined) return this.#server;
    const credentials = this.#credentials ??= await this.#generated();
    const [{ TurnServer }, { createUdpRelayFactory, relayHostsFor }] = await Promise.all([
      import("../../udp/turn/_turn_server.ts"),
      import("../../udp/turn/_udp_relay.ts"),
    ]);
    if (this.#server !== undefined) return this.#server;
    const relayHost = this.#options.relayAddress;
    // The listen address says which families are relayed (both on ::); an
    // outbound bind address only says where its family's relays bind.
    const relay = createUdpRelayFactory(
      relayHost === undefined
        ? relayHostsFor(listenHost, this.#outboundBind)
        : relayHost.includes(":")
        ? { ipv6: relayHost }
        : { ipv4: relayHost },
    );
    this.#server = new TurnServer({
      realm: this.#options.realm,
      users: { [credentials.user]: credentials.password },
      relay,
      allowLoopbackPeers: this.#options.allowLoopbackPeers,
      allowPrivatePeers: this.#options.allowPrivatePeers,
      ...(this.#metrics === undefined ? {} : { metrics: this.#metrics }),
    });
    this.#sweep = setInterval(() => this.#server?.sweep(), 1000);
    return this.#server;
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#server?.close();
  }
}

/** What serving a target needs beyond the relay. */
export interface TargetHandlers {
  readonly connectSocksDestination?: typeof import("../socks/_target.ts").connectSocksDestination;
  readonly connectDestination?: typeof import("../socks/_target.ts").connectDestination;
  readonly serveTurnStream?: typeof import("../../udp/turn/_stream_server.ts").serveTurnStream;
  readonly readCookieFile?: typeof import("../extorport/_safe_cookie.ts").readCookieFile;
  readonly extOrPortHandshake?: typeof import("../extorport/_client.ts").extOrPortHandshake;
  readonly authFailureCounter?: typeof import("../extorport/_client.ts").authFailureCounter;
}

/**
 * Load the modules the target needs (free mode, TURN, the Extended
 * ORPort): when the server starts with such a target, and only then,
 * never while serving, when a server out of descriptors could not open
 * them. Literal `import()`s, so `deno compile` and JSR consumers get
 * these modules in their graph.
 */
async function loadTargetHandlers(target: ServerTarget): Promise<TargetHandlers> {
  if (target.kind === "socks" || target.kind === "free") {
    return await import("../socks/_target.ts");
  }
  if (target.kind === "turn") {
    return await import("../../udp/turn/_stream_server.ts");
  }
  if (target.kind === "extorport") {
    const [{ readCookieFile }, { extOrPortHandshake, authFailureCounter }] = await Promise.all([
      import("../extorport/_safe_cookie.ts"),
      import("../extorport/_client.ts"),
    ]);
    return { readCookieFile, extOrPortHandshake, authFailureCounter };
  }
  return {};
}

/** What a dial failure's log line says first, by target. */
const DIAL_WHAT: Partial<Record<ServerTarget["kind"], string>> = {
  orport: "cannot connect to the target (the ORPort or -target): ",
  extorport: "cannot connect to the Extended ORPort: ",
};

/** How each target's modules are named when they cannot load. */
const TARGET_WHAT: Record<ServerTarget["kind"], string> = {
  orport: "the ORPort target",
  extorport: "the Extended ORPort client (TOR_PT_EXTENDED_SERVER_PORT)",
  socks: "the SOCKS5 target",
  free: "the SOCKS5 target",
  turn: "the embedded TURN server",
  udp: "the UDP target",
};

/** How the cookie file is named in messages: by the flag or variable that gave it. */
function cookieWhat(target: { readonly cookieFileFrom?: string }): string {
  return `The Extended ORPort auth cookie (${target.cookieFileFrom ?? "TOR_PT_AUTH_COOKIE_FILE"})`;
}

/** Whether a listen address is reachable from this host only. */
function loopbackOnly(hostname: string): boolean {
  try {
    return classifyIp(hostname) === "loopback";
  } catch {
    return false;
  }
}

/** A UDP target's flows send from the outbound bind address of its family, if any. */
function udpSource(source: string | undefined): { localAddress?: string } {
  return source === undefined ? {} : { localAddress: source };
}

/**
 * What proxy() checks of a transport's server side (TransportListener and
 * ServerManager do), checked before its SMETHOD line: a side they would
 * refuse is that transport's SMETHOD-ERROR, as when proxy() ran before it.
 */
function checkBound({ side }: BoundServer): void {
  checkTransportSide(side, "server", "make a transport listener");
  const clientOptions = side.clientOptions;
  if (clientOptions === undefined) {
    throw new TypeError(
      "Cannot make a server manager: clientOptions must be an object, got undefined",
    );
  }
  checkFactoryOptions(clientOptions, "make a server manager", [], "clientOptions");
  if (side.bridgeAddress !== undefined) checkHostPort(side.bridgeAddress, "bridgeAddress", 1);
}

/**
 * A transport bound before SMETHODS DONE and served after it by proxy(),
 * once its modules have loaded, or never when stopped first: its socket,
 * helper and side are closed then.
 */
class DeferredServer implements RunningProxy {
  readonly name: string;
  #transport: Transport;
  #settings: TransportOptions;
  #bound: BoundServer;
  #options: (serving: typeof Serving) => ProxyOptions;
  #running: Promise<RunningProxy | undefined> | undefined;
  #stopped = false;

  /**
   * @param name The transport's name, for messages.
   * @param transport The transport.
   * @param settings Its server configuration.
   * @param bound Where it listens (from bindServer with the same listen options).
   * @param options proxy()'s options: the listen options bindServer had, and the rest.
   */
  constructor(
    name: string,
    transport: Transport,
    settings: TransportOptions,
    bound: BoundServer,
    options: (serving: typeof Serving) => ProxyOptions,
  ) {
    this.name = name;
    this.#transport = transport;
    this.#settings = settings;
    this.#bound = bound;
    this.#options = options;
  }

  /**
   * Serve, unless drained or closed already. Rejects when it cannot (the
   * bound server is closed then).
   */
  async start(serving: typeof Serving): Promise<void> {
    if (this.#stopped || this.#running !== undefined) return;
    const running = this.#serve(serving);
    this.#running = running.catch(() => undefined);
    await running;
  }

  async #serve(serving: typeof Serving): Promise<RunningProxy> {
    let options: ProxyOptions | undefined;
    try {
      options = this.#options(serving);
      serving.useBound(options, this.#bound);
      return await serving.proxy(this.#transport, this.#settings, options);
    } catch (error) {
      // proxy() closes what it took; what it did not take is closed here.
      if (options === undefined || serving.takeBound(options) !== undefined) {
        await closeBound(this.#bound).catch(() => {});
      }
      throw error;
    }
  }

  drain(): Promise<void> {
    return this.#stop((running) => running.drain());
  }

  close(): Promise<void> {
    return this.#stop((running) => running.close());
  }

  async #stop(stop: (running: RunningProxy) => Promise<void>): Promise<void> {
    this.#stopped = true;
    if (this.#running === undefined) {
      // Never served: nothing accepted, nothing to wait for.
      this.#running = Promise.resolve(undefined);
      await closeBound(this.#bound);
      return;
    }
    const running = await this.#running;
    if (running !== undefined) await stop(running);
  }
}
