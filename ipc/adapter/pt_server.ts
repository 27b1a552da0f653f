// Copyright the ptkit authors. MIT license.

import type { TransportOptions } from "../../transports/transport.ts";
import { checkHostPort, formatHostPort, type HostPort, parseHostPort } from "../../net/address.ts";
import { formatServerTransportOptions } from "../lines/_args.ts";
import { isIpLiteral } from "../../net/_ip_address.ts";
import { absolutePath, checkStringRecord, ManagedPt, type PtLaunchOptions } from "./managed_pt.ts";
import type { PtLaunchResult } from "./pt_startup.ts";

/** Options for {@linkcode launchServer}. */
export interface LaunchServerOptions extends PtLaunchOptions {
  /**
   * Where each transport listens (`TOR_PT_SERVER_BINDADDR`), an IP literal
   * and a port. Defaults to `127.0.0.1:0` for each. After the first launch
   * the ports the PT reported are kept, so a relaunched PT listens where
   * clients already connect.
   */
  readonly bindaddr?: Readonly<Record<string, HostPort | string>>;
  /** Server options of each transport (`TOR_PT_SERVER_TRANSPORT_OPTIONS`). */
  readonly transportOptions?: Readonly<Record<string, TransportOptions>>;
  /** Forward plain connections here (`TOR_PT_ORPORT`): an IP address and a port. */
  readonly orport?: HostPort | string;
  /**
   * Forward connections here with the Extended ORPort protocol
   * (`TOR_PT_EXTENDED_SERVER_PORT`, `TOR_PT_AUTH_COOKIE_FILE`): an
   * {@linkcode ExtOrPortServer} fits.
   */
  readonly extorport?: {
    /** The ExtORPort address (`TOR_PT_EXTENDED_SERVER_PORT`). */
    readonly addr: HostPort;
    /**
     * The cookie file (`TOR_PT_AUTH_COOKIE_FILE`); a relative path is taken
     * from this process's working directory.
     */
    readonly cookieFile: string;
  };
}

/** One transport of a launched server PT, from its `SMETHOD` line. */
export interface PtServerTransport {
  /** The transport's name. */
  readonly name: string;
  /** Where clients connect. */
  readonly address: HostPort;
  /**
   * What clients need (the `ARGS:` of the `SMETHOD` line): the client
   * configuration, e.g. `{ cert, "iat-mode" }` for obfs4.
   */
  readonly clientOptions: TransportOptions;
}

/**
 * A launched server PT: the address and client configuration of each
 * transport, what failed, and the lifecycle of {@linkcode ManagedPt}
 * (events, relaunch, close).
 *
 * @example Putting an echo service behind obfs4proxy
 * ```ts
 * import { launchServer } from "@ptkit/ptkit/ipc/adapter";
 * import { ok } from "node:assert";
 *
 * using service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await using pt = await launchServer({
 *   path: "obfs4proxy",
 *   transports: ["obfs4"],
 *   orport: { hostname: "127.0.0.1", port: service.addr.port },
 * });
 * ok(pt.transports.get("obfs4")!.clientOptions.cert);
 * ```
 */
export class PtServer extends ManagedPt {
  #transports: Map<string, PtServerTransport>;
  #errors: Map<string, string>;

