// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the npm packages of the WebAssembly crypto backend
// (loadWasmCrypto in crypto_backend.ts), in a module of their own. Deno
// resolves a module's import() specifiers when it loads the module, and an
// npm one reads the packages' package.json (1-1.5 ms for these six): here,
// that happens only when the backend is loaded, not wherever
// crypto_backend.ts is imported (an obfs4 server, before SMETHODS DONE).

const load = () =>
  Promise.all([
    import("libsodium-wrappers"),
    import("@noble/hashes/sha2.js"),
    import("@noble/hashes/hmac.js"),
    import("@noble/hashes/hkdf.js"),
    import("@noble/curves/ed25519.js"),
    import("@noble/ciphers/aes.js"),
  ]);

/**
 * The packages, in this order: libsodium-wrappers, `@noble/hashes`' SHA-2,
 * HMAC and HKDF, `@noble/curves`' Edwards25519, `@noble/ciphers`' AES.
 *
 * @example Loading them
 * ```ts
 * import { wasmCryptoPackages } from "./_wasm_crypto.ts";
 * import { strictEqual } from "node:assert";
 *
 * const [, { sha256 }] = await wasmCryptoPackages();
 * strictEqual(sha256(new Uint8Array(0)).length, 32);
 * ```
 *
 * @returns The modules.
 */
export function wasmCryptoPackages(): ReturnType<typeof load> {
  return load();
}
