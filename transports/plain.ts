// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * The identity transport: bytes cross the wire unchanged. Useful as a
 * baseline, for tests, and under a layered transport.
 *
 * @module
 */

import type { Transport, TransportPair } from "./transport.ts";
import { defineTransport } from "./define_transport.ts";
import { type DirectPair, DirectTransform, pairOfDirect } from "./_direct_pair.ts";

/**
 * The `plain` transport: no configuration, no handshake, bytes unchanged.
 * It knows no option key: any option is ignored and reported to
 * `env.onIgnoredOption`.
 *
 * @example Bytes through a `plain` pair, unchanged; an option ignored and reported
 * ```ts
 * import { type IgnoredOption, plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const ignored: IgnoredOption[] = [];
 * const client = await plain.client({ color: "blue" }, { onIgnoredOption: (i) => ignored.push(i) });
 * deepStrictEqual(ignored, [{ transport: "plain", key: "color" }]);
 * const { encode } = client.pair({});
 * encode.writable.getWriter().write(new Uint8Array([1, 2, 3]));
 * const { value } = await encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([1, 2, 3]));
 * ```
 */
export const plain: Transport = defineTransport({
  name: "plain",
  optionKeys: { client: [], server: [] },
  parseConfig: (): void => {},
  pair: identityPair,
});

/** Passes each chunk on as it is. */
const IDENTITY: Transformer<Uint8Array, Uint8Array> = {
  transform: (chunk, controller) => controller.enqueue(chunk),
};

/**
 * Two identity transforms. Their streams (what `new TransformStream()`
 * gives: a readable high-water mark of 0) are made when first asked for;
 * a transport connection runs them without (DIRECT_PAIR): two
 * TransformStreams cost each chunk, both ways, a stream hop of promises
 * and queue entries, about 3% of a transparent-UDP PT's CPU time.
 */
function identityPair(): TransportPair {
  const direct: DirectPair = {
    encode: new DirectTransform(IDENTITY, 0),
    decode: new DirectTransform(IDENTITY, 0),
    passesChunks: true,
  };
  return pairOfDirect(direct, "a plain pair");
}
