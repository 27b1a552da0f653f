// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: errors that mean a transport rejected a connection's settings
// (a required key missing, a malformed value), told apart from network
// failures by whoever answers the application (SOCKS reply 13).

const REJECTED = new WeakSet<object>();

/**
 * Run `make` (a transport parsing a connection's settings: its `pair` or
 * `connection` hook); an error it throws is marked as the settings' fault.
 *
 * @param make What parses the settings.
 * @returns What `make` returns.
 */
export function parsingSettings<T>(make: () => T): T {
  try {
    return make();
  } catch (error) {
    if (typeof error === "object" && error !== null) REJECTED.add(error);
    throw error;
  }
}

/**
 * Whether `error` is a transport's refusal of a connection's settings.
 *
 * @param error Any error.
 * @returns True when {@linkcode parsingSettings} marked it.
 */
export function isSettingsRejection(error: unknown): boolean {
  return typeof error === "object" && error !== null && REJECTED.has(error);
}
