// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * obfs4, the look-like-nothing transport Tor bridges speak, wire-compatible
 * with obfs4proxy 0.0.14 and lyrebird.
 *
 * Nothing here loads a crypto library or touches `Deno.*`. The primitives
 * (XSalsa20-Poly1305, X25519, Edwards25519 points, SHA-2, HMAC, HKDF) come
 * from the transport environment's `crypto` loader, called when the first
 * connection needs them: ptkit's Deno runtime (`listen`, `proxy`,
 * `createConnector`, `main.ts`) passes `runtimeCrypto` from
 * `@ptkit/ptkit/net`, native libsodium where `--allow-ffi` lets it load;
 * without a loader (a browser, Node, a bundle) the transport takes
 * `loadWasmCrypto` from `@ptkit/ptkit/transports`, libsodium in
 * WebAssembly. Both give the same bytes (the tests check them against the
 * same vectors and against obfs4proxy). Configuring a side loads nothing:
 * a server reads its state and answers with its bridge line before any
 * crypto library is loaded (WebCrypto derives its public key).
 *
 * @example Configuring a client from a bridge line
 * ```ts
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(obfs4.name, "obfs4");
 * ```
 *
 * @example Choosing the crypto backend (here the portable one)
 * ```ts
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { loadWasmCrypto, MemoryStore } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * const server = await obfs4.server({}, { local: new MemoryStore(), crypto: loadWasmCrypto });
 * ok(server.clientOptions.cert);
 * ```
 *
 * @module
 */

export { bridgeCloseDelay, createObfs4, obfs4, type Obfs4Options } from "./obfs4.ts";
