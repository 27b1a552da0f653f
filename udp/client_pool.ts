// Copyright the ptkit authors. MIT license.

import type { HostPort } from "../net/address.ts";
import { createConnector } from "../client.ts";
import { guardCallback } from "../net/_accept_loop.ts";
import type { Dialer } from "../net/net_conn.ts";
import type { Transport, TransportEnvironment, TransportOptions } from "../transports/transport.ts";
import { BOUND_DESTINATION, checkDialHostname, checkHostPort, checkPort } from "../net/address.ts";
import { checkOptions } from "../transports/define_transport.ts";
import { Flow } from "./_flow.ts";
import type { Clock } from "./_clock.ts";
import { metricsCore } from "../net/metrics.ts";
import { countUdpPool } from "./_udp_metrics.ts";
import { resolveSettings, type UdpPoolOptions } from "./pool_options.ts";
import { checkBufferSize, type UdpEndpoint, UdpSocket } from "./udp_socket.ts";
import {
  addCounters,
  type MutableCounters,
  UDP_CLOSE_REASONS,
  type UdpCloseReason,
  type UdpFlowStats,
  type UdpPoolStats,
  zeroCounters,
} from "./udp_stats.ts";

/** Options for {@linkcode serveUdpClient}. */
export interface UdpClientOptions extends UdpPoolOptions {
  /** The transport. */
  readonly transport: Transport;
  /** Its client configuration (bridge line arguments). */
  readonly config: TransportOptions;
  /** Per-connection settings for every connection. Defaults to none. */
  readonly settings?: TransportOptions;
  /** Storage and signals for the transport. */
  readonly env?: TransportEnvironment;
  /** Opens the network connections (an upstream proxy). Defaults to `Deno.connect`. */
  readonly dialer?: Dialer;
  /** The PT server to connect to. */
  readonly server: { readonly hostname?: string; readonly port: number };
  /** The UDP address applications send to. Defaults to `"127.0.0.1"`. */
  readonly hostname?: string;
  /** The UDP port applications send to; 0 (the default) picks one. */
  readonly port?: number;
  /**
   * Datagrams a flow queues while its connection opens (state Waiting);
   * 0 drops them, as PT 2.0 draft 1's Table 1 does. Defaults to 64.
   */
  readonly queueDatagrams?: number;
  /** Bytes (framed) a flow queues while its connection opens. Defaults to 256 KiB. */
  readonly queueBytes?: number;
}

/**
 * The PT client's UDP side (PT 2.0 section 3.3.5.3, Table 1): a UDP socket
 * for applications and a pool of transport connections, one per application
 * source address, opened lazily on the first datagram and closed when idle.
 * Replies go back to the source address that opened the flow.
 *
 * Make one with {@linkcode serveUdpClient}.
 *
 * @example Counting flows
 * ```ts
 * import { serveUdpClient } from "@ptkit/ptkit/udp";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using pool = await serveUdpClient({
 *   transport: plain,
 *   config: {},
 *   server: { port: 9 },
 *   framing: "length",
 * });
 * deepStrictEqual(pool.stats().flowsOpen, 0);
 * ```
 */
export interface UdpClientPool extends AsyncDisposable {
  /** The UDP address applications send to. */
  readonly addr: HostPort;
  /**
   * The UDP socket's receive buffer as granted by the kernel, or `undefined`
   * when it could not be raised (not Linux, or no `--allow-ffi`).
   */
  readonly udpBufferSize: number | undefined;
  /**
   * Statistics over all flows, open and closed.
   *
   * @returns A snapshot of the counters.
   */
  stats(): UdpPoolStats;
  /**
   * Statistics of each open flow (no addresses).
   *
   * @returns One snapshot per open flow.
   */
  flows(): UdpFlowStats[];
  /**
   * Stop: close the UDP socket and every flow, and wait until all are closed.
   *
   * @returns Resolves once everything is closed.
   */
  close(): Promise<void>;
}

