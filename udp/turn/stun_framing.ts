// Copyright the ptkit authors. MIT license.

/**
 * Split a byte stream into STUN messages and ChannelData frames (PT 2.0 "STUN-aware" framing:
 * STUN frames itself by its header length, ChannelData by its length padded to 4).
 *
 * The stream errors with a `SyntaxError` on a first byte that is neither STUN nor ChannelData
 * or a bad STUN header; memory stays bounded by one frame (at most 65555 bytes).
 *
 * @returns A transform from bytes to whole frames (ChannelData frames keep their padding).
 *
 * @example Splitting two frames
 * ```ts
 * import { createStunFrameSplitter } from "./stun_framing.ts";
 * import { encodeChannelData } from "./channel_data.ts";
 * import { strictEqual } from "node:assert";
 *
 * const a = encodeChannelData(0x4000, new Uint8Array(3), true);
 * const bytes = new Uint8Array([...a, ...a]);
 * const frames = await Array.fromAsync(
 *   ReadableStream.from([bytes.subarray(0, 5), bytes.subarray(5)])
 *     .pipeThrough(createStunFrameSplitter()),
 * );
 * strictEqual(frames.length, 2);
 * strictEqual(frames[1]?.length, 8);
 * ```
 */
export function createStunFrameSplitter(): TransformStream<Uint8Array, Uint8Array> {
  let buffer: Uint8Array = new Uint8Array(0);
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (buffer.length === 0) {
        buffer = chunk;
      } else {
        const joined = new Uint8Array(buffer.length + chunk.length);
        joined.set(buffer);
        joined.set(chunk, buffer.length);
        buffer = joined;
      }
      let offset = 0;
      while (buffer.length - offset >= 4) {
        const size = frameSize(buffer, offset);
        if (size === undefined) break;
        if (buffer.length - offset < size) break;
        controller.enqueue(buffer.slice(offset, offset + size));
        offset += size;
      }
      buffer = offset === 0 ? buffer : buffer.slice(offset);
    },
    flush() {
      if (buffer.length > 0) {
        throw new SyntaxError(
          `Cannot frame STUN stream: ${buffer.length} bytes of a truncated frame at the end`,
        );
      }
    },
  });
}

function frameSize(buffer: Uint8Array, offset: number): number | undefined {
  const first = buffer[offset]!;
  const length = (buffer[offset + 2]! << 8) | buffer[offset + 3]!;
  if ((first & 0xc0) === 0x40) return 4 + ((length + 3) & ~3);
  if ((first & 0xc0) !== 0) {
    throw new SyntaxError(
      `Cannot frame STUN stream: first byte 0x${
        first.toString(16).padStart(2, "0")
      } is neither STUN nor ChannelData`,
    );
  }
  if (length % 4 !== 0) {
    throw new SyntaxError(`Cannot frame STUN stream: STUN length ${length} is not a multiple of 4`);
  }
  if (buffer.length - offset < 8) return undefined;
  if (
    buffer[offset + 4] !== 0x21 || buffer[offset + 5] !== 0x12 || buffer[offset + 6] !== 0xa4 ||
    buffer[offset + 7] !== 0x42
  ) {
    throw new SyntaxError("Cannot frame STUN stream: magic cookie missing");
  }
  return 20 + length;
}
