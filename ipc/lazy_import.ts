// Copyright the ptkit authors. MIT license.
// Internal: imports that stay out of the start-up. Not part of the public API.

/**
 * Import the module at `url` when called, and only then. Deno loads every
 * module that a literal `import()` names, dynamic or not, before it runs
 * any code; a module named by a computed URL is left out, so features few
 * runs use (UDP, TURN, free mode) cost nothing when a PT starts. Give the
 * type as `typeof import("./the_module.ts")` (type positions are not
 * loaded).
 *
 * @param url The module's URL (`new URL("./x.ts", import.meta.url)`).
 * @returns The module.
 */
export function lazyImport<T>(url: URL): Promise<T> {
  return import(url.href);
}
