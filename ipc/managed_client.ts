// Copyright the ptkit authors. MIT license.

import type {
  IgnoredOption,
  SignalPipe,
  Transport,
  TransportOptions,
} from "../transports/transport.ts";
import type { Dialer } from "../net/net_conn.ts";
import { formatHostPort, type HostPort } from "../net/address.ts";
import { relay } from "../net/relay.ts";
import { type Connector, createConnector } from "../client.ts";
import type { IpcOutput } from "./ipc_output.ts";
import { requestedTransports } from "./requested_transports.ts";
import { SocksServer } from "./socks/_socks_server.ts";
import { SocksReply, SocksReplyError } from "./socks/_reply.ts";
import { acceptErrorLogger, describe, digestLog } from "./describe_error.ts";
import { RepeatedKeyLog } from "./first_value_pairs.ts";
import { ConnectionLoop, retryWhileExhausted } from "../net/accept_loop.ts";
import { socks5Connect } from "./socks/_client.ts";
import { serveUdpClient } from "../udp/client_pool.ts";

/** What {@linkcode startClient} needs, already validated. */
export interface ClientSettings {
  /** Requested transport names, in order (unknown ones are skipped). */
  readonly transports: readonly string[];
  /** The transports on offer, by name. */
  readonly registry: ReadonlyMap<string, Transport>;
  /**
   * `socks5`: a SOCKS front end per transport; `transparent-TCP`: relay to
   * `target`; `transparent-UDP` / `STUN`: datagrams framed by length / by
   * their STUN headers, each application source a flow to `target`.
   */
  readonly mode: "socks5" | "transparent-TCP" | "transparent-UDP" | "STUN";
  /** transparent-UDP and STUN: datagrams held while a flow connects (default 64). */
  readonly udpQueue?: number;
  /** transparent-UDP and STUN: milliseconds without a datagram before a flow closes. */
  readonly udpIdleTimeout?: number;
  /** Where to listen (port 0: a free one). */
  readonly listen: HostPort;
  /** transparent-TCP and free mode: the PT server to dial. */
  readonly target?: HostPort;
  /**
   * Free mode (socks5 mode with `target`): every connection goes to
   * `target`, and the application's SOCKS destination travels through the
   * transport to the server's embedded SOCKS5 target (names unresolved).
   */
  readonly free?: boolean;
  /** Options per transport name (`*` applies to all), from `-options`. */
  readonly options: ReadonlyMap<string, TransportOptions>;
  /** Dials the network (directly, or through the upstream proxy). */
  readonly dialer: Dialer;
  /** The state directory, which exists. */
  readonly stateDir: string;
  /**
   * Each transport's out-of-band message pipe (its `signals`), when the
   * parent relays messages (see `SignalHub`).
   */
  readonly signals?: (transport: string) => SignalPipe;
  /**
   * Told about options a transport ignored because their keys are unknown
   * (see `ignoredOptionLog`). Defaults to none.
   */
  readonly onIgnoredOption?: (ignored: IgnoredOption) => void;
}

/** A running managed proxy (client or server side). */
export interface RunningProxy {
  /** Stop accepting; resolves once open connections have ended. */
  drain(): Promise<void>;
  /** Close everything at once. */
  close(): Promise<void>;
}

const MAX_CONNECTORS = 64;

/**
 * Start the client side of the managed proxy: for each known requested
 * transport, a SOCKS4/5 front end (per-connection arguments are the
 * transport's client configuration, one connector cached per distinct
 * configuration) or a transparent-TCP listener that relays to a fixed PT
 * server. Reports `CMETHOD` / `CMETHOD-ERROR` lines and `CMETHODS DONE`; a
 * failed connection gives `STATUS TRANSPORT=<name> CONNECT=Failed ERRSTR=...`
 * and a `LOG` line. SOCKS arguments that repeat a key use its first value;
 * each repeated key is logged once (its name, never a value). Never logs
 * addresses.
 *
 * @param settings The validated configuration.
 * @param output Where protocol lines go.
 * @returns The running proxy.
 *
 * @example Starting a SOCKS front end for `plain`
 * ```ts
 * import { IpcOutput, registry, startClient } from "@ptkit/ptkit/ipc";
 * import { tcpDialer } from "@ptkit/ptkit/net";
 * import { ok } from "node:assert";
 *
 * const lines: string[] = [];
 * const running = await startClient({
 *   transports: ["plain", "bogus"],
 *   registry,
 *   mode: "socks5",
 *   listen: { hostname: "127.0.0.1", port: 0 },
 *   options: new Map(),
 *   dialer: tcpDialer,
 *   stateDir: ".",
 * }, new IpcOutput({ stdout: (l) => lines.push(l) }));
 * ok(lines[0]!.startsWith("CMETHOD plain socks5 127.0.0.1:"));
 * ok(lines[1] === "CMETHODS DONE\n");
 * await running.close();
 * ```
 */
