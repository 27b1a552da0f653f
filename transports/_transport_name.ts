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
  checkTransportName(t.name, what);
  return t as Transport;
}

/**
 * Check a transport name given to a runtime call or constructor: a C
 * identifier, named in the message with the call.
 *
 * @param name What the caller passed.
 * @param what The call, for the message (`make a connector`).
 * @returns `name`, typed.
 * @throws {TypeError} When it is not a string or not a C identifier.
 *
 * @example Refusing a name with a space
 * ```ts
 * import { checkTransportName } from "./_transport_name.ts";
 * import { throws } from "node:assert";
 *
 * throws(() => checkTransportName("no good", "make a connector"), /invalid transport name "no good"/);
 * ```
 */
export function checkTransportName(name: unknown, what: string): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new TypeError(
      `Cannot ${what}: invalid transport name ${
        typeof name === "string" || typeof name === "number" ? JSON.stringify(name) : typeof name
      }: must match [a-zA-Z_][a-zA-Z0-9_]*`,
    );
  }
  return name;
}

/**
 * Check a configured side given to a runtime constructor: an object with a
 * `pair` function, as `transport.client()` and `transport.server()` return.
 *
 * @param side What the caller passed.
 * @param role Which side it must be.
 * @param what The call, for the message (`make a connector`).
 * @throws {TypeError} When it is not such an object.
 *
 * @example Refusing a side without pair()
 * ```ts
 * import { checkTransportSide } from "./_transport_name.ts";
 * import { throws } from "node:assert";
 *
 * throws(() => checkTransportSide({}, "server", "make a transport listener"), /without pair\(\)/);
 * ```
 */
export function checkTransportSide(side: unknown, role: "client" | "server", what: string): void {
  if (
    typeof side !== "object" || side === null ||
    typeof (side as { pair?: unknown }).pair !== "function"
  ) {
    const kind = role === "client" ? "ClientTransport" : "ServerTransport";
    throw new TypeError(
      `Cannot ${what}: side must be a ${kind} (from transport.${role}()), got ${
        side === null ? "null" : typeof side === "object" ? "an object without pair()" : typeof side
      }`,
    );
  }
}
