// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * The identity transport: bytes cross the wire unchanged. Useful as a
 * baseline, for tests, and under a layered transport.
 *
 * @module
 */

import type { Transport, TransportOptions } from "./transport.ts";
import { defineTransport } from "./define_transport.ts";

/**
 * The `plain` transport: no configuration, no handshake, bytes unchanged.
 * Unknown options are refused so that a typo in a bridge line is noticed.
 *
 * @example Dialing through `plain`
 * ```ts
 * import { plain } from "@ptkit/ptkit/transports/plain";
 * import { deepStrictEqual } from "node:assert";
 *
 * const { encode } = (await plain.client({})).pair({});
 * encode.writable.getWriter().write(new Uint8Array([1, 2, 3]));
 * const { value } = await encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([1, 2, 3]));
 * ```
 */
export const plain: Transport = defineTransport({
  name: "plain",
  parseConfig(config: TransportOptions): void {
    const keys = Object.keys(config);
    if (keys.length > 0) {
      throw new TypeError(
        `Cannot configure transport 'plain': unknown option '${keys[0]}' (it takes none)`,
      );
    }
  },
  pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
});