export async function startClient(
  settings: ClientSettings,
  output: IpcOutput,
): Promise<RunningProxy> {
  const running: RunningProxy[] = [];
  const repeated = new RepeatedKeyLog((message) => output.log("warning", message));
  // Right after a flood the process may be out of descriptors for a moment:
  // dials wait for them rather than failing the connection.
  const dialer: Dialer = (target) => retryWhileExhausted(() => settings.dialer(target));
  // Per-connection lines, digested: a flood must not flood the parent.
  const log = digestLog((severity, message) => output.log(severity, message));
  for (const { name, transport, env, options: base } of requestedTransports(settings)) {
    const onAcceptError = acceptErrorLogger(
      (severity, message) => output.log(severity, message),
      name,
    );
    try {
      if (settings.mode === "socks5") {
        const connectors = new Map<string, Promise<Connector>>();
        const keyOf = (config: TransportOptions) =>
          JSON.stringify(Object.entries(config).sort(([a], [b]) => a < b ? -1 : 1));
        const connectorFor = (config: TransportOptions): Promise<Connector> => {
          const key = keyOf(config);
          let connector = connectors.get(key);
          if (connector === undefined) {
            connector = createConnector(transport, config, { env, dialer })
              .catch((error) => {
                connectors.delete(key);
                throw new SocksReplyError(
                  SocksReply.settingsInvalid,
                  `Transport '${name}' rejected its arguments: ${(error as Error).message}`,
                  { cause: error },
                );
              });
            if (connectors.size >= MAX_CONNECTORS) {
              connectors.delete(connectors.keys().next().value!);
            }
          } else {
            connectors.delete(key);
          }
          connectors.set(key, connector);
          return connector;
        };
        // The configuration given at start (-options, a bridge line) is
        // checked now: a missing key fails here, not on every connection.
        const first = await createConnector(transport, base, { env, dialer });
        connectors.set(keyOf(base), Promise.resolve(first));
        const server = new SocksServer(
          Deno.listen({ hostname: settings.listen.hostname, port: settings.listen.port }),
          {
            connect: async (request) => {
              for (const key of request.repeatedKeys) {
                repeated.report(`${name}: SOCKS arguments`, key);
              }
              const connector = await connectorFor({ ...base, ...request.settings });
              const destination = { hostname: request.hostname, port: request.port };
              if (!settings.free) return await connector.dial(destination);
              // Free mode: the destination travels to the server's SOCKS5
              // target, then the transport connection itself is relayed.
              const conn = await connector.dial(settings.target!);
              try {
                return await socks5Connect(conn, destination, { peer: "server's SOCKS5 target" });
              } catch (error) {
                conn.close();
                throw error;
              }
            },
            onAcceptError,
            onError: (error, stage) => {
              if (stage === "connect") {
                output.status(name, { CONNECT: "Failed", ERRSTR: describe(error) });
              }
              log(
                stage === "handshake" ? "info" : "warning",
                `${name}: SOCKS ${stage} failed: ${describe(error)}`,
              );
            },
          },
        );
        running.push(server);
        output.cmethod(name, "socks5", formatHostPort(server.addr));
      } else if (settings.mode === "transparent-UDP" || settings.mode === "STUN") {
        // TURN credentials in a bridge line are for the application, not the transport.
        const config = Object.fromEntries(
          Object.entries(base).filter(([key]) => !key.startsWith("turn-")),
        );
        const pool = await serveUdpClient({
          transport,
          config,
          env,
          dialer,
          server: settings.target!,
          hostname: settings.listen.hostname,
          port: settings.listen.port,
          framing: settings.mode === "STUN" ? "stun" : "length",
          ...(settings.udpQueue === undefined ? {} : { queueDatagrams: settings.udpQueue }),
          ...(settings.udpIdleTimeout === undefined
            ? {}
            : { idleTimeout: settings.udpIdleTimeout }),
          onError: (error) => log("info", `${name}: UDP flow failed: ${describe(error)}`),
        });
        running.push({ drain: () => pool.close(), close: () => pool.close() });
        output.cmethod(name, settings.mode, formatHostPort(pool.addr));
      } else {
        const connector = await createConnector(transport, base, {
          env,
          dialer,
        });
        const forwarder = new Forwarder(
          Deno.listen({ hostname: settings.listen.hostname, port: settings.listen.port }),
          async () => await connector.dial(settings.target!),
          (error) => log("warning", `${name}: connection failed: ${describe(error)}`),
          onAcceptError,
        );
        running.push(forwarder);
        output.cmethod(name, "transparent-TCP", formatHostPort(forwarder.addr));
      }
    } catch (error) {
      output.error("CMETHOD-ERROR", `${name} ${describe(error)}`);
    }
  }
  output.line("CMETHODS", "DONE");
  return {
    drain: async () => {
      await Promise.allSettled(running.map((r) => r.drain()));
      log.stop();
    },
    close: async () => {
      await Promise.allSettled(running.map((r) => r.close()));
      log.stop();
    },
  };
}

/** Accepts TCP connections and relays each to whatever `dial` returns. */
class Forwarder implements RunningProxy {
  #addr: Deno.NetAddr;
  #loop: ConnectionLoop<Deno.TcpConn>;

  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    dial: () => Promise<{ close(): void } & Parameters<typeof relay>[1]>,
    onError: (error: unknown) => void,
    onAcceptError: (error: Error, count: number) => void,
  ) {
    this.#addr = listener.addr;
    this.#loop = new ConnectionLoop(listener, {
      // No handshake on this side: only the total is limited.
      limits: { maxConnectionsPerSource: Infinity },
      onAcceptError,
      serve: async (conn, { signal, handshaken }) => {
        handshaken();
        try {
          const end = await dial();
          if (signal.aborted) {
            end.close();
            return;
          }
          await relay(conn, end, { signal });
        } catch (error) {
          if (!signal.aborted) onError(error);
        }
      },
    });
  }

  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  drain(): Promise<void> {
    return this.#loop.drain();
  }

  close(): Promise<void> {
    return this.#loop.close(new Error("Closed"));
  }
}