/** Why the pool itself closes a flow: its dial or handshake did not fail. */
const GIVEN_UP: ReadonlySet<UdpCloseReason> = new Set(["idle", "evicted", "shutdown"]);

/** The first wait after a failed dial, in ms. */
const DIAL_BACKOFF_MIN = 1000;
/** The longest wait after failed dials, in ms. */
const DIAL_BACKOFF_MAX = 30_000;

class ClientPool implements UdpClientPool {
  #socket: UdpSocket;
  #flows = new Map<number | string, Flow>();
  #allFlows = new Set<Flow>();
  #totals = zeroCounters();
  #closedByReason = Object.fromEntries(UDP_CLOSE_REASONS.map((r) => [r, 0])) as Record<
    UdpCloseReason,
    number
  >;
  #opened = 0;
  #nextId = 1;
  #clock: Clock;
  /** No new flow dials before then (the clock's ms): the last dial failed. */
  #retryAt = 0;
  /** The current wait after a failed dial, in ms; 0 once a dial succeeded. */
  #backoff = 0;
  /**
   * Dials started since the last failure that set the back-off: dials that
   * were under way together (a resolver's concurrent queries when the
   * server went down) fail as one, and double the wait once.
   */
  #round = 0;
  #closing: Promise<void> | undefined;
  /** Called once closed (folds the metrics' last counts). */
  onClosed: (() => void) | undefined;

