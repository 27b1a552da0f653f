// Copyright the ptkit authors. MIT license.

/**
 * The client runtime: PT 2.0 draft 1's Transport Factory and Connection Factory.
 * {@linkcode createConnector} configures a transport's client side once;
 * {@linkcode Connector.dial} opens connections through it that look like
 * `Deno.Conn`.
 *
 * @example Dialing a server through a transport
 * ```ts
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { listen } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
 * const connector = await createConnector(plain, listener.clientOptions);
 * await using conn = await connector.dial({ hostname: "127.0.0.1", port: listener.addr.port });
 * await using accepted = await listener.accept();
 * await conn.writable.getWriter().write(new TextEncoder().encode("ping"));
 * const { value } = await accepted.readable.getReader().read();
 * deepStrictEqual(new TextDecoder().decode(value), "ping");
 * ```
 *
 * @module
 */

import type {
  ClientTransport,
  HostPort,
  Transport,
  TransportEnvironment,
  TransportOptions,
} from "./transports/transport.ts";
import {
  checkDestination,
  checkDialHostname,
  checkFunctionOption,
  checkPort,
  checkTimeout,
} from "./net/address.ts";
import { checkTransportPair } from "./transports/_pair.ts";
import {
  checkEnvironment,
  checkFactoryOptions,
  checkOptionType,
  checkSignalOption,
} from "./transports/_factory_options.ts";
import { parsingSettings } from "./transports/_settings_error.ts";
import {
  assertTransport,
  checkTransportName,
  checkTransportSide,
} from "./transports/_transport_name.ts";
import { withRuntimeCrypto } from "./net/_runtime_crypto.ts";
import { type Dialer, type NetConn, tcpDialer } from "./net/net_conn.ts";
import { dialPlanned } from "./net/_planned_dial.ts";
import { abortable } from "./net/_abortable.ts";
import { HelperSupervisor } from "./net/_helper_process.ts";
import { type HelperSlot, HelperSlots } from "./net/_helper_slots.ts";
import { socks5Connect } from "./ipc/socks/_client.ts";
import { SocksReplyError } from "./ipc/socks/_reply.ts";
import {
  checkConnOptions,
  TransportConn,
  type TransportConnOptions,
} from "./net/transport_conn.ts";

/** Options for {@linkcode createConnector}. */
export interface ConnectorOptions {
  /** Long-term storage and out-of-band signals for the transport. Defaults to none. */
  readonly env?: TransportEnvironment;
  /**
   * Opens the network connections transports run over. Defaults to a direct
   * `Deno.connect`; replace it to use an upstream proxy.
   */
  readonly dialer?: Dialer;
  /**
   * Milliseconds a connection's transport handshake may take before it is
   * closed. Defaults to 120000.
   */
  readonly handshakeTimeout?: number;
  /**
   * Extra trusted CA certificates (PEM) for connections a transport asks to
   * wrap in TLS (WebTunnel), besides Deno's roots and `DENO_CERT`. Defaults
   * to none.
   */
  readonly caCerts?: readonly string[];
  /**
   * Where a transport's helper processes (`ssh -D`) keep their files, one
   * subdirectory per server. Defaults to a new temporary directory.
   */
  readonly helperDirectory?: string;
  /**
   * Bounds the helper processes the connector runs (the `ssh` transport's
   * `ssh -D`, one per server it dials): share one {@linkcode HelperLimit}
   * to bound several connectors together. When all are taken, a dial to
   * another server stops the idle helper (no open connection) used longest
   * ago, or fails when every helper carries connections. Defaults to a
   * limit of the connector's own, `new HelperLimit()` (8 helpers).
   */
  readonly helperLimit?: HelperLimit;
  /** Told each line a helper process logs (addresses redacted). Defaults to none. */
  readonly onHelperLog?: (
    severity: "error" | "warning" | "notice" | "info" | "debug",
    message: string,
  ) => void;
}

/** The internal state of each {@linkcode HelperLimit}. */
const limitSlots = new WeakMap<HelperLimit, HelperSlots>();

