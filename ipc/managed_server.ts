// Copyright the ptkit authors. MIT license.

import type {
  IgnoredOption,
  SignalPipe,
  Transport,
  TransportOptions,
} from "../transports/transport.ts";
import { type Dialer, tcpDialer } from "../net/net_conn.ts";
import { formatHostPort, type HostPort } from "../net/address.ts";
import { relay, type RelayEnd } from "../net/relay.ts";
import type { TransportConn } from "../net/transport_conn.ts";
import type { TransportListener } from "../net/transport_listener.ts";
import { listen } from "../server.ts";
import type { IpcOutput } from "./ipc_output.ts";
import { requestedTransports } from "./requested_transports.ts";
import type { RunningProxy } from "./managed_client.ts";
import { formatSmethodArgs } from "./smethod_args.ts";
import { readCookieFile } from "./extorport/_safe_cookie.ts";
import { extOrPortHandshake } from "./extorport/_client.ts";
import type { DestinationPolicy } from "../net/destination_policy.ts";
import { connectSocksDestination } from "./socks/_target.ts";
import { acceptErrorLogger, describe, type DigestedLog, digestLog } from "./describe_error.ts";
import { ConnectionLoop, retryWhileExhausted } from "../net/accept_loop.ts";
import type { ConnectionLimits } from "../net/source_limits.ts";
import { serveUdpServer } from "../udp/server_pool.ts";
import { TurnServer } from "../udp/turn/turn_server.ts";
import { createUdpRelayFactory } from "../udp/turn/udp_relay.ts";
import { serveTurnStream } from "../udp/turn/stream_server.ts";

/**
 * Where the server side sends decoded connections: tor's ORPort (bytes
 * only), its Extended ORPort (with the transport name and client address),
 * any fixed TCP service, or the embedded SOCKS5 server (free mode).
 */
export type ServerTarget =
  | { readonly kind: "orport"; readonly address: HostPort }
  | { readonly kind: "extorport"; readonly address: HostPort; readonly cookieFile: string }
  | { readonly kind: "socks"; readonly policy: DestinationPolicy }
  | {
    /** transparent-UDP (`length` framing) or STUN mode toward a TURN server (`stun`). */
    readonly kind: "udp";
    readonly address: HostPort;
    readonly framing: "length" | "stun";
    /** Milliseconds without a datagram before a flow closes. */
    readonly idleTimeout?: number;
  }
  | {
    /** STUN mode ending in the embedded TURN server, one TURN client per connection. */
    readonly kind: "turn";
    readonly realm: string;
    readonly user: string;
    readonly password: string;
    /** Whether the credentials were generated (then they go in the SMETHOD ARGS). */
    readonly generated: boolean;
    readonly allowLoopbackPeers: boolean;
    readonly allowPrivatePeers: boolean;
    /** Address relayed sockets bind to; defaults to the transport's listen address. */
    readonly relayAddress?: string;
  };

/**
 * What {@linkcode startServer} needs, already validated. The connection
 * limits (`maxConnections`, `maxHandshakesPerSource`,
 * `maxConnectionsPerSource`) apply to each transport's listener; defaults
 * are `DEFAULT_CONNECTION_LIMITS` (4096, 64, 1024).
 */
