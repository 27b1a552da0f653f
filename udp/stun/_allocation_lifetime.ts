// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { STUN_MAGIC_COOKIE, StunAttr } from "./_constants.ts";

/** Allocate (0x003) and Refresh (0x004) success responses, as message types. */
const ALLOCATE_SUCCESS = 0x0103;
const REFRESH_SUCCESS = 0x0104;
/**
 * The longest hold, in seconds: RFC 8656 section 7.2 has servers cap a
 * lifetime at an hour (coturn's max-allocate-lifetime), and a forged
 * response cannot hold a flow for longer.
 */
const MAX_LIFETIME = 3600;

/**
 * How long the TURN allocation a datagram speaks of lives: the LIFETIME of
 * an Allocate or Refresh success response (RFC 8656 sections 7.1 and 7.3),
 * in milliseconds, at most an hour; 0 when a Refresh deleted it. `undefined` for any other
 * datagram (ChannelData, other STUN messages, no LIFETIME, not STUN).
 *
 * A UDP flow carrying TURN traffic (STUN mode) lives at least this long
 * after the response: a TURN client sends nothing between its refreshes
 * when its peers are quiet, and a flow closed for idleness would lose the
 * allocation (the next datagram comes from another source, 437).
 *
 * @param datagram One STUN message or ChannelData.
 * @returns The allocation's lifetime in ms, or `undefined`.
 *
 * @example An Allocate success response with LIFETIME 600
 * ```ts
 * import { allocationLifetimeMs } from "./_allocation_lifetime.ts";
 * import { strictEqual } from "node:assert";
 *
 * const response = new Uint8Array([
 *   0x01, 0x03, 0, 8, 0x21, 0x12, 0xa4, 0x42, ...new Uint8Array(12),
 *   0, 0x0d, 0, 4, 0, 0, 0x02, 0x58,
 * ]);
 * strictEqual(allocationLifetimeMs(response), 600_000);
 * response.set([0xff, 0xff, 0xff, 0xff], 24); // past an hour: an hour
 * strictEqual(allocationLifetimeMs(response), 3_600_000);
 * strictEqual(allocationLifetimeMs(new Uint8Array([0x40, 0, 0, 0])), undefined);
 * ```
 */
export function allocationLifetimeMs(datagram: Uint8Array): number | undefined {
  // Cheap test first: this runs on every datagram of a STUN-mode flow.
  if (datagram[0] !== 0x01 || datagram.byteLength < 20) return undefined;
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const type = view.getUint16(0);
  if (type !== ALLOCATE_SUCCESS && type !== REFRESH_SUCCESS) return undefined;
  if (view.getUint32(4) !== STUN_MAGIC_COOKIE) return undefined;
  const end = Math.min(datagram.byteLength, 20 + view.getUint16(2));
  for (let offset = 20; offset + 4 <= end;) {
    const attribute = view.getUint16(offset);
    const length = view.getUint16(offset + 2);
    if (offset + 4 + length > end) return undefined;
    if (attribute === StunAttr.Lifetime) {
      return length === 4 ? Math.min(view.getUint32(offset + 4), MAX_LIFETIME) * 1000 : undefined;
    }
    offset += 4 + ((length + 3) & ~3);
  }
  return undefined;
}