/**
 * A bound on the helper processes (the `ssh` transport's `ssh -D`, one per
 * server) that the connectors given it run together (see
 * {@linkcode ConnectorOptions.helperLimit}). A helper with no open
 * connection is stopped to make room for a new one; when every helper
 * carries connections, a dial that needs another fails. A helper whose
 * program keeps failing (5 runs in a row, the waits between them growing
 * from its restart delay to a minute) is stopped too; the next dial to its
 * server starts it again.
 *
 * @example Two connectors sharing one limit
 * ```ts
 * import { createConnector, HelperLimit } from "@ptkit/ptkit/client";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { strictEqual } from "node:assert";
 *
 * const helperLimit = new HelperLimit({ max: 4 });
 * await using first = await createConnector(plain, {}, { helperLimit });
 * await using second = await createConnector(plain, {}, { helperLimit });
 * strictEqual(helperLimit.max, 4);
 * strictEqual(helperLimit.size, 0);
 * ```
 */
export class HelperLimit {
  /**
   * Make a limit.
   *
   * @param options `max`: the most helper processes running at once, a
   * positive integer. Defaults to 8.
   * @throws {TypeError} When `options` is not an object or `max` not a number.
   * @throws {RangeError} When `max` is not a positive integer.
   */
  constructor(options: { readonly max?: number } = {}) {
    checkFactoryOptions(options, "make a helper limit", []);
    const max = options.max ?? DEFAULT_MAX_HELPERS;
    if (typeof max !== "number") {
      throw new TypeError(`Invalid helper limit: max must be a number, got ${typeof max}`);
    }
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(`Invalid helper limit ${max}: must be a positive integer`);
    }
    limitSlots.set(this, new HelperSlots(max));
  }

  /** The most helper processes running at once. */
  get max(): number {
    return limitSlots.get(this)!.max;
  }

  /** The helper processes running (or starting) now. */
  get size(): number {
    return limitSlots.get(this)!.size;
  }
}

/** The helpers a connector runs when given no {@linkcode HelperLimit}. */
const DEFAULT_MAX_HELPERS = 8;
/** Failed runs in a row after which a connector's helper is stopped. */
const HELPER_MAX_FAILURES = 5;

/** A helper a connector runs, for one server. */
interface HelperEntry extends HelperSlot {
  open: number;
  lastUsed: number;
  started: Promise<{ helper: HelperSupervisor; port: number }>;
}

/** Options for {@linkcode Connector.dial}. */
export interface DialOptions {
  /** The server's host. Defaults to `"127.0.0.1"`. */
  readonly hostname?: string;
  /** The server's port. */
  readonly port: number;
  /** Per-connection settings for the transport. Defaults to none. */
  readonly settings?: TransportOptions;
  /**
   * A free transport's destination (PT 2.0 draft 1's TCP destination endpoint):
   * the server connects it, names unresolved. Required for a free
   * transport (`Transport.free`); a bound transport ignores it.
   */
  readonly destination?: HostPort;
  /**
   * Aborting it gives the dial up: `dial` rejects with the signal's reason
   * at once, and a network connection made after that is closed. Once
   * `dial` has resolved it does nothing (close the connection instead).
   * Defaults to none.
   */
  readonly signal?: AbortSignal;
}

/**
 * A configured transport client (PT 2.0 draft 1's Connection Factory): dials as
 * many connections as needed with one configuration.
 *
 * @example Dialing twice with one connector
 * ```ts
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const connector = await createConnector(plain, {});
 * for (let i = 0; i < 2; i++) {
 *   await using conn = await connector.dial({ port: listener.addr.port });
 *   (await listener.accept()).close();
 *   deepStrictEqual(conn.remoteAddr.transport, "tcp");
 * }
 * deepStrictEqual(connector.name, "plain");
 * ```
 */
