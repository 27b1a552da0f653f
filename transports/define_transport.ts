// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { checkTransportPair } from "./_pair.ts";
import type {
  ClientTransport,
  GeneratedConfig,
  HostPort,
  ServerTransport,
  Transport,
  TransportEnvironment,
  TransportOptionKeys,
  TransportOptions,
  TransportPair,
} from "./transport.ts";
import { assertTransportName } from "./_transport_name.ts";
import { dropUnknownOptions } from "./_option_keys.ts";
import { checkOptionType } from "./_factory_options.ts";

/** Which side of a connection a pair serves. */
type TransportRole = "client" | "server";

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
   * The option keys each side understands. When given, other keys are
   * dropped before `parseConfig` and `pair` see them and reported to
   * `env.onIgnoredOption` (with a "did you mean" hint for near misses), so
   * a bridge line with keys for other implementations still works. When
   * absent, `parseConfig` and `pair` see every key.
   */
  readonly optionKeys?: Transport["optionKeys"];
  /**
   * A free transport: client pairs get each connection's destination and
   * server pairs report theirs (see {@linkcode Transport.free}). Defaults to
   * false; a free transport's client side refuses a pair without a
   * destination (`TypeError`).
   */
  readonly free?: boolean;
  /**
   * The server side's TCP keepalive in seconds (see
   * {@linkcode ServerTransport.keepAlive}): an integer from 1 to 32767,
   * Linux's limit for `TCP_KEEPIDLE` and `TCP_KEEPINTVL`. Defaults to none.
   */
  readonly serverKeepAlive?: number;
  /**
   * Validate and parse a configuration; throw a `TypeError` or `RangeError`
   * naming the bad value (a missing required key, a malformed value). Runs
   * once per side, not per connection.
   */
  parseConfig(
    config: TransportOptions,
    role: "client" | "server",
    env: TransportEnvironment,
  ): C | Promise<C>;
  /**
   * Make the pair for one connection.
   *
   * @param config The parsed configuration.
   * @param role The side this pair serves.
   * @param settings Per-connection settings (always empty on the server).
   * @param destination A free transport's client: where the connection goes
   * (always given then). Otherwise `undefined`.
   * @returns The pair, at once (not a promise): anything but an object with
   * `encode` and `decode` streams (or one whose `ready`, `destination` or
   * `clientAddress` is given and not a promise) makes the side's `pair()`
   * throw a `TypeError` saying what is wrong, before any byte is sent. Its
   * `ready` may wait for the peer's bytes without watching for the end of
   * stream: a peer that closes first fails the handshake at once (see
   * `TransportPair.ready`), not at the runtime's handshake deadline.
   */
  pair(
    config: C,
    role: "client" | "server",
    settings: TransportOptions,
    destination?: HostPort,
  ): TransportPair;
  /**
   * The client arguments that reach a server with configuration `config`:
   * an object of strings (anything else makes the server side's
   * configuration fail with a `TypeError`). Defaults to none.
   */
  clientOptions?(config: C): TransportOptions;
  /**
   * Client side: how to make the network connection (another host, TLS),
   * when not plain TCP to the destination. See `ClientTransport.connection`.
   *
   * @param config The parsed configuration.
   * @param destination Where the application asked to go.
   * @param settings Per-connection settings (unknown keys dropped).
   */
  connection?(
    config: C,
    destination: HostPort,
    settings: TransportOptions,
  ): ReturnType<NonNullable<ClientTransport["connection"]>>;
  /**
   * Server side: the address bridge lines carry instead of the listen
   * address. See `ServerTransport.bridgeAddress`.
   */
  bridgeAddress?(config: C): HostPort;
  /** Generate a matching client and server configuration. */
  generateConfig?(env: TransportEnvironment): GeneratedConfig | Promise<GeneratedConfig>;
  /**
   * Release what a side configured with `config` holds beyond its
   * connections, when its connector or listener closes. See
   * `ClientTransport.close` and `ServerTransport.close`.
   */
  close?(config: C, role: "client" | "server"): void;
}

