// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { TransportOptions } from "../../transports/transport.ts";
import { FirstValuePairs } from "./_first_value.ts";

/** Options for the `k=v` list parsers ({@linkcode parseTorArgs}, {@linkcode parseEscapedPairs}). */
export interface KeyValueListOptions {
  /**
   * Called once for each key that the list gives more than once. The first
   * value is kept, as goptlib's `Args.Get` reads it (goptlib keeps every
   * value; lyrebird's and obfs4proxy's transports read the first). Only the
   * key is passed, never a value, so that it can be logged.
   */
  readonly onRepeatedKey?: (key: string) => void;
}

/**
 * Parse transport arguments in tor's `k=v;k=v` form (bridge line arguments
 * as they travel in SOCKS user names, and the items of
 * `TOR_PT_SERVER_TRANSPORT_OPTIONS`). A backslash escapes the next
 * character; `;` separates pairs, the first unescaped `=` separates key
 * from value. A repeated key keeps its first value (see
 * {@linkcode KeyValueListOptions}).
 *
 * @param text The arguments.
 * @param options What to do about repeated keys.
 * @returns The arguments as a map (empty for the empty string).
 * @throws {SyntaxError} On an empty key, a pair without `=` or a trailing
 * backslash. The message names the pair by its position, never by its text
 * (arguments hold secrets).
 */
export function parseTorArgs(text: string, options: KeyValueListOptions = {}): TransportOptions {
  return parseEscapedPairs(text, ";", "transport arguments", options);
}

/**
 * Parse a list of `key=value` pairs joined by `separator`, in which a
 * backslash escapes the next character (tor's `k=v;k=v` and the `ARGS:` of
 * an `SMETHOD` line, `k=v,k=v`). A value may hold unescaped `=`. A repeated
 * key keeps its first value and is reported once to
 * `options.onRepeatedKey`.
 *
 * @param text The list; empty gives no pairs.
 * @param separator What joins the pairs.
 * @param what What the list is, for error messages.
 * @param options What to do about repeated keys.
 * @returns The pairs.
 * @throws {SyntaxError} On a pair without `=`, an empty key, or a trailing
 * backslash (the message gives the pair's position, not its text).
 */
export function parseEscapedPairs(
  text: string,
  separator: string,
  what: string,
  options: KeyValueListOptions = {},
): TransportOptions {
  const pairs = new FirstValuePairs(options.onRepeatedKey);
  if (text === "") return pairs.values;
  splitEscaped(text, separator, what).forEach((item, index) => {
    pairs.add(...splitPair(item, index, what));
  });
  return pairs.values;
}

/**
 * Format transport arguments in tor's `k=v;k=v` form, escaping `\`, `;`
 * and `=` (in keys) with a backslash: the inverse of
 * {@linkcode parseTorArgs}.
 *
 * @param options The arguments.
 * @returns The text form.
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
 * strings). A key the object repeats keeps its first value, as in the
 * `k=v` forms (`JSON.parse` would keep the last), and is reported once to
 * `options.onRepeatedKey`.
 *
 * @param text The JSON text.
 * @param options What to do about repeated keys.
 * @returns The settings.
 * @throws {SyntaxError} When the text is not JSON, not an object, or holds a
 * value that is not a string, number or boolean.
 */
export function parseJsonSettings(
  text: string,
  options: KeyValueListOptions = {},
): TransportOptions {
  let value: OrderedJson;
  try {
    value = parseOrderedJson(text);
  } catch (error) {
    throw new SyntaxError(`Cannot parse JSON settings: ${jsonError(error)}`);
  }
  return jsonSettings(value, new FirstValuePairs(options.onRepeatedKey));
}

/** JSON as parsed with each object's members in order, repeated keys included. */
type OrderedJson =
  | string
  | number
  | boolean
  | null
  | OrderedJson[]
  | { readonly members: [string, OrderedJson][] };

/** Whether a value is an object (in {@linkcode OrderedJson}'s form). */
function isJsonObject(value: OrderedJson): value is { readonly members: [string, OrderedJson][] } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What a JSON value is, for messages (never the value). */
function jsonKind(value: OrderedJson): string {
  return Array.isArray(value) ? "an array" : value === null ? "null" : typeof value;
}

