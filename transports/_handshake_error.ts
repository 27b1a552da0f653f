// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Why a transport's handshake failed, for the metrics' outcomes and for
// callers that tell a timeout from a refusal (`conn.ready` rejects with it).

/**
 * Why a transport handshake failed, as the runtime counts it:
 *
 * - `failed`: the peer sent something invalid or closed before finishing;
 * - `probe-delay`: the server held a connection without a valid handshake
 *   and closed it after its probe-resistance delay (obfs4's 30-90 s);
 * - `replay`: the server saw a handshake it had already accepted (a replay
 *   attack or an active probe) and refused it;
 * - `timeout`: the handshake did not complete in time.
 */
export type HandshakeFailure = "failed" | "probe-delay" | "replay" | "timeout";

/**
 * The error a transport pair's `ready` rejects with (and its streams fail
 * with) when the handshake fails, saying why: the runtime counts
 * connections by it (`ptkit_connections_total{outcome=...}`). A transport
 * may fail with any other error; that counts as `failed`. The message
 * never holds key material or an address.
 *
 * @example Telling a handshake timeout from other failures
 * ```ts
 * import { HandshakeError } from "@ptkit/ptkit/transports";
 * import { strictEqual } from "node:assert";
 *
 * const error: unknown = new HandshakeError("timeout", "Handshake did not complete in time");
 * strictEqual(error instanceof HandshakeError && error.reason, "timeout");
 * ```
 */
export class HandshakeError extends Error {
  /** Why the handshake failed. */
  readonly reason: HandshakeFailure;

  /**
   * Make the error.
   *
   * @param reason Why the handshake failed.
   * @param message What happened (no key material, no address).
   * @param options The cause, if any.
   */
  constructor(reason: HandshakeFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HandshakeError";
    this.reason = reason;
  }
}
