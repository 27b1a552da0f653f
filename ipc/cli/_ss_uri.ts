// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: Shadowsocks server links (SIP002 `ss://` URIs, as Outline and
// the Shadowsocks apps share them, and the legacy all-base64 form).

import { type HostPort, parseHostPort } from "../../net/address.ts";
import type { TransportOptions } from "../../transports/transport.ts";
import { parsePluginOptions } from "../lines/_args.ts";

/** What an `ss://` link says. */
export interface SsUri {
  /** The cipher (`chacha20-ietf-poly1305`, ...). */
  readonly method: string;
  /** The password (or, for the 2022 methods, the base64 key). */
  readonly password: string;
  /** The server. */
  readonly server: HostPort;
  /** The SIP003 plugin, when the link names one: its name and options. */
  readonly plugin?: { readonly name: string; readonly options: TransportOptions };
  /** The server's label (`#tag`), decoded; empty when absent. */
  readonly tag: string;
  /**
   * Outline's connection prefix (`prefix=`), as the link writes it
   * (percent-encoded: the transport's `prefix` option decodes it); absent
   * when the link has none.
   */
  readonly prefix?: string;
  /**
   * The names of the query parameters besides `plugin` and `prefix`
   * (Outline's `outline`, ...), which are not used; absent when there are none.
   */
  readonly ignored?: readonly string[];
}

/**
 * Parse an `ss://` link: SIP002 `ss://USERINFO@HOST:PORT[/][?plugin=...][#TAG]`,
 * where USERINFO is base64url or standard base64 of `method:password`
 * (padding optional, percent-encoded or not) or `method:password`
 * percent-encoded (the 2022 methods' form), the plugin part
 * percent-encoded `name;k=v;k=v` (a `+` in it is a `+`; an empty one is
 * none), Outline's
 * `prefix` kept as written (the first, as Outline's clients take it); or the legacy
 * `ss://BASE64(method:password@host:port)[#TAG]`. Other query parameters
 * are not used, their names listed in `ignored`; white space around the
 * link is dropped. No error message
 * holds the password or the userinfo.
 *
 * A plugin option given twice keeps its first value (`transport` twice is
 * refused: which transport runs is not left to the first of two), and is
 * reported once to `options.onRepeatedKey` (the key, never a value).
 *
 * @param text The link.
 * @param options What to do about plugin options given twice.
 * @returns What it says.
 * @throws {SyntaxError} When the link is malformed.
 * @throws {RangeError} When the port is out of range.
 */