export class Connector {
  #side: ClientTransport;
  #dialer: Dialer;
  #name: string;
  #connOptions: TransportConnOptions;
  #caCerts: readonly string[];
  #helperOptions: Pick<ConnectorOptions, "helperDirectory" | "onHelperLog">;
  #helpers = new Map<string, HelperEntry>();
  #slots: HelperSlots;
  #closed = false;

  /**
   * Use {@linkcode createConnector}, which validates the configuration.
   *
   * @param name The transport's name.
   * @param side The configured client side.
   * @param dialer The network dialer.
   * @param connOptions Options for every connection (the handshake timeout).
   * @param caCerts Extra trusted CA certificates (PEM) for TLS a transport
   * asks for. Defaults to none.
   * @param helperOptions Where helper processes keep files and log, and
   * the limit on them. Defaults to a limit of the connector's own (8).
   * @throws {TypeError} When `name` is not a transport name, `side` not a
   * configured client side, `dialer` not a function, or an option not of
   * its type (as `createConnector` says).
   * @throws {RangeError} When the handshake timeout is out of range.
   */
  constructor(
    name: string,
    side: ClientTransport,
    dialer: Dialer,
    connOptions: TransportConnOptions = {},
    caCerts: readonly string[] = [],
    helperOptions: Pick<ConnectorOptions, "helperDirectory" | "onHelperLog" | "helperLimit"> = {},
  ) {
    const what = "make a connector";
    // Each was taken as given, and a side, dialer or option of another type
    // failed at the first dial with JavaScript's own error.
    checkTransportName(name, what);
    checkTransportSide(side, "client", what);
    checkOptionType(dialer, "function", "dialer", what, true);
    checkConnOptions(connOptions, what);
    this.#caCerts = [...checkCaCerts(caCerts, what)];
    checkFactoryOptions(helperOptions, what, ["onHelperLog"]);
    checkOptionType(helperOptions.helperDirectory, "string", "helperDirectory", what);
    this.#name = name;
    this.#side = side;
    this.#dialer = dialer;
    this.#connOptions = { ...connOptions, name };
    this.#helperOptions = helperOptions;
    const limit = helperOptions.helperLimit ?? new HelperLimit();
    checkHelperLimit(limit);
    this.#slots = limitSlots.get(limit)!;
  }

