// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type {
  ClientTransport,
  GeneratedConfig,
  ServerTransport,
  Transport,
  TransportEnvironment,
  TransportOptionKeys,
  TransportOptions,
  TransportPair,
} from "./transport.ts";
import { assertTransport, assertTransportName } from "./_transport_name.ts";
import { suggestOptionKey } from "./_option_keys.ts";

/**
 * Compose two pairs into one: application bytes go through `inner`, then
 * through `outer`, then onto the wire (and the reverse on the way in).
 *
 * @param inner The pair nearer the application.
 * @param outer The pair nearer the wire.
 * @returns The composed pair.
 *
 * @example A pair over a pair
 * ```ts
 * import { mapChunks } from "@ptkit/ptkit/transports";
 * import { layerPairs } from "./layer.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const add = (n: number) => mapChunks((c) => c.map((b) => (b + n) & 0xff));
 * const pair = layerPairs(
 *   { encode: add(1), decode: add(-1) },
 *   { encode: add(10), decode: add(-10) },
 * );
 * pair.encode.writable.getWriter().write(new Uint8Array([0]));
 * const { value } = await pair.encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([11]));
 * ```
 */
export function layerPairs(inner: TransportPair, outer: TransportPair): TransportPair {
  const ready = inner.ready === undefined
    ? outer.ready
    : outer.ready === undefined
    ? inner.ready
    : Promise.all([outer.ready, inner.ready]).then(() => {});
  // The layer nearest the wire knows the client's address best.
  const clientAddress = outer.clientAddress === undefined
    ? inner.clientAddress
    : inner.clientAddress === undefined
    ? outer.clientAddress
    : Promise.all([outer.clientAddress, inner.clientAddress]).then(([o, i]) => o ?? i);
  return {
    encode: chain(inner.encode, outer.encode),
    decode: chain(outer.decode, inner.decode),
    ...(ready === undefined ? {} : { ready }),
    ...(clientAddress === undefined ? {} : { clientAddress }),
    // A free transport's destination travels in the inner layer's stream.
    ...(inner.destination === undefined ? {} : { destination: inner.destination }),
    // Probes meet the wire layer, or the inner one through a wire layer
    // without a handshake of its own: held as long as that layer holds them.
    ...(outer.holdsProbes === true || (outer.ready === undefined && inner.holdsProbes === true)
      ? { holdsProbes: true }
      : {}),
  };
}

function chain(
  first: TransformStream<Uint8Array, Uint8Array>,
  second: TransformStream<Uint8Array, Uint8Array>,
): TransformStream<Uint8Array, Uint8Array> {
  // pipeTo propagates close, errors and cancellation both ways.
  first.readable.pipeTo(second.writable).catch(() => {});
  return { writable: first.writable, readable: second.readable } as TransformStream<
    Uint8Array,
    Uint8Array
  >;
}

/**
 * Stack transports into one named transport: the first is nearest the
 * application, the last nearest the wire. Options for layer `x` are written
 * with the prefix `x.` (`rot.n=3`); each layer sees its own keys without the
 * prefix. A key naming no layer is ignored and reported to
 * `env.onIgnoredOption` (as are keys a layer does not know, with their
 * prefix), never refused. How the connection is made (a
 * connection plan: another host, TLS) and the bridge address come from the
 * layer nearest the wire that declares them, so obfs4 inside WebTunnel
 * dials WebTunnel's URL. When the first layer is free (`shadowsocks`),
 * so is the stack: its client pairs hand that layer the destination, its
 * server pairs report that layer's (Shadowsocks over obfs4). When every
 * layer can generate a configuration (`generateConfig`), so can the stack:
 * each layer's, its keys written with the layer's prefix. A layer that
 * refuses its options makes the stack's `client` or `server` throw an error
 * of the same class (`TypeError`, `RangeError`) naming the stack and the
 * layer, whose name is its keys' prefix (`shadowsocks.password`), the
 * layer's own error its `cause`.
 *
 * @param name The name of the stacked transport.
 * @param layers The transports, application side first.
 * @returns The stacked transport.
 * @throws {TypeError} When the name is invalid, `layers` is not an array of
 * transports or is empty, two layers share a name, or a layer other than the
 * first is free.
 *
 * @example Plain over plain
 * ```ts
 * import { layerTransports } from "@ptkit/ptkit/transports";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const stacked = layerTransports("plain2", [plain, { ...plain, name: "outer" }]);
 * const { encode } = (await stacked.client({})).pair({});
 * encode.writable.getWriter().write(new Uint8Array([7]));
 * const { value } = await encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([7]));
 * ```
 *
 * @example A key without a layer prefix is ignored and reported
 * ```ts
 * import { type IgnoredOption, layerTransports } from "@ptkit/ptkit/transports";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const stacked = layerTransports("plain2", [plain, { ...plain, name: "outer" }]);
 * const ignored: IgnoredOption[] = [];
 * await stacked.client({ color: "blue" }, { onIgnoredOption: (i) => ignored.push(i) });
 * deepStrictEqual(ignored, [{ transport: "plain2", key: "color" }]);
 * ```
 *
 * @example Generating a configuration for Shadowsocks over obfs4
 * ```ts
 * import { layerTransports } from "@ptkit/ptkit/transports";
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { shadowsocks } from "@ptkit/ptkit/transports/shadowsocks";
 * import { listen } from "@ptkit/ptkit/server";
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { deepStrictEqual } from "node:assert";
 *
 * const stacked = layerTransports("ss_obfs4", [shadowsocks, obfs4]);
 * const config = await stacked.generateConfig!();
 * deepStrictEqual(Object.keys(config.client).sort(), [
 *   "obfs4.cert",
 *   "obfs4.iat-mode",
 *   "shadowsocks.key",
 *   "shadowsocks.method",
 * ]);
 * await using listener = await listen(stacked, config.server, { hostname: "127.0.0.1", port: 0 });
 * await using connector = await createConnector(stacked, config.client);
 * deepStrictEqual(connector.name, "ss_obfs4");
 * ```
 */