/**
 * Build a {@linkcode Transport} from a config parser and a pair factory,
 * the common case for transports whose two sides differ only by role.
 * Options must be objects of strings; with `optionKeys`, unknown keys are
 * ignored and reported (see {@linkcode TransportDefinition.optionKeys}).
 *
 * @typeParam C The parsed configuration.
 * @param definition The name, parser and pair factory.
 * @returns The transport.
 * @throws {TypeError} When the definition is not an object, its name is not
 * a C identifier, `parseConfig` or `pair` is missing, a member that is given
 * is not of its type (a function; `optionKeys` arrays of strings;
 * `serverKeepAlive` a number; `free` a boolean).
 * @throws {RangeError} When `serverKeepAlive` is not an integer from 1 to
 * 32767 (the kernel would refuse it, and accepted sockets would have no
 * keepalive).
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
 *
 * @example Ignoring and reporting keys the transport does not know
 * ```ts
 * import { defineTransport, type IgnoredOption } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const seen: string[] = [];
 * const tagged = defineTransport({
 *   name: "tagged",
 *   optionKeys: { client: ["tag"], server: ["tag"] },
 *   parseConfig: (config) => {
 *     seen.push(Object.keys(config).join());
 *     return config.tag ?? "";
 *   },
 *   pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
 * });
 * const ignored: IgnoredOption[] = [];
 * await tagged.client({ tag: "a", Tag2: "b" }, { onIgnoredOption: (i) => ignored.push(i) });
 * deepStrictEqual(seen, ["tag"]);
 * deepStrictEqual(ignored, [{ transport: "tagged", key: "Tag2", suggestion: "tag" }]);
 * ```
 */
