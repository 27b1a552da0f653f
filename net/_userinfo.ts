// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/** A user name and, when one was given, a password. */
export interface Userinfo {
  /** The user name. */
  readonly username: string;
  /** The password; absent when the text had no `:`. */
  readonly password?: string;
}

/** The parts of a URI authority, `[userinfo@]host[:port]`. */
export interface Authority {
  /** Everything before the last `@`, when there is one. */
  readonly userinfo?: string;
  /** Everything after the last `@` (or all of it). */
  readonly host: string;
}

/**
 * Split a URI authority at its **last** `@`: what comes before is the
 * userinfo, what comes after the host and port. A password may hold `@`
 * (tor writes `HTTPSProxyAuthenticator alice:p@ss:w0rd` into `TOR_PT_PROXY`
 * verbatim), a host never does, so the last `@` is the only safe split, as
 * Go's `net/url` (used by obfs4proxy and lyrebird) does.
 *
 * @param authority The text after `scheme://`.
 * @returns The userinfo (undefined without `@`) and the host part.
 *
 * @example Passwords with @ in them
 * ```ts
 * import { splitAuthority } from "./_userinfo.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(splitAuthority("alice:p@ss:w0rd@127.0.0.1:3128"), {
 *   userinfo: "alice:p@ss:w0rd",
 *   host: "127.0.0.1:3128",
 * });
 * deepStrictEqual(splitAuthority("127.0.0.1:3128"), { host: "127.0.0.1:3128" });
 * ```
 */
export function splitAuthority(authority: string): Authority {
  const at = authority.lastIndexOf("@");
  return at < 0
    ? { host: authority }
    : { userinfo: authority.slice(0, at), host: authority.slice(at + 1) };
}

/**
 * Split userinfo (`user[:password]`) at its **first** `:`: a user name
 * never holds one (RFC 3986 3.2.1, RFC 7617 2), a password may. With
 * `percentDecode`, `%XX` escapes are decoded in both parts after the split
 * (`%40` is `@`, `%3A` a `:` that belongs to the user name); a `%` that does
 * not start a valid UTF-8 escape is an error. The same rule serves URI
 * userinfo (`TOR_PT_PROXY`, decoded) and `USER:PASSWORD` flags (TURN users,
 * not decoded).
 *
 * @param text The userinfo.
 * @param options `percentDecode`: decode `%XX` escapes (default false).
 * @returns The user name and password.
 * @throws {SyntaxError} When decoding and an escape is malformed (the
 * message never quotes the text: it may hold a password).
 *
 * @example The forms tor and users write
 * ```ts
 * import { parseUserinfo } from "./_userinfo.ts";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseUserinfo("alice:p@ss:w0rd"), { username: "alice", password: "p@ss:w0rd" });
 * deepStrictEqual(parseUserinfo("alice"), { username: "alice" });
 * deepStrictEqual(parseUserinfo("alice:"), { username: "alice", password: "" });
 * deepStrictEqual(
 *   parseUserinfo("a%3Ab:p%40ss", { percentDecode: true }),
 *   { username: "a:b", password: "p@ss" },
 * );
 * throws(() => parseUserinfo("u:%zz", { percentDecode: true }), SyntaxError);
 * ```
 */
export function parseUserinfo(
  text: string,
  options: { readonly percentDecode?: boolean } = {},
): Userinfo {
  const decode = (part: string, what: string): string => {
    if (!options.percentDecode) return part;
    try {
      return decodeURIComponent(part);
    } catch {
      throw new SyntaxError(`Cannot parse user info: bad percent-encoding in the ${what}`);
    }
  };
  const colon = text.indexOf(":");
  if (colon < 0) return { username: decode(text, "user name") };
  return {
    username: decode(text.slice(0, colon), "user name"),
    password: decode(text.slice(colon + 1), "password"),
  };
}

/** A URI's `scheme://userinfo@`, up to the last `@` before white space. */
const URI_USERINFO = /([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^\s]*@/g;

/**
 * Text safe to print: the whole userinfo of every URI in it is replaced by
 * `***` (everything between `scheme://` and the last `@` before white
 * space, so no part of a password that holds `@`, `:` or `/` is left). Text
 * without `://` is taken as one authority (`user:pass@host:port`):
 * everything before its last `@` goes. Text without `@` is unchanged.
 *
 * @param text A URI, an authority, or a message holding URIs.
 * @returns The text with the userinfo redacted.
 *
 * @example Redacting a password that holds @
 * ```ts
 * import { redactUserinfo } from "./_userinfo.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(
 *   redactUserinfo("http://alice:p@ss:w0rd@127.0.0.1:3128"),
 *   "http://***@127.0.0.1:3128",
 * );
 * deepStrictEqual(redactUserinfo("alice:pw@127.0.0.1:1"), "***@127.0.0.1:1");
 * deepStrictEqual(
 *   redactUserinfo('Unexpected argument "socks5://u:p@127.0.0.1:1"'),
 *   'Unexpected argument "socks5://***@127.0.0.1:1"',
 * );
 * ```
 */
export function redactUserinfo(text: string): string {
  if (text.includes("://")) return text.replace(URI_USERINFO, "$1***@");
  const at = text.lastIndexOf("@");
  return at < 0 ? text : `***${text.slice(at)}`;
}

/**
 * The message for a command-line argument that is not a flag, safe to
 * print: a stray value may be a secret (a password, a cert, an `ss://` link
 * whose whole body is base64 of its credentials), so only its position
 * and what it looks like are given: a URI by its scheme, a `key=value` by
 * its key, anything else not at all.
 *
 * @param arg The argument.
 * @param position Its 1-based position among the arguments.
 * @returns The message.
 *
 * @example A link and a key=value
 * ```ts
 * import { unexpectedArgument } from "./_userinfo.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(
 *   unexpectedArgument("ss://YWVzOnB3QDE6Mg==", 3),
 *   "Unexpected argument 3 (an ss:// URI): expected a flag (-name or --name)",
 * );
 * strictEqual(
 *   unexpectedArgument("password=hunter2", 1),
 *   "Unexpected argument 1 (password=...): expected a flag (-name or --name)",
 * );
 * ```
 */
export function unexpectedArgument(arg: string, position: number): string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]{0,15}):\/\//.exec(arg)?.[1];
  const key = /^([A-Za-z][A-Za-z0-9_.-]{0,31})=/.exec(arg)?.[1];
  const looks = scheme !== undefined
    ? ` (an ${scheme.toLowerCase()}:// URI)`
    : key !== undefined
    ? ` (${key}=...)`
    : "";
  return `Unexpected argument ${position}${looks}: expected a flag (-name or --name)`;
}
