// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Why a transport's handshake failed, for the metrics' outcomes and for
// callers that tell a timeout from a refusal (`conn.ready` rejects with it).

/** Every reason a {@linkcode HandshakeError} can give, for checking one. */
const HANDSHAKE_FAILURES: readonly HandshakeError["reason"][] = [
  "failed",
  "probe-delay",
  "replay",
  "timeout",
];

/** A value for a message: a string quoted, a primitive as written, else its type. */
function shown(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === null || (typeof value !== "object" && typeof value !== "function")) {
    return String(value);
  }
  return `a value of type ${typeof value}`;
}

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
 * import { strictEqual, throws } from "node:assert";
 *
 * const error: unknown = new HandshakeError("timeout", "Handshake did not complete in time");
 * strictEqual(error instanceof HandshakeError && error.reason, "timeout");
 * throws(() => new HandshakeError("slow" as "timeout", "x"), TypeError);
 * ```
 */
export class HandshakeError extends Error {
  /**
   * Why the handshake failed, as the runtime counts it:
   *
   * - `failed`: the peer sent something invalid or closed before finishing;
   * - `probe-delay`: the server held a connection without a valid handshake
   *   and closed it after its probe-resistance delay (obfs4's 30-90 s);
   * - `replay`: the server saw a handshake it had already accepted (a replay
   *   attack or an active probe) and refused it;
   * - `timeout`: the handshake did not complete in time.
   */
  readonly reason: "failed" | "probe-delay" | "replay" | "timeout";

  /**
   * Make the error.
   *
   * @param reason Why the handshake failed.
   * @param message What happened (no key material, no address).
   * @param options The cause, if any.
   * @throws {TypeError} When `reason` is not one of those of
   * {@linkcode HandshakeError.reason} (an unknown reason would be counted as
   * no outcome the metrics know).
   */
  constructor(reason: HandshakeError["reason"], message: string, options?: ErrorOptions) {
    if (!HANDSHAKE_FAILURES.includes(reason)) {
      throw new TypeError(
        `Cannot make HandshakeError: unknown reason ${shown(reason)}; expected one of ${
          HANDSHAKE_FAILURES.join(", ")
        }`,
      );
    }
    super(message, options);
    this.name = "HandshakeError";
    this.reason = reason;
  }
}
