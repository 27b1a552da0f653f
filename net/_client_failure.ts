// Copyright the ptkit authors. MIT license.
// Internal: errors that ended a relayed connection on the client's side.

/**
 * Errors with which {@linkcode proxy}'s relays ended that came from the
 * client's own transport connection (reset, broken pipe, a frame that does
 * not decode), not from the target. A client, or a censor on its path,
 * causes them, not the operator's set-up: main.ts logs them at `info`, as
 * it logs failed handshakes, so that injected resets cannot fill tor's log
 * with warnings.
 */
export const clientFailures: WeakSet<object> = new WeakSet();

/**
 * Whether `error` is (or was caused by) the error that ended `conn`.
 *
 * @param conn The client's transport connection.
 * @param error What the relay failed with.
 * @returns True when the client's connection failed first.
 */
export function endedByClient(conn: { readonly error: unknown }, error: unknown): boolean {
  const own = conn.error;
  if (own === undefined) return false;
  for (let e = error, depth = 0; e !== undefined && depth < 8; depth++) {
    if (e === own) return true;
    e = e instanceof Error ? e.cause : undefined;
  }
  return false;
}