  constructor(
    socket: UdpSocket,
    openFlow: (
      pool: ClientPool,
      from: UdpEndpoint,
      id: number,
      totals: MutableCounters,
    ) => Flow,
    maxFlows: number,
    clock: Clock,
  ) {
    this.#socket = socket;
    this.#clock = clock;
    socket.onmessage = (data, from) => {
      const key = from.key;
      let flow = this.#flows.get(key);
      if (flow === undefined) {
        // The PT server did not answer the last dial: no new dial (one per
        // datagram, while it is down) before the back-off ends.
        if (this.#retryAt !== 0 && this.#clock.now() < this.#retryAt) {
          this.#totals.drops.dialFailed++;
          return;
        }
        // Full: as a NAT table does, the least recently active flow makes
        // room (a resolver using a fresh source port per query would
        // otherwise lock every new query out until flows idle out).
        if (this.#flows.size >= maxFlows && !this.#evictIdlest()) {
          this.#totals.drops.tooManyFlows++;
          return;
        }
        const opened = openFlow(this, from, this.#nextId++, this.#totals);
        this.#opened++;
        this.#flows.set(key, opened);
        this.#allFlows.add(opened);
        opened.done.then(() => this.#allFlows.delete(opened));
        flow = opened;
      }
      flow.push(data);
    };
  }

  /**
   * Close the least recently active open flow (`evicted`).
   *
   * @returns Whether there was one.
   */
  #evictIdlest(): boolean {
    let victim: Flow | undefined;
    for (const flow of this.#flows.values()) {
      if (victim === undefined || flow.lastActivity < victim.lastActivity) victim = flow;
    }
    // Closing it removes it from `#flows` (`flowClosed`).
    victim?.close("evicted");
    return victim !== undefined;
  }

  /** A dial succeeded: new flows dial at once again. */
  dialSucceeded(): void {
    this.#backoff = 0;
    this.#retryAt = 0;
  }

  /** The round a dial starting now belongs to (see {@linkcode ClientPool.dialFailed}). */
  get round(): number {
    return this.#round;
  }

  /**
   * A dial of `round` failed: new flows wait 1 s, doubling with each round
   * of failures up to 30 s. Other dials of a round that already failed
   * change nothing.
   */
  dialFailed(round: number): void {
    if (round !== this.#round) return;
    this.#round++;
    this.#backoff = Math.min(Math.max(this.#backoff * 2, DIAL_BACKOFF_MIN), DIAL_BACKOFF_MAX);
    this.#retryAt = this.#clock.now() + this.#backoff;
  }

  flowClosed(from: UdpEndpoint, flow: Flow, reason: UdpCloseReason): void {
    if (this.#flows.get(from.key) === flow) this.#flows.delete(from.key);
    this.#closedByReason[reason]++;
  }

  send(data: Uint8Array, to: UdpEndpoint): boolean {
    return this.#socket.send(data, to);
  }

  sendMany(datagrams: Uint8Array[], count: number, to: UdpEndpoint, results: boolean[]): void {
    this.#socket.sendMany(datagrams, count, to, results);
  }

  get addr(): HostPort {
    return this.#socket.addr;
  }

  get udpBufferSize(): number | undefined {
    return this.#socket.bufferSize;
  }

  stats(): UdpPoolStats {
    const totals = zeroCounters();
    addCounters(totals, this.#totals);
    return {
      ...totals,
      flowsOpened: this.#opened,
      flowsOpen: this.#flows.size,
      flowsClosed: { ...this.#closedByReason },
    };
  }

  flows(): UdpFlowStats[] {
    return [...this.#flows.values()].map((flow) => flow.stats());
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const socketClosed = this.#socket.close();
      for (const flow of [...this.#flows.values()]) flow.close("shutdown");
      await socketClosed;
      await Promise.allSettled([...this.#allFlows].map((flow) => flow.done));
      this.onClosed?.();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Start the PT client's UDP side: listen for datagrams from applications and
 * carry each source's datagrams over its own transport connection to the PT
 * server, framed as `options.framing` says (`-mode transparent-UDP` uses
 * `"length"`, `-mode STUN` uses `"stun"`).
 *
 * State transitions follow PT 2.0 draft 1's Table 1: the first datagram from a new
 * source adds a Waiting flow and dials; datagrams wait in a bounded queue
 * (`queueDatagrams`, `queueBytes`; 0 drops them, counted as `waiting`) and are
 * sent once Connected; a failed dial, a closed connection, a write failure or
 * `idleTimeout` without traffic removes the flow, and the next datagram opens
 * a fresh one. After a failed dial or transport handshake no new flow dials
 * for 1 s (doubling with each failure, up to 30 s, until a handshake
 * succeeds; dials under way together fail as one): datagrams that would open one meanwhile are dropped as
 * `dialFailed`, so a PT server that is down, or refuses every handshake (a
 * bridge whose keys changed), is not dialled once per datagram. With `maxFlows` flows open, a datagram from a new source
 * closes the least recently active flow (`flowsClosed.evicted`) and opens
 * its own, as a NAT table does. A flow closed while its dial is under way
 * (evicted, idle, the pool closing) gives that dial up, so connection
 * attempts never outnumber `maxFlows` (this is no failed dial: no back-off).
 *
 * @param options The transport, PT server, UDP address, framing and limits.
 * @returns The running pool.
 * @throws {TypeError} When the transport rejects the configuration or an option is malformed.
 * @throws {RangeError} When a port or limit is out of range, or the
 * transport rejects a value of the configuration as out of its range
 * (obfs4's `iat-mode` 3).
 *
 * @example Tunnelling datagrams to a UDP echo server
 * ```ts
 * import { serveUdpClient, serveUdpServer, UdpSocket } from "@ptkit/ptkit/udp";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using echo = await UdpSocket.open();
 * echo.onmessage = (data, from) => echo.send(data, from);
 * await using server = await serveUdpServer({
 *   transport: plain, config: {}, hostname: "127.0.0.1", port: 0,
 *   target: echo.addr, framing: "length",
 * });
 * await using client = await serveUdpClient({
 *   transport: plain, config: server.clientOptions,
 *   server: { port: server.addr.port }, framing: "length",
 * });
 * await using app = await UdpSocket.open({ connect: client.addr });
 * const reply = new Promise<Uint8Array>((resolve) => app.onmessage = (d) => resolve(d.slice()));
 * app.send(new TextEncoder().encode("ping"));
 * deepStrictEqual(new TextDecoder().decode(await reply), "ping");
 * ```
 */
export async function serveUdpClient(options: UdpClientOptions): Promise<UdpClientPool> {
  const what = "serve UDP client";
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot ${what}: options must be an object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const settings = resolveSettings(options, what);
  if (options.udpBufferSize !== undefined) {
    checkBufferSize(options.udpBufferSize, "udpBufferSize", what);
  }
  // A "host:port" string or a hostname of another type was taken (as a
  // missing port, or failing every flow's dial).
  const given: unknown = options.server;
  const server = checkHostPort(
    typeof given === "object" && given !== null && !Array.isArray(given)
      ? { ...given, hostname: (given as { hostname?: unknown }).hostname ?? "127.0.0.1" }
      : given,
    "server for serve UDP client",
    1,
  );
  // Checked here, not at each flow's dial.
  checkDialHostname(server.hostname, what);
  if (options.settings !== undefined) {
    checkOptions(String(options.transport?.name), options.settings);
  }
  const port = checkPort(options.port ?? 0, what);
  const connector = await createConnector(options.transport, options.config, {
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.dialer === undefined ? {} : { dialer: options.dialer }),
  });
  const socket = await UdpSocket.open({
    hostname: options.hostname ?? "127.0.0.1",
    port,
    ...(options.udpBufferSize === undefined ? {} : { bufferSize: options.udpBufferSize }),
  });
  const dialOptions = {
    ...server,
    ...(options.settings ? { settings: options.settings } : {}),
    // A free transport (Shadowsocks, ssh) carries a destination: its
    // server, bound to its UDP target, ignores it.
    ...(options.transport.free ? { destination: BOUND_DESTINATION } : {}),
  };
  // The application's callback: one that throws is printed once, as
  // proxy()'s onError is, instead of being lost with the flow's promise.
  const onError = guardCallback(options.onError, "serveUdpClient() onError");
  const pool = new ClientPool(
    socket,
    (pool, from, id, totals) => {
      // A flow closed while it waits (evicted, idle, shutdown) gives its
      // dial up: an attempt toward a server that drops SYNs lasts minutes,
      // and one per closed flow would hold sockets past maxFlows.
      const dialing = new AbortController();
      const round = pool.round;
      const flow: Flow = new Flow(
        id,
        settings,
        totals,
        (data) => pool.send(data, from),
        (flow, reason, error) => {
          dialing.abort();
          pool.flowClosed(from, flow, reason);
          if (error !== undefined && reason !== "shutdown") onError?.(error);
        },
        (datagrams, count, results) => pool.sendMany(datagrams, count, from, results),
      );
      flow.track(
        connector.dial({ ...dialOptions, signal: dialing.signal }).then(
          (conn) => {
            flow.connect(conn);
            // The PT server is reached once the transport's handshake is
            // done: one that refuses every handshake (a bridge whose keys
            // changed) is no more dialled once per new source than one
            // that is down. A flow the pool closed (idle, evicted,
            // shutdown) failed nothing.
            conn.ready.then(
              () => pool.dialSucceeded(),
              () => {
                const reason = flow.stats().closeReason;
                if (reason === undefined || !GIVEN_UP.has(reason)) pool.dialFailed(round);
              },
            );
          },
          (error) => {
            // Given up by the pool, not failed: no back-off.
            if (dialing.signal.aborted) return;
            pool.dialFailed(round);
            flow.close("dialFailed", error);
          },
        ),
      );
      return flow;
    },
    settings.maxFlows,
    settings.clock,
  );
  if (options.metrics !== undefined) {
    pool.onClosed = countUdpPool(metricsCore(options.metrics), {
      transport: options.transport.name,
      side: "client",
      mode: options.framing === "stun" ? "STUN" : "transparent-UDP",
    }, () => pool.stats());
  }
  return pool;
}
