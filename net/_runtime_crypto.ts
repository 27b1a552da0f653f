// Copyright the ptkit authors. MIT license.
// Internal: the runtime's crypto loader, apart from what it loads
// (native_crypto.ts, the backends): a listener or connector that is given it
// loads no crypto module until a connection needs one.

import type { CryptoBackend } from "../transports/crypto_backend.ts";
import type { TransportEnvironment } from "../transports/transport.ts";

/**
 * The runtime's crypto loader, for `TransportEnvironment.crypto`: native
 * libsodium (`sodium-native`, with `node:crypto` for HMAC and HKDF) when FFI
 * is granted (`--allow-ffi`) and the addon loads, else libsodium in
 * WebAssembly (`loadWasmCrypto`). FFI permission is only queried, never
 * requested (no prompt); the choice is made once per process, at the first
 * call, and every call returns the same backend.
 *
 * @example Giving a transport the runtime's crypto
 * ```ts
 * import { runtimeCrypto } from "@ptkit/ptkit/net";
 * import { obfs4 } from "@ptkit/ptkit/transports/obfs4";
 * import { MemoryStore } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * const server = await obfs4.server({}, { local: new MemoryStore(), crypto: runtimeCrypto });
 * ok(server.clientOptions.cert);
 * ```
 *
 * @returns The backend.
 */
export function runtimeCrypto(): Promise<CryptoBackend> {
  return import("./native_crypto.ts").then(({ chooseRuntimeCrypto }) => chooseRuntimeCrypto())
    .then((c) => c.backend);
}

/**
 * `env` with the runtime's crypto loader unless it names one.
 *
 * @example Filling in the loader
 * ```ts
 * import { runtimeCrypto, withRuntimeCrypto } from "./native_crypto.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(withRuntimeCrypto(undefined).crypto, runtimeCrypto);
 * ```
 *
 * @param env The environment a caller gave, if any.
 * @returns The environment to give the transport.
 */
export function withRuntimeCrypto(env: TransportEnvironment | undefined): TransportEnvironment {
  return env?.crypto !== undefined ? env : { ...env, crypto: runtimeCrypto };
}