/** Add the members of a settings object (`{"k":"v"}`) to `pairs`; returns its values. */
function jsonSettings(value: OrderedJson, pairs: FirstValuePairs): Record<string, string> {
  if (!isJsonObject(value)) {
    throw new SyntaxError(`Cannot parse JSON settings: expected an object, got ${jsonKind(value)}`);
  }
  for (const [k, v] of value.members) {
    if (typeof v === "string") pairs.add(k, v);
    else if (typeof v === "number" || typeof v === "boolean") pairs.add(k, String(v));
    else {
      throw new SyntaxError(
        `Cannot parse JSON settings: value of ${
          JSON.stringify(k)
        } must be a string, number or boolean, got ${v === null ? "null" : jsonKind(v)}`,
      );
    }
  }
  return pairs.values;
}

/**
 * Parse JSON keeping every member of every object in order: `JSON.parse`
 * checks the text (its errors are thrown), then a scan of the checked text
 * collects the members, with strings and numbers read by `JSON.parse`.
 * Options are objects of objects of strings at most: an array or object
 * nested deeper is skipped without recursion (its kind stays, empty), so
 * that no nesting depth the text holds can exhaust the stack.
 */
function parseOrderedJson(text: string): OrderedJson {
  JSON.parse(text);
  let i = 0;
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const literal = /true|false|null|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const string = (): string => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  /** Skip the array or object at `i` (its brackets matched, strings skipped). */
  const skip = (): OrderedJson => {
    const kind = text[i];
    for (let depth = 0;;) {
      const c = text[i++];
      if (c === '"') {
        while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
        i++;
      } else if (c === "[" || c === "{") depth++;
      else if ((c === "]" || c === "}") && --depth === 0) break;
    }
    return kind === "[" ? [] : { members: [] };
  };
  const value = (depth = 0): OrderedJson => {
    space();
    if ((text[i] === "{" || text[i] === "[") && depth >= 2) return skip();
    if (text[i] === "{") {
      const members: [string, OrderedJson][] = [];
      i++;
      space();
      if (text[i] === "}") i++;
      else {
        do {
          space();
          const key = string();
          space();
          i++; // ':'
          members.push([key, value(depth + 1)]);
          space();
        } while (text[i++] === ",");
      }
      return { members };
    }
    if (text[i] === "[") {
      const items: OrderedJson[] = [];
      i++;
      space();
      if (text[i] === "]") i++;
      else {
        do {
          items.push(value(depth + 1));
          space();
        } while (text[i++] === ",");
      }
      return items;
    }
    if (text[i] === '"') return string();
    literal.lastIndex = i;
    const token = literal.exec(text)![0];
    i += token.length;
    return JSON.parse(token);
  };
  return value();
}

/** Options for {@linkcode parseTransportOptions}. */
export interface TransportOptionsListOptions {
  /**
   * Called once for each key given more than once for one transport; the
   * first value is kept. Receives the key and the transport name, never a
   * value (options hold keys), so that it can be logged.
   */
  readonly onRepeatedKey?: (key: string, transport: string) => void;
}

/**
 * Parse per-transport options: tor's `name:k=v;name:k=v` form
 * (`TOR_PT_SERVER_TRANSPORT_OPTIONS`, `-options`), or a JSON object mapping
 * names to objects of settings (`{"name":{"k":"v"}}`), or a JSON object of
 * settings that applies to every transport (`{"k":"v"}`, stored under `*`).
 *
 * In tor's form a backslash escapes the next character anywhere: in the
 * transport name (`t\:1:k=v` is option `k=v` of transport `t:1`), the key
 * and the value. The name ends at the first unescaped `:`, the key at the
 * first unescaped `=`, the item at the next unescaped `;`. A key given
 * twice for one transport keeps its first value (goptlib keeps both and
 * transports read the first) and is reported once to
 * `options.onRepeatedKey`.
 *
 * @param text The options.
 * @param options What to do about repeated keys.
 * @returns The options of each transport name.
 * @throws {SyntaxError} When the text is malformed: an item without a
 * name, key or `=`, a trailing backslash, bad JSON. Messages name items by
 * position and never quote a value (options hold private keys).
 */
