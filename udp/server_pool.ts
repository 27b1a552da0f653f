// Copyright the ptkit authors. MIT license.

import type { HostPort } from "../net/address.ts";
import { listen } from "../server.ts";
import { ConnectionLoop, guardCallback, retryWhileExhausted } from "../net/_accept_loop.ts";
import { closedForLimit } from "../net/_accept_error.ts";
import { type ConnectionLimits, sourceKey, SourceLimiter } from "../net/source_limits.ts";
import { SourceShare } from "../net/_source_share.ts";
import { reportedSource } from "../net/_client_source.ts";
import { checkHostPort } from "../net/address.ts";
import type { TransportConn } from "../net/transport_conn.ts";
import type { Transport, TransportEnvironment, TransportOptions } from "../transports/transport.ts";
import { Flow } from "./_flow.ts";
import { metricsCore } from "../net/metrics.ts";
import {
  ConnectionMetrics,
  type ConnectionRecord,
  LISTENER_METRICS,
} from "../net/_connection_metrics.ts";
import { countUdpPool } from "./_udp_metrics.ts";
import { resolveSettings, type UdpPoolOptions } from "./pool_options.ts";
import { checkBufferSize, resolveUdpAddress, UdpSocket } from "./udp_socket.ts";
import { checkOptionType } from "../transports/_factory_options.ts";
import {
  addCounters,
  UDP_CLOSE_REASONS,
  type UdpCloseReason,
  type UdpFlowStats,
  type UdpPoolStats,
  zeroCounters,
} from "./udp_stats.ts";

/** A flow slot of a server pool: its flow once open. */
interface Slot {
  flow: Flow | undefined;
}

/** Options for {@linkcode serveUdpServer}. */
export interface UdpServerOptions extends UdpPoolOptions {
  /** The transport. */
  readonly transport: Transport;
  /** Its server configuration. */
  readonly config: TransportOptions;
  /** Storage and signals for the transport. */
  readonly env?: TransportEnvironment;
  /** The address to listen on for transport connections. Defaults to `"0.0.0.0"`. */
  readonly hostname?: string;
  /** The port to listen on; 0 picks a free one. */
  readonly port: number;
  /** The UDP server datagrams go to (the Server App, or a TURN server in STUN mode). */
  readonly target: HostPort;
  /**
   * The local address flows send to the target from (the managed proxy's
   * `TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6`). Defaults to the system's
   * choice. An address the machine lacks fails each flow: nothing leaves
   * from another.
   */
  readonly localAddress?: string;
  /**
   * Limits on transport connections, in all and per source (see `listen`).
   * Defaults to `listen`'s. A flow is a connection, so
   * `maxConnectionsPerSource` is the most flows one source holds: past it,
   * a new one takes the place of that source's least recently active flow
   * (`flowsClosed.evicted`), as at `maxFlows`, rather than being refused.
   */
  readonly limits?: ConnectionLimits;
  /** Where accept errors and refused connections are reported, digested (see `listen`). */
  readonly onAcceptError?: (error: Error, count: number) => void;
}

/**
 * The PT server's UDP side (PT 2.0 section 3.3.5.5, Table 2): every accepted
 * transport connection gets its own UDP socket connected to the target;
 * datagrams taken off the connection are sent from it, and datagrams the
 * target sends back are framed into the connection. A closed connection, a
 * write failure or `idleTimeout` without traffic removes the flow and closes
 * its socket; datagrams reaching a closed socket are dropped by the kernel.
 *
 * Make one with {@linkcode serveUdpServer}.
 *
 * @example Listening for transport connections
 * ```ts
 * import { serveUdpServer } from "@ptkit/ptkit/udp";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * await using pool = await serveUdpServer({
 *   transport: plain, config: {}, hostname: "127.0.0.1", port: 0,
 *   target: { hostname: "127.0.0.1", port: 9 }, framing: "stun",
 * });
 * ok(pool.addr.port > 0);
 * ```
 */
