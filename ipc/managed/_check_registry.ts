// Copyright the ptkit authors. MIT license.
// Internal: the check of a registry of transports, apart from runner.ts (whose
// metrics check loads the metrics modules) so that the managed proxy checks
// its options without them.

/**
 * Check a registry of transports by name: `undefined` or a `Map`-like
 * object (`get`, `keys`, `values`). Internal: `runManagedProxy`,
 * `runClient` and `runServer`.
 *
 * @param registry What the caller passed.
 * @param what The call, for the message (`run the managed proxy`).
 * @throws {TypeError} When it is neither.
 */
export function checkRegistry(registry: unknown, what: string): void {
  if (registry === undefined) return;
  const map = registry as Partial<Record<"get" | "keys" | "values", unknown>> | null;
  if (
    typeof registry !== "object" || map === null || typeof map.get !== "function" ||
    typeof map.keys !== "function" || typeof map.values !== "function"
  ) {
    throw new TypeError(
      `Cannot ${what}: registry must be a Map of transports, got ${
        registry === null ? "null" : typeof registry
      }`,
    );
  }
}
