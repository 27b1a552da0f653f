// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type {
  GeneratedConfig,
  Transport,
  TransportEnvironment,
  TransportOptions,
  TransportPair,
} from "./transport.ts";
import { assertTransportName } from "./transport_name.ts";

/** Which side of a connection a pair serves. */
export type TransportRole = "client" | "server";

/**
 * What {@linkcode defineTransport} needs: a name, a config parser and a pair
 * factory. `C` is the parsed configuration.
 *
 * @typeParam C The parsed configuration.
 */
export interface TransportDefinition<C> {
  /** The transport's name: a C identifier. */
  readonly name: string;
  /**
   * Validate and parse a configuration; throw a `TypeError` or `RangeError`
   * naming the bad value. Runs once per side, not per connection.
   */
  parseConfig(
    config: TransportOptions,
    role: TransportRole,
    env: TransportEnvironment,
  ): C | Promise<C>;
  /**
   * Make the pair for one connection.
   *
   * @param config The parsed configuration.
   * @param role The side this pair serves.
   * @param settings Per-connection settings (always empty on the server).
   */
  pair(config: C, role: TransportRole, settings: TransportOptions): TransportPair;
  /**
   * The client arguments that reach a server with configuration `config`.
   * Defaults to none.
   */
  clientOptions?(config: C): TransportOptions;
  /** Generate a matching client and server configuration. */
  generateConfig?(env: TransportEnvironment): GeneratedConfig | Promise<GeneratedConfig>;
}

/**
 * Build a {@linkcode Transport} from a config parser and a pair factory,
 * the common case for transports whose two sides differ only by role.
 *
 * @typeParam C The parsed configuration.
 * @param definition The name, parser and pair factory.
 * @returns The transport.
 * @throws {TypeError} When the name is not a C identifier.
 *
 * @example A transport that adds a fixed offset to every byte
 * ```ts
 * import { defineTransport } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const shift = (by: number) =>
 *   new TransformStream<Uint8Array, Uint8Array>({
 *     transform: (chunk, c) => c.enqueue(chunk.map((b) => (b + by) & 0xff)),
 *   });
 * const rot = defineTransport({
 *   name: "rot",
 *   parseConfig: (config) => Number(config.n ?? "13"),
 *   pair: (n) => ({ encode: shift(n), decode: shift(-n) }),
 * });
 * const client = await rot.client({ n: "1" });
 * const { encode } = client.pair({});
 * encode.writable.getWriter().write(new Uint8Array([1, 2]));
 * const { value } = await encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([2, 3]));
 * ```
 */
export function defineTransport<C>(definition: TransportDefinition<C>): Transport {
  const name = assertTransportName(definition.name);
  const transport: Transport = {
    name,
    async client(config: TransportOptions, env: TransportEnvironment = {}) {
      const parsed = await definition.parseConfig(checkOptions(name, config), "client", env);
      return {
        pair: (settings) => definition.pair(parsed, "client", checkOptions(name, settings)),
      };
    },
    async server(config: TransportOptions, env: TransportEnvironment = {}) {
      const parsed = await definition.parseConfig(checkOptions(name, config), "server", env);
      return {
        clientOptions: definition.clientOptions?.(parsed) ?? {},
        pair: () => definition.pair(parsed, "server", {}),
      };
    },
  };
  const generate = definition.generateConfig;
  if (generate !== undefined) {
    transport.generateConfig = (env: TransportEnvironment = {}) => generate(env);
  }
  return transport;
}

function checkOptions(name: string, options: unknown): TransportOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `Cannot configure transport '${name}': options must be an object of strings, got ${
        Array.isArray(options) ? "an array" : typeof options
      }`,
    );
  }
  for (const [key, value] of Object.entries(options)) {
    if (typeof value !== "string") {
      throw new TypeError(
        `Cannot configure transport '${name}': option '${key}' must be a string, got ${typeof value}`,
      );
    }
  }
  return options as TransportOptions;
}
