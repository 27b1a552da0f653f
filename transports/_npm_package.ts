// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a module that could not load because an npm package is missing
// from node_modules/ (a checkout whose setup step, `deno install`, did not
// run), restated so that the fix is in the message.

const MISSING = /Could not find a matching package for '(npm:[^']+)' in the node_modules directory/;

/**
 * `error` restated when it says an npm package is not installed: `Cannot
 * load <what>: npm package <name> is not installed in node_modules/ (run
 * "deno install" once where ptkit's deno.json is)`, with the original as
 * `cause`; any other error as it is.
 *
 * @example Restating Deno's error
 * ```ts
 * import { restateMissingPackage } from "./_npm_package.ts";
 * import { strictEqual } from "node:assert";
 *
 * const error = new TypeError(
 *   "Could not find a matching package for 'npm:@noble/hashes@2.4.0' in the node_modules directory.",
 * );
 * const restated = restateMissingPackage(error, "transport \"webtunnel\"") as Error;
 * strictEqual(
 *   restated.message,
 *   'Cannot load transport "webtunnel": npm package @noble/hashes@2.4.0 is not installed in' +
 *     ' node_modules/ (run "deno install" once where ptkit\'s deno.json is)',
 * );
 * ```
 *
 * @param error What the import threw.
 * @param what What was being loaded, for the message.
 * @returns The error to throw.
 */
export function restateMissingPackage(error: unknown, what: string): unknown {
  const found = error instanceof Error ? MISSING.exec(error.message) : null;
  if (found === null) return error;
  return new Error(
    `Cannot load ${what}: npm package ${found[1]!.slice(4)} is not installed in node_modules/` +
      ` (run "deno install" once where ptkit's deno.json is)`,
    { cause: error },
  );
}
