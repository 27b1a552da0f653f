// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { checkDatagram, type FrameBounds, type Framing } from "../framing.ts";

function hex(value: number, digits: number): string {
  return "0x" + value.toString(16).padStart(digits, "0");
}

function kindError(first: number, what: string): SyntaxError {
  return new SyntaxError(
    `Cannot ${what}: first byte ${hex(first, 2)} starts neither a STUN message nor ChannelData`,
  );
}

/**
 * STUN framing (PT 2.0 section 3.3.5.4, "STUN-aware" mode): STUN messages
 * (RFC 8489: first two bits 00, a 20-byte header, length a multiple of 4;
 * no magic cookie is required, as RFC 3489 clients such as legacy SIP
 * phones send none and the TURN server answers their Binding requests)
 * are delimited by their own length field, and TURN
 * ChannelData (RFC 8656: first two bits 01, channel 0x4000-0x7FFF) by its
 * length, padded to a multiple of 4 bytes on the stream as RFC 8656 requires
 * over TCP. Anything else is a framing error (`SyntaxError`).
 *
 * Datagrams come off the stream without the ChannelData padding.
 *
 * @example Framing a ChannelData message
 * ```ts
 * import { stunFraming } from "@ptkit/ptkit/udp";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * const channelData = new Uint8Array([0x40, 0x00, 0x00, 0x01, 0xaa]);
 * deepStrictEqual(
 *   stunFraming.frame(channelData, 65_507),
 *   new Uint8Array([0x40, 0x00, 0x00, 0x01, 0xaa, 0, 0, 0]),
 * );
 * throws(() => stunFraming.frame(new Uint8Array([0x80, 0, 0, 0]), 65_507), SyntaxError);
 * ```
 */
export const stunFraming: Framing = {
  name: "stun",
  headerSize: 4,
  frame(datagram: Uint8Array, maxDatagram: number): Uint8Array {
    const total = this.frameLength!(datagram, maxDatagram);
    if (total === datagram.byteLength) return datagram;
    const out = new Uint8Array(total);
    this.writeFrame!(datagram, out, 0);
    return out;
  },
  frameLength(datagram: Uint8Array, maxDatagram: number): number {
    checkDatagram(datagram);
    const what = "frame datagram as STUN";
    const n = datagram.byteLength;
    if (n < 4) {
      throw new SyntaxError(`Cannot ${what}: ${n} bytes is too short for STUN or ChannelData`);
    }
    const kind = datagram[0]! >> 6;
    const length = (datagram[2]! << 8) | datagram[3]!;
    if (kind === 0) {
      if (n < 20) {
        throw new SyntaxError(`Cannot ${what}: ${n} bytes is shorter than a STUN header`);
      }
      if (length !== n - 20) {
        throw new SyntaxError(
          `Cannot ${what}: STUN length field ${length} does not match the ${
            n - 20
          } bytes after the header`,
        );
      }
      if (length % 4 !== 0) {
        throw new SyntaxError(`Cannot ${what}: STUN length ${length} is not a multiple of 4`);
      }
      if (n > maxDatagram) {
        throw new RangeError(`Cannot ${what}: ${n} bytes exceeds the maximum of ${maxDatagram}`);
      }
      return n;
    }
    if (kind === 1) {
      const end = 4 + length;
      if (end > n) {
        throw new SyntaxError(
          `Cannot ${what}: ChannelData length ${length} exceeds the ${n - 4} bytes present`,
        );
      }
      if (end > maxDatagram) {
        throw new RangeError(`Cannot ${what}: ${end} bytes exceeds the maximum of ${maxDatagram}`);
      }
      return (end + 3) & ~3;
    }
    throw kindError(datagram[0]!, what);
  },
  writeFrame(datagram: Uint8Array, target: Uint8Array, offset: number): void {
    // STUN messages go as they are; ChannelData without what follows its
    // length, padded with zeros to a multiple of 4.
    const end = datagram[0]! >> 6 === 0
      ? datagram.byteLength
      : 4 + ((datagram[2]! << 8) | datagram[3]!);
    target.set(end === datagram.byteLength ? datagram : datagram.subarray(0, end), offset);
    for (let i = end; i < ((end + 3) & ~3); i++) target[offset + i] = 0;
  },
  parseHeader(header: Uint8Array, maxDatagram: number): FrameBounds {
    const what = "deframe STUN";
    const kind = header[0]! >> 6;
    const length = (header[2]! << 8) | header[3]!;
    if (kind === 0) {
      if (length % 4 !== 0) {
        throw new SyntaxError(`Cannot ${what}: STUN length ${length} is not a multiple of 4`);
      }
      const total = 20 + length;
      if (total > maxDatagram) {
        throw new RangeError(
          `Cannot ${what}: message of ${total} bytes exceeds the maximum of ${maxDatagram}`,
        );
      }
      return { start: 0, end: total, total };
    }
    if (kind === 1) {
      const end = 4 + length;
      if (end > maxDatagram) {
        throw new RangeError(
          `Cannot ${what}: ChannelData of ${end} bytes exceeds the maximum of ${maxDatagram}`,
        );
      }
      return { start: 0, end, total: (end + 3) & ~3 };
    }
    throw kindError(header[0]!, what);
  },
};
