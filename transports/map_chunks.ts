// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * A `TransformStream` that passes every chunk through `fn`: the building
 * block of stateless transports (one chunk in, one chunk out). Empty results
 * are dropped.
 *
 * @param fn Maps one chunk; it may reuse and return its argument. It must
 * return a `Uint8Array`: anything else errors the stream with a `TypeError`
 * (naming the type returned, not the value), which fails the connection.
 * @returns The transform stream.
 * @throws {TypeError} When `fn` is not a function.
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
  // Checked now: a value that is no function failed at the first chunk,
  // with JavaScript's 'fn is not a function', and ended that connection.
  if (typeof fn !== "function") {
    throw new TypeError(
      `Cannot make a mapChunks stream: expected a function, got ${typeName(fn)}`,
    );
  }
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const out: unknown = fn(chunk);
      if (!(out instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot map a chunk: the function given to mapChunks must return a Uint8Array, got ${
            typeName(out)
          }`,
        );
      }
      if (out.byteLength > 0) controller.enqueue(out);
    },
  });
}

/** A value's type, never its content: `undefined`, `number`, `ArrayBuffer`... */
function typeName(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  // The built-in tag (`Object.prototype.toString`): `Array`, `ArrayBuffer`, `Object`.
  const tag = Object.prototype.toString.call(value).slice(8, -1);
  return /^[A-Za-z]\w{0,63}$/.test(tag) ? tag : "object";
}