export function parseTransportOptions(
  text: string,
  options: TransportOptionsListOptions = {},
): Map<string, TransportOptions> {
  const result = new Map<string, Record<string, string>>();
  if (text.trimStart().startsWith("{")) {
    let value: OrderedJson;
    try {
      value = parseOrderedJson(text);
    } catch (error) {
      throw new SyntaxError(`Cannot parse transport options: ${jsonError(error)}`);
    }
    // A repeated key keeps its first value, as in tor's form; a transport
    // named twice gets the members of both.
    const members = isJsonObject(value) ? value.members : [];
    if (members.every(([, v]) => isJsonObject(v))) {
      const byName = new Map<string, FirstValuePairs>();
      for (const [name, v] of members) {
        let pairs = byName.get(name);
        if (pairs === undefined) {
          pairs = new FirstValuePairs((key) => options.onRepeatedKey?.(key, name));
          byName.set(name, pairs);
          result.set(name, pairs.values);
        }
        jsonSettings(v, pairs);
      }
    } else {
      const pairs = new FirstValuePairs((key) => options.onRepeatedKey?.(key, "*"));
      result.set("*", jsonSettings(value, pairs));
    }
    return result;
  }
  if (text === "") return result;
  const what = "transport options";
  const byName = new Map<string, FirstValuePairs>();
  splitEscaped(text, ";", what).forEach((item, index) => {
    const colon = unescapedIndex(item, ":");
    if (colon <= 0) {
      // The shape is described, never the item (it may hold a password).
      const torrc = /^\s*[A-Za-z_][A-Za-z0-9_]*\s+[^\s=]+=/.test(item)
        ? "; torrc's 'ServerTransportOptions obfs4 a=1' is written obfs4:a=1 here"
        : "";
      throw new SyntaxError(
        `Cannot parse ${what}: item ${index + 1} has no 'name:' (expected name:key=value, ` +
          `every item naming its transport: obfs4:a=1;obfs4:b=2, or JSON ` +
          `{"obfs4":{"a":"1","b":"2"}})${torrc}`,
      );
    }
    const name = unescape(item.slice(0, colon));
    let pairs = byName.get(name);
    if (pairs === undefined) {
      pairs = new FirstValuePairs((key) => options.onRepeatedKey?.(key, name));
      byName.set(name, pairs);
      result.set(name, pairs.values);
    }
    pairs.add(...splitPair(item.slice(colon + 1), index, what));
  });
  return result;
}

/**
 * Split `text` at each `separator` that no backslash escapes; the escapes
 * stay in the pieces.
 */
function splitEscaped(text: string, separator: string, what: string): string[] {
  const items: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") {
      if (++i >= text.length) throw new SyntaxError(`Cannot parse ${what}: trailing backslash`);
    } else if (text[i] === separator) {
      items.push(text.slice(start, i));
      start = i + 1;
    }
  }
  items.push(text.slice(start));
  return items;
}

/**
 * What went wrong in `JSON.parse`, without the excerpt of the input V8 puts
 * in its message (the input may hold keys or passwords).
 */
function jsonError(error: unknown): string {
  const position = /position ([0-9]+)/.exec(String((error as Error)?.message));
  return position === null ? "invalid JSON" : `invalid JSON at position ${position[1]}`;
}

/** Index of the first `char` that no backslash escapes, or -1. */
function unescapedIndex(text: string, char: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === char) return i;
  }
  return -1;
}

/** Drop the escaping backslashes (each escapes the character after it). */
function unescape(text: string): string {
  return text.replace(/\\(.)/gs, "$1");
}

/** Split one escaped `key=value` item (the `index`-th) into its unescaped key and value. */
function splitPair(item: string, index: number, what: string): [string, string] {
  const eq = unescapedIndex(item, "=");
  if (eq < 0) throw new SyntaxError(`Cannot parse ${what}: pair ${index + 1} has no '='`);
  if (eq === 0) throw new SyntaxError(`Cannot parse ${what}: empty key in pair ${index + 1}`);
  return [unescape(item.slice(0, eq)), unescape(item.slice(eq + 1))];
}

