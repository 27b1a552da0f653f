// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the hooks object a transport factory (createObfs4,
// createShadowsocks) takes, checked when the factory is called.

/**
 * Check a transport factory's options: `undefined` or an object, whose
 * hooks named in `functions` are functions when given. Before, `null`
 * failed with JavaScript's 'Cannot read properties of null', and a hook of
 * another type was taken and failed at the first connection.
 *
 * @param options What the caller passed.
 * @param what The call, for the message (`create an obfs4 transport`).
 * @param functions The keys whose values must be functions.
 * @param name What the object is called, for the message (`env`).
 * @throws {TypeError} When `options` is not an object, or a hook is not a
 * function.
 *
 * @example Refusing null and a hook that is not a function
 * ```ts
 * import { checkFactoryOptions } from "./_factory_options.ts";
 * import { throws } from "node:assert";
 *
 * checkFactoryOptions({ random: () => {} }, "create a transport", ["random"]);
 * throws(() => checkFactoryOptions(null, "create a transport", []), /got null/);
 * throws(() => checkFactoryOptions({ now: 5 }, "create a transport", ["now"]), TypeError);
 * throws(() => checkFactoryOptions("x", "listen", [], "env"), /env must be an object, got string/);
 * ```
 */
export function checkFactoryOptions(
  options: unknown,
  what: string,
  functions: readonly string[],
  name = "options",
): void {
  if (options === undefined) return;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `Cannot ${what}: ${name} must be an object, got ${
        options === null ? "null" : Array.isArray(options) ? "an array" : typeof options
      }`,
    );
  }
  for (const key of functions) {
    checkOptionType(
      (options as Record<string, unknown>)[key],
      "function",
      name === "options" ? key : `${name}.${key}`,
      what,
    );
  }
}

/**
 * Check an option of one type: `undefined` (the default applies) or a value
 * of that type. A value of another type was taken silently (a `reusePort`
 * of `"yes"`, a `helperDirectory` of `5`) or failed later with
 * JavaScript's own error ('dialer is not a function').
 *
 * @param value The option's value.
 * @param type The type it must have.
 * @param name The option's name, for the message (`reusePort`).
 * @param what The call, for the message (`listen`).
 * @param required Whether `undefined` is refused too (an argument, not an
 * option).
 * @throws {TypeError} When it has another type.
 *
 * @example Refusing a flag given as text
 * ```ts
 * import { checkOptionType } from "./_factory_options.ts";
 * import { throws } from "node:assert";
 *
 * checkOptionType(true, "boolean", "reusePort", "listen");
 * throws(
 *   () => checkOptionType("yes", "boolean", "reusePort", "listen"),
 *   /Cannot listen: reusePort must be a boolean, got string/,
 * );
 * ```
 */
export function checkOptionType(
  value: unknown,
  type: "boolean" | "string" | "function",
  name: string,
  what: string,
  required = false,
): void {
  if ((required || value !== undefined) && typeof value !== type) {
    throw new TypeError(
      `Cannot ${what}: ${name} must be a ${type}, got ${value === null ? "null" : typeof value}`,
    );
  }
}

/**
 * Check an abort signal option: `undefined` or an `AbortSignal`. A string
 * failed with JavaScript's 'signal.addEventListener is not a function', or
 * was taken and never aborted anything.
 *
 * @param value The option's value.
 * @param what The call, for the message (`dial`).
 * @throws {TypeError} When it is neither.
 *
 * @example Refusing a signal that is not an AbortSignal
 * ```ts
 * import { checkSignalOption } from "./_factory_options.ts";
 * import { throws } from "node:assert";
 *
 * checkSignalOption(AbortSignal.abort(), "dial");
 * throws(() => checkSignalOption("stop", "dial"), /Cannot dial: signal must be an AbortSignal, got string/);
 * ```
 */
export function checkSignalOption(value: unknown, what: string): void {
  if (value !== undefined && !(value instanceof AbortSignal)) {
    throw new TypeError(
      `Cannot ${what}: signal must be an AbortSignal, got ${
        value === null ? "null" : typeof value
      }`,
    );
  }
}

/** The members of a `TransportEnvironment` that are functions. */
const ENV_FUNCTIONS: readonly string[] = ["crypto", "onIgnoredOption", "onNotice"];

/**
 * Check a `TransportEnvironment` given to the runtime (`createConnector`,
 * `listen`, `proxy`): `undefined` or an object whose hooks are functions.
 * A string or a number was taken silently (its properties read as
 * missing), and a hook of another type failed at the first use.
 *
 * @param env What the caller passed as `env`.
 * @param what The call, for the message (`create a connector`).
 * @throws {TypeError} When `env` is not an object, or a hook is not a
 * function.
 *
 * @example Refusing an env that is a string
 * ```ts
 * import { checkEnvironment } from "./_factory_options.ts";
 * import { throws } from "node:assert";
 *
 * checkEnvironment({ onNotice: () => {} }, "listen");
 * throws(() => checkEnvironment("x", "listen"), /env must be an object, got string/);
 * ```
 */
export function checkEnvironment(env: unknown, what: string): void {
  checkFactoryOptions(env, what, ENV_FUNCTIONS, "env");
}