export interface UdpServerPool extends AsyncDisposable {
  /** The address transport connections come to. */
  readonly addr: Deno.NetAddr;
  /** What a client needs to reach this server (its bridge line arguments). */
  readonly clientOptions: TransportOptions;
  /**
   * Statistics over all flows, open and closed, and the transport
   * connections that carried none.
   *
   * @returns A snapshot of the counters.
   */
  stats(): UdpPoolStats & {
    /**
     * Transport connections refused because `maxFlows` flows were open, no
     * source held two more than theirs, and their source held no open flow
     * (or its source held `maxConnectionsPerSource` connections, none of them
     * yet an open flow).
     * Otherwise a flow makes room (`flowsClosed.evicted`): a source with
     * fewer takes the place of the least recently active flow of the source
     * with the most, and a source holding as many as any other the place of
     * its own least recently active flow.
     */
    readonly connectionsRejected: number;
    /** Transport connections that failed before carrying datagrams (handshake, UDP socket). */
    readonly connectionsFailed: number;
  };
  /**
   * Statistics of each open flow (no addresses).
   *
   * @returns One snapshot per open flow.
   */
  flows(): UdpFlowStats[];
  /**
   * Stop: close the listener and every flow, and wait until all are closed.
   *
   * @returns Resolves once everything is closed.
   */
  close(): Promise<void>;
}

/**
 * Start the PT server's UDP side: accept transport connections and relay the
 * datagrams framed in each to `target` over UDP, and the target's replies
 * back (`-mode transparent-UDP` uses `"length"` framing, `-mode STUN` uses
 * `"stun"` with a TURN server as target).
 *
 * @param options The transport, listen address, target, framing and limits.
 * @returns The running pool.
 * @throws {TypeError} When the transport rejects the configuration or an option is malformed.
 * @throws {RangeError} When a port or limit is out of range, or the
 * transport rejects a value of the configuration as out of its range
 * (obfs4's `iat-mode` 3).
 *
 * @example Serving until closed
 * ```ts
 * import { serveUdpServer } from "@ptkit/ptkit/udp";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const pool = await serveUdpServer({
 *   transport: plain, config: {}, hostname: "127.0.0.1", port: 0,
 *   target: { hostname: "127.0.0.1", port: 9 }, framing: "length", idleTimeout: 30_000,
 * });
 * deepStrictEqual(pool.stats().flowsOpened, 0);
 * await pool.close();
 * ```
 */