  /**
   * Stop the transport's helper processes (if any) and release what its
   * client side holds (`ClientTransport.close`); connections already open
   * through a helper end, others stay open. A dial started afterwards fails
   * with `Deno.errors.BadResource` (one under way completes). Calling it
   * again does nothing more.
   */
  async close(): Promise<void> {
    const first = !this.#closed;
    this.#closed = true;
    // All at once: each stops its helper and gives its slot back.
    const stopping = Promise.allSettled([...this.#helpers.values()].map((entry) => entry.close()));
    try {
      // Last, so that a hook that throws leaves nothing else open; its
      // error is the caller's.
      if (first) this.#side.close?.();
    } finally {
      await stopping;
    }
  }

  /** Same as {@linkcode Connector.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * The helper for `destination` (its server), started when there is none:
   * it takes a slot of the connector's {@linkcode HelperLimit}.
   */
  #helperFor(destination: HostPort): HelperEntry {
    if (this.#closed) {
      throw new Deno.errors.BadResource(`Cannot dial: the ${this.#name} connector is closed`);
    }
    const key = `${destination.hostname}_${destination.port}`;
    const known = this.#helpers.get(key);
    if (known !== undefined) return known;
    let stopping: Promise<void> | undefined;
    const madeBase = this.#helperOptions.helperDirectory === undefined;
    let base = this.#helperOptions.helperDirectory;
    let directory = "";
    const entry: HelperEntry = {
      open: 0,
      lastUsed: performance.now(),
      started: undefined!,
      // Stops the helper (evicted, given up, the connector closed) and
      // removes what this connector made for it.
      close: () => {
        if (this.#helpers.get(key) === entry) this.#helpers.delete(key);
        this.#slots.release(entry);
        stopping ??= entry.started.then(async ({ helper }) => {
          await helper.close();
          await Deno.remove(directory, { recursive: true }).catch(() => {});
          if (madeBase) await Deno.remove(base!).catch(() => {});
        }, () => {});
        return stopping;
      },
    };
    const room = this.#slots.take(entry);
    if (room === false) {
      // No address in the message: it becomes a LOG line.
      throw new Error(
        `Cannot dial: all ${this.#slots.max} ${this.#name} helper processes (one per server) carry open connections`,
      );
    }
    this.#helpers.set(key, entry);
    const build = this.#side.socksHelper!.bind(this.#side);
    entry.started = (async () => {
      // The idle helper that made room is gone first: never more processes than the limit.
      await room;
      base ??= await Deno.makeTempDir({ prefix: "ptkit-helper-" });
      directory = `${base}/${this.#name}-${key.replace(/[^A-Za-z0-9_.-]/g, "_")}`;
      // A free loopback port for the helper's SOCKS5 proxy, kept across restarts.
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = probe.addr.port;
      probe.close();
      const helper = await HelperSupervisor.start(
        (context) => build(destination, context),
        {
          directory,
          listen: { hostname: "127.0.0.1", port },
          // Its files hold the client's private key: they stay this
          // process's user's, never `nobody`'s (shared by other daemons).
          asNobody: false,
          // One that keeps failing (a server that refuses) is dropped; the
          // next dial to its server starts it again.
          maxFailures: HELPER_MAX_FAILURES,
          onGiveUp: () => void entry.close(),
          ...(this.#helperOptions.onHelperLog === undefined
            ? {}
            : { onLog: this.#helperOptions.onHelperLog }),
        },
      );
      return { helper, port };
    })();
    entry.started.catch(() => entry.close());
    return entry;
  }

  async #dialThroughHelper(
    destination: HostPort,
    plan: ReturnType<NonNullable<ClientTransport["connection"]>> | undefined,
  ): Promise<NetConn> {
    if (plan?.tls !== undefined) {
      throw new TypeError("Cannot dial: TLS through a helper's SOCKS5 proxy is not supported");
    }
    const entry = this.#helperFor(destination);
    // The helper is busy from now until the connection closes.
    entry.open++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      entry.open--;
      entry.lastUsed = performance.now();
    };
    let conn: NetConn;
    try {
      const { helper, port } = await entry.started;
      try {
        conn = await tcpDialer({ hostname: "127.0.0.1", port });
      } catch (error) {
        // Down between runs: this connection fails, the next finds it sooner.
        helper.nudge();
        throw new Error(
          `The ${this.#name} helper's SOCKS5 proxy is not up: it is still connecting to the server, or failing to (its own warnings say why; it is tried again): ${
            (error as Error).message
          }`,
          { cause: error },
        );
      }
    } catch (error) {
      release();
      throw error;
    }
    // However the connection ends, it is closed: then the helper is free.
    const close = conn.close.bind(conn);
    conn.close = () => {
      try {
        close();
      } finally {
        release();
      }
    };
    try {
      await socks5Connect(conn, {
        hostname: plan?.hostname ?? destination.hostname,
        port: plan?.port ?? destination.port,
      });
    } catch (error) {
      conn.close();
      // Up, but its server refused the forward (ssh: a wrong relay= or user=);
      // the SOCKS reply code the proxy gave is kept.
      const message =
        `The ${this.#name} helper's SOCKS5 proxy did not open the connection (its own warnings say why): ${
          (error as Error).message
        }`;
      throw error instanceof SocksReplyError
        ? new SocksReplyError(error.code, message, { cause: error })
        : new Error(message, { cause: error });
    }
    return conn;
  }

  /** The transport's name (PT 2.0 draft 1's connection factory type name). */
  get name(): string {
    return this.#name;
  }

  /**
   * Open a connection to a server through the transport. When the transport
   * gives a connection plan (`ClientTransport.connection`: another host,
   * TLS), the connection is made as it says, with the connector's
   * `caCerts` trusted besides the plan's.
   *
   * @param options Where to connect, and per-connection settings.
   * @returns The connection, ready to use (a handshake, if any, runs as the
   * first bytes flow).
   * @throws {TypeError} When the options are malformed, `hostname` is
   * neither an IP address nor a host name (an internationalized one is
   * dialed by its punycode form), or a free transport's `destination` names
   * a host no server takes (a space, an IPv6 zone). An internationalized
   * destination is sent in its punycode form.
   * @throws {RangeError} When the port is out of range.
   * @throws {Deno.errors.BadResource} When the connector is closed.
   * @throws The reason of `options.signal` when it aborts first.
   * @throws The network's error when the connection cannot be made (Deno's
   * `ConnectionRefused`, a failed lookup, a failed TLS handshake). Its
   * message does not name the server's address or TLS server names, so
   * that it may be logged where a bridge's address must not be; the caller
   * knows which server it dialed. (A failed lookup of a host name that the
   * transport's own configuration gave, such as WebTunnel's URL host, names
   * that host.)
   */
  async dial(options: DialOptions): Promise<TransportConn> {
    if (this.#closed) {
      throw new Deno.errors.BadResource(`Cannot dial: the ${this.#name} connector is closed`);
    }
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `Cannot dial: options must be an object, got ${options === null ? "null" : typeof options}`,
      );
    }
    const hostname = checkDialHostname(options.hostname ?? "127.0.0.1", "dial");
    const port = checkPort(options.port, "dial", 1);
    const signal = options.signal;
    checkSignalOption(signal, "dial");
    // Make the plan and the pair first: bad settings fail before any packet
    // is sent.
    const settings = options.settings ?? {};
    const destination = { hostname, port };
    // A throw here is the settings' fault (a required key missing, a
    // malformed value): marked so, for the SOCKS reply `13`.
    const plan = parsingSettings(() => this.#side.connection?.(destination, settings));
    // A free transport's destination, checked before anything is sent (a
    // name no server takes was carried, and the server held the connection
    // as a probe's, silently).
    const target = options.destination === undefined
      ? undefined
      : checkDestination(options.destination, "dial");
    const made = parsingSettings(() => this.#side.pair(settings, target));
    // A transport written by hand whose pair() returns no streams is its
    // author's fault, not the settings' (no SOCKS reply 13).
    const pair = checkTransportPair(this.#name, made);
    // The pair's promises are the TransportConn's to report, once the
    // network connection is made. Until then (a handshake refused at once,
    // a pair whose ready fails when a failed dial aborts its streams) a
    // rejection had no handler, and Deno ended the process for it.
    for (const promise of [pair.ready, pair.destination, pair.clientAddress]) {
      if (promise !== undefined) Promise.resolve(promise).catch(() => {});
    }
    let net: NetConn | undefined;
    try {
      signal?.throwIfAborted();
      const dialing = this.#side.socksHelper === undefined
        ? dialPlanned(this.#dialer, destination, plan, settings, this.#caCerts, signal)
        : this.#dialThroughHelper(destination, plan);
      // A dial under way when the connector closes still completes (the
      // managed client closes the connectors it evicts from its cache).
      net = await (signal === undefined ? dialing : abortable(dialing, signal));
      return new TransportConn(net, pair, this.#connOptions);
    } catch (error) {
      // Nothing is left open: not the socket, not the pair's timers.
      try {
        net?.close();
      } catch {
        // Already closed.
      }
      // One after the other: a transport whose abort of one side errors the
      // other (obfs4's pair fails as a whole) left the second abort, begun
      // in the same tick, pending for ever, and the dial with it.
      await pair.encode.writable.abort(error).catch(() => {});
      await pair.decode.writable.abort(error).catch(() => {});
      throw error;
    }
  }
}

/**
 * Configure a transport's client side (PT 2.0 draft 1's Transport Factory).
 *
 * @param transport The transport.
 * @param config Its client configuration (a bridge line's arguments).
 * @param options Storage, signals and the network dialer.
 * @returns A connector that dials through the transport.
 * @throws {TypeError} When the transport rejects the configuration (a
 * missing required key, a malformed value).
 * @throws {RangeError} When the transport rejects a value of the
 * configuration as out of its range (obfs4's `iat-mode` 3, a Shadowsocks
 * method it does not support).
 *
 * @example Refusing a bad configuration (unknown keys are only ignored)
 * ```ts
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { rejects } from "node:assert";
 *
 * await rejects(createConnector(obfs4, { cert: "x", "iat-mode": "0", ver: "1" }), TypeError);
 * ```
 */
export async function createConnector(
  transport: Transport,
  config: TransportOptions,
  options: ConnectorOptions = {},
): Promise<Connector> {
  assertTransport(transport, "create a connector");
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot create a connector: options must be an object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  checkEnvironment(options.env, "create a connector");
  // Before the transport is configured: a certificate that is no PEM failed
  // only at a dial that asked for TLS (WebTunnel's), or never.
  checkCaCerts(options.caCerts ?? [], "create a connector");
  checkTimeout(options.handshakeTimeout, "handshakeTimeout", "create a connector");
  checkFunctionOption(options.dialer, "dialer", "create a connector");
  checkFunctionOption(options.onHelperLog, "onHelperLog", "create a connector");
  // Before the transport is configured: a helperDirectory of another type
  // was taken and failed at the first dial through a helper, and a
  // helperLimit not made by new HelperLimit() left the configured side open.
  checkOptionType(options.helperDirectory, "string", "helperDirectory", "create a connector");
  checkHelperLimit(options.helperLimit);
  const side = await transport.client(config, withRuntimeCrypto(options.env));
  const connOptions = options.handshakeTimeout === undefined
    ? {}
    : { handshakeTimeout: options.handshakeTimeout };
  return new Connector(
    transport.name,
    side,
    options.dialer ?? tcpDialer,
    connOptions,
    options.caCerts ?? [],
    {
      ...(options.helperDirectory === undefined
        ? {}
        : { helperDirectory: options.helperDirectory }),
      ...(options.onHelperLog === undefined ? {} : { onHelperLog: options.onHelperLog }),
      ...(options.helperLimit === undefined ? {} : { helperLimit: options.helperLimit }),
    },
  );
}

/** A PEM certificate block, as `Deno.connectTls` and `Deno.startTls` read them. */
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----/;

/**
 * Check `caCerts`: an array of strings each holding at least one PEM
 * certificate block. The message says what is wrong, never the content.
 *
 * @param caCerts What the caller gave.
 * @param what The call, for the message (`create a connector`).
 * @returns The certificates, typed.
 * @throws {TypeError} When it is not an array of such strings.
 */
function checkCaCerts(caCerts: unknown, what: string): readonly string[] {
  if (!Array.isArray(caCerts)) {
    throw new TypeError(
      `Cannot ${what}: caCerts must be an array of PEM strings, got ${
        caCerts === null ? "null" : typeof caCerts
      }`,
    );
  }
  caCerts.forEach((pem: unknown, i) => {
    if (typeof pem !== "string") {
      throw new TypeError(
        `Cannot ${what}: caCerts[${i}] must be a PEM string, got ${
          pem === null ? "null" : typeof pem
        }`,
      );
    }
    if (!PEM_CERTIFICATE.test(pem)) {
      throw new TypeError(
        `Cannot ${what}: caCerts[${i}] (${pem.length} characters) holds no PEM certificate: expected a -----BEGIN CERTIFICATE----- block`,
      );
    }
  });
  return caCerts as readonly string[];
}

/** Check a `helperLimit`: `undefined`, or one made by `new HelperLimit()`. */
function checkHelperLimit(limit: unknown): void {
  if (limit !== undefined && !limitSlots.has(limit as HelperLimit)) {
    throw new TypeError(
      `Invalid helperLimit: expected a HelperLimit, got ${limit === null ? "null" : typeof limit}`,
    );
  }
}
