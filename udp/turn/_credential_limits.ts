// Copyright the ptkit authors. MIT license.
// Internal: what a TURN realm and user name may be, checked once for the
// server (TurnServer), `main.ts turn` (--realm, --user) and the PT server's
// embedded TURN (-turnrealm, -turnuser). Kept apart from the server so that
// the flag parsers load no TURN code.

/** RFC 8489 section 14.9: a REALM of fewer than 128 characters. */
const MAX_REALM_CHARACTERS = 127;
/** RFC 8489 section 14.3: a USERNAME of fewer than 509 bytes. */
const MAX_USERNAME_BYTES = 508;

/**
 * Why `realm` cannot be a TURN realm (empty, or too long for clients to send
 * back: coturn's cut a longer one and fail every request), or `undefined`.
 * Never quotes the realm.
 */
export function realmProblem(realm: string): string | undefined {
  if (realm === "") return "it is empty";
  const characters = [...realm].length;
  if (characters > MAX_REALM_CHARACTERS) {
    return `${characters} characters, RFC 8489 allows at most ${MAX_REALM_CHARACTERS}`;
  }
  return undefined;
}

/**
 * Why `username` cannot be a TURN user name (longer than RFC 8489 lets a
 * client send), or `undefined`. Never quotes the name.
 */
export function usernameProblem(username: string): string | undefined {
  const bytes = new TextEncoder().encode(username).length;
  if (bytes > MAX_USERNAME_BYTES) {
    return `a user name of ${bytes} bytes, RFC 8489 allows at most ${MAX_USERNAME_BYTES}`;
  }
  return undefined;
}
