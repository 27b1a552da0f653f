// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { Transport } from "./transport.ts";

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

/**
 * Check that `transport` looks like a {@linkcode Transport} (a name that
 * is a C identifier, a `client` and a `server` function) before a runtime
 * function uses it.
 *
 * @param transport What the caller passed.
 * @param what The function, for the message (`listen`, `createConnector`).
 * @returns `transport`, typed.
 * @throws {TypeError} When it is not a transport, or its name is not a C identifier.
 *
 * @example Refusing what is not a transport
 * ```ts
 * import { assertTransport } from "./_transport_name.ts";
 * import { throws } from "node:assert";
 *
 * throws(() => assertTransport(undefined, "listen"), /Cannot listen: transport must be/);
 * ```
 */
export function assertTransport(transport: unknown, what: string): Transport {
  const t = transport as Partial<Transport> | null | undefined;
  if (
    typeof t !== "object" || t === null || typeof t.name !== "string" ||
    typeof t.client !== "function" || typeof t.server !== "function"
  ) {
    throw new TypeError(
      `Cannot ${what}: transport must be a Transport (plain, obfs4, defineTransport(...)), got ${
        t === null ? "null" : typeof t
      }`,
    );
  }
  if (!NAME.test(t.name)) {
    throw new TypeError(
      `Cannot ${what}: invalid transport name ${
        JSON.stringify(t.name)
      }: must match [a-zA-Z_][a-zA-Z0-9_]*`,
    );
  }
  return t as Transport;
}