export function defineTransport<C>(definition: TransportDefinition<C>): Transport {
  if (typeof definition !== "object" || definition === null) {
    throw new TypeError(
      `Cannot define a transport: the definition must be an object, got ${
        definition === null ? "null" : typeof definition
      }`,
    );
  }
  const name = assertTransportName(definition.name);
  // Checked here, not at the first connection: a definition missing
  // parseConfig or pair failed later with JavaScript's own
  // 'definition.pair is not a function'.
  for (const member of FUNCTION_MEMBERS) {
    const value = definition[member];
    if (typeof value !== "function" && (value !== undefined || REQUIRED_MEMBERS.has(member))) {
      throw new TypeError(
        `Cannot define transport '${name}': ${member} must be a function, got ${
          value === null ? "null" : typeof value
        }`,
      );
    }
  }
  // free: "yes" was taken as a bound transport, silently.
  checkOptionType(definition.free, "boolean", "free", `define transport '${name}'`);
  const optionKeys = definition.optionKeys;
  if (optionKeys !== undefined) checkOptionKeys(name, optionKeys);
  const keepAlive = definition.serverKeepAlive;
  if (keepAlive !== undefined && typeof keepAlive !== "number") {
    throw new TypeError(
      `Cannot define transport '${name}': serverKeepAlive must be a number of seconds, got ${
        keepAlive === null ? "null" : typeof keepAlive
      }`,
    );
  }
  if (
    keepAlive !== undefined &&
    !(Number.isInteger(keepAlive) && keepAlive >= 1 && keepAlive <= MAX_KEEPALIVE_SECONDS)
  ) {
    throw new RangeError(
      `Cannot define transport '${name}': invalid serverKeepAlive ${keepAlive}: must be an integer number of seconds in 1-${MAX_KEEPALIVE_SECONDS}`,
    );
  }
  const keys = optionKeys;
  const known = (
    options: unknown,
    side: keyof TransportOptionKeys,
    env: TransportEnvironment,
  ): TransportOptions => {
    const checked = checkOptions(name, options);
    const other = side === "client" ? "server" : "client";
    return keys === undefined ? checked : dropUnknownOptions(checked, keys[side], {
      transport: name,
      ...(env.onIgnoredOption === undefined ? {} : { onIgnored: env.onIgnoredOption }),
      otherSide: { name: other, keys: keys[other] },
    });
  };
  const free = definition.free === true;
  const transport: Transport = {
    name,
    ...(free ? { free } : {}),
    ...(keys === undefined
      ? {}
      : { optionKeys: { client: [...keys.client], server: [...keys.server] } }),
    async client(config: TransportOptions, env: TransportEnvironment = {}) {
      const parsed = await definition.parseConfig(known(config, "client", env), "client", env);
      const side: ClientTransport = {
        pair: (settings, destination) => {
          const pair = free
            ? definition.pair(
              parsed,
              "client",
              known(settings, "client", env),
              checkDestination(name, destination),
            )
            : definition.pair(parsed, "client", known(settings, "client", env));
          return checkTransportPair(name, pair);
        },
      };
      const connection = definition.connection;
      if (connection !== undefined) {
        // The runtime asks for the plan and the pair of each connection:
        // its unknown settings are reported once, by `pair`; the plan sees
        // the known ones quietly (as layerTransports does).
        side.connection = (destination, settings) =>
          connection(parsed, destination, known(settings, "client", {}));
      }
      const close = definition.close;
      if (close !== undefined) side.close = () => close(parsed, "client");
      return side;
    },
    async server(config: TransportOptions, env: TransportEnvironment = {}) {
      const parsed = await definition.parseConfig(known(config, "server", env), "server", env);
      const bridgeAddress = definition.bridgeAddress?.(parsed);
      const side: ServerTransport = {
        clientOptions: definition.clientOptions === undefined
          ? {}
          : checkClientOptions(name, definition.clientOptions(parsed)),
        ...(bridgeAddress === undefined ? {} : { bridgeAddress }),
        ...(keepAlive === undefined ? {} : { keepAlive }),
        pair: () => checkTransportPair(name, definition.pair(parsed, "server", {})),
      };
      const close = definition.close;
      if (close !== undefined) side.close = () => close(parsed, "server");
      return side;
    },
  };
  const generate = definition.generateConfig;
  if (generate !== undefined) {
    // Checked as clientOptions() is: what it returns is handed to sides,
    // stacks and operators as it is. A promise stays a promise.
    transport.generateConfig = (env: TransportEnvironment = {}) => {
      const generated = generate(env);
      return typeof (generated as { then?: unknown } | undefined)?.then === "function"
        ? Promise.resolve(generated).then((config) => checkGeneratedConfig(name, config))
        : checkGeneratedConfig(name, generated);
    };
  }
  return transport;
}

/**
 * What a definition's `clientOptions()` returned, checked when the server
 * side is configured: a value of another type (`{ k: 5 }`, a forgotten
 * `return`) was offered to clients (the listener's `clientOptions`, the
 * SMETHOD line's ARGS) and failed only at a client, or was taken as none.
 */
function checkClientOptions(name: string, options: unknown): TransportOptions {
  return checkStringOptions(
    `Cannot configure transport '${name}': clientOptions() returned`,
    "",
    options,
  );
}

/**
 * What a definition's `generateConfig()` returned: `{ client, server }`,
 * each an object of strings. A value of another type was handed on as it
 * was, and a layered stack failed with JavaScript's own error.
 */
function checkGeneratedConfig(name: string, generated: unknown): GeneratedConfig {
  const what = `Cannot generate a configuration for transport '${name}': generateConfig() returned`;
  if (typeof generated !== "object" || generated === null || Array.isArray(generated)) {
    throw new TypeError(`${what} ${describeValue(generated)}, not { client, server }`);
  }
  const { client, server } = generated as { client?: unknown; server?: unknown };
  return {
    client: checkStringOptions(what, "client ", client),
    server: checkStringOptions(what, "server ", server),
  };
}

function describeValue(value: unknown): string {
  return Array.isArray(value) ? "an array" : value === null ? "null" : typeof value;
}

