// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: what an obfs4 connection needs once it starts (handshakes,
// sessions, spare key pairs), apart from what configuring a side needs.
// obfs4.ts starts loading it when a side is configured, without waiting
// (a managed server has written SMETHODS DONE by the time Deno loads it),
// and a connection waits for it with the crypto backend.

export { ClientHandshake, MAX_HANDSHAKE_LENGTH, ServerHandshake } from "./_handshake.ts";
export { Session } from "./_session.ts";
export { KeyPairReserve } from "./_keypair_reserve.ts";
