// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Check that `name` is a valid transport name: a C identifier, as spec 3.1
 * requires (`[a-zA-Z_][a-zA-Z0-9_]*`).
 *
 * @param name The name to check.
 * @returns `name`, unchanged.
 * @throws {TypeError} When `name` is not a string or not a C identifier.
 *
 * @example Accepting and refusing names
 * ```ts
 * import { assertTransportName } from "./_transport_name.ts";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(assertTransportName("obfs4"), "obfs4");
 * throws(() => assertTransportName("4obfs"), TypeError);
 * ```
 */
export function assertTransportName(name: unknown): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new TypeError(
      `Invalid transport name ${JSON.stringify(name)}: must match [a-zA-Z_][a-zA-Z0-9_]*`,
    );
  }
  return name;
}
