// Copyright the ptkit authors. MIT license.

// Both crypto backends, for tests that must pass on each: libsodium in
// WebAssembly (what browsers and runs without --allow-ffi get) and native
// libsodium through sodium-native (what the runtime picks with --allow-ffi).

import {
  type CryptoBackend,
  type CryptoLoader,
  loadWasmCrypto,
} from "../transports/crypto_backend.ts";
import { loadNativeCrypto } from "../net/native_crypto.ts";

/** Each backend by a short name, with its loader. */
export const CRYPTO_BACKENDS: readonly { name: string; load: CryptoLoader }[] = [
  { name: "wasm", load: loadWasmCrypto },
  { name: "native", load: loadNativeCrypto },
];

/** Run `body` once per backend, as steps of `t`. */
export async function eachBackend(
  t: Deno.TestContext,
  body: (crypto: CryptoBackend, name: string, load: CryptoLoader) => void | Promise<void>,
): Promise<void> {
  for (const { name, load } of CRYPTO_BACKENDS) {
    await t.step(name, async () => await body(await load(), name, load));
  }
}
