// Copyright the ptkit authors. MIT license.

import type { HostPort, TransportOptions } from "../transports/transport.ts";
import type { ServerStats } from "./server_stats.ts";
import { checkHostPort } from "./address.ts";
import { checkFactoryOptions, checkOptionType } from "../transports/_factory_options.ts";

/**
 * A live server (PT 2.0 draft 1's Server Manager): its address, what clients need
 * to reach it, statistics, and a way to stop it.
 *
 * @example Stopping a proxy
 * ```ts
 * import { proxy } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const manager = await proxy(plain, {}, {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   target: { hostname: "127.0.0.1", port: 9 },
 * });
 * deepStrictEqual(manager.stats().connectionsOpen, 0);
 * await manager.close();
 * ```
 */
export class ServerManager implements AsyncDisposable {
  #addr: Deno.NetAddr;
  #clientOptions: TransportOptions;
  #stats: () => ServerStats;
  #close: () => Promise<void>;
  #drain: () => Promise<void>;
  #closing: Promise<void> | undefined;
  #bridgeAddress: HostPort | undefined;

  /**
   * Use `proxy` from `@ptkit/ptkit/server`, which makes one.
   *
   * @param addr The listening address.
   * @param clientOptions What clients need to reach the server.
   * @param stats Returns the statistics.
   * @param close Stops the server.
   * @param drain Stops accepting and waits for open connections. Defaults to `close`.
   * @param bridgeAddress The address bridge lines carry, when the transport
   * gives one that is not where the server listens. Defaults to none.
   * @throws {TypeError} When `addr` or `bridgeAddress` is not a host and
   * port, `clientOptions` not an object, or `stats`, `close` or `drain`
   * not a function.
   * @throws {RangeError} When a port is out of range (`bridgeAddress`: 1-65535).
   */
  constructor(
    addr: Deno.NetAddr,
    clientOptions: TransportOptions,
    stats: () => ServerStats,
    close: () => Promise<void>,
    drain: () => Promise<void> = close,
    bridgeAddress?: HostPort,
  ) {
    // Each was taken as given: a stats or close of another type failed when
    // called, an address of another type when read.
    const what = "make a server manager";
    checkHostPort(addr, "addr of a server manager");
    if (clientOptions === undefined) {
      throw new TypeError(`Cannot ${what}: clientOptions must be an object, got undefined`);
    }
    checkFactoryOptions(clientOptions, what, [], "clientOptions");
    checkOptionType(stats, "function", "stats", what, true);
    checkOptionType(close, "function", "close", what, true);
    checkOptionType(drain, "function", "drain", what, true);
    if (bridgeAddress !== undefined) checkHostPort(bridgeAddress, "bridgeAddress", 1);
    this.#bridgeAddress = bridgeAddress;
    this.#addr = addr;
    this.#clientOptions = clientOptions;
    this.#stats = stats;
    this.#close = close;
    this.#drain = drain;
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  /**
   * The address bridge lines for this server carry, when the transport gives
   * one that is not where it listens (WebTunnel's placeholder in
   * 2001:db8::/32); `undefined` means the listen address ({@linkcode addr}).
   */
  get bridgeAddress(): HostPort | undefined {
    return this.#bridgeAddress;
  }

  /** What a client needs to reach this server (its bridge line arguments). */
  get clientOptions(): TransportOptions {
    return this.#clientOptions;
  }

  /**
   * Statistics over every connection so far.
   *
   * @returns A snapshot of the counters.
   */
  stats(): ServerStats {
    return this.#stats();
  }

  /**
   * Stop accepting; open connections go on until they end (a graceful
   * shutdown, SIGINT's). A `proxy()` server closes those still in their
   * transport handshake 2 s later (a probe held as long as its peer holds
   * it would otherwise never end). {@linkcode ServerManager.close} ends
   * them at once.
   *
   * @returns Resolves once every open connection has ended.
   */
  drain(): Promise<void> {
    return this.#drain();
  }

  /**
   * Stop the server: stop accepting, end open connections, and wait until
   * they are closed. Calling it again returns the same promise.
   *
   * @returns Resolves when everything is closed.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Stop the server. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
