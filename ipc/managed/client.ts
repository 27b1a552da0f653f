// Copyright the ptkit authors. MIT license.

import { listenOn } from "../../net/_listen.ts";
import type { TransportOptions } from "../../transports/transport.ts";
import { type Dialer, tcpDialer } from "../../net/net_conn.ts";
import type { Connector } from "../../client.ts";
import type { PtLine } from "../lines/pt_line.ts";
import { RepeatedKeyLog } from "../lines/_first_value.ts";
import type { ClientConfig } from "./config.ts";
import {
  checkRunArguments,
  guardEmit,
  type RunningProxy,
  runningSide,
  type RunOptions,
} from "./runner.ts";
import { sideTransports } from "./_requested_transports.ts";
import { HELPER_TRANSPORTS } from "./_registry.ts";
import { acceptErrorLogger, complaintsOnce, describe, digestLog } from "./_log.ts";
import { checkComplete } from "./_check_options.ts";
import { BOUND_DESTINATION, formatHostPort, type HostPort } from "../../net/address.ts";
import type { TransportConn } from "../../net/transport_conn.ts";
import type * as Serving from "./_client_serving.ts";
import { DeferredFront } from "./_deferred_front.ts";
import { inDirectory } from "./_state_dir.ts";

/** Connectors kept per transport, one per distinct configuration. */
const MAX_CONNECTORS = 64;
/**
 * How long free mode waits for the server's SOCKS5 target to answer the
 * greeting, in ms (it answers before dialing anything).
 */
const FREE_GREETING_TIMEOUT_MS = 20_000;
/**
 * How long a SOCKS request's transport handshake may take once the PT
 * server took the connection, in ms: lyrebird's obfs4 client deadline, and
 * the front end's for the whole request. The front end's, a moment earlier
 * than obfs4's own, leaves a handshake under way to this one or the
 * transport's, whose error says why (obfs4's: a wrong cert gets no answer).
 */
const HANDSHAKE_TIMEOUT_MS = 60_000;

/**
 * The modules that serve connections (SOCKS front end, connectors, relay,
 * accept loop, metrics), loaded once. A SOCKS front end without start-up
 * arguments (tor's case) binds its port, says CMETHOD and CMETHODS DONE
 * first and loads them after: the kernel's backlog holds connections until
 * it accepts.
 */
let servingModule: Promise<typeof Serving> | undefined;
function loadServing(): Promise<typeof Serving> {
  return servingModule ??= import("./_client_serving.ts");
}

/**
 * Run the client side of the managed proxy: for each known requested
 * transport, a SOCKS4/5 front end (per-connection arguments are the
 * transport's client configuration, one connector cached per distinct
 * configuration), a transparent-TCP listener that relays to a fixed PT
 * server, or a datagram pool. Reports `PROXY DONE` (with an upstream
 * proxy), `CMETHOD` / `CMETHOD-ERROR` and `CMETHODS DONE`; each connection
 * to a PT server gives pt-spec's `STATUS TRANSPORT=<name> ADDRESS=<server
 * ip:port> CONNECT=Success` once its transport handshake completed, or
 * `CONNECT=Failed ERRSTR=...` (and a `LOG` line). ADDRESS is the PT
 * server's, never the application's own address. SOCKS arguments that
 * repeat a key use its first value; each repeated key is logged once (its
 * name, never a value). Never logs addresses.
 *
 * @param config The configuration (see `parseManagedConfig`); its state
 * directory exists.
 * @param options Where lines go, the transports, signals, the dialer.
 * @returns The running side.
 * @throws {TypeError} When `config` is not a client configuration
 * (`parseManagedConfig`'s `kind: "client"`), or an option is of the wrong
 * type (`emit` missing or not a function, say).
 *
 * @example A SOCKS front end for `plain`
 * ```ts
 * import { parseManagedConfig, type PtLine, runClient } from "@ptkit/ptkit/ipc";
 * import { ok } from "node:assert";
 *
 * const config = parseManagedConfig(["-client", "-transports", "plain,bogus", "-state", "."]);
 * const lines: PtLine[] = [];
 * if (config.kind !== "client") throw new Error("not a client");
 * const running = await runClient(config, { emit: (line) => lines.push(line) });
 * ok(lines[0]?.type === "CMETHOD" && lines[0].mode === "socks5" && lines[0].address.port > 0);
 * ok(lines[1]?.type === "CMETHODS-DONE");
 * await running.close();
 * ```
 */
