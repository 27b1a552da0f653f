// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * A `TransformStream` that passes every chunk through `fn`: the building
 * block of stateless transports (one chunk in, one chunk out). Empty results
 * are dropped.
 *
 * @param fn Maps one chunk; it may reuse and return its argument.
 * @returns The transform stream.
 *
 * @example Inverting every byte
 * ```ts
 * import { mapChunks } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const invert = mapChunks((chunk) => chunk.map((b) => 255 - b));
 * invert.writable.getWriter().write(new Uint8Array([0, 255]));
 * const { value } = await invert.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([255, 0]));
 * ```
 */
export function mapChunks(
  fn: (chunk: Uint8Array) => Uint8Array,
): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const out = fn(chunk);
      if (out.byteLength > 0) controller.enqueue(out);
    },
  });
}
