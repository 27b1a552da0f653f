// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { TransportOptions } from "../transports/transport.ts";

/**
 * Parse transport arguments in tor's `k=v;k=v` form (bridge line arguments
 * as they travel in SOCKS user names, and the items of
 * `TOR_PT_SERVER_TRANSPORT_OPTIONS`). A backslash escapes the next byte;
 * `;` separates pairs, the first unescaped `=` separates key from value.
 *
 * @param text The arguments.
 * @returns The arguments as a map (empty for the empty string).
 * @throws {SyntaxError} On an empty key, a pair without `=`, a trailing
 * backslash or a repeated key.
 *
 * @example Parsing escaped arguments
 * ```ts
 * import { parseTorArgs } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseTorArgs("cert=a\\;b;iat-mode=0"), { cert: "a;b", "iat-mode": "0" });
 * throws(() => parseTorArgs("novalue"), SyntaxError);
 * ```
 */
export function parseTorArgs(text: string): TransportOptions {
  return parseEscapedPairs(text, ";", "transport arguments");
}

/**
 * Parse a list of `key=value` pairs joined by `separator`, in which a
 * backslash escapes the next character (tor's `k=v;k=v` and the `ARGS:` of
 * an `SMETHOD` line, `k=v,k=v`). A value may hold unescaped `=`.
 *
 * @param text The list; empty gives no pairs.
 * @param separator What joins the pairs.
 * @param what What the list is, for error messages.
 * @returns The pairs.
 * @throws {SyntaxError} On a pair without `=`, an empty or repeated key, or
 * a trailing backslash.
 *
 * @example Parsing both forms
 * ```ts
 * import { parseEscapedPairs } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(parseEscapedPairs("a=1;b=x\\;y", ";", "arguments"), { a: "1", b: "x;y" });
 * deepStrictEqual(parseEscapedPairs("cert=a\\,b,k=v", ",", "ARGS"), { cert: "a,b", k: "v" });
 * ```
 */
export function parseEscapedPairs(
  text: string,
  separator: string,
  what: string,
): TransportOptions {
  const result: Record<string, string> = {};
  if (text === "") return result;
  let key: string | undefined;
  let current = "";
  const finish = () => {
    if (key === undefined) {
      throw new SyntaxError(
        `Cannot parse ${what}: pair ${JSON.stringify(current.slice(0, 64))} has no '='`,
      );
    }
    if (key === "") throw new SyntaxError(`Cannot parse ${what}: empty key`);
    if (Object.hasOwn(result, key)) {
      throw new SyntaxError(
        `Cannot parse ${what}: key ${JSON.stringify(key.slice(0, 64))} given twice`,
      );
    }
    result[key] = current;
    key = undefined;
    current = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\") {
      if (i + 1 >= text.length) {
        throw new SyntaxError(`Cannot parse ${what}: trailing backslash`);
      }
      current += text[++i];
    } else if (c === separator) {
      finish();
    } else if (c === "=" && key === undefined) {
      key = current;
      current = "";
    } else {
      current += c;
    }
  }
  finish();
  return result;
}

/**
 * Format transport arguments in tor's `k=v;k=v` form, escaping `\`, `;`
 * and `=` (in keys) with a backslash: the inverse of
 * {@linkcode parseTorArgs}.
 *
 * @param options The arguments.
 * @returns The text form.
 *
 * @example Round-tripping arguments
 * ```ts
 * import { formatTorArgs, parseTorArgs } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const options = { cert: "a;b\\c", "iat-mode": "0" };
 * deepStrictEqual(parseTorArgs(formatTorArgs(options)), options);
 * ```
 */
export function formatTorArgs(options: TransportOptions): string {
  const escape = (s: string, extra: RegExp) => s.replace(/\\/g, "\\\\").replace(extra, "\\$&");
  return Object.entries(options)
    .map(([k, v]) => `${escape(k, /[;=]/g)}=${escape(v, /;/g)}`)
    .join(";");
}

