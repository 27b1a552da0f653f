// Copyright the ptkit authors. MIT license.
/**
 * Where a transport's options are given, in its error messages. Internal.
 *
 * @module
 */

/**
 * obfs4's hint for a client configuration cut short names tor's Bridge line
 * and `--bridge` (transports/obfs4/_config.ts); under a SIP003 plugin or an
 * ss:// link the options are given elsewhere.
 */
const BRIDGE_LINE_HINT =
  /; 'cert' and 'iat-mode' come from the bridge line .*: keep both on tor's Bridge line or in --bridge$/;

/**
 * `message` with obfs4's bridge-line hint, where it has one, saying to give
 * `cert` and `iat-mode` in `place` instead.
 *
 * @example Under a SIP003 plugin
 * ```ts
 * import { optionsGivenIn } from "./_options_place.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(
 *   optionsGivenIn(
 *     "Cannot configure transport 'obfs4': missing option 'cert'; 'cert' and 'iat-mode' come from the bridge line the bridge's operator gives (obfs4 ADDR:PORT FINGERPRINT cert=... iat-mode=0): keep both on tor's Bridge line or in --bridge",
 *     "SS_PLUGIN_OPTIONS",
 *   ),
 *   "Cannot configure transport 'obfs4': missing option 'cert'; give 'cert' and 'iat-mode' in SS_PLUGIN_OPTIONS",
 * );
 * ```
 *
 * @param message The message.
 * @param place Where the options are given.
 * @returns The message.
 */
export function optionsGivenIn(message: string, place: string): string {
  return message.replace(BRIDGE_LINE_HINT, () => `; give 'cert' and 'iat-mode' in ${place}`);
}
