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
 * A client takes a bridge line's arguments: `cert` (or the older `node-id`
 * and `public-key`, hex) and `iat-mode` (0, 1 or 2); a missing or malformed
 * one is a `TypeError` when the client is configured. An empty client
 * configuration is allowed and means "the bridge comes with each
 * connection": every dial's `settings` must then carry those keys (as tor's
 * SOCKS arguments do), and a dial without them fails naming each one.
 *
 * @example Configuring a client from a bridge line
 * ```ts
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { rejects } from "node:assert";
 *
 * // Bridge obfs4 203.0.113.7:443 <fingerprint> cert=AAAA... iat-mode=0
 * const cert = "A".repeat(70); // 70 base64 characters: node ID and public key
 * await using connector = await createConnector(obfs4, { cert, "iat-mode": "0" });
 * // A line without its cert is refused before anything is dialed.
 * await rejects(createConnector(obfs4, { "iat-mode": "0" }), /missing option 'cert'/);
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
