// Copyright the ptkit authors. MIT license.
// Internal: each MetricsRegistry's core, in a module of its own so that a
// check that an object is a registry does not load the metrics modules.

import type { MetricsCore } from "./_metrics.ts";

/** Each registry (and each view of one, `withMode`) to its core. */
export const cores: WeakMap<object, MetricsCore> = new WeakMap();

/**
 * Whether `value` was made by `new MetricsRegistry()` (or is a view of one).
 *
 * @param value What a caller passed as a registry.
 * @returns Whether it is one.
 */
export function isMetricsRegistry(value: unknown): boolean {
  return typeof value === "object" && value !== null && cores.has(value);
}
