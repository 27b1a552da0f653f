// Copyright the ptkit authors. MIT license.

import type { ClientTransport, TransportOptions } from "../../transports/transport.ts";
import type { Dialer, NetConn } from "../../net/net_conn.ts";
import { checkHostPort, checkTimeout, type HostPort } from "../../net/address.ts";
import {
  checkFactoryOptions,
  checkOptionType,
  checkSignalOption,
} from "../../transports/_factory_options.ts";
import { checkOptions } from "../../transports/define_transport.ts";
import { Connector } from "../../client.ts";
import { parseUpstreamProxy } from "../managed/_proxy_uri.ts";
import { ManagedPt, type PtLaunchOptions } from "./managed_pt.ts";
import type { PtLaunchResult } from "./pt_startup.ts";
import { socks5Connect } from "../socks/_client.ts";
import { SocksReply, SocksReplyError } from "../socks/_reply.ts";

/** Options for {@linkcode launchClient}. */
export interface LaunchClientOptions extends PtLaunchOptions {
  /**
   * Upstream proxy URI for the PT (`TOR_PT_PROXY`), e.g.
   * `socks5://user:pass@127.0.0.1:1080`; the PT must answer `PROXY DONE`.
   * The host is an IP address; a trailing `/` is dropped (obfs4proxy and
   * lyrebird refuse it).
   */
  readonly proxy?: string;
  /** With PT 2.0, frame the JSON arguments with a 4-byte length. Defaults to false. */
  readonly jsonLengthPrefix?: boolean;
  /** Milliseconds a SOCKS handshake with the PT may take. Defaults to 30000. */
  readonly socksTimeout?: number;
}

/**
 * One transport of a launched client PT: dials PT servers through the PT's
 * SOCKS port. {@linkcode PtClientTransport.connector} gives a `client.ts`
 * {@linkcode Connector} whose connections carry the application's plain
 * bytes; {@linkcode PtClientTransport.dialer} gives a `Dialer` for anything
 * that takes one.
 *
 * @example Dialing a ptkit obfs4 server through obfs4proxy
 * ```ts
 * import { launchClient } from "@ptkit/ptkit/ipc/adapter";
 * import { listen } from "@ptkit/ptkit/server";
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using server = await listen(obfs4, {}, { hostname: "127.0.0.1", port: 0 });
 * await using pt = await launchClient({ path: "obfs4proxy", transports: ["obfs4"] });
 * await using connector = await pt.transports.get("obfs4")!.connector(server.clientOptions);
 * // obfs4proxy answers the SOCKS request once the obfs4 handshake is done,
 * // and a listener runs the server's side of it for connections it accepts.
 * const accepting = server.accept();
 * await using conn = await connector.dial({ port: server.addr.port });
 * await conn.writable.getWriter().write(new TextEncoder().encode("hi"));
 * await using accepted = await accepting;
 * const { value } = await accepted.readable.getReader().read();
 * deepStrictEqual(new TextDecoder().decode(value), "hi");
 * ```
 */
export class PtClientTransport {
  #name: string;
  #client: PtClient;
  #method: () => { mode: string; address: HostPort } | undefined;
  #options: LaunchClientOptions;

  /**
   * Made by {@linkcode launchClient}.
   *
   * @param name The transport.
   * @param client The PT.
   * @param method Its current `CMETHOD`.
   * @param options The launch options.
   */
  constructor(
    name: string,
    client: PtClient,
    method: () => { mode: string; address: HostPort } | undefined,
    options: LaunchClientOptions,
  ) {
    this.#name = name;
    this.#client = client;
    this.#method = method;
    this.#options = options;
  }

  /** The transport's name. */
  get name(): string {
    return this.#name;
  }

  /** The `CMETHOD` mode (`socks5` normally). */
  get mode(): string {
    return this.#method()?.mode ?? "";
  }

  /** The PT's SOCKS address for this transport (it may change when the PT is relaunched). */
  get address(): HostPort | undefined {
    return this.#method()?.address;
  }

