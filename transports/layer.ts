// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type {
  ClientTransport,
  ServerTransport,
  Transport,
  TransportEnvironment,
  TransportOptions,
  TransportPair,
} from "./transport.ts";
import { assertTransportName } from "./transport_name.ts";

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
 * import { layerPairs, mapChunks } from "@ptkit/ptkit/transports";
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
  return {
    encode: chain(inner.encode, outer.encode),
    decode: chain(outer.decode, inner.decode),
    ...(ready === undefined ? {} : { ready }),
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
 * prefix, and a key naming no layer is refused.
 *
 * @param name The name of the stacked transport.
 * @param layers The transports, application side first.
 * @returns The stacked transport.
 * @throws {TypeError} When the name is invalid, `layers` is empty, or two
 * layers share a name.
 *
 * @example Plain over plain
 * ```ts
 * import { layerTransports } from "@ptkit/ptkit/transports";
 * import { plain } from "@ptkit/ptkit/transports/plain";
 * import { deepStrictEqual } from "node:assert";
 *
 * const stacked = layerTransports("plain2", [plain, { ...plain, name: "outer" }]);
 * const { encode } = (await stacked.client({})).pair({});
 * encode.writable.getWriter().write(new Uint8Array([7]));
 * const { value } = await encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([7]));
 * ```
 */
export function layerTransports(name: string, layers: readonly Transport[]): Transport {
  assertTransportName(name);
  if (layers.length === 0) {
    throw new TypeError(`Cannot layer transport '${name}': no layers given`);
  }
  const names = new Set(layers.map((t) => t.name));
  if (names.size !== layers.length) {
    throw new TypeError(`Cannot layer transport '${name}': two layers share a name`);
  }
  const split = (options: TransportOptions): TransportOptions[] => {
    const parts = layers.map(() => ({} as Record<string, string>));
    for (const [key, value] of Object.entries(options)) {
      const dot = key.indexOf(".");
      const index = layers.findIndex((t) => t.name === key.slice(0, dot));
      if (dot < 0 || index < 0) {
        throw new TypeError(
          `Cannot configure transport '${name}': option '${key}' names no layer (write <layer>.<key>)`,
        );
      }
      parts[index]![key.slice(dot + 1)] = value;
    }
    return parts;
  };
  const stack = (pairs: TransportPair[]): TransportPair => pairs.reduce((a, b) => layerPairs(a, b));
  return {
    name,
    async client(config: TransportOptions, env?: TransportEnvironment): Promise<ClientTransport> {
      const configs = split(config);
      const sides = await Promise.all(layers.map((t, i) => t.client(configs[i]!, env)));
      return {
        pair: (settings) => {
          const perLayer = split(settings);
          return stack(sides.map((side, i) => side.pair(perLayer[i]!)));
        },
      };
    },
    async server(config: TransportOptions, env?: TransportEnvironment): Promise<ServerTransport> {
      const configs = split(config);
      const sides = await Promise.all(layers.map((t, i) => t.server(configs[i]!, env)));
      const clientOptions: Record<string, string> = {};
      sides.forEach((side, i) => {
        for (const [key, value] of Object.entries(side.clientOptions)) {
          clientOptions[`${layers[i]!.name}.${key}`] = value;
        }
      });
      return { clientOptions, pair: () => stack(sides.map((side) => side.pair())) };
    },
  };
}
