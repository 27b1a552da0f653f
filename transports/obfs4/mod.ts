// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * obfs4, the look-like-nothing transport Tor bridges speak, wire-compatible
 * with obfs4proxy 0.0.14 and lyrebird.
 *
 * @example Configuring a client from a bridge line
 * ```ts
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(obfs4.name, "obfs4");
 * ```
 *
 * @module
 */

export { bridgeCloseDelay, createObfs4, obfs4, type Obfs4Options } from "./obfs4.ts";
export { type IatSleep, obfs4proxySleep } from "./iat.ts";
