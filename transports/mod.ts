// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Everything a transport author needs: the contract ({@linkcode Transport},
 * {@linkcode TransportPair}), helpers that make the common case a few lines
 * ({@linkcode defineTransport}, {@linkcode mapChunks}), layering
 * ({@linkcode layerTransports}), and storage for the `local` argument
 * ({@linkcode MemoryStore}), and the crypto primitives a runtime offers
 * ({@linkcode CryptoBackend}, {@linkcode loadWasmCrypto}). Nothing here uses
 * `Deno.*`: transports run in any
 * runtime with Web Streams.
 *
 * @example A complete transport in a few lines
 * ```ts
 * import { defineTransport, mapChunks } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const flip = (c: Uint8Array) => c.map((b) => b ^ 0xff);
 * const xor = defineTransport({
 *   name: "xor",
 *   parseConfig: () => undefined,
 *   pair: () => ({ encode: mapChunks(flip), decode: mapChunks(flip) }),
 * });
 * deepStrictEqual(xor.name, "xor");
 * ```
 *
 * @module
 */

export type {
  ClientTransport,
  GeneratedConfig,
  HostPort,
  IgnoredOption,
  LocalStore,
  ServerTransport,
  SignalPipe,
  Transport,
  TransportEnvironment,
  TransportOptions,
  TransportPair,
} from "./transport.ts";
export { defineTransport, type TransportDefinition } from "./define_transport.ts";
export { mapChunks } from "./map_chunks.ts";
export { layerTransports } from "./layer.ts";
export { MemoryStore } from "./memory_store.ts";
export {
  type Aead,
  type AeadAlgorithm,
  type CryptoBackend,
  loadWasmCrypto,
} from "./crypto_backend.ts";
export { plain } from "./plain.ts";
export { HandshakeError, type HandshakeFailure } from "./_handshake_error.ts";