export interface ServerSettings extends ConnectionLimits {
  /** Requested transport names, in order (unknown ones are skipped). */
  readonly transports: readonly string[];
  /** The transports on offer, by name. */
  readonly registry: ReadonlyMap<string, Transport>;
  /** Where each transport listens (`TOR_PT_SERVER_BINDADDR`). */
  readonly bindAddrs: ReadonlyMap<string, HostPort>;
  /** Where a transport without an entry listens (port 0: a free one). */
  readonly defaultListen: HostPort;
  /** Options per transport name (`*` applies to all). */
  readonly options: ReadonlyMap<string, TransportOptions>;
  /** Where decoded connections go. */
  readonly target: ServerTarget;
  /** Dials targets and free-mode destinations. Defaults to `Deno.connect`. */
  readonly dialer?: Dialer;
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

/** One transport the server side started. */
export interface StartedServerTransport {
  /** The transport's name. */
  readonly name: string;
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  /** What clients need (the `SMETHOD` ARGS, the bridge line's arguments). */
  readonly clientOptions: TransportOptions;
}

/** A running server side. */
export interface RunningServer extends RunningProxy {
  /** The transports that started. */
  readonly transports: readonly StartedServerTransport[];
}

/**
 * Start the server side of the managed proxy: for each known requested
 * transport, listen where `bindAddrs` says (else on `defaultListen`),
 * report `SMETHOD <name> <addr> [ARGS:...]` or `SMETHOD-ERROR`, then
 * `SMETHODS DONE`; relay every connection whose transport handshake
 * succeeded to the target. A failed connection is logged (never with an
 * address) and closed; the others go on.
 *
 * @param settings The validated configuration.
 * @param output Where protocol lines go.
 * @returns The running server.
 *
 * @example Serving `plain` in front of a TCP service
 * ```ts
 * import { IpcOutput, registry, startServer } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const lines: string[] = [];
 * const running = await startServer({
 *   transports: ["plain"],
 *   registry,
 *   bindAddrs: new Map(),
 *   defaultListen: { hostname: "127.0.0.1", port: 0 },
 *   options: new Map(),
 *   target: { kind: "orport", address: { hostname: "127.0.0.1", port: 9 } },
 *   stateDir: ".",
 * }, new IpcOutput({ stdout: (l) => lines.push(l) }));
 * ok(lines[0]!.startsWith("SMETHOD plain 127.0.0.1:"));
 * deepStrictEqual(lines[1], "SMETHODS DONE\n");
 * await running.close();
 * ```
 */
export async function startServer(
  settings: ServerSettings,
  output: IpcOutput,
): Promise<RunningServer> {
  const loops: RunningProxy[] = [];
  const started: StartedServerTransport[] = [];
  const target = settings.target;
  const turn = target.kind === "turn" ? new EmbeddedTurn(target) : undefined;
  // Per-connection lines, digested: a flood of probes must not flood the parent.
  const log = digestLog((severity, message) => output.log(severity, message));
  const limits: ConnectionLimits = {
    ...(settings.maxConnections === undefined ? {} : { maxConnections: settings.maxConnections }),
    ...(settings.maxHandshakesPerSource === undefined
      ? {}
      : { maxHandshakesPerSource: settings.maxHandshakesPerSource }),
    ...(settings.maxConnectionsPerSource === undefined
      ? {}
      : { maxConnectionsPerSource: settings.maxConnectionsPerSource }),
  };
  for (const { name, transport, env, options: config } of requestedTransports(settings)) {
    const at = settings.bindAddrs.get(name) ?? settings.defaultListen;
    const onAcceptError = acceptErrorLogger(
      (severity, message) => output.log(severity, message),
      name,
    );
    try {
      let addr: Deno.NetAddr;
      let clientOptions: TransportOptions;
      if (target.kind === "udp") {
        const pool = await serveUdpServer({
          transport,
          config,
          env,
          hostname: at.hostname,
          port: at.port,
          target: target.address,
          framing: target.framing,
          ...(target.idleTimeout === undefined ? {} : { idleTimeout: target.idleTimeout }),
          limits,
          onAcceptError,
          onError: (error) => log("info", `${name}: UDP flow failed: ${describe(error)}`),
        });
        loops.push({ drain: () => pool.close(), close: () => pool.close() });
        ({ addr, clientOptions } = pool);
      } else {
        const listener = await listen(transport, config, {
          hostname: at.hostname,
          port: at.port,
          env,
          limits,
          onAcceptError,
        });
        loops.push(new ServerLoop(listener, name, settings, log, turn?.server(at.hostname)));
        addr = listener.addr;
        clientOptions = { ...listener.clientOptions, ...turn?.clientOptions };
      }
      started.push({ name, addr, clientOptions });
      output.smethod(name, formatHostPort(addr), formatSmethodArgs(clientOptions));
    } catch (error) {
      output.error("SMETHOD-ERROR", `${name} ${describe(error)}`);
    }
  }
  output.line("SMETHODS", "DONE");
  return {
    transports: started,
    drain: async () => {
      await Promise.allSettled(loops.map((l) => l.drain()));
      log.stop();
    },
    close: async () => {
      await Promise.allSettled(loops.map((l) => l.close()));
      turn?.close();
      log.stop();
    },
  };
}

/** The embedded TURN server of `-mode STUN -target turn`, shared by the transports. */
class EmbeddedTurn {
  #options: Extract<ServerTarget, { kind: "turn" }>;
  #server: TurnServer | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(options: Extract<ServerTarget, { kind: "turn" }>) {
    this.#options = options;
  }

