// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * A dedicated Worker that makes obfs4's representable key pairs off the
 * main thread, for `KeyPairReserve`. Each message asks for
 * `count` pairs made with the backend `load` (an export of `module`) loads;
 * the answer is one buffer of `count` records of 96 bytes (secret key,
 * public key, representative), transferred, or `{ error }`.
 *
 * @module
 */

import type { CryptoBackend } from "../crypto_backend.ts";
import { generateRepresentableKeyPair } from "./_elligator2.ts";
import { KEY_PAIR_RECORD, type KeyPairAnswer, type KeyPairRequest } from "./_keypair_reserve.ts";

interface WorkerScope {
  onmessage: ((event: MessageEvent<KeyPairRequest>) => void) | null;
  postMessage(message: KeyPairAnswer, transfer?: Transferable[]): void;
}

// Only as a Worker's main module: imported by another module (in a worker
// that runs a whole PT, say), it must not take that worker's messages.
// (Browsers have no `import.meta.main`; there only `new Worker` loads it.)
const scope = globalThis as unknown as WorkerScope;
if ("WorkerGlobalScope" in globalThis && (import.meta as { main?: boolean }).main !== false) {
  let backend: Promise<CryptoBackend> | undefined;
  scope.onmessage = async (event) => {
    const { module, load, count } = event.data;
    try {
      backend ??= import(module).then((m: Record<string, () => Promise<CryptoBackend>>) => {
        const loader = m[load];
        if (typeof loader !== "function") {
          throw new TypeError(`Cannot load crypto backend: ${module} has no export ${load}`);
        }
        return loader();
      });
      const crypto = await backend;
      const pairs = new Uint8Array(count * KEY_PAIR_RECORD);
      for (let i = 0; i < count; i++) {
        const pair = generateRepresentableKeyPair(crypto);
        const at = i * KEY_PAIR_RECORD;
        pairs.set(pair.secretKey, at);
        pairs.set(pair.publicKey, at + 32);
        pairs.set(pair.representative, at + 64);
      }
      scope.postMessage({ pairs }, [pairs.buffer]);
    } catch (error) {
      backend = undefined;
      scope.postMessage({ error: error instanceof Error ? error.message : String(error) });
    }
  };
}
