// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a module that could not load because an npm package is missing
// from node_modules/ (a checkout whose setup step, `deno install`, did not
// run), restated so that the fix is in the message.

const MISSING = /Could not find a matching package for '(npm:[^']+)' in the node_modules directory/;
const UNMAPPED = /Import "([^"]+)" not a dependency/;

/**
 * `error` restated when it says an npm package is not installed: `Cannot
 * load <what>: npm package <name> is not installed in node_modules/ (run
 * "deno install" once where ptkit's deno.json is)`, or that its name is not
 * mapped (ptkit's files imported by path, without ptkit's deno.json), with
 * the original as `cause`; any other error as it is.
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
 * @example Restating an import made without ptkit's deno.json
 * ```ts
 * import { restateMissingPackage } from "./_npm_package.ts";
 * import { ok } from "node:assert";
 *
 * const error = new TypeError('Import "libsodium-wrappers" not a dependency and not in import map');
 * const restated = restateMissingPackage(error, "the WebAssembly crypto backend") as Error;
 * ok(restated.message.includes("run with --config PATH/TO/ptkit/deno.json"));
 * ```
 *
 * @param error What the import threw.
 * @param what What was being loaded, for the message.
 * @returns The error to throw.
 */
export function restateMissingPackage(error: unknown, what: string): unknown {
  const unmapped = error instanceof Error ? UNMAPPED.exec(error.message) : null;
  if (unmapped !== null) {
    return new Error(
      `Cannot load ${what}: "${unmapped[1]}" is not mapped here: ptkit's modules were imported` +
        " without ptkit's deno.json (run with --config PATH/TO/ptkit/deno.json, or link the" +
        ' checkout: see the README, "Using the library from your own project")',
      { cause: error },
    );
  }
  const found = error instanceof Error ? MISSING.exec(error.message) : null;
  if (found === null) return error;
  return new Error(
    `Cannot load ${what}: npm package ${found[1]!.slice(4)} is not installed in node_modules/` +
      ` (run "deno install" once where ptkit's deno.json is)`,
    { cause: error },
  );
}
