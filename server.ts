// Copyright the ptkit authors. MIT license.

/**
 * The server runtime: PT 2.0 draft 1's Server Factory. {@linkcode listen} yields
 * decoded connections to the application; {@linkcode proxy} relays each one
 * to a fixed target (or to whatever a function connects) and returns a
 * {@linkcode ServerManager}.
 *
 * @example Putting a TCP service behind a transport
 * ```ts
 * import { proxy } from "@ptkit/ptkit/server";
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * using service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await using manager = await proxy(plain, {}, {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   target: { hostname: "127.0.0.1", port: service.addr.port },
 * });
 * const connector = await createConnector(plain, manager.clientOptions);
 * await using conn = await connector.dial({ port: manager.addr.port });
 * await conn.writable.getWriter().write(new Uint8Array([42]));
 * using backend = await service.accept();
 * const buffer = new Uint8Array(1);
 * deepStrictEqual(await backend.read(buffer), 1);
 * deepStrictEqual(buffer[0], 42);
 * ```
 *
 * @module
 */

import type { Transport, TransportEnvironment, TransportOptions } from "./transports/transport.ts";
import { checkEnvironment } from "./transports/_factory_options.ts";
import { checkFunctionOption, checkPort, isHostName } from "./net/address.ts";
import { isIpLiteral } from "./net/_ip_address.ts";
import { raiseListenBacklog, setListenKeepAlive } from "./net/_libc.ts";
import { type Dialer, tcpDialer } from "./net/net_conn.ts";
import type { HostPort } from "./net/address.ts";
import { abortable } from "./net/_abortable.ts";
import { isRelayEnd, relay, type RelayEnd } from "./net/relay.ts";
import { ServerManager } from "./net/server_manager.ts";
import type { TransportConn } from "./net/transport_conn.ts";
import { TransportListener } from "./net/transport_listener.ts";
import { callbackThrew, ConnectionLoop, retryWhileExhausted } from "./net/_accept_loop.ts";
import { closedForLimit } from "./net/_accept_error.ts";
import { clientFailures, endedByClient } from "./net/_client_failure.ts";
import { type ConnectionLimits, HANDSHAKE_GRACE } from "./net/source_limits.ts";
import type { MetricsRegistry } from "./net/metrics.ts";
import { ConnectionMetrics, LISTENER_METRICS } from "./net/_connection_metrics.ts";
import { bindServer, takeBound } from "./net/_server_bind.ts";

export { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "./net/source_limits.ts";

/** Options for {@linkcode listen}. */
export interface ListenOptions {
  /** The address to listen on. Defaults to `"0.0.0.0"`, as `Deno.listen` does. */
  readonly hostname?: string;
  /** The port to listen on; 0 picks a free one. */
  readonly port: number;
  /**
   * Share the port with other listeners that set it too (`SO_REUSEPORT`,
   * Linux; needs `--unstable-net`): the kernel spreads connections over
   * them, as `-workers` does over processes. Defaults to false.
   */
  readonly reusePort?: boolean;
  /** Long-term storage and out-of-band signals for the transport. Defaults to none. */
  readonly env?: TransportEnvironment;
  /**
   * Milliseconds a connection's transport handshake may take before it is
   * closed. Defaults to 120000, or no deadline for a transport whose pairs
   * hold probes as long as their peer does (Shadowsocks, as
   * shadowsocks-libev).
   */
  readonly handshakeTimeout?: number;
  /**
   * Connection limits (`DEFAULT_CONNECTION_LIMITS`): at most 4096 open; per
   * source (an IPv4 address or an IPv6 /64), 64 that have not finished
   * their handshake (more are closed, oldest first, once they have waited
   * 2 s, or at once when 4096 are open) and 1024 past it (more are
   * refused). Refused connections are closed before a byte is read.
   */
  readonly limits?: ConnectionLimits;
  /**
   * Called when accepting fails (a connection reset before it was
   * accepted, file descriptors exhausted), a connection is refused by a
   * limit, or the transport's server `pair()` throws (an `Error` whose
   * message is `Cannot make a '<name>' connection: pair() threw: ...`, the
   * thrown value its `cause`; `proxy()`'s `onError` is not called for it,
   * since no connection was made): the first of a kind at once, then at most every 10 s with a
   * count. Accepting always goes on. Defaults to ignoring. A callback
   * that throws does not stop the server: its first throw is printed with
   * `console.error`, later ones are ignored.
   */
  readonly onAcceptError?: (error: Error, count: number) => void;
  /**
   * Where a transport's helper process (the `ssh` server's sshd) keeps its
   * files. Defaults to a new temporary directory, removed when the
   * listener closes.
   */
  readonly helperDirectory?: string;
  /** Told each line a helper process logs (addresses redacted). Defaults to none. */
  readonly onHelperLog?: (
    severity: "error" | "warning" | "notice" | "info" | "debug",
    message: string,
  ) => void;
}

/**
 * Where {@linkcode proxy} sends each connection: a fixed address, or a
 * function that connects whatever it likes for that connection (after the
 * transport's handshake succeeded; it may first read and write the
 * connection itself, as free mode's SOCKS5 target does, then leave it for
 * the relay). `signal` is aborted when the server closes; the server does
 * not wait for a function that ignores it (its connection is closed, and
 * what it returns afterwards is closed too). A function that
 * returns anything else than a connection or `{ readable, writable, close }`
 * fails that connection with a `TypeError` (stage `"target"`).
 */
export type ProxyTarget =
  | HostPort
  | ((conn: TransportConn, context: { readonly signal: AbortSignal }) => Promise<RelayEnd>);

/** Options for {@linkcode proxy}. */
export interface ProxyOptions extends ListenOptions {
  /** Where decoded connections go. */
  readonly target: ProxyTarget;
  /** Opens connections to a fixed target. Defaults to `Deno.connect`. */
  readonly dialer?: Dialer;
  /**
   * Called when one connection fails: in the transport's `handshake`, on
   * the way to the `target`, or in the `relay`. The error names the cause;
   * the connection is already closed. Defaults to ignoring. Never called
   * for connections ended by {@linkcode ServerManager.close}, nor for one
   * the listener's `limits` closed to make room (that goes to
   * `onAcceptError`, once). A callback
   * that throws does not stop the server nor change the connection's fate:
   * its first throw is printed with `console.error` (it is a fault of the
   * application's, which would otherwise go unseen), later ones are
   * ignored; it is called again for the next failure.
   */
  readonly onError?: (error: unknown, stage: "handshake" | "target" | "relay") => void;
  /**
   * Where connections are counted (`ptkit_connections_*`, bytes, handshake
   * durations, labelled `transport="<name>",side="server",mode="transparent-TCP"`).
   * Defaults to nowhere.
   */
  readonly metrics?: MetricsRegistry;
}

/**
 * Listen for transport connections (PT 2.0 draft 1's `listen`).
 *
 * @param transport The transport.
 * @param config Its server configuration.
 * @param options Where to listen, storage and signals.
 * @returns The listener; its `clientOptions` are what clients need.
 * @throws {TypeError} When the transport rejects the configuration, or the
 * options are malformed (a hostname that is neither an IP address nor a
 * host name: `localhost:80`).
 * @throws {RangeError} When the port, the handshake timeout, a limit or the
 * transport's `keepAlive` is out of range, or the transport rejects a value
 * of the configuration as out of its range (obfs4's `iat-mode` 3).
 *
 * @example Listening on a free port
 * ```ts
 * import { listen } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
 * ok(listener.addr.port > 0);
 * ```
 */
export async function listen(
  transport: Transport,
  config: TransportOptions,
  options: ListenOptions,
): Promise<TransportListener> {
  // Bound already (the managed server binds before SMETHODS DONE), or now.
  const { side, tcp, helper } = takeBound(options) ?? await bindServer(transport, config, options);
  const { handshakeTimeout, limits, onAcceptError } = options;
  try {
    if (helper === undefined) {
      // Deno's backlog of 511 filled up under a slowloris from many sources
      // (each closed connection reopened at once) and legitimate SYNs were
      // dropped for seconds; the kernel's somaxconn (4096 by default) is
      // what Go servers (obfs4proxy) get.
      raiseListenBacklog(tcp.addr);
      if (side.keepAlive !== undefined) setListenKeepAlive(tcp.addr, side.keepAlive);
    }
    return new TransportListener(
      tcp,
      side,
      transport.name,
      handshakeTimeout === undefined ? {} : { handshakeTimeout },
      {
        ...(limits === undefined ? {} : { limits }),
        ...(onAcceptError === undefined ? {} : { onAcceptError }),
        ...(helper === undefined ? {} : { helper }),
      },
    );
  } catch (error) {
    tcp.close();
    await helper?.close();
    side.close?.();
    throw error;
  }
}

/**
 * Accept transport connections and relay each, decoded, to a target (PT 2.0
 * draft 1's `proxy`). Half-close travels both ways; a connection whose
 * handshake fails never reaches the target.
 *
 * @param transport The transport.
 * @param config Its server configuration.
 * @param options Where to listen and where to relay to.
 * @returns The running server's manager.
 * @throws {TypeError} When the transport rejects the configuration, or the
 * target or the hostname is malformed (with the default dialer, a target
 * hostname that is neither an IP address nor a host name: `"a b"`).
 * @throws {RangeError} When a port, the handshake timeout or a limit is out
 * of range, or the transport rejects a value of the configuration as out of
 * its range (obfs4's `iat-mode` 3).
 *
 * @example Relaying to a local service
 * ```ts
 * import { proxy } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using manager = await proxy(plain, {}, {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   target: { hostname: "127.0.0.1", port: 8080 },
 * });
 * deepStrictEqual(manager.addr.hostname, "127.0.0.1");
 * ```
 */
export async function proxy(
  transport: Transport,
  config: TransportOptions,
  options: ProxyOptions,
): Promise<ServerManager> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot proxy: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  const { target, onError } = options;
  checkEnvironment(options.env, "proxy");
  checkFunctionOption(onError, "onError", "proxy");
  checkFunctionOption(options.dialer, "dialer", "proxy");
  let connectTarget: (conn: TransportConn, context: { signal: AbortSignal }) => Promise<RelayEnd>;
  if (typeof target === "function") {
    connectTarget = target;
  } else if (typeof target === "object" && target !== null) {
    if (typeof target.hostname !== "string" || target.hostname === "") {
      throw new TypeError(
        `Cannot proxy: invalid target hostname ${JSON.stringify(target.hostname)}`,
      );
    }
    const fixed = { hostname: target.hostname, port: checkPort(target.port, "proxy target", 1) };
    const bare = fixed.hostname.replace(/^\[(.*)\]$/, "$1");
    if (options.dialer === undefined && !isIpLiteral(bare) && !isHostName(fixed.hostname)) {
      // Deno.connect would refuse it at every connection (a URIError):
      // a server that can never reach its target is refused at start.
      throw new TypeError(
        `Cannot proxy: invalid target hostname ${
          JSON.stringify(fixed.hostname)
        }: expected an IP address or a host name of ASCII letters, digits, '.', '_' and '-'`,
      );
    }
    const dialer = options.dialer ?? tcpDialer;
    // Right after a flood the process may be out of descriptors for a moment.
    connectTarget = (_conn, { signal }) => retryWhileExhausted(() => dialer(fixed), signal);
  } else {
    throw new TypeError(
      `Cannot proxy: target must be an address or a function, got ${
        target === null ? "null" : typeof target
      }`,
    );
  }
  let metrics: ConnectionMetrics | undefined;
  if (options.metrics !== undefined) {
    // The metrics modules load only when a registry is given.
    const { metricsCore, metricsMode } = await import("./net/metrics.ts");
    metrics = new ConnectionMetrics(metricsCore(options.metrics), {
      transport: transport.name,
      side: "server",
      mode: metricsMode(options.metrics) ?? "transparent-TCP",
    });
  }
  const listener = await listen(transport, config, options);
  if (metrics !== undefined) LISTENER_METRICS.set(listener, metrics);
  let failures = 0;
  const onErrorThrew = callbackThrew("proxy() onError");

  // Connections still in their transport handshake: a drain closes them.
  const handshaking = new Set<TransportConn>();
  const loop = new ConnectionLoop(listener, {
    ...(metrics === undefined ? {} : { metrics }),
    serve: async (conn, { signal, record }) => {
      let end: RelayEnd | undefined;
      let stage: "handshake" | "target" | "relay" = "handshake";
      try {
        handshaking.add(conn);
        try {
          await conn.ready;
        } finally {
          handshaking.delete(conn);
        }
        // Closed by the listener's limits as its handshake ended (a reported
        // client over its limit): no target is dialled for it.
        if (closedForLimit.has(conn)) {
          throw new Deno.errors.BadResource("Transport connection closed");
        }
        stage = "target";
        // A target function that ignores `signal` would hold close() for
        // ever: once it is aborted the function is no longer waited for,
        // and what it returns afterwards is closed.
        const connected: unknown = await abortable(
          Promise.resolve(connectTarget(conn, { signal })),
          signal,
        );
        if (!isRelayEnd(connected)) {
          // Closed if it can be: it may hold a socket all the same.
          closeEnd(connected);
          const returned = typeof connected === "object" && connected !== null
            ? "an object that is neither a connection nor readable/writable streams"
            : `${connected === null ? "null" : typeof connected}, not a connection`;
          throw new TypeError(`Cannot relay: the target function returned ${returned}`);
        }
        end = connected;
        if (signal.aborted) throw signal.reason;
        stage = "relay";
        record.established();
        await relay(conn, end, { signal });
      } catch (error) {
        // The client's own connection failed (main.ts logs that at info).
        if (
          stage === "relay" && typeof error === "object" && error !== null &&
          endedByClient(conn, error)
        ) {
          clientFailures.add(error);
        }
        record.fail(error);
        conn.close();
        closeEnd(end);
        // A connection the listener closed for a limit was reported there
        // (onAcceptError), not failed.
        if (!signal.aborted && !closedForLimit.has(conn)) {
          failures++;
          try {
            onError?.(error, stage);
          } catch (thrown) {
            onErrorThrew(thrown);
          }
        }
      }
    },
  });

  return new ServerManager(
    listener.addr,
    listener.clientOptions,
    () => ({
      ...listener.stats(),
      connectionsFailed: failures,
    }),
    async () => {
      await loop.close();
      await listener[Symbol.asyncDispose]();
      await Promise.allSettled([...listener.connections].map((conn) => conn.closed));
    },
    async () => {
      const drained = loop.drain();
      // A connection that has not finished its handshake serves no one, and
      // one a transport holds as long as its peer does (a Shadowsocks probe)
      // would hold the drain for ever: after the grace a handshake under way
      // gets, they are closed.
      const timer = setTimeout(() => {
        for (const conn of handshaking) conn.close();
      }, HANDSHAKE_GRACE);
      try {
        await drained;
      } finally {
        clearTimeout(timer);
      }
    },
    listener.bridgeAddress,
  );
}

/** Close what a target function returned, if it has a `close` (it may be closed already). */
function closeEnd(end: unknown): void {
  try {
    const close = (end as { close?: unknown } | null | undefined)?.close;
    if (typeof close === "function") close.call(end);
  } catch {
    // Already closed.
  }
}