/**
 * Format a server transport's client options as the `ARGS:` field of an
 * `SMETHOD` line: `ARGS:k=v,k=v` with keys sorted and `\`, `=` and `,`
 * escaped with a backslash (in keys and values). Empty options give `""`
 * (no field).
 *
 * @param options What clients need (the transport's `clientOptions`).
 * @returns The field, or the empty string.
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

/**
 * Format `TOR_PT_SERVER_TRANSPORT_OPTIONS`: `name:k=v;name:k=v` with `\`,
 * `:`, `;` and `=` escaped inside each pair and in the transport name (as
 * goptlib and ptkit read them).
 *
 * @param options Options by transport name.
 * @returns The variable's value.
 */
export function formatServerTransportOptions(
  options: Readonly<Record<string, TransportOptions>>,
): string {
  const items: string[] = [];
  for (const [name, pairs] of Object.entries(options)) {
    for (const [k, v] of Object.entries(pairs)) {
      const escapedName = name.replace(/[\\:;=]/g, "\\$&");
      items.push(`${escapedName}:${formatTorArgs({ [k]: v }).replace(/:/g, "\\:")}`);
    }
  }
  return items.join(";");
}

/**
 * Parse SIP003 plugin options (`SS_PLUGIN_OPTIONS`, ss-libev's
 * `--plugin-opts`): `k=v;k=v` as tor's arguments (a backslash escapes the
 * next character, the first unescaped `=` ends the key), and also what the
 * plugins in the field accept: a key without `=` is a flag whose value is
 * the empty string (`server;tls`), empty items are skipped (`a=1;;b=2;`).
 * Spaces around an item, its key or its value are not part of them
 * (`server; state = /x`, as people write lists); an escaped space (`\ `)
 * stays. A repeated key
 * keeps its first value.
 *
 * @param text The options.
 * @param options What to do about repeated keys.
 * @returns The options.
 * @throws {SyntaxError} On an empty key or a trailing backslash (the
 * message gives the item's position, never its text: options hold keys).
 */
export function parsePluginOptions(
  text: string,
  options: KeyValueListOptions = {},
): TransportOptions {
  const what = "plugin options";
  const pairs = new FirstValuePairs(options.onRepeatedKey);
  splitEscaped(text, ";", what).forEach((raw, index) => {
    const item = trimUnescaped(raw);
    if (item === "") return;
    const eq = unescapedIndex(item, "=");
    if (eq < 0) {
      pairs.add(unescape(item), "");
      return;
    }
    const key = trimUnescaped(item.slice(0, eq));
    const value = item.slice(eq + 1).replace(/^\s+/, "");
    pairs.add(...splitPair(`${key}=${value}`, index, what));
  });
  return pairs.values;
}

/** `text` without the white space at its ends, except an escaped one (`\ `). */
function trimUnescaped(text: string): string {
  let end = text.length;
  while (end > 0 && /\s/.test(text[end - 1]!)) {
    // An odd run of backslashes before it escapes it.
    let slashes = 0;
    while (end - 2 - slashes >= 0 && text[end - 2 - slashes] === "\\") slashes++;
    if (slashes % 2 === 1) break;
    end--;
  }
  return text.slice(0, end).replace(/^\s+/, "");
}

/**
 * Format SIP003 plugin options, the inverse of
 * {@linkcode parsePluginOptions}: `k=v;k=v` with `\`, `;` and `=`
 * escaped by a backslash, in keys and values, and white space at their ends;
 * an empty value gives the bare key (a flag).
 *
 * @param options The options, in order.
 * @returns The text form.
 */
export function formatPluginOptions(options: TransportOptions): string {
  // White space at either end is escaped: the parser trims what is not.
  const escape = (s: string) => s.replace(/[\\;=]/g, "\\$&").replace(/^\s|\s$/g, "\\$&");
  return Object.entries(options)
    .map(([k, v]) => v === "" ? escape(k) : `${escape(k)}=${escape(v)}`)
    .join(";");
}
