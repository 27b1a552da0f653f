// Copyright the ptkit authors. MIT license.

import type {
  LocalStore,
  SignalPipe,
  Transport,
  TransportEnvironment,
} from "../../transports/transport.ts";
import type { HostPort } from "../../net/address.ts";
import type { Dialer } from "../../net/net_conn.ts";
import type { ConnectionLimits } from "../../net/source_limits.ts";
import type { PtLine } from "../lines/pt_line.ts";
import type { MetricsRegistry } from "../../net/metrics.ts";
import { isMetricsRegistry } from "../../net/_metrics_cores.ts";
import { checkFactoryOptions, checkOptionType } from "../../transports/_factory_options.ts";
import { checkRegistry } from "./_check_registry.ts";
import { guardCallback } from "../../net/_accept_error.ts";

/**
 * What {@linkcode runClient} and {@linkcode runServer} are given beside the
 * configuration.
 */
export interface RunOptions {
  /**
   * Receives every line the side reports, as values: `PROXY DONE`,
   * `CMETHOD`/`SMETHOD` and their errors, `CMETHODS DONE`/`SMETHODS DONE`,
   * `LOG` (every severity: filter them here), `STATUS` and the
   * `CMESSAGE`/`SMESSAGE` its transports send. `formatPtLine` writes them
   * as tor reads them. What it throws is printed once on the console, and
   * the side goes on.
   */
  readonly emit: (line: PtLine) => void;
  /** The transports on offer, by name. Defaults to {@linkcode builtinTransports}. */
  readonly registry?: ReadonlyMap<string, Transport>;
  /**
   * Each transport's out-of-band message pipe (its `signals`), when the
   * parent relays messages. Defaults to none.
   */
  readonly signals?: (transport: string) => SignalPipe;
  /**
   * Each transport's share of the servers' replay filters (see
   * `TransportEnvironment.replays`): the other listeners and `-workers`
   * processes of the same transport. Defaults to none.
   */
  readonly replays?: (transport: string) => TransportEnvironment["replays"];
  /**
   * Opens outgoing connections: on the client, to the PT server (defaults
   * to a direct connection, or through `config.proxy`); on the server, to
   * the target (defaults to a direct connection from `config.outboundBind`).
   */
  readonly dialer?: Dialer;
  /** The server's connection limits per listener. Defaults to `DEFAULT_CONNECTION_LIMITS`. */
  readonly limits?: ConnectionLimits;
  /**
   * Where each transport listens, by name, in place of the configuration's
   * addresses (a `-workers` child joins its parent's ports). Defaults to none.
   */
  readonly listenAt?: ReadonlyMap<string, HostPort>;
  /**
   * Listen with `SO_REUSEPORT` (Linux, `--unstable-net`), so that other
   * processes may share the ports. Defaults to false.
   */
  readonly reusePort?: boolean;
  /**
   * Called with where each transport listens, before its CMETHOD/SMETHOD
   * line (an SMETHOD may carry another address: WebTunnel's placeholder).
   * `-workers` uses it to share the ports. Defaults to none.
   */
  readonly onListening?: (transport: string, address: HostPort) => void;
  /**
   * The transports' long-term storage in place of the state directory's
   * files (a `-workers` child gets what its parent read). Defaults to a
   * store of files in `config.stateDir`.
   */
  readonly local?: LocalStore;
  /**
   * Where the side counts its connections, SOCKS replies (client),
   * Extended ORPort failures (server), datagrams and TURN (see
   * `MetricsRegistry`; `config.metrics` serves one). Defaults to nowhere.
   */
  readonly metrics?: MetricsRegistry;
}

/** A running side of the managed proxy. */
export interface RunningProxy {
  /** Stop accepting; resolves once open connections have ended. */
  drain(): Promise<void>;
  /** Close everything at once. */
  close(): Promise<void>;
}

/**
 * One side's servers as one {@linkcode RunningProxy}; `done` runs once they
 * have drained (`closed` false) or closed (`closed` true).
 *
 * @param running The side's servers.
 * @param done Runs after them (stops the side's log digest, say).
 * @returns The side.
 */
export function runningSide(
  running: readonly RunningProxy[],
  done: (closed: boolean) => void,
): RunningProxy {
  return {
    drain: async () => {
      await Promise.allSettled(running.map((r) => r.drain()));
      done(false);
    },
    close: async () => {
      await Promise.allSettled(running.map((r) => r.close()));
      done(true);
    },
  };
}

/**
 * Check what `runClient` or `runServer` was given before anything starts:
 * a configuration of that side (as `parseManagedConfig` makes it) and
 * options of the documented types. Before, a server configuration given to
 * `runClient` started SOCKS front ends, and a callback of the wrong type
 * failed with JavaScript's own error ('emit is not a function') or later.
 * Internal.
 *
 * @param config What the caller passed as the configuration.
 * @param options What the caller passed as the options.
 * @param side The side being run.
 * @throws {TypeError} When either is not of its type.
 */
export function checkRunArguments(
  config: unknown,
  options: unknown,
  side: "client" | "server",
): void {
  const what = `run the ${side} side`;
  if (
    typeof config !== "object" || config === null || (config as { kind?: unknown }).kind !== side
  ) {
    const kind = typeof config === "object" && config !== null
      ? `kind ${JSON.stringify(String((config as { kind?: unknown }).kind))}`
      : config === null
      ? "null"
      : typeof config;
    throw new TypeError(
      `Cannot ${what}: config must be a ${side} configuration from parseManagedConfig, got ${kind}`,
    );
  }
  if (options === undefined) {
    throw new TypeError(`Cannot ${what}: options must be an object, got undefined`);
  }
  checkFactoryOptions(options, what, ["signals", "replays", "dialer", "onListening"]);
  const given = options as Partial<Record<keyof RunOptions, unknown>>;
  checkOptionType(given.emit, "function", "emit", what, true);
  checkOptionType(given.reusePort, "boolean", "reusePort", what);
  checkRegistry(given.registry, what);
  checkFactoryOptions(given.local, what, ["get", "set"], "local");
  if (given.metrics !== undefined && !isMetricsRegistry(given.metrics)) {
    throw new TypeError(`Cannot ${what}: metrics must be made by new MetricsRegistry()`);
  }
}

/**
 * `options` with an `emit` that cannot throw into the side: what the
 * application's `emit` throws is printed once on the console (as a
 * server's other callbacks' throws are) and the side goes on. Before, a
 * throw at a `CMETHOD` line was taken for the transport's failure, and
 * when the `CMETHOD-ERROR` line threw too, `runClient` rejected with its
 * listeners open and nothing to close them with. Internal.
 *
 * @param options The checked options (see {@linkcode checkRunArguments}).
 * @param name The function, for the message (`"runClient"`).
 * @returns The same options with `emit` guarded.
 */
export function guardEmit(options: RunOptions, name: "runClient" | "runServer"): RunOptions {
  return { ...options, emit: guardCallback(options.emit, `${name}() emit`)! };
}