export function layerTransports(name: string, layers: readonly Transport[]): Transport {
  assertTransportName(name);
  // An array of transports: anything else failed with JavaScript's own
  // 'layers.slice is not a function' or 'Cannot read properties of null'.
  if (!Array.isArray(layers as unknown)) {
    throw new TypeError(
      `Cannot layer transport '${name}': layers must be an array of transports, got ${
        layers === null ? "null" : typeof layers
      }`,
    );
  }
  if (layers.length === 0) {
    throw new TypeError(`Cannot layer transport '${name}': no layers given`);
  }
  layers.forEach((layer, i) => assertTransport(layer, `layer transport '${name}' (layer ${i})`));
  // Each message names the layer (by index and name), not only the rule.
  const free = layers.findIndex((t, i) => i > 0 && t.free);
  if (free > 0) {
    throw new TypeError(
      `Cannot layer transport '${name}': layer ${free} ('${
        layers[free]!.name
      }') is free; only the first (innermost) layer may be`,
    );
  }
  const first = new Map<string, number>();
  layers.forEach((layer, i) => {
    const earlier = first.get(layer.name);
    if (earlier !== undefined) {
      throw new TypeError(
        `Cannot layer transport '${name}': layers ${earlier} and ${i} share the name '${layer.name}' (give one another, as { ...${layer.name}, name: 'outer' })`,
      );
    }
    first.set(layer.name, i);
  });
  const prefixed = (side: keyof TransportOptionKeys): string[] =>
    layers.flatMap((t) => (t.optionKeys?.[side] ?? []).map((key) => `${t.name}.${key}`));
  const optionKeys: TransportOptionKeys | undefined =
    layers.every((t) => t.optionKeys !== undefined)
      ? { client: prefixed("client"), server: prefixed("server") }
      : undefined;
  const split = (
    options: TransportOptions,
    side: keyof TransportOptionKeys,
    env: TransportEnvironment | undefined,
  ): TransportOptions[] => {
    const parts = layers.map(() => ({} as Record<string, string>));
    for (const [key, value] of Object.entries(options)) {
      const dot = key.indexOf(".");
      const index = dot < 0 ? -1 : layers.findIndex((t) => t.name === key.slice(0, dot));
      if (index >= 0) {
        parts[index]![key.slice(dot + 1)] = value;
        continue;
      }
      // A layer's own key written without its prefix, else a near miss.
      const owner = layers.find((t) => t.optionKeys?.[side].includes(key));
      const suggestion = owner !== undefined
        ? `${owner.name}.${key}`
        : suggestOptionKey(key, prefixed(side));
      env?.onIgnoredOption?.(
        suggestion === undefined ? { transport: name, key } : { transport: name, key, suggestion },
      );
    }
    return parts;
  };
  // Each layer reports its unknown keys as keys of the stacked transport.
  const layerEnv = (
    layer: Transport,
    env: TransportEnvironment | undefined,
  ): TransportEnvironment | undefined => {
    const report = env?.onIgnoredOption;
    if (report === undefined) return env;
    return {
      ...env,
      onIgnoredOption: (ignored) =>
        report({
          transport: name,
          key: `${layer.name}.${ignored.key}`,
          ...(ignored.suggestion === undefined
            ? {}
            : { suggestion: `${layer.name}.${ignored.suggestion}` }),
        }),
    };
  };
  const stack = (pairs: TransportPair[]): TransportPair => pairs.reduce((a, b) => layerPairs(a, b));
  // Every layer's `close` runs, even after one throws (the first error is
  // the caller's): a layer's replay-filter subscription or timers go too.
  const closeAll = (sides: readonly { close?: () => void }[]) => () => {
    let failure: { error: unknown } | undefined;
    for (const side of sides) {
      try {
        side.close?.();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure !== undefined) throw failure.error;
  };
  // Each layer's configuration, its keys under the layer's prefix (as
  // `split` reads them back).
  const generators = layers.map((t) => t.generateConfig?.bind(t));
  const generateConfig = generators.every((g) => g !== undefined)
    ? async (env?: TransportEnvironment): Promise<GeneratedConfig> => {
      const generated = await Promise.all(
        generators.map(async (generate, i) => await generate!(layerEnv(layers[i]!, env))),
      );
      const client: Record<string, string> = {};
      const server: Record<string, string> = {};
      generated.forEach((config, i) => {
        const prefix = `${layers[i]!.name}.`;
        for (const [key, value] of Object.entries(config.client)) client[prefix + key] = value;
        for (const [key, value] of Object.entries(config.server)) server[prefix + key] = value;
      });
      return { client, server };
    }
    : undefined;
  return {
    name,
    ...(layers[0]!.free ? { free: true } : {}),
    ...(optionKeys === undefined ? {} : { optionKeys }),
    ...(generateConfig === undefined ? {} : { generateConfig }),
    async client(config: TransportOptions, env?: TransportEnvironment): Promise<ClientTransport> {
      const configs = split(config, "client", env);
      const sides = await allOrClose(
        // async: a layer that throws at once is a refusal like a rejection.
        layers.map(async (t, i) =>
          await inLayer(name, t.name, async () => await t.client(configs[i]!, layerEnv(t, env)))
        ),
      );
      const result: ClientTransport = {
        close: closeAll(sides),
        pair: (settings, destination) => {
          const perLayer = split(settings, "client", env);
          return stack(
            sides.map((side, i) => side.pair(perLayer[i]!, i === 0 ? destination : undefined)),
          );
        },
      };
      const planner = sides.findLastIndex((side) => side.connection !== undefined);
      if (planner >= 0) {
        const side = sides[planner]!;
        // Each connection's settings are split (and unknown keys reported)
        // once, in `pair`; the plan sees its layer's share quietly.
        result.connection = (destination, settings) =>
          side.connection!(destination, split(settings, "client", undefined)[planner]!);
      }
      return result;
    },
    async server(config: TransportOptions, env?: TransportEnvironment): Promise<ServerTransport> {
      const configs = split(config, "server", env);
      const sides = await allOrClose(
        // async: a layer that throws at once is a refusal like a rejection.
        layers.map(async (t, i) =>
          await inLayer(name, t.name, async () => await t.server(configs[i]!, layerEnv(t, env)))
        ),
      );
      const clientOptions: Record<string, string> = {};
      sides.forEach((side, i) => {
        for (const [key, value] of Object.entries(side.clientOptions)) {
          clientOptions[`${layers[i]!.name}.${key}`] = value;
        }
      });
      const bridgeAddress = sides.findLast((side) => side.bridgeAddress !== undefined)
        ?.bridgeAddress;
      // The socket is the wire layer's: its keepalive, if it has one.
      const keepAlive = sides.at(-1)?.keepAlive;
      return {
        clientOptions,
        ...(bridgeAddress === undefined ? {} : { bridgeAddress }),
        ...(keepAlive === undefined ? {} : { keepAlive }),
        pair: () => stack(sides.map((side) => side.pair())),
        close: closeAll(sides),
      };
    },
  };
}

/**
 * Configure one layer; a refusal of its options (a `TypeError`,
 * `RangeError` or `SyntaxError`) is thrown again, of the same class with
 * the layer's error as its `cause`, naming the stack and the layer (the
 * prefix of its keys): the layer's own message names `password` where the
 * user wrote (or left out) `shadowsocks.password`. How the keys are written
 * is not said: a program that builds the stack from options of its own
 * (main.ts client from an ss:// link's `cert=`) words them itself.
 */
async function inLayer<S>(stack: string, layer: string, make: () => Promise<S>): Promise<S> {
  try {
    return await make();
  } catch (error) {
    const Class = error instanceof RangeError
      ? RangeError
      : error instanceof SyntaxError
      ? SyntaxError
      : error instanceof TypeError
      ? TypeError
      : undefined;
    if (Class === undefined) throw error;
    throw new Class(
      `Cannot configure transport '${stack}': its layer '${layer}' refused its options: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
}

/**
 * Every layer's side, once all are configured. When one refuses its
 * configuration, the others are waited for and those made are closed (a
 * refill timer, a key-pair worker, a replay filter do not outlive the
 * refusal); the first refusal, in layer order, is thrown.
 */
async function allOrClose<S extends { close?: () => void }>(
  making: readonly (S | Promise<S>)[],
): Promise<S[]> {
  const settled = await Promise.allSettled(making);
  const failed = settled.find((result) => result.status === "rejected");
  if (failed === undefined) {
    return settled.map((result) => (result as PromiseFulfilledResult<S>).value);
  }
  for (const result of settled) {
    if (result.status !== "fulfilled") continue;
    try {
      result.value.close?.();
    } catch {
      // The refusal is the caller's error.
    }
  }
  throw failed.reason;
}
