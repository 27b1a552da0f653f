// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { TransportOptions } from "../../transports/transport.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../../net/address.ts";
import type { KeyValueListOptions } from "./_args.ts";
import { FirstValuePairs } from "./_first_value.ts";

/** A parsed bridge line (tor's `Bridge` option without the keyword). */
export interface BridgeLine {
  /** The transport name, when the line starts with one. */
  readonly transport?: string;
  /** The server's address. */
  readonly address: HostPort;
  /** The relay fingerprint (40 hex digits), when given. */
  readonly fingerprint?: string;
  /** The `k=v` arguments. */
  readonly options: TransportOptions;
}

/**
 * Parse a bridge line: `[Bridge] [transport] host:port [fingerprint]
 * [k=v ...]`, the form tor's `Bridge` option, obfs4proxy's
 * `obfs4_bridgeline.txt` and `main.ts server` use. Arguments are separated
 * by spaces; values cannot hold spaces. A repeated key keeps its first
 * value and is reported once to `options.onRepeatedKey`.
 *
 * @param text The line.
 * @param options What to do about repeated keys.
 * @returns Its parts.
 * @throws {SyntaxError} When the address or an argument is malformed; the
 * message gives the bad word's position (1-based, counting every word of
 * the line), never its text, which may be a secret (port 0: `Invalid
 * port 0 for bridge address: must be an integer in 1-65535`).
 */
export function parseBridgeLine(text: string, options: KeyValueListOptions = {}): BridgeLine {
  const lineWords = text.trim().split(/\s+/).filter((w) => w !== "");
  const words = [...lineWords];
  if (words[0]?.toLowerCase() === "bridge") words.shift();
  let transport: string | undefined;
  if (words.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(words[0]!)) transport = words.shift();
  // A misplaced word may be a secret (a password, a cert, a link with
  // userinfo): errors give the position of a bad word, never its text.
  const position = (index: number) => lineWords.length - words.length + index + 1;
  const addressText = words.shift();
  if (addressText === undefined) throw new SyntaxError("Cannot parse bridge line: no address");
  let address: HostPort;
  try {
    address = parseHostPort(addressText, "bridge address", 1);
  } catch (error) {
    // A port out of range (digits only, so not a misplaced secret): named
    // in checkPort's words, as port 0 is, without the word.
    const port = error instanceof RangeError ? /^Invalid port ([0-9]+) /.exec(error.message) : null;
    if (port !== null) {
      throw new SyntaxError(
        `Invalid port ${port[1]} for bridge address: must be an integer in 1-65535`,
      );
    }
    const why = error instanceof Error ? /: ([^:"]*)$/.exec(error.message)?.[1] : undefined;
    throw new SyntaxError(
      `Cannot parse bridge line: word ${position(-1)} is not an address${
        why === undefined ? "" : ` (${why})`
      }; expected [transport] host:port [fingerprint] [key=value ...]`,
    );
  }
  let fingerprint: string | undefined;
  if (words.length > 0 && /^[0-9A-Fa-f]{40}$/.test(words[0]!)) fingerprint = words.shift();
  const args = new FirstValuePairs(options.onRepeatedKey);
  for (const [index, word] of words.entries()) {
    const eq = word.indexOf("=");
    if (eq <= 0) {
      throw new SyntaxError(
        `Cannot parse bridge line: word ${position(index)} is not key=value`,
      );
    }
    // The SMETHOD ARGS form (cert=...,iat-mode=0), copied into a bridge
    // line: the transport only said a key was missing.
    if (/^[A-Za-z][\w-]*=(?:[^,\\]|\\.)*,[A-Za-z][\w-]*=/.test(word)) {
      throw new SyntaxError(
        `Cannot parse bridge line: word ${position(index)} holds key=value pairs joined by ',' ` +
          "(SMETHOD's ARGS form): separate a bridge line's arguments with spaces",
      );
    }
    args.add(word.slice(0, eq), word.slice(eq + 1));
  }
  return {
    ...(transport === undefined ? {} : { transport }),
    address,
    ...(fingerprint === undefined ? {} : { fingerprint }),
    options: args.values,
  };
}

/**
 * Format a bridge line (without the `Bridge` keyword): the inverse of
 * {@linkcode parseBridgeLine}, keys sorted.
 *
 * @param line The parts.
 * @returns The line.
 */
export function formatBridgeLine(line: BridgeLine): string {
  const parts: string[] = [];
  if (line.transport !== undefined) parts.push(line.transport);
  parts.push(formatHostPort(line.address));
  if (line.fingerprint !== undefined) parts.push(line.fingerprint);
  for (const key of Object.keys(line.options).sort()) parts.push(`${key}=${line.options[key]}`);
  return parts.join(" ");
}
