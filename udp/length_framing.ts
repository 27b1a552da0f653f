// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { checkDatagram, type FrameBounds, type Framing } from "./framing.ts";

/** The largest datagram a two-byte length can carry. */
const MAX_LENGTH = 0xffff;

/**
 * Length framing for transparent UDP (PT 2.0 section 3.3.5.4): each datagram
 * is prefixed with its length as two bytes in network (big-endian) order.
 * Any datagram of 0 to 65,535 bytes fits; `maxDatagram` narrows that (a
 * larger `maxDatagram` does not widen it: a bigger datagram is refused, with
 * a `RangeError`).
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
    checkDatagram(datagram);
    const n = datagram.byteLength;
    if (n > maxDatagram || n > MAX_LENGTH) {
      throw new RangeError(
        `Cannot frame datagram: ${n} bytes exceeds the maximum of ${
          Math.min(maxDatagram, MAX_LENGTH)
        }`,
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