  /** The credentials clients need, when they were generated. */
  get clientOptions(): TransportOptions {
    const { generated, user, password, realm } = this.#options;
    return generated ? { "turn-user": user, "turn-password": password, "turn-realm": realm } : {};
  }

  /** The server, made on first use with relays bound near `listenHost`. */
  server(listenHost: string): TurnServer {
    if (this.#server !== undefined) return this.#server;
    const relayHost = this.#options.relayAddress ?? listenHost;
    const relay = createUdpRelayFactory(
      relayHost.includes(":") ? { ipv6: relayHost } : { ipv4: relayHost },
    );
    this.#server = new TurnServer({
      realm: this.#options.realm,
      users: { [this.#options.user]: this.#options.password },
      relay,
      allowLoopbackPeers: this.#options.allowLoopbackPeers,
      allowPrivatePeers: this.#options.allowPrivatePeers,
    });
    this.#sweep = setInterval(() => this.#server?.sweep(), 1000);
    return this.#server;
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#server?.close();
  }
}

/** Accepts one transport's connections and sends each to the target. */
class ServerLoop implements RunningProxy {
  #turn: TurnServer | undefined;
  #name: string;
  #settings: ServerSettings;
  #log: DigestedLog;
  #loop: ConnectionLoop<TransportConn>;

  constructor(
    listener: TransportListener,
    name: string,
    settings: ServerSettings,
    log: DigestedLog,
    turn?: TurnServer,
  ) {
    this.#turn = turn;
    this.#name = name;
    this.#settings = settings;
    this.#log = log;
    this.#loop = new ConnectionLoop(listener, {
      serve: (conn, { signal }) => this.#serve(conn, signal),
    });
  }

  async #serve(conn: TransportConn, signal: AbortSignal): Promise<void> {
    const target = this.#settings.target;
    const base = this.#settings.dialer ?? tcpDialer;
    // Right after a flood the process may be out of descriptors for a moment.
    const dialer: Dialer = (target) => retryWhileExhausted(() => base(target), signal);
    let end: RelayEnd | undefined;
    let handshook = false;
    try {
      await conn.ready;
      handshook = true;
      if (target.kind === "socks") {
        end = await connectSocksDestination(conn, { policy: target.policy, dialer, signal });
        signal.throwIfAborted();
        await relay(conn, end, { signal });
        return;
      }
      if (target.kind === "turn") {
        await serveTurnStream(this.#turn!, conn, { signal });
        return;
      }
      if (target.kind === "udp") throw new TypeError("UDP targets are served by serveUdpServer");
      end = await dialer(target.address);
      if (target.kind === "extorport") {
        const cookie = await readCookieFile(target.cookieFile);
        const remote = conn.remoteAddr as Deno.NetAddr;
        await extOrPortHandshake(end, {
          cookie,
          transport: this.#name,
          ...(remote.hostname
            ? { userAddr: { hostname: remote.hostname, port: remote.port } }
            : {}),
        });
        this.#log("info", `${this.#name}: Extended ORPort authenticated, connection accepted`);
      }
      signal.throwIfAborted();
      await relay(conn, end, { signal });
    } catch (error) {
      try {
        end?.close();
      } catch {
        // Already closed.
      }
      if (!signal.aborted) {
        // Failed transport handshakes and bad SOCKS requests are what probes,
        // scanners and clients cause: info, so they cannot flood the parent's
        // log. Failures to reach tor are the operator's business: warning.
        this.#log(
          handshook && target.kind !== "socks" && target.kind !== "turn" ? "warning" : "info",
          `${this.#name}: connection failed${handshook ? "" : " in the handshake"}: ${
            describe(error)
          }`,
        );
      }
    }
  }

  drain(): Promise<void> {
    return this.#loop.drain();
  }

  close(): Promise<void> {
    return this.#loop.close();
  }
}
