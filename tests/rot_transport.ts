// Copyright the ptkit authors. MIT license.
// Test transport: the spec's rot_by_N. Every byte is shifted by N (mod 256) on
// the way out and back on the way in, so tests prove bytes really pass
// through the pair. A decoder given `fail` throws on the first chunk, for
// error tests.

import { defineTransport, mapChunks, type Transport } from "../transports/mod.ts";

// Encoding copies (the application may reuse its buffer); decoding works in
// place on the runtime's fresh read buffers.
function shift(n: number, inPlace: boolean): TransformStream<Uint8Array, Uint8Array> {
  return mapChunks((chunk) => {
    const out = inPlace ? chunk : new Uint8Array(chunk.byteLength);
    for (let i = 0; i < chunk.byteLength; i++) out[i] = (chunk[i]! + n) & 0xff;
    return out;
  });
}

/** rot_by_N with `n` (1-255) as its configuration; `poison=<byte>` makes decode throw on that byte. */
export const rot: Transport = defineTransport({
  name: "rot_by_N",
  parseConfig(config) {
    const n = Number(config.n ?? "13");
    if (!Number.isInteger(n) || n < 1 || n > 255) {
      throw new RangeError(
        `Cannot configure transport 'rot_by_N': n must be 1-255, got ${JSON.stringify(config.n)}`,
      );
    }
    const poison = config.poison === undefined ? -1 : Number(config.poison);
    return { n, poison };
  },
  clientOptions: ({ n }) => ({ n: String(n) }),
  pair({ n, poison }) {
    const decode = poison < 0 ? shift(256 - n, true) : new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        for (let i = 0; i < chunk.byteLength; i++) {
          const b = (chunk[i]! - n) & 0xff;
          if (b === poison) {
            throw new SyntaxError(
              `Cannot decode rot_by_N frame: poison byte 0x${b.toString(16)} at offset ${i}`,
            );
          }
        }
        controller.enqueue(chunk.map((b) => (b - n) & 0xff));
      },
    });
    return { encode: shift(n, false), decode };
  },
});