export async function serveUdpServer(options: UdpServerOptions): Promise<UdpServerPool> {
  const what = "serve UDP server";
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot ${what}: options must be an object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const settings = resolveSettings(options, what);
  checkOptionType(options.localAddress, "string", "localAddress", what);
  const bufferSize = checkBufferSize(options.udpBufferSize ?? 1024 * 1024, "udpBufferSize", what);
  // A "host:port" string or null said 'invalid target hostname undefined'.
  const target = checkHostPort(options.target, `target for ${what}`, 1);
  const fixedTarget = await resolveUdpAddress(target, what);
  const metrics = options.metrics === undefined ? undefined : new ConnectionMetrics(
    metricsCore(options.metrics),
    {
      transport: options.transport.name,
      side: "server",
      mode: options.framing === "stun" ? "STUN" : "transparent-UDP",
    },
  );
  // A flow is a connection: the most a source holds past its handshake is
  // decided below, where a source at it gives up its own idlest flow (as at
  // maxFlows), not by the listener, which refused the connection outright. A
  // client at its own maxFlows closes its idlest flow and dials a new one at
  // once, and the new connection raced the old one's close: with the
  // defaults (1024 and 1024) a new flow from a client past 1024 was lost.
  const perSource = new SourceLimiter(options.limits, { what }).limits.maxConnectionsPerSource;
  const listener = await listen(options.transport, options.config, {
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port,
    ...(options.env === undefined ? {} : { env: options.env }),
    limits: { ...options.limits, maxConnectionsPerSource: Infinity },
    ...(options.onAcceptError === undefined ? {} : { onAcceptError: options.onAcceptError }),
  });
  const localAddress = options.localAddress;
  // The application's callback: one that throws is printed once, as
  // proxy()'s onError is, instead of being lost with the flow's promise.
  const onError = guardCallback(options.onError, "serveUdpServer() onError");
  const flows = new Set<Flow>();
  const totals = zeroCounters();
  const closedByReason = Object.fromEntries(UDP_CLOSE_REASONS.map((r) => [r, 0])) as Record<
    UdpCloseReason,
    number
  >;
  let opened = 0;
  let rejected = 0;
  let failed = 0;
  let nextId = 1;
  let closing = false;

  // The flow slots taken (`maxFlows` at most), by source: one source may
  // use every slot while nobody else wants one, but a connection from a
  // source with fewer flows than the one with the most takes the place of
  // that source's least recently active flow; one from a source holding as
  // many as any other, of its own (as a NAT table does: a client whose
  // resolver uses a fresh port per query is not locked out until its old
  // flows idle out, and takes nothing from anyone else).
  const slots = new SourceShare<Slot>();
  const take = (source: string): Slot | undefined => {
    const victim = slots.makeRoom(
      source,
      perSource,
      settings.maxFlows,
      (slot) => slot.flow?.lastActivity,
    );
    if (victim === null) return undefined;
    if (victim !== undefined) {
      slots.delete(victim);
      victim.flow!.close("evicted");
    }
    const slot: Slot = { flow: undefined };
    slots.add(source, slot);
    return slot;
  };

  const serve = async (
    conn: TransportConn,
    record: ConnectionRecord,
    signal: AbortSignal,
    slot: Slot,
  ) => {
    let socket: UdpSocket | undefined;
    try {
      await conn.ready;
      // Closed by the listener's limits as its handshake ended: no socket.
      if (closedForLimit.has(conn)) {
        throw new Deno.errors.BadResource("Transport connection closed");
      }
      socket = await retryWhileExhausted(
        () =>
          UdpSocket.open({
            ...(localAddress === undefined ? {} : { hostname: localAddress }),
            connect: fixedTarget,
            bufferSize,
          }),
        signal,
      );
      if (closing) throw new Error("Server closed");
    } catch (error) {
      record.fail(error);
      conn.close();
      await socket?.close();
      await conn.closed;
      // One the listener closed for a limit was reported there, not failed.
      if (!closing && !closedForLimit.has(conn)) {
        failed++;
        onError?.(error);
      }
      return;
    }
    const udp = socket;
    const flow = new Flow(
      nextId++,
      settings,
      totals,
      (data) => udp.send(data),
      (flow, reason, error) => {
        flows.delete(flow);
        closedByReason[reason]++;
        udp.close();
        if (error !== undefined && reason !== "shutdown") onError?.(error);
      },
      (datagrams, count, results) => udp.sendMany(datagrams, count, undefined, results),
    );
    record.established();
    opened++;
    flows.add(flow);
    slot.flow = flow;
    udp.onmessage = (data) => flow.push(data);
    flow.connect(conn);
    await flow.done;
    await udp.close();
  };

  if (metrics !== undefined) LISTENER_METRICS.set(listener, metrics);
  const loop = new ConnectionLoop(listener, {
    ...(metrics === undefined ? {} : { metrics }),
    serve: async (conn, { record, signal }) => {
      // A flow slot is taken once the handshake is done: connections still
      // in theirs are the listener's to limit (per source, the oldest
      // evicted when it is full), so unauthenticated ones cannot fill the
      // flows. A failed handshake is reported by `serve`.
      await conn.ready.catch(() => {});
      // The client the transport reported (WebTunnel's X-Forwarded-For
      // behind a front server on loopback), else the socket's peer.
      const source = sourceKey(reportedSource(conn) ?? conn.remoteAddr);
      const slot = conn.error === undefined ? take(source ?? "") : { flow: undefined };
      if (slot === undefined) {
        record.fail(new Error("Too many flows"), "error");
        rejected++;
        conn.close();
        await conn.closed;
        return;
      }
      try {
        await serve(conn, record, signal, slot);
      } finally {
        slots.delete(slot);
      }
    },
  });

  let closePromise: Promise<void> | undefined;
  let stopCounting: (() => void) | undefined;
  const pool: UdpServerPool = {
    addr: listener.addr,
    clientOptions: listener.clientOptions,
    stats() {
      const snapshot = zeroCounters();
      addCounters(snapshot, totals);
      return {
        ...snapshot,
        flowsOpened: opened,
        flowsOpen: flows.size,
        flowsClosed: { ...closedByReason },
        connectionsRejected: rejected,
        connectionsFailed: failed,
      };
    },
    flows() {
      return [...flows].map((flow) => flow.stats());
    },
    close() {
      closePromise ??= (async () => {
        closing = true;
        for (const flow of [...flows]) flow.close("shutdown");
        await loop.close();
        stopCounting?.();
      })();
      return closePromise;
    },
    [Symbol.asyncDispose]() {
      return pool.close();
    },
  };
  if (options.metrics !== undefined) {
    stopCounting = countUdpPool(metricsCore(options.metrics), {
      transport: options.transport.name,
      side: "server",
      mode: options.framing === "stun" ? "STUN" : "transparent-UDP",
    }, () => pool.stats());
  }
  return pool;
}
