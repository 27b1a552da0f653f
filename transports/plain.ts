// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * The identity transport: bytes cross the wire unchanged. Useful as a
 * baseline, for tests, and under a layered transport.
 *
 * @module
 */

import type { Transport } from "./transport.ts";
import { defineTransport } from "./define_transport.ts";

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
  pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
});
