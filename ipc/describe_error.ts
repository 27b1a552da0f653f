// Copyright the ptkit authors. MIT license.
// Internal: error text for LOG lines, with anything like an address removed
// (logs must not hold client IP addresses).

/**
 * An error's message with IP addresses replaced by `[address]`.
 *
 * @example Hiding an address
 * ```ts
 * import { describe } from "./describe_error.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(describe(new Error("refused by 10.0.0.1:443")), "refused by [address]");
 * ```
 *
 * @param error The error.
 * @returns The message.
 */
export function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .replace(/\[?[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\]?(:[0-9]+)?/g, "[address]")
    .replace(/\b[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]+)?\b/g, "[address]");
}
