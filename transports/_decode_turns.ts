// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Received bytes decoded at a time while the units in them (obfs4 frames,
 * Shadowsocks chunks) are small, and the units in such a slice from which
 * the rest of a read is decoded a slice at a time, the event loop getting a
 * turn between slices: a peer chooses its unit sizes, and a 256 KiB read of
 * 22-byte obfs4 frames (12,000 of them) or 35-byte Shadowsocks chunks
 * decoded at once kept every other connection waiting for half a second to
 * seconds. Ordinary units (about 1.4 KiB of obfs4, 16 KiB of Shadowsocks)
 * are a few to a slice: their read is decoded in two steps.
 */
const DECODE_SLICE = 32 * 1024;
const SMALL_UNITS_PER_SLICE = 256;

/**
 * Decode `wire` with `decodeSlice` (which returns how many units it
 * decoded, or -1 to stop): at once when it is small or its units are
 * ordinary, else a slice at a time with a turn of the event loop between
 * slices while `alive()` holds.
 *
 * @param wire The bytes of one read.
 * @param decodeSlice Decodes the next bytes and hands on what they complete.
 * @param alive Whether the connection still wants its bytes.
 * @returns Nothing when it was decoded at once, else a promise of the rest,
 * which rejects as `decodeSlice` throws (its first call's error is thrown).
 */
export function decodeInTurns(
  wire: Uint8Array,
  decodeSlice: (slice: Uint8Array) => number,
  alive: () => boolean,
): void | Promise<void> {
  let at = 0;
  const step = (): boolean => {
    const end = wire.length - at > DECODE_SLICE ? at + DECODE_SLICE : wire.length;
    const decoded = decodeSlice(at === 0 && end === wire.length ? wire : wire.subarray(at, end));
    at = end;
    if (decoded < 0) return false;
    if (at < wire.length && decoded < SMALL_UNITS_PER_SLICE) {
      decodeSlice(wire.subarray(at));
      at = wire.length;
    }
    return at < wire.length;
  };
  if (!step()) return;
  return (async () => {
    do {
      // A timer: setImmediate is not in browsers, where transports run too.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (!alive()) return;
    } while (step());
  })();
}