  /**
   * Connect to a PT server through the PT (waits while the PT is being
   * relaunched).
   *
   * @param target The PT server.
   * @param args The transport's arguments (a bridge line's `k=v` pairs).
   * @param options An abort signal: aborting gives the dial up, closing the
   * connection to the PT's SOCKS port (the PT then drops its attempt).
   * @returns The connection; it carries plain application bytes.
   * @throws {TypeError} When `target` is not a host and port, `args` not an
   * object of strings, or `options.signal` not an `AbortSignal`.
   * @throws {RangeError} When the port is not 1-65535.
   * @throws The reason of `options.signal` when it aborts first.
   * @throws {SocksReplyError} When the PT refuses or fails the request (its
   * SOCKS reply code in `code`; a timeout after `socksTimeout`), or an
   * error of Deno's when the PT's SOCKS port cannot be reached. No message
   * names `target`, so that it may be logged where a bridge's address must
   * not be.
   */
  async dial(
    target: HostPort,
    args: TransportOptions = {},
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<NetConn> {
    checkHostPort(target, "PT server address", 1);
    checkOptions(this.#name, args);
    checkFactoryOptions(options, "dial", []);
    const { signal } = options;
    checkSignalOption(signal, "dial");
    signal?.throwIfAborted();
    await (signal === undefined
      ? this.#client.ready()
      : untilAborted(this.#client.ready(), signal));
    const method = this.#method();
    if (method === undefined) {
      throw new Error(`PT no longer offers transport '${this.#name}'`);
    }
    if (method.mode !== "socks5") {
      throw new RangeError(
        `Cannot dial through transport '${this.#name}': CMETHOD mode ${method.mode} is not supported (socks5 is)`,
      );
    }
    // PT 1.0 parents send the arguments as RFC 1929 user name and password
    // (tor's escaping), PT 2.0 as JSON after method 0x80.
    const format = this.#client.version === "2"
      ? this.#options.jsonLengthPrefix ? "json-length" : "json"
      : "tor";
    const timeout = this.#options.socksTimeout ?? 30000;
    const conn = await Deno.connect({
      hostname: method.address.hostname,
      port: method.address.port,
      ...(signal === undefined ? {} : { signal }),
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.close();
    }, timeout);
    const onAbort = () => conn.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      await socks5Connect(conn, target, {
        settings: args,
        settingsFormat: format,
        peer: "PT SOCKS5 port",
      });
      return conn;
    } catch (error) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      if (signal?.aborted) throw signal.reason;
      if (timedOut) {
        throw new SocksReplyError(
          SocksReply.settingsTimeout,
          `PT SOCKS5 handshake timed out after ${timeout} ms`,
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * A `Dialer` that reaches PT servers through this transport with `args`.
   * As {@linkcode PtClientTransport.connector}, the PT gets `args` merged
   * with the settings each call passes (settings win): a connector given
   * this dialer passes its connections' `settings`.
   *
   * @param args The transport's arguments for every connection.
   * @returns The dialer.
   * @throws {TypeError} When `args` is not an object of strings (a dial
   * rejects with one when its settings are not).
   */
  dialer(args: TransportOptions = {}): Dialer {
    const fixed = { ...checkOptions(this.#name, args) };
    return async (target, settings = {}, options) =>
      await this.dial(target, { ...fixed, ...checkOptions(this.#name, settings) }, options);
  }

  /**
   * A `client.ts` connector for this transport: its `dial` returns a
   * `TransportConn` that carries plain application bytes (the PT does the
   * transforming). The PT gets `args` merged with the per-connection
   * `settings` given to `dial` (settings win).
   *
   * @param args The transport's arguments for every connection.
   * @returns The connector.
   * @throws {TypeError} (a rejection) When `args` is not an object of strings.
   */
  // deno-lint-ignore require-await
  async connector(args: TransportOptions = {}): Promise<Connector> {
    const fixed = { ...checkOptions(this.#name, args) };
    // The PT does the transforming: the pair is the identity, and the
    // per-connection settings travel to the PT with the SOCKS request.
    const side: ClientTransport = {
      pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
    };
    const dialer: Dialer = (target, settings = {}, options) =>
      this.dial(target, { ...fixed, ...settings }, options);
    return new Connector(this.#name, side, dialer);
  }
}

/**
 * A launched client PT: its transports by name, what failed, the version,
 * and the lifecycle of {@linkcode ManagedPt} (events, relaunch, close).
 *
 * @example Watching the log of a PT from its start
 * ```ts
 * import { PtClient } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using pt = new PtClient({ path: "obfs4proxy", transports: ["obfs4", "bogus"] });
 * pt.addEventListener("log", (event) => console.log(event.severity, event.message));
 * await pt.start();
 * deepStrictEqual([...pt.transports.keys()], ["obfs4"]);
 * deepStrictEqual(pt.errors.has("bogus"), true); // obfs4proxy reports unknown names.
 * ```
 */
export class PtClient extends ManagedPt {
  #transports: Map<string, PtClientTransport>;
  #errors: Map<string, string>;

  /**
   * Use {@linkcode launchClient}.
   *
   * @param options The launch options.
   */
  constructor(options: LaunchClientOptions) {
    if (options?.proxy !== undefined) parseUpstreamProxy(options.proxy);
    checkTimeout(options?.socksTimeout, "socksTimeout", "launch PT");
    checkOptionType(options?.jsonLengthPrefix, "boolean", "jsonLengthPrefix", "launch PT");
    // A URI that ends in "/" (new URL() writes one for http) is taken, as
    // goptlib takes it, but obfs4proxy and lyrebird refuse any path ("proxy
    // URI has a path defined"): the PT gets it without. Once parsed, a last
    // "/" follows the port, never a password.
    const proxyUri = options?.proxy?.endsWith("/") ? options.proxy.slice(0, -1) : options?.proxy;
    const env = (): Record<string, string> => ({
      TOR_PT_CLIENT_TRANSPORTS: options.transports.join(","),
      ...(proxyUri === undefined ? {} : { TOR_PT_PROXY: proxyUri }),
    });
    const methods = new Map<string, { mode: string; address: HostPort }>();
    const transports = new Map<string, PtClientTransport>();
    const errors = new Map<string, string>();
    const owner: { client?: PtClient } = {};
    super(options, {
      kind: "client",
      env,
      proxy: options?.proxy !== undefined,
      update: (result: PtLaunchResult) => {
        methods.clear();
        errors.clear();
        for (const [name, message] of result.errors) errors.set(name, message);
        for (const [name, line] of result.methods) {
          if (line.type !== "CMETHOD") continue;
          methods.set(name, { mode: line.mode, address: line.address });
          if (!transports.has(name)) {
            transports.set(
              name,
              new PtClientTransport(name, owner.client!, () => methods.get(name), options),
            );
          }
        }
      },
    });
    owner.client = this;
    this.#transports = transports;
    this.#errors = errors;
  }

  /** The transports the PT started, by name. */
  get transports(): ReadonlyMap<string, PtClientTransport> {
    return this.#transports;
  }

  /** `CMETHOD-ERROR` messages of the last launch, by transport name. */
  get errors(): ReadonlyMap<string, string> {
    return this.#errors;
  }
}

/**
 * Launch a client PT (obfs4proxy, lyrebird, snowflake-client, ptkit's
 * `main.ts`...) and wait until it reported its transports. The environment
 * holds only the `TOR_PT_*` variables and the essentials; stdin stays open
 * and closing it (with {@linkcode ManagedPt.close}) stops the PT.
 *
 * @param options The executable, the transports and the limits.
 * @returns The running PT.
 * @throws {TypeError} When the options are malformed.
 * @throws {RangeError} When `startTimeout` or a `restart` value is out of
 * range, or `proxy` names a scheme PTs do not take (`ftp://`).
 * @throws {Error} When the PT fails to start: a version or environment
 * error, no transport started, an early exit, or no `CMETHODS DONE` within
 * the start timeout. The message holds the PT's last stderr output.
 * @throws The reason of `options.signal` when it aborts before the PT has
 * started (a PT being started is stopped).
 *
 * @example Launching obfs4proxy
 * ```ts
 * import { launchClient } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using pt = await launchClient({ path: "obfs4proxy", transports: ["obfs4"] });
 * deepStrictEqual(pt.version, "1");
 * deepStrictEqual(pt.transports.get("obfs4")?.mode, "socks5");
 * ```
 */
export async function launchClient(options: LaunchClientOptions): Promise<PtClient> {
  const client = new PtClient(options);
  await client.start();
  return client;
}

/** `promise`, or a rejection with the signal's reason once it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
