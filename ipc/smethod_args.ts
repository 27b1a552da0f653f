// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { type KeyValueListOptions, parseEscapedPairs } from "./settings.ts";
import type { TransportOptions } from "../transports/transport.ts";

/**
 * Format a server transport's client options as the `ARGS:` field of an
 * `SMETHOD` line: `ARGS:k=v,k=v` with keys sorted and `\`, `=` and `,`
 * escaped with a backslash (in keys and values). Empty options give `""`
 * (no field).
 *
 * @param options What clients need (the transport's `clientOptions`).
 * @returns The field, or the empty string.
 *
 * @example Formatting obfs4-like arguments
 * ```ts
 * import { formatSmethodArgs } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(formatSmethodArgs({ "iat-mode": "0", cert: "a=b,c" }), "ARGS:cert=a\\=b\\,c,iat-mode=0");
 * deepStrictEqual(formatSmethodArgs({}), "");
 * ```
 */
export function formatSmethodArgs(options: TransportOptions): string {
  const keys = Object.keys(options).sort((a, b) => a < b ? -1 : a > b ? 1 : 0);
  if (keys.length === 0) return "";
  const escape = (s: string) => s.replace(/[\\=,]/g, "\\$&");
  return "ARGS:" + keys.map((k) => `${escape(k)}=${escape(options[k]!)}`).join(",");
}

/**
 * Parse the `ARGS:` field of an `SMETHOD` line (the inverse of
 * {@linkcode formatSmethodArgs}): `k=v` pairs split at unescaped `,`, key
 * and value at the first unescaped `=`, a backslash escaping any character.
 * A repeated key keeps its first value (goptlib prints a key once per value
 * when a transport gives it several) and is reported once to
 * `options.onRepeatedKey`.
 *
 * @param text The field, with or without the `ARGS:` prefix.
 * @param options What to do about repeated keys.
 * @returns The options.
 * @throws {SyntaxError} On a pair without `=`, an empty key, or a trailing
 * backslash.
 *
 * @example Round-tripping awkward values
 * ```ts
 * import { formatSmethodArgs, parseSmethodArgs } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const options = { cert: "a=b,c\\d", "iat-mode": "0" };
 * deepStrictEqual(parseSmethodArgs(formatSmethodArgs(options)), options);
 * ```
 */
export function parseSmethodArgs(
  text: string,
  options: KeyValueListOptions = {},
): TransportOptions {
  return parseEscapedPairs(
    text.startsWith("ARGS:") ? text.slice(5) : text,
    ",",
    "SMETHOD ARGS",
    options,
  );
}