/** Check an object of strings; `side` ("client ", "server " or "") names it in the message. */
function checkStringOptions(what: string, side: string, options: unknown): TransportOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${what} ${side}${describeValue(options)}, not an object of strings`);
  }
  for (const [key, value] of Object.entries(options)) {
    if (typeof value !== "string") {
      throw new TypeError(
        `${what} ${side}option '${key}' ${
          value === null
            ? "as null"
            : `as ${/^[aeiou]/.test(typeof value) ? "an" : "a"} ${typeof value}`
        }, not a string`,
      );
    }
  }
  return options as TransportOptions;
}

/** The members of a {@linkcode TransportDefinition} that are functions. */
const FUNCTION_MEMBERS = [
  "parseConfig",
  "pair",
  "clientOptions",
  "connection",
  "bridgeAddress",
  "generateConfig",
  "close",
] as const;

/** The function members a definition must have. */
const REQUIRED_MEMBERS: ReadonlySet<string> = new Set(["parseConfig", "pair"]);

/**
 * `optionKeys` must be `{ client, server }`, arrays of strings: a string
 * given for an array was spread into its letters, and a key dropped as
 * unknown.
 */
function checkOptionKeys(name: string, keys: unknown): void {
  const shape = `optionKeys must be { client: string[], server: string[] }`;
  if (typeof keys !== "object" || keys === null) {
    throw new TypeError(
      `Cannot define transport '${name}': ${shape}, got ${keys === null ? "null" : typeof keys}`,
    );
  }
  for (const side of ["client", "server"] as const) {
    const list: unknown = (keys as Record<string, unknown>)[side];
    if (!Array.isArray(list) || !list.every((key) => typeof key === "string")) {
      throw new TypeError(
        `Cannot define transport '${name}': ${shape}; optionKeys.${side} is ${
          Array.isArray(list)
            ? "an array holding something other than strings"
            : list === null
            ? "null"
            : typeof list
        }`,
      );
    }
  }
}

/** Linux's largest `TCP_KEEPIDLE` and `TCP_KEEPINTVL` (`MAX_TCP_KEEPIDLE`). */
const MAX_KEEPALIVE_SECONDS = 32767;

function checkDestination(
  name: string,
  destination: HostPort | undefined,
): HostPort {
  if (typeof destination !== "object" || destination === null) {
    throw new TypeError(
      `Cannot make a '${name}' connection: a free transport needs a destination, got ${
        destination === null ? "null" : typeof destination
      }`,
    );
  }
  const { hostname, port } = destination;
  if (typeof hostname !== "string" || hostname === "") {
    // Where the application's connection goes is its own: the message names
    // the type only.
    throw new TypeError(
      `Cannot make a '${name}' connection: invalid destination hostname: expected a non-empty string, got ${
        hostname === "" ? "an empty string" : hostname === null ? "null" : typeof hostname
      }`,
    );
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(
      `Cannot make a '${name}' connection: invalid destination port ${port}: expected 1-65535`,
    );
  }
  return { hostname, port };
}

/**
 * Check a transport's options (a configuration, per-connection settings, a
 * PT's arguments): an object whose values are strings. The message names
 * the key, never a value (it may be a secret). Internal.
 *
 * @param name The transport's name, for the message.
 * @param options What the caller gave.
 * @returns `options`, typed.
 * @throws {TypeError} When it is not an object of strings.
 */
export function checkOptions(name: string, options: unknown): TransportOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `Cannot configure transport '${name}': options must be an object of strings, got ${
        Array.isArray(options) ? "an array" : options === null ? "null" : typeof options
      }`,
    );
  }
  const { client, server } = options as Record<string, unknown>;
  if (
    typeof client === "object" && client !== null && typeof server === "object" && server !== null
  ) {
    throw new TypeError( // Both halves of a GeneratedConfig, given as one side's options.
      `Cannot configure transport '${name}': options must be an object of strings, got` +
        " generateConfig()'s { client, server }: give the server side its .server and the client side its .client",
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
