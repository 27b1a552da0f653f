// Copyright the ptkit authors. MIT license.

import denoJson from "../deno.json" with { type: "json" };

/**
 * ptkit's version, from `deno.json`: what `main.ts --version` prints and
 * the `VERSION` of the `STATUS TYPE=version IMPLEMENTATION=ptkit` line the
 * managed proxy sends after `VERSION`.
 *
 * @example Reading the version
 * ```ts
 * import { PTKIT_VERSION } from "@ptkit/ptkit/ipc";
 * import { match } from "node:assert";
 *
 * match(PTKIT_VERSION, /^[0-9]+\.[0-9]+\.[0-9]+/);
 * ```
 */
export const PTKIT_VERSION: string = denoJson.version;
