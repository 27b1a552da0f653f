// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { FrameBounds, Framing } from "./framing.ts";

/**
 * Length framing for transparent UDP (PT 2.0 section 3.3.5.4): each datagram
 * is prefixed with its length as two bytes in network (big-endian) order.
 * Any datagram of 0 to 65,535 bytes fits; `maxDatagram` narrows that.
 *
 * @example Framing a datagram
 * ```ts
 * import { lengthFraming } from "@ptkit/ptkit/udp";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(lengthFraming.frame(new Uint8Array(258), 65_507).subarray(0, 2), new Uint8Array([1, 2]));
 * throws(() => lengthFraming.frame(new Uint8Array(10), 9), RangeError);
 * ```
 */
export const lengthFraming: Framing = {
  name: "length",
  headerSize: 2,
  frame(datagram: Uint8Array, maxDatagram: number): Uint8Array {
    const out = new Uint8Array(this.frameLength!(datagram, maxDatagram));
    this.writeFrame!(datagram, out, 0);
    return out;
  },
  frameLength(datagram: Uint8Array, maxDatagram: number): number {
    const n = datagram.byteLength;
    if (n > maxDatagram) {
      throw new RangeError(
        `Cannot frame datagram: ${n} bytes exceeds the maximum of ${maxDatagram}`,
      );
    }
    return 2 + n;
  },
  writeFrame(datagram: Uint8Array, target: Uint8Array, offset: number): void {
    const n = datagram.byteLength;
    target[offset] = n >> 8;
    target[offset + 1] = n & 0xff;
    target.set(datagram, offset + 2);
  },
  parseHeader(header: Uint8Array, maxDatagram: number): FrameBounds {
    const n = (header[0]! << 8) | header[1]!;
    if (n > maxDatagram) {
      throw new RangeError(
        `Cannot deframe length-framed datagram: length ${n} exceeds the maximum of ${maxDatagram}`,
      );
    }
    return { start: 2, end: 2 + n, total: 2 + n };
  },
};
