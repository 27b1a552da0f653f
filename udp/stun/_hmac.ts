// Copyright the ptkit authors. MIT license.
// Internal: HMAC-SHA1 for MESSAGE-INTEGRITY with the keyed state cached per
// key. A TURN server holds one long-term key per user (one Uint8Array), so
// every check and every signed answer after the first skips hashing the
// key's inner and outer pads.

import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";

interface Mac {
  update(bytes: Uint8Array): Mac;
  digest(): Uint8Array;
  clone(): Mac;
}

const keyed = new WeakMap<Uint8Array, Mac>();

/** HMAC-SHA1 of the concatenated `parts` with `key`. */
export function hmacSha1(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  let template = keyed.get(key);
  if (template === undefined) keyed.set(key, template = hmac.create(sha1, key) as unknown as Mac);
  const mac = template.clone();
  for (const part of parts) mac.update(part);
  return mac.digest();
}
