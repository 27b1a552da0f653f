// Copyright the ptkit authors. MIT license.

/** A parsed ChannelData message. */
export interface ChannelData {
  /** Channel number, 0x4000-0x7FFF on the wire (0x4000-0x4FFF valid per RFC 8656). */
  readonly channel: number;
  /** The application data (a view into the input). */
  readonly data: Uint8Array;
}

/**
 * Tell whether a datagram starts like ChannelData (first two bits 01).
 *
 * @param bytes The datagram.
 * @returns True for ChannelData.
 *
 * @example Detecting ChannelData
 * ```ts
 * import { isChannelData } from "./_channel_data.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(isChannelData(new Uint8Array([0x40, 0, 0, 0])), true);
 * ```
 */
export function isChannelData(bytes: Uint8Array): boolean {
  return bytes.length >= 1 && (bytes[0]! & 0xc0) === 0x40;
}

/**
 * Parse a ChannelData message; trailing bytes (padding) are allowed.
 *
 * @param bytes The datagram.
 * @returns Channel and data.
 * @throws {SyntaxError} When shorter than 4 + length or not ChannelData.
 *
 * @example Parsing padded ChannelData
 * ```ts
 * import { encodeChannelData, parseChannelData } from "./_channel_data.ts";
 * import { strictEqual, throws } from "node:assert";
 *
 * const bytes = encodeChannelData(0x4001, new Uint8Array(5), true);
 * strictEqual(bytes.length, 12);
 * strictEqual(parseChannelData(bytes).data.length, 5);
 * throws(() => parseChannelData(bytes.subarray(0, 6)), SyntaxError);
 * ```
 */
export function parseChannelData(bytes: Uint8Array): ChannelData {
  if (bytes.length < 4 || !isChannelData(bytes)) {
    throw new SyntaxError(`Cannot parse ChannelData: not ChannelData (${bytes.length} bytes)`);
  }
  const channel = (bytes[0]! << 8) | bytes[1]!;
  const length = (bytes[2]! << 8) | bytes[3]!;
  if (4 + length > bytes.length) {
    throw new SyntaxError(
      `Cannot parse ChannelData: length ${length} runs past the end (${bytes.length - 4} bytes)`,
    );
  }
  return { channel, data: bytes.subarray(4, 4 + length) };
}

/**
 * Encode a ChannelData message.
 *
 * @param channel The channel number.
 * @param data The data, at most 65535 bytes.
 * @param pad Pad to a multiple of 4 (required on byte streams).
 * @returns The message bytes.
 * @throws {RangeError} On a bad channel number or oversized data.
 *
 * @example Unpadded
 * ```ts
 * import { encodeChannelData } from "./_channel_data.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(encodeChannelData(0x4000, new Uint8Array(5)).length, 9);
 * ```
 */
export function encodeChannelData(channel: number, data: Uint8Array, pad = false): Uint8Array {
  if (!Number.isInteger(channel) || channel < 0x4000 || channel > 0x7fff) {
    throw new RangeError(`Cannot encode ChannelData: bad channel number ${channel}`);
  }
  if (data.length > 0xffff) {
    throw new RangeError(`Cannot encode ChannelData: ${data.length} bytes exceeds 65535`);
  }
  const size = 4 + (pad ? (data.length + 3) & ~3 : data.length);
  const out = new Uint8Array(size);
  out[0] = channel >> 8;
  out[1] = channel & 0xff;
  out[2] = data.length >> 8;
  out[3] = data.length & 0xff;
  out.set(data, 4);
  return out;
}
