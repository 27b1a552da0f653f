// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: byte-array helpers shared by the transports and the IPC.

/**
 * The bytes of `parts`, one after another, in a new array (never one of
 * the parts itself, so the result may be kept or changed freely).
 *
 * @param parts The arrays to join.
 * @returns A new array of their total length.
 */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
