// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { IgnoredOption, TransportOptions } from "./transport.ts";

/** Keys compared without case and without `-`, `_`, `.` or spaces. */
function normalize(key: string): string {
  return key.toLowerCase().replace(/[-_.\s]/g, "");
}

/** Edit distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1]!;
}

/**
 * The known option key that `key` is most likely a typo of, for a "did you
 * mean" hint: the same key written in another case or with other separators
 * (`iatMode`, `IAT_MODE` for `iat-mode`), else the nearest key within a
 * small edit distance (one edit for keys up to five characters, two for
 * longer ones; a swap of two neighbours counts as one).
 *
 * @param key The unknown key.
 * @param known The keys the transport understands.
 * @returns The suggestion, or `undefined` when no known key is close.
 *
 * @example Hints for near misses, none for strangers
 * ```ts
 * import { suggestOptionKey } from "./_option_keys.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const known = ["cert", "iat-mode"];
 * deepStrictEqual(suggestOptionKey("iatMode", known), "iat-mode");
 * deepStrictEqual(suggestOptionKey("cret", known), "cert");
 * deepStrictEqual(suggestOptionKey("foo", known), undefined);
 * ```
 */
export function suggestOptionKey(key: string, known: readonly string[]): string | undefined {
  const wanted = normalize(key);
  if (wanted === "") return undefined;
  const same = known.find((k) => normalize(k) === wanted);
  if (same !== undefined) return same;
  const limit = wanted.length <= 5 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of known) {
    const distance = editDistance(wanted, normalize(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Whether an option's key (or a short value) may be quoted in a message: one
 * plain token of at most 64 characters. A key holding a separator (`;`, `,`,
 * `=`, a space, a quote) is likely part of another option's value (a
 * password joined to its neighbour by mistake, as in `password=pa ss;w=rd`),
 * so it is never printed.
 *
 * @param text The key.
 * @returns True when it can be shown.
 *
 * @example A key, and a piece of a password
 * ```ts
 * import { isPlainOptionKey } from "./_option_keys.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(isPlainOptionKey("iat-mode"), true);
 * strictEqual(isPlainOptionKey("ss;w"), false);
 * ```
 */
export function isPlainOptionKey(text: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/.test(text);
}

/** Who reports in {@linkcode dropUnknownOptions}, and to whom. */
export interface DropUnknownOptionsReport {
  /** The transport's name, put in each report. */
  readonly transport: string;
  /** Told about each unknown key. Defaults to doing nothing. */
  readonly onIgnored?: (ignored: IgnoredOption) => void;
  /**
   * The other side and its keys: a key only it knows (an obfs4 bridge
   * line's `cert` given to the server) is reported with a reason saying so.
   */
  readonly otherSide?: { readonly name: "client" | "server"; readonly keys: readonly string[] };
}

/**
 * Keep the options whose keys a transport knows and report each other key
 * (never its value) to `onIgnored`, with a "did you mean" suggestion when a
 * known key is close (see {@linkcode suggestOptionKey}). Transports are
 * liberal in what they take, as obfs4proxy and lyrebird are: a bridge line
 * may carry keys meant for other implementations or newer versions.
 * {@linkcode defineTransport} calls it for transports that declare their
 * `optionKeys`.
 *
 * @param options The options given.
 * @param known The keys the transport understands.
 * @param report The transport's name, and `onIgnored`, told about each
 * unknown key (defaults to doing nothing).
 * @returns The known options (the same object when nothing was dropped).
 *
 * @example Dropping a key meant for someone else
 * ```ts
 * import type { IgnoredOption } from "@ptkit/ptkit/transports";
 * import { dropUnknownOptions } from "./_option_keys.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const ignored: IgnoredOption[] = [];
 * const kept = dropUnknownOptions(
 *   { cert: "abc", iatMode: "0", ver: "1" },
 *   ["cert", "iat-mode"],
 *   { transport: "obfs4", onIgnored: (i) => ignored.push(i) },
 * );
 * deepStrictEqual(kept, { cert: "abc" });
 * deepStrictEqual(ignored, [
 *   { transport: "obfs4", key: "iatMode", suggestion: "iat-mode" },
 *   { transport: "obfs4", key: "ver" },
 * ]);
 * ```
 */
export function dropUnknownOptions(
  options: TransportOptions,
  known: readonly string[],
  report: DropUnknownOptionsReport,
): TransportOptions {
  const { transport, onIgnored, otherSide } = report;
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length === 0) return options;
  const kept: Record<string, string> = {};
  for (const key of Object.keys(options)) {
    if (known.includes(key)) kept[key] = options[key]!;
  }
  for (const key of unknown) {
    if (otherSide?.keys.includes(key)) {
      const side = otherSide.name === "client" ? "server" : "client";
      onIgnored?.({
        transport,
        key,
        reason: `it is a ${otherSide.name} option, not a ${side} one`,
      });
      continue;
    }
    const suggestion = suggestOptionKey(key, known);
    onIgnored?.(suggestion === undefined ? { transport, key } : { transport, key, suggestion });
  }
  return kept;
}