export function parseSsUri(
  text: string,
  options: { readonly onRepeatedKey?: (key: string) => void } = {},
): SsUri {
  const fail = (why: string): never => {
    throw new SyntaxError(`Cannot parse the ss:// link: ${why}`);
  };
  // A link copied from a web page or a message often brings white space
  // (a space, a line break, a no-break space) at its ends: none is its.
  text = text.trim();
  if (!/^ss:\/\//i.test(text)) fail("it must start with ss://");
  if (text.length > 8192) fail("longer than 8192 characters");
  let rest = text.slice(5);
  let tag = "";
  const hash = rest.indexOf("#");
  if (hash >= 0) {
    tag = decode(rest.slice(hash + 1), "the #tag", fail);
    rest = rest.slice(0, hash);
  }
  // The userinfo ends at the last '@' before the query: RFC 3986 lets a
  // query hold '@' unencoded (`?prefix=a@b`), and base64, base64url and
  // percent-encoded userinfo never hold '?'. Failing that (a '?' left
  // unencoded in a password), the last '@' of all.
  const question = rest.indexOf("?");
  let at = question < 0 ? -1 : rest.lastIndexOf("@", question);
  if (at < 0) at = rest.lastIndexOf("@");
  let userinfo: string;
  if (at < 0) {
    // Legacy: everything but the tag is base64 of method:password@host:port.
    const plain = base64Text(rest.replace(/\/$/, ""), fail);
    at = plain.lastIndexOf("@");
    if (at < 0) fail("no '@' between the credentials and the server");
    userinfo = plain.slice(0, at);
    rest = plain.slice(at + 1);
    if (/[/?]/.test(rest)) fail("the legacy form has no path or query");
  } else {
    const raw = rest.slice(0, at);
    rest = rest.slice(at + 1);
    // Percent-decoded first: apps share standard base64 with its padding
    // encoded (`...dw%3D%3D@`). Base64 has no ':', method:password has.
    const decoded = decode(raw, "the credentials", fail);
    userinfo = decoded.includes(":") ? decoded : base64Text(decoded, fail);
  }
  const colon = userinfo.indexOf(":");
  if (colon < 0) fail("the credentials are not method:password");
  const method = userinfo.slice(0, colon);
  const password = userinfo.slice(colon + 1);
  // go-shadowsocks2's names have '_' (AEAD_CHACHA20_POLY1305): the
  // transport names them, with the name to write.
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(method)) fail("the method is empty or not a cipher name");
  if (password === "") fail("the password is empty");
  const query = rest.search(/[/?]/);
  const authority = query < 0 ? rest : rest.slice(0, query);
  let after = query < 0 ? "" : rest.slice(query);
  if (after.startsWith("/")) after = after.slice(1);
  if (after !== "" && !after.startsWith("?")) fail("a path after the port");
  if (!/:[0-9]+$/.test(authority)) {
    // The host part is the server's address, not a secret: but a port that
    // is not a number is only named as such.
    fail(
      /:[^:\]]*$/.test(authority) ? "the server's port is not a number" : "the server has no port",
    );
  }
  // The host may be percent-encoded (RFC 3986), an IPv6 zone always is
  // (RFC 6874: [fe80::1%25eth0]); a bare zone (%eth0) is no escape and is
  // kept. Port 0 cannot be dialed: refused in parseHostPort's one wording.
  let host = authority;
  try {
    host = decodeURIComponent(authority);
  } catch {
    // Not percent-encoding: the text as it is.
  }
  const server = parseHostPort(host, "ss:// server", 1);
  let plugin: SsUri["plugin"];
  let prefix: string | undefined;
  const ignored = new Set<string>();
  for (const parameter of after.slice(1).split("&")) {
    const eq = parameter.indexOf("=");
    const key = eq < 0 ? parameter : parameter.slice(0, eq);
    if (key === "prefix") {
      // Outline's clients take the first (Go's url.Values.Get).
      prefix ??= eq < 0 ? "" : parameter.slice(eq + 1);
      continue;
    }
    if (key !== "plugin") {
      // Named only: a value might be anything.
      if (key !== "") ignored.add(key.slice(0, 64));
      continue;
    }
    // SIP002 percent-encodes the plugin (RFC 3986): a '+' is a '+' (a
    // cert's base64), not form encoding's space.
    const value = eq < 0 ? "" : decode(parameter.slice(eq + 1), "the plugin", fail);
    // An empty plugin (`?plugin=`, as link generators write a server
    // without one) is no plugin, as the Shadowsocks apps read it.
    if (value.trim() === "") continue;
    if (plugin !== undefined) fail("two plugin parameters");
    const semicolon = value.indexOf(";");
    const name = semicolon < 0 ? value : value.slice(0, semicolon);
    if (name.trim() === "") fail("the plugin has no name");
    const repeated: string[] = [];
    try {
      plugin = {
        name,
        options: parsePluginOptions(semicolon < 0 ? "" : value.slice(semicolon + 1), {
          onRepeatedKey: (key) => repeated.push(key),
        }),
      };
    } catch (error) {
      fail((error as Error).message.replace(/^Cannot parse /, "bad "));
    }
    // Which transport runs is not left to the first of two.
    if (repeated.includes("transport")) fail("the plugin gives 'transport' more than once");
    for (const key of repeated) options.onRepeatedKey?.(key);
  }
  return {
    method,
    password,
    server,
    ...(plugin === undefined ? {} : { plugin }),
    tag,
    ...(prefix === undefined || prefix === "" ? {} : { prefix }),
    ...(ignored.size === 0 ? {} : { ignored: [...ignored] }),
  };
}

/** Percent-decode `text`, failing with `what` (never the text). */
function decode(text: string, what: string, fail: (why: string) => never): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return fail(`bad percent-encoding in ${what}`);
  }
}

/** Base64 or base64url text (padding optional) as UTF-8, failing without quoting it. */
function base64Text(text: string, fail: (why: string) => never): string {
  const plain = text.replace(/-/g, "+").replace(/_/g, "/");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(plain) || plain.replace(/=+$/, "").length % 4 === 1) {
    return fail("the credentials are neither base64url nor method:password");
  }
  const padded = plain.replace(/=+$/, "");
  try {
    const bytes = Uint8Array.from(
      atob(padded + "=".repeat((4 - padded.length % 4) % 4)),
      (c) => c.charCodeAt(0),
    );
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail("the credentials are not base64 of UTF-8 text");
  }
}
