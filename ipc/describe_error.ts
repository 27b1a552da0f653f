// Copyright the ptkit authors. MIT license.
// Internal: error text for LOG lines, with anything like an address removed
// (logs must not hold client IP addresses).

import { acceptErrorKind } from "../net/accept_loop.ts";

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

/**
 * An `onAcceptError` handler that writes `LOG` lines: running out of file
 * descriptors or memory and the global connection limit are `warning`s
 * (the operator's business), connections reset before they were accepted
 * and per-source refusals are `info` (what clients and probes cause).
 *
 * @example Logging a digest of accept errors
 * ```ts
 * import { acceptErrorLogger } from "./describe_error.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const lines: string[] = [];
 * const log = acceptErrorLogger((severity, message) => lines.push(`${severity} ${message}`), "obfs4");
 * log(new Error("Transport endpoint is not connected (os error 107)"), 3);
 * deepStrictEqual(lines, [
 *   "info obfs4: accept failed: Transport endpoint is not connected (os error 107) (3 times since the last report)",
 * ]);
 * ```
 *
 * @param log Writes one `LOG` line.
 * @param name The transport (or listener) the errors concern.
 * @returns The handler.
 */
export function acceptErrorLogger(
  log: (severity: "warning" | "info", message: string) => void,
  name: string,
): (error: Error, count: number) => void {
  return (error, count) => {
    const refused = error instanceof RangeError;
    const severe = refused
      ? error.message.includes("(maxConnections)")
      : acceptErrorKind(error) === "exhausted";
    const what = refused ? describe(error) : `accept failed: ${describe(error)}`;
    const times = count === 1 ? "" : ` (${count} times since the last report)`;
    log(severe ? "warning" : "info", `${name}: ${what}${times}`);
  };
}