/**
 * Parse per-connection settings sent as JSON (PT 2.0 method `0x80`/`0x09`):
 * an object whose values are strings (numbers and booleans are turned into
 * strings).
 *
 * @param text The JSON text.
 * @returns The settings.
 * @throws {SyntaxError} When the text is not JSON, not an object, or holds a
 * value that is not a string, number or boolean.
 *
 * @example Parsing JSON settings
 * ```ts
 * import { parseJsonSettings } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseJsonSettings('{"secret":"x","n":3}'), { secret: "x", n: "3" });
 * throws(() => parseJsonSettings("[1]"), SyntaxError);
 * ```
 */
export function parseJsonSettings(text: string): TransportOptions {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(`Cannot parse JSON settings: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SyntaxError(
      `Cannot parse JSON settings: expected an object, got ${
        Array.isArray(value) ? "an array" : value === null ? "null" : typeof value
      }`,
    );
  }
  const result: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === "string") result[k] = v;
    else if (typeof v === "number" || typeof v === "boolean") result[k] = String(v);
    else {
      throw new SyntaxError(
        `Cannot parse JSON settings: value of ${JSON.stringify(k)} must be a string, got ${
          v === null ? "null" : typeof v
        }`,
      );
    }
  }
  return result;
}

/**
 * Parse per-transport options: tor's `name:k=v;name:k=v` form
 * (`TOR_PT_SERVER_TRANSPORT_OPTIONS`, `-options`), or a JSON object mapping
 * names to objects of settings (`{"name":{"k":"v"}}`), or a JSON object of
 * settings that applies to every transport (`{"k":"v"}`, stored under `*`).
 *
 * @param text The options.
 * @returns The options of each transport name.
 * @throws {SyntaxError} When the text is malformed.
 *
 * @example Parsing options for two transports
 * ```ts
 * import { parseTransportOptions } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const options = parseTransportOptions("a:k=v;b:x=1;a:j=w\\:z");
 * deepStrictEqual(options.get("a"), { k: "v", j: "w:z" });
 * deepStrictEqual(options.get("b"), { x: "1" });
 * deepStrictEqual(parseTransportOptions('{"a":{"k":"v"}}').get("a"), { k: "v" });
 * ```
 */
export function parseTransportOptions(text: string): Map<string, TransportOptions> {
  const result = new Map<string, Record<string, string>>();
  if (text.trimStart().startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new SyntaxError(`Cannot parse transport options: ${(error as Error).message}`);
    }
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.every(([, v]) => typeof v === "object" && v !== null && !Array.isArray(v))) {
      for (const [name, v] of entries) {
        result.set(name, { ...parseJsonSettings(JSON.stringify(v)) });
      }
    } else {
      result.set("*", { ...parseJsonSettings(text) });
    }
    return result;
  }
  if (text === "") return result;
  // Split at unescaped ';', keeping escapes for parseTorArgs.
  const items: string[] = [];
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\" && i + 1 < text.length) {
      current += c + text[++i];
    } else if (c === ";") {
      items.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  items.push(current);
  for (const item of items) {
    const colon = unescapedIndex(item, ":");
    if (colon <= 0) {
      throw new SyntaxError(
        `Cannot parse transport options: item ${JSON.stringify(item)} has no 'name:'`,
      );
    }
    const name = item.slice(0, colon);
    if (colon === item.length - 1) {
      throw new SyntaxError(`Cannot parse transport options: empty key for '${name}'`);
    }
    const pair = parseTorArgs(item.slice(colon + 1));
    const options = result.get(name) ?? {};
    for (const [k, v] of Object.entries(pair)) {
      if (Object.hasOwn(options, k)) {
        throw new SyntaxError(
          `Cannot parse transport options: key ${JSON.stringify(k)} of '${name}' given twice`,
        );
      }
      options[k] = v;
    }
    result.set(name, options);
  }
  return result;
}

function unescapedIndex(text: string, char: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === char) return i;
  }
  return -1;
}