  /**
   * Use {@linkcode launchServer}.
   *
   * @param options The launch options.
   * @throws {TypeError} When neither or both of `orport` and `extorport` are given.
   */
  constructor(options: LaunchServerOptions) {
    const { bindaddr = {}, orport, extorport, transportOptions = {} } = options ?? {};
    if (typeof transportOptions !== "object" || transportOptions === null) {
      throw new TypeError(
        `Cannot launch PT: transportOptions must be an object, got ${
          transportOptions === null ? "null" : typeof transportOptions
        }`,
      );
    }
    for (const [name, settings] of Object.entries(transportOptions)) {
      checkStringRecord(settings, `transportOptions.${name}`);
    }
    if ((orport === undefined) === (extorport === undefined)) {
      throw new TypeError("Cannot launch server PT: give exactly one of orport and extorport");
    }
    const bind = new Map<string, HostPort>();
    for (const name of options.transports ?? []) {
      const given = bindaddr[name];
      bind.set(
        name,
        given === undefined
          ? { hostname: "127.0.0.1", port: 0 }
          : ipHostPort(given, `bindaddr of ${name}`, 0),
      );
    }
    for (const name of [...Object.keys(bindaddr), ...Object.keys(transportOptions)]) {
      if (!(options.transports ?? []).includes(name)) {
        throw new TypeError(`Cannot launch server PT: ${name} is not in transports`);
      }
    }
    // Where the PT connects: port 0 is refused, as main.ts refuses it in TOR_PT_ORPORT.
    const orportText = orport === undefined ? "" : formatHostPort(ipHostPort(orport, "orport", 1));
    const extorportText = extorport === undefined
      ? ""
      : formatHostPort(ipHostPort(extorport.addr, "extorport address", 1));
    // Absolute: the PT may run in another working directory (`cwd`).
    const cookieFile = extorport === undefined ? "" : absolutePath(extorport.cookieFile);
    const transports = new Map<string, PtServerTransport>();
    const env = (): Record<string, string> => ({
      TOR_PT_SERVER_TRANSPORTS: options.transports.join(","),
      TOR_PT_SERVER_BINDADDR: [...bind].map(([name, addr]) => `${name}-${formatHostPort(addr)}`)
        .join(","),
      TOR_PT_SERVER_TRANSPORT_OPTIONS: formatServerTransportOptions(transportOptions),
      TOR_PT_ORPORT: orportText,
      TOR_PT_EXTENDED_SERVER_PORT: extorportText,
      TOR_PT_AUTH_COOKIE_FILE: cookieFile,
    });
    const errors = new Map<string, string>();
    super(options, {
      kind: "server",
      env,
      proxy: false,
      update: (result: PtLaunchResult) => {
        transports.clear();
        errors.clear();
        for (const [name, message] of result.errors) errors.set(name, message);
        for (const [name, line] of result.methods) {
          if (line.type !== "SMETHOD") continue;
          transports.set(name, { name, address: line.address, clientOptions: line.args });
          // Keep the port for relaunches, on the address asked for.
          const asked = bind.get(name)!;
          if (asked.port === 0) {
            bind.set(name, { hostname: asked.hostname, port: line.address.port });
          }
        }
      },
    });
    this.#transports = transports;
    this.#errors = errors;
  }

  /** The transports the PT started, by name. */
  get transports(): ReadonlyMap<string, PtServerTransport> {
    return this.#transports;
  }

  /** `SMETHOD-ERROR` messages of the last launch, by transport name. */
  get errors(): ReadonlyMap<string, string> {
    return this.#errors;
  }
}

/**
 * A server PT's address option, `"ip:port"` or a `HostPort`: tor sets
 * `TOR_PT_SERVER_BINDADDR`, `TOR_PT_ORPORT` and
 * `TOR_PT_EXTENDED_SERVER_PORT` to IP addresses, and goptlib refuses a name
 * ("not an IP string"), so one is refused here, before a PT starts.
 */
function ipHostPort(value: HostPort | string, what: string, min: number): HostPort {
  const address = typeof value === "string"
    ? parseHostPort(value, what, min)
    : checkHostPort(value, what, min);
  if (!isIpLiteral(address.hostname)) {
    throw new TypeError(
      `Invalid ${what} ${
        JSON.stringify(typeof value === "string" ? value : address.hostname)
      }: the host must be an IP address (PTs refuse a name)`,
    );
  }
  return address;
}

/**
 * Launch a server PT and wait until it reported its transports. Every
 * server variable is set, empty when unused, and nothing else is inherited
 * but the essentials; the PT forwards to `orport`, or to `extorport` with
 * the Extended ORPort protocol.
 *
 * @param options The executable, the transports, where to listen and where to forward.
 * @returns The running PT.
 * @throws {TypeError} When the options are malformed (an address whose host
 * is not an IP address too: PTs refuse a name).
 * @throws {RangeError} When a port (`orport` and `extorport` 1-65535),
 * `startTimeout` or a `restart` value is out of range.
 * @throws {Error} When the PT fails to start (see {@linkcode launchClient}).
 * @throws The reason of `options.signal` when it aborts before the PT has
 * started (a PT being started is stopped).
 *
 * @example Launching obfs4proxy in front of a service
 * ```ts
 * import { launchServer } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using pt = await launchServer({
 *   path: "obfs4proxy",
 *   transports: ["obfs4"],
 *   orport: "127.0.0.1:9",
 *   transportOptions: { obfs4: { "iat-mode": "1" } },
 * });
 * deepStrictEqual(pt.transports.get("obfs4")!.clientOptions["iat-mode"], "1");
 * ```
 */
export async function launchServer(options: LaunchServerOptions): Promise<PtServer> {
  const server = new PtServer(options);
  await server.start();
  return server;
}
