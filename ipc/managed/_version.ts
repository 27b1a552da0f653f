// Copyright the ptkit authors. MIT license.

import denoJson from "../../deno.json" with { type: "json" };

/**
 * ptkit's version, from `deno.json`: what `main.ts --version` prints and
 * the `VERSION` of the `STATUS TYPE=version IMPLEMENTATION=ptkit` line the
 * managed proxy sends after `VERSION`.
 */
export const PTKIT_VERSION: string = denoJson.version;