export async function runClient(config: ClientConfig, options: RunOptions): Promise<RunningProxy> {
  checkRunArguments(config, options, "client");
  options = guardEmit(options, "runClient");
  const { emit } = options;
  const log = (severity: "error" | "warning" | "notice" | "info" | "debug", message: string) =>
    emit({ type: "LOG", severity, message });
  if (config.proxy !== undefined) emit({ type: "PROXY-DONE" });
  const running: RunningProxy[] = [];
  // Set once the serving modules have loaded: every use below runs after.
  let serving: typeof Serving;
  // SOCKS front ends bound before they load, started once they have.
  const deferred: DeferredFront[] = [];
  const repeated = new RepeatedKeyLog((message) => log("warning", message));
  let direct = options.dialer ?? tcpDialer;
  if (options.dialer === undefined && config.outboundBind !== undefined) {
    // TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6: bridges and the upstream proxy
    // are dialed from the given source addresses (loopback ones are not).
    const { outboundDialer } = await import("./_outbound_dialer.ts");
    direct = outboundDialer(config.outboundBind);
  }
  if (options.dialer === undefined && config.proxy !== undefined) {
    // The upstream proxy's dialer loads only when a proxy is used.
    const { upstreamProxyDialer } = await import("./_upstream_proxy.ts");
    direct = upstreamProxyDialer(config.proxy, direct);
  }
  // Right after a flood the process may be out of descriptors for a moment:
  // dials wait for them rather than failing the connection.
  const dialer: Dialer = (target, _settings, dialerOptions = {}) =>
    serving.retryWhileExhausted(
      () => direct(target, undefined, dialerOptions),
      dialerOptions.signal,
    );
  // Per-connection lines, digested: a flood must not flood the parent.
  const digested = digestLog(log);
  // A bridge line's refused arguments, said at warning once an hour: tor
  // retries the bridge every few seconds, each retry refused alike.
  const newComplaint = complaintsOnce();
  const requested = sideTransports(config, options);
  const { metrics } = options;
  const status = (name: string, server: HostPort, fields: Record<string, string>) =>
    emit({
      type: "STATUS",
      transport: name,
      fields: { ADDRESS: formatHostPort(server), ...fields },
    });
  /** Dial the PT server at `server`, reporting the outcome in `STATUS` lines. */
  const dialReported = async (
    name: string,
    connector: Connector,
    server: HostPort,
    destination: HostPort | undefined,
    signal: AbortSignal,
  ): Promise<TransportConn> => {
    let conn: TransportConn;
    try {
      conn = await connector.dial(
        destination === undefined ? { ...server, signal } : { ...server, destination, signal },
      );
    } catch (error) {
      if (config.proxy !== undefined) serving.markOutcome(error, "upstream_proxy_failed");
      status(name, server, { CONNECT: "Failed", ERRSTR: describe(error) });
      throw error;
    }
    conn.ready.then(
      // After the SOCKS reply, which waits on the same `ready` (made before
      // it, the line held it up): in the next turn of the event loop, right
      // after the reply's write, not on a timer (a setTimeout of 0 fires
      // 1-3 ms later in Deno 2.9, when the application's first bytes come,
      // and its wake-up costs the event loop about 0.1 ms). Its write to
      // the parent waits for the other lines of the next 100 ms. The global
      // setImmediate, read here (after CMETHODS DONE): importing node:timers
      // would load Deno's Node compatibility layer before it.
      () => setImmediate(() => status(name, server, { CONNECT: "Success" })),
      // Given up (the SOCKS client left, a timeout): closing the connection
      // failed the handshake, and the reason is the abort's, not the close.
      (error) =>
        status(name, server, {
          CONNECT: "Failed",
          ERRSTR: describe(signal.aborted ? signal.reason : error),
        }),
    );
    return conn;
  };
  for (const { name, transport, env, options: base } of requested) {
    const listen = options.listenAt?.get(name) ?? config.listen;
    const tcpListen = () =>
      listenOn(listen, () =>
        Deno.listen({
          hostname: listen.hostname,
          port: listen.port,
          ...(options.reusePort ? { reusePort: true } : {}),
        }));
    const onAcceptError = acceptErrorLogger(log, name);
    const cmethod = (mode: string, addr: { hostname: string; port: number }): PtLine => {
      const address = { hostname: addr.hostname, port: addr.port };
      options.onListening?.(name, address);
      return { type: "CMETHOD", transport: name, mode, address };
    };
    // A transport's helper processes (the ssh client's `ssh -D`) keep
    // their files in the state directory and log through LOG lines; one
    // limit on them (8) holds across all the transport's connectors (one
    // per set of SOCKS arguments).
    let helpers: Parameters<typeof serving.createConnector>[2] | undefined;
    const helperOptions = () =>
      helpers ??= {
        helperDirectory: inDirectory(config.stateDir ?? Deno.cwd(), `${name}-helper`),
        helperLimit: new serving.HelperLimit(),
        onHelperLog: (severity: Parameters<typeof log>[0], message: string) =>
          log(severity, `${name}: ${message}`),
      };
    try {
      if (config.proxy !== undefined && HELPER_TRANSPORTS.has(name)) {
        // Its helper (ssh) would connect directly, past the proxy.
        throw new Error(`Transport '${name}' cannot go through an upstream proxy`);
      }
      if (config.outboundBind !== undefined && HELPER_TRANSPORTS.has(name)) {
        // Its helper (ssh) would connect from the default source address.
        throw new Error(
          `Transport '${name}' cannot leave from TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6`,
        );
      }
      // The transparent and datagram modes take no per-connection arguments:
      // what was given at start is all the transport gets, so check it now.
      if (config.optionsComplete || config.mode !== "socks5") {
        await checkComplete(transport, base, env);
      }
      if (config.mode === "socks5") {
        const connectors = new Map<string, Promise<Connector>>();
        const closeConnector = (connector: Promise<Connector> | undefined) =>
          connector?.then((c) => c.close(), () => {});
        const keyOf = (settings: TransportOptions) =>
          JSON.stringify(Object.entries(settings).sort(([a], [b]) => a < b ? -1 : 1));
        const connectorFor = (settings: TransportOptions): Promise<Connector> => {
          const key = keyOf(settings);
          let connector = connectors.get(key);
          if (connector === undefined) {
            connector = serving.createConnector(transport, settings, {
              env,
              dialer,
              handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
              ...helperOptions(),
            })
              .catch((error) => {
                connectors.delete(key);
                throw new serving.SocksReplyError(
                  serving.SocksReply.settingsInvalid,
                  `Transport '${name}' rejected its arguments: ${(error as Error).message}`,
                  { cause: error },
                );
              });
            if (connectors.size >= MAX_CONNECTORS) {
              const oldest = connectors.keys().next().value!;
              closeConnector(connectors.get(oldest));
              connectors.delete(oldest);
            }
          } else {
            connectors.delete(key);
          }
          connectors.set(key, connector);
          return connector;
        };
        const given = Object.keys(base).length > 0;
        if (given) {
          // The configuration given at start (-options, a bridge line) is
          // checked now: a missing key fails here, not on every connection.
          serving = await loadServing();
          const first = await serving.createConnector(transport, base, {
            env,
            dialer,
            handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
            ...helperOptions(),
          });
          connectors.set(keyOf(base), Promise.resolve(first));
        }
        // The PT server a connection to `destination` goes to: the one the
        // SOCKS request names (the bridge, under tor), or the -target.
        const serverFor = (destination: HostPort): HostPort =>
          transport.free
            ? config.target ?? destination
            : config.free
            ? config.target!
            : destination;
        const listener = tcpListen();
        const front = new DeferredFront(listener, () => {
          if (!given) {
            // None (tor gives each connection's in its SOCKS request): the
            // transport's module loads as the front end starts, and a
            // failure is each connection's SOCKS reply.
            connectorFor(base).catch(() => {});
          }
          const server = new serving.SocksServer(
            listener,
            {
              connect: async (request, follow, signal) => {
                for (const key of request.repeatedKeys) {
                  repeated.report(`${name}: SOCKS arguments`, key);
                }
                const destination = { hostname: request.hostname, port: request.port };
                // Arguments the transport refuses (iat-mode=5, a short cert)
                // fail the connection before it dials: told in the same
                // STATUS line as a failed dial (it was a LOG line only).
                const server = serverFor(destination);
                let connector: Connector;
                try {
                  connector = await connectorFor({ ...base, ...request.settings });
                } catch (error) {
                  status(name, server, { CONNECT: "Failed", ERRSTR: describe(error) });
                  throw error;
                }
                if (transport.free) {
                  // A free transport carries the destination itself (names
                  // unresolved): to the -free server, or under tor to the
                  // bridge the SOCKS request names (which relays to its ORPort).
                  const conn = await dialReported(
                    name,
                    connector,
                    config.target ?? destination,
                    destination,
                    signal,
                  );
                  follow(conn);
                  return conn;
                }
                const conn = await dialReported(
                  name,
                  connector,
                  config.free ? config.target! : destination,
                  undefined,
                  signal,
                );
                follow(conn);
                // Given up (timed out, the client left, shutting down) while
                // the handshake or the free-mode greeting runs: closing the
                // connection fails whatever waits on it.
                const onAbort = () => conn.close();
                signal.addEventListener("abort", onAbort, { once: true });
                if (signal.aborted) onAbort();
                try {
                  if (!config.free) {
                    // The SOCKS reply waits for the transport's handshake (as
                    // lyrebird's does): a refused one (WebTunnel's non-101
                    // answer) is a SOCKS error, not a granted connection that dies.
                    try {
                      await conn.ready;
                    } catch (error) {
                      conn.close();
                      throw error;
                    }
                    return conn;
                  }
                  // Free mode: the destination travels to the server's SOCKS5
                  // target, then the transport connection itself is relayed.
                  try {
                    // Its greeting's answer comes before it dials anything: a
                    // server without a SOCKS5 target (one relaying to a fixed
                    // service) never sends one, which must not hang the client.
                    return await serving.socks5Connect(conn, destination, {
                      peer: "server's SOCKS5 target",
                      greetingTimeout: FREE_GREETING_TIMEOUT_MS,
                    });
                  } catch (error) {
                    conn.close();
                    // No answer to the greeting, or one that is not SOCKS5
                    // (the bound server's own service spoke): free mode is off.
                    if (
                      error instanceof serving.SocksReplyError &&
                      (error.code === serving.SocksReply.ttlExpired ||
                        error.message.endsWith("sent a bad method reply"))
                    ) {
                      throw new serving.SocksReplyError(
                        error.code,
                        `${error.message}: is the server in free mode (-target socks)?`,
                      );
                    }
                    throw error;
                  }
                } finally {
                  signal.removeEventListener("abort", onAbort);
                }
              },
              onAcceptError,
              // Options complete at start (a bridge line, an ss:// link) are
              // all the transport gets: an application's SOCKS user name and
              // password are its own business, not transport arguments.
              ...(config.optionsComplete ? { settings: false } : {}),
              ...(metrics === undefined ? {} : { metrics: { registry: metrics, transport: name } }),
              onError: (error, stage) => {
                // A failed SOCKS handshake is info (a port scan, say), but
                // arguments that do not parse are the application's
                // configuration (a bridge line): the operator must see them.
                // So is an HTTP request (an application set up for an HTTP proxy).
                const argumentsError = error instanceof serving.SocksReplyError &&
                  (error.code === serving.SocksReply.settingsParseError ||
                    error.message === serving.HTTP_REQUEST_MESSAGE);
                // Arguments the transport refused (at start of the
                // connection or when it made its pair) are the same fault.
                const code = serving.socksReplyCode(error);
                const complaint = argumentsError ||
                  (stage !== "handshake" && (code === serving.SocksReply.settingsInvalid ||
                    code === serving.SocksReply.settingsParseError));
                const message = `${name}: SOCKS ${stage} failed: ${describe(error)}`;
                // The same complaint again (tor's next retry of the same
                // bridge line) is info until an hour has passed: it was
                // repeated at warning up to 10 times every 10 s.
                digested(
                  stage === "handshake" && !argumentsError
                    ? "info"
                    : complaint && !newComplaint(message)
                    ? "info"
                    : "warning",
                  message,
                );
                // Arguments that do not parse fail the connection as those
                // the transport refuses do: the same STATUS line, naming the
                // bridge the request named.
                if (
                  stage === "handshake" && error instanceof serving.SocksReplyError &&
                  error.code === serving.SocksReply.settingsParseError &&
                  error.destination !== undefined
                ) {
                  status(name, serverFor(error.destination), {
                    CONNECT: "Failed",
                    ERRSTR: describe(error),
                  });
                }
              },
            },
          );
          return server;
        });
        // Closing the front end stops the connectors' helpers too (a
        // connector made at start, before the front end was served, as well).
        const stopHelpers = async () => {
          await Promise.allSettled([...connectors.values()].map(closeConnector));
          connectors.clear();
        };
        running.push({
          drain: async () => {
            await front.drain();
            await stopHelpers();
          },
          close: async () => {
            await front.close();
            await stopHelpers();
          },
        });
        deferred.push(front);
        emit(cmethod("socks5", listener.addr));
      } else if (config.mode === "transparent-UDP" || config.mode === "STUN") {
        // TURN credentials in a bridge line are for the application, not the transport.
        const settings = Object.fromEntries(
          Object.entries(base).filter(([key]) => !key.startsWith("turn-")),
        );
        // UDP modes evaluate their modules (node:dgram is slow to load) only when asked for.
        const { serveUdpClient } = await import("../../udp/client_pool.ts");
        serving = await loadServing();
        const pool = await serveUdpClient({
          transport,
          config: settings,
          env,
          dialer,
          server: config.target!,
          hostname: listen.hostname,
          port: listen.port,
          framing: config.mode === "STUN" ? "stun" : "length",
          ...(config.udpQueue === undefined ? {} : { queueDatagrams: config.udpQueue }),
          ...(config.udpIdleTimeout === undefined ? {} : { idleTimeout: config.udpIdleTimeout }),
          onError: (error) => digested("warning", `${name}: UDP flow failed: ${describe(error)}`),
          ...(metrics === undefined ? {} : { metrics }),
        });
        running.push({ drain: () => pool.close(), close: () => pool.close() });
        emit(cmethod(config.mode, pool.addr));
      } else {
        serving = await loadServing();
        const connector = await serving.createConnector(transport, base, {
          env,
          dialer,
          ...helperOptions(),
        });
        const forwarder = new serving.Forwarder(
          tcpListen(),
          async (record, signal) => {
            // A free transport carries a destination: a bound server
            // (`--target HOST:PORT`) ignores it for its own target, and a
            // free server refuses the unspecified address at once.
            const conn = await dialReported(
              name,
              connector,
              config.target!,
              transport.free ? BOUND_DESTINATION : undefined,
              signal,
            );
            record.transport(conn, { established: true });
            return conn;
          },
          (error) => digested("warning", `${name}: connection failed: ${describe(error)}`),
          onAcceptError,
          metrics === undefined ? undefined : new serving.ConnectionMetrics(
            serving.metricsCore(metrics),
            { transport: name, side: "client", mode: "transparent-TCP" },
          ),
        );
        running.push(forwarder, { drain: () => connector.close(), close: () => connector.close() });
        emit(cmethod("transparent-TCP", forwarder.addr));
      }
    } catch (error) {
      emit({ type: "CMETHOD-ERROR", transport: name, message: describe(error) });
    }
  }
  emit({ type: "CMETHODS-DONE" });
  if (deferred.length > 0) {
    // Started at once: the first connection waits only for the load.
    const failed = (error: unknown) => log("error", `Cannot serve: ${describe(error)}`);
    loadServing().then((loaded) => {
      serving = loaded;
      for (const front of deferred) {
        try {
          front.start();
        } catch (error) {
          failed(error);
        }
      }
    }, (error) => {
      for (const front of deferred) front.fail();
      failed(error);
    });
  }
  return runningSide(running, () => digested.stop());
}
