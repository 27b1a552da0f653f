// Copyright the ptkit authors. MIT license.

import { checkTimerMs } from "../transports/_timeout.ts";
import { checkOptionType } from "../transports/_factory_options.ts";
import type { HostPort } from "../transports/transport.ts";
import { isIpLiteral, parseIpv6 } from "./_ip_address.ts";

export type { HostPort };

/**
 * Parse `host:port`, `[ipv6]:port` or `ip:port` into a {@linkcode HostPort}.
 *
 * @param text The address to parse.
 * @param what What the address is, for the error message.
 * @param min The lowest port allowed: 0 (the default) where a port is
 * listened on, 1 for an address that is dialed.
 * @returns The parsed address; IPv6 hosts are returned without brackets.
 * @throws {SyntaxError} When the text is not of that form.
 * @throws {RangeError} When the port is out of `min`-65535.
 *
 * @example Parsing addresses
 * ```ts
 * import { parseHostPort } from "@ptkit/ptkit/net";
 * import { deepStrictEqual, throws } from "node:assert";
 *
 * deepStrictEqual(parseHostPort("127.0.0.1:9050"), { hostname: "127.0.0.1", port: 9050 });
 * deepStrictEqual(parseHostPort("[::1]:443"), { hostname: "::1", port: 443 });
 * throws(() => parseHostPort("1.2.3"), SyntaxError);
 * throws(() => parseHostPort("127.0.0.1:0", "ORPort", 1), RangeError);
 * ```
 */
export function parseHostPort(text: string, what = "address", min = 0): HostPort {
  if (typeof text !== "string") {
    throw new TypeError(`Cannot parse ${what}: expected a string, got ${typeof text}`);
  }
  let hostname: string;
  let portText: string;
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    if (end < 0 || text[end + 1] !== ":") {
      throw new SyntaxError(`Cannot parse ${what} ${JSON.stringify(text)}: expected [ipv6]:port`);
    }
    hostname = text.slice(1, end);
    portText = text.slice(end + 2);
    if (!hostname.includes(":")) {
      throw new SyntaxError(
        `Cannot parse ${what} ${JSON.stringify(text)}: brackets hold no IPv6 address`,
      );
    }
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0 && /^[0-9]{1,5}$/.test(text)) {
      throw new SyntaxError(
        `Cannot parse ${what} ${
          JSON.stringify(text)
        }: expected host:port (a port alone: 127.0.0.1:${text} for this machine)`,
      );
    }
    if (colon < 0 || text.indexOf(":") !== colon) {
      throw new SyntaxError(
        `Cannot parse ${what} ${JSON.stringify(text)}: expected host:port (IPv6 in brackets)`,
      );
    }
    hostname = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (hostname === "" && /^[0-9]{1,5}$/.test(portText)) { // Go's ":443"
    // 0.0.0.0 (every IPv4 address) is advice for a listen address only.
    const example = min === 0
      ? `an IP address, such as 127.0.0.1:${portText}, or 0.0.0.0:${portText} for every IPv4 address`
      : `the address to connect to, such as 127.0.0.1:${portText}`;
    throw new SyntaxError(
      `Cannot parse ${what} ${JSON.stringify(text)}: missing host before the port (${example})`,
    );
  }
  if (hostname === "" || !/^[A-Za-z0-9._:%-]+$/.test(hostname)) {
    throw new SyntaxError(`Cannot parse ${what} ${JSON.stringify(text)}: invalid host`);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) {
    throw new SyntaxError(`Cannot parse ${what} ${JSON.stringify(text)}: invalid port`);
  }
  return { hostname, port: checkPort(Number(portText), `${what} ${JSON.stringify(text)}`, min) };
}

/**
 * Format a host and port as `host:port`, bracketing IPv6 literals.
 *
 * @param address The address to format.
 * @returns The text form.
 * @throws {TypeError} When `address` is not an object with a string
 * `hostname` and a number `port`.
 * @throws {RangeError} When the port is not an integer in 0-65535.
 *
 * @example Formatting addresses
 * ```ts
 * import { formatHostPort } from "@ptkit/ptkit/net";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(formatHostPort({ hostname: "::1", port: 80 }), "[::1]:80");
 * deepStrictEqual(formatHostPort({ hostname: "127.0.0.1", port: 80 }), "127.0.0.1:80");
 * ```
 */
export function formatHostPort(address: HostPort): string {
  // null failed with JavaScript's 'Cannot destructure property', a missing
  // hostname with 'Cannot read properties of undefined'.
  const { hostname, port } = checkHostPort(address, "address to format");
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * Check that `port` is an integer in `min`-65535.
 *
 * @param port The value to check.
 * @param what What the port belongs to, for the error message.
 * @param min The lowest port allowed (1 for a destination, 0 to listen).
 * @returns The port.
 * @throws {TypeError} When `port` is not a number.
 * @throws {RangeError} When it is not an integer in range.
 *
 * @example Checking a port
 * ```ts
 * import { checkPort } from "./address.ts";
 * import { throws } from "node:assert";
 *
 * checkPort(443, "target");
 * throws(() => checkPort(70000, "target"), RangeError);
 * ```
 */
export function checkPort(port: unknown, what: string, min = 0): number {
  if (typeof port !== "number") {
    throw new TypeError(`Invalid port for ${what}: expected a number, got ${typeof port}`);
  }
  if (!Number.isInteger(port) || port < min || port > 65535) {
    throw new RangeError(`Invalid port ${port} for ${what}: must be an integer in ${min}-65535`);
  }
  return port;
}

/**
 * Check that `value` is a {@linkcode HostPort}: an object whose `hostname`
 * is a string and whose `port` is an integer in `min`-65535. Internal. The
 * hostname is not judged further (nor repeated: it may be a client's).
 *
 * @param value The value to check.
 * @param what What it is, for the error message (`allowDestinations[0]`).
 * @param min The lowest port allowed (1 for a destination, 0 to listen).
 * @returns The value, typed.
 * @throws {TypeError} When it is not an object, its hostname not a string
 * or its port not a number.
 * @throws {RangeError} When its port is not an integer in range.
 *
 * @example Refusing null and a port that matches nothing
 * ```ts
 * import { checkHostPort } from "./address.ts";
 * import { throws } from "node:assert";
 *
 * checkHostPort({ hostname: "127.0.0.1", port: 80 }, "allowed destination", 1);
 * throws(() => checkHostPort(null, "allowed destination"), TypeError);
 * throws(() => checkHostPort({ hostname: "127.0.0.1", port: 0 }, "allowed destination", 1), RangeError);
 * ```
 */
export function checkHostPort(value: unknown, what: string, min = 0): HostPort {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(
      `Invalid ${what}: expected an object with hostname and port, got ${
        value === null ? "null" : Array.isArray(value) ? "an array" : typeof value
      }`,
    );
  }
  const { hostname, port } = value as { hostname?: unknown; port?: unknown };
  if (typeof hostname !== "string") {
    throw new TypeError(
      `Invalid ${what}: hostname must be a string, got ${
        hostname === null ? "null" : typeof hostname
      }`,
    );
  }
  checkPort(port, what, min);
  return value as HostPort;
}

/** What a host name carried unresolved may hold: ASCII letters, digits, `.`, `_`, `-`. */
const HOST_NAME = /^[A-Za-z0-9._-]+$/;

/**
 * Whether `name` is a plausible host name to carry unresolved to a server
 * (in a SOCKS5 or Shadowsocks address): 1-255 ASCII letters, digits, `.`,
 * `_` and `-`. Internal.
 *
 * @example Names that can and cannot be carried
 * ```ts
 * import { isHostName } from "./address.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(isHostName("xn--bcher-kva.example"), true);
 * strictEqual(isHostName("a b"), false);
 * ```
 *
 * @param name The name.
 * @returns Whether it is one.
 */
export function isHostName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && HOST_NAME.test(name);
}

/**
 * An internationalized name's punycode form (`bücher.example` is
 * `xn--bcher-kva.example`), as browsers send it; `undefined` for ASCII text
 * and for what URL parsing does not take as a host.
 */
function punycodeOf(hostname: string): string | undefined {
  if (!/[^ -~]/.test(hostname) || /[\s/?#@:\[\]%\\]/.test(hostname)) return undefined;
  try {
    return new URL(`http://${hostname}/`).hostname;
  } catch {
    return undefined;
  }
}

/**
 * A host name the socket layer looks up: labels of ASCII letters, digits,
 * `_` and `-` joined by single dots, a final dot allowed, 255 bytes in all
 * (what Deno.connect takes; a longer label fails its lookup, as it should).
 */
const DNS_NAME = /^(?=.{1,255}$)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/;

/**
 * Check the host a connector is to dial and put it in the form the
 * socket layer takes: an IP literal (IPv6 with or without brackets, with
 * a zone) as it is, a host name of dot-separated labels (ASCII letters,
 * digits, `_` and `-`; a final dot allowed; 255 bytes in all), or an
 * internationalized name as its punycode form. Internal.
 *
 * @example A name, an internationalized name and one that is neither
 * ```ts
 * import { checkDialHostname } from "./address.ts";
 * import { strictEqual, throws } from "node:assert";
 *
 * strictEqual(checkDialHostname("bridge.example", "dial"), "bridge.example");
 * strictEqual(checkDialHostname("bücher.example", "dial"), "xn--bcher-kva.example");
 * throws(() => checkDialHostname("a b", "dial"), TypeError);
 * ```
 *
 * @param hostname What the caller gave.
 * @param what What is being done, for the message (`dial`).
 * @returns The hostname to connect to.
 * @throws {TypeError} When it is not a non-empty string, or neither an IP
 * address nor a host name (the message names it: it is the caller's own
 * server, never a client's destination).
 */
export function checkDialHostname(hostname: unknown, what: string): string {
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(`Cannot ${what}: invalid hostname ${JSON.stringify(hostname)}`);
  }
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  const zone = bare.indexOf("%");
  if (isIpLiteral(zone > 0 && bare.includes(":") ? bare.slice(0, zone) : bare)) return hostname;
  if (DNS_NAME.test(hostname)) return hostname;
  const ascii = punycodeOf(hostname);
  if (ascii !== undefined && DNS_NAME.test(ascii)) return ascii;
  throw new TypeError(
    `Cannot ${what}: invalid hostname ${
      JSON.stringify(hostname)
    }: neither an IP address nor a host name`,
  );
}

/**
 * Check a free transport's destination (`Connector.dial`'s `destination`)
 * and put it in the form the server is given: an IP literal (IPv6 with or
 * without brackets), or a host name of 1-255 ASCII letters, digits, `.`,
 * `_` and `-`; an internationalized name becomes its punycode form
 * (`bücher.example` is `xn--bcher-kva.example`), as browsers send it. The
 * name is not repeated in errors (where users go is theirs). Internal.
 *
 * @example An internationalized name, and one no server takes
 * ```ts
 * import { checkDestination } from "./address.ts";
 * import { strictEqual, throws } from "node:assert";
 *
 * strictEqual(checkDestination({ hostname: "bücher.example", port: 80 }, "dial").hostname, "xn--bcher-kva.example");
 * throws(() => checkDestination({ hostname: "a b", port: 80 }, "dial"), TypeError);
 * ```
 *
 * @param destination The destination.
 * @param what What is being done, for the message (`dial`).
 * @returns The destination to send.
 * @throws {TypeError} When it is not an object with such a host name.
 * @throws {RangeError} When its port is not an integer 1-65535.
 */
export function checkDestination(destination: unknown, what: string): HostPort {
  if (typeof destination !== "object" || destination === null) {
    throw new TypeError(
      `Cannot ${what}: destination must be an object with hostname and port, got ${
        destination === null ? "null" : typeof destination
      }`,
    );
  }
  const { hostname, port } = destination as { hostname?: unknown; port?: unknown };
  checkPort(port, `the ${what} destination`, 1);
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(`Cannot ${what}: the destination's hostname must be a non-empty string`);
  }
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  if (isIpLiteral(bare)) return { hostname, port: port as number };
  if (isHostName(hostname)) return { hostname, port: port as number };
  const ascii = punycodeOf(hostname);
  if (ascii !== undefined && isHostName(ascii)) return { hostname: ascii, port: port as number };
  throw new TypeError(
    `Cannot ${what}: the destination's hostname (${
      new TextEncoder().encode(hostname).length
    } bytes) is neither an IP address nor a host name of 1-255 ASCII letters, digits, '.', '_' and '-'` +
      " (an IPv6 zone or a space cannot be carried to a server)",
  );
}

/**
 * Check a timeout option: `undefined`, or a positive finite number of
 * milliseconds no larger than 2,147,483,647 (the longest delay a timer
 * takes: a larger one would fire at once). Internal.
 *
 * @param value The option's value.
 * @param name The option's name, for the error message (`handshakeTimeout`).
 * @param what What is being set up, for the error message (`listen`).
 * @throws {TypeError} When it is neither `undefined` nor a number.
 * @throws {RangeError} When it is a number out of range (or NaN).
 *
 * @example Refusing a negative timeout and one no timer can hold
 * ```ts
 * import { checkTimeout } from "./address.ts";
 * import { throws } from "node:assert";
 *
 * checkTimeout(30_000, "handshakeTimeout", "listen");
 * throws(() => checkTimeout(-5, "handshakeTimeout", "listen"), RangeError);
 * throws(() => checkTimeout(30 * 86_400_000, "handshakeTimeout", "listen"), RangeError);
 * ```
 */
export function checkTimeout(value: unknown, name: string, what: string): void {
  checkTimerMs(value, name, what);
}

/**
 * Check a function option (a dialer, a callback): `undefined` or a
 * function. Internal. A value of another type was taken and failed later,
 * at the first dial or error, with JavaScript's 'dialer is not a function'.
 *
 * @param value The option's value.
 * @param name The option's name, for the error message (`dialer`).
 * @param what What is being set up, for the error message (`listen`).
 * @throws {TypeError} When it is neither.
 *
 * @example Refusing a dialer that is not a function
 * ```ts
 * import { checkFunctionOption } from "./address.ts";
 * import { throws } from "node:assert";
 *
 * checkFunctionOption(undefined, "dialer", "create a connector");
 * throws(() => checkFunctionOption("tcp", "dialer", "create a connector"), TypeError);
 * ```
 */
export function checkFunctionOption(value: unknown, name: string, what: string): void {
  checkOptionType(value, "function", name, what);
}

/**
 * Bracket an IPv6 address written without brackets before its port
 * (`1:2::3:4:9999` becomes `[1:2::3:4]:9999`), as goptlib repairs what old
 * tor versions put in `TOR_PT_SERVER_BINDADDR`, `TOR_PT_ORPORT` and
 * `TOR_PT_EXTENDED_SERVER_PORT`: the last `:` starts the port. Anything
 * else (bracketed, IPv4, a name, or a host that is no IPv6 literal) is
 * returned unchanged for the address parser to judge. Internal.
 *
 * @param text `addr:port` as tor wrote it.
 * @returns The text with the IPv6 host in brackets, or unchanged.
 */
export function bracketBareIpv6(text: string): string {
  const colon = text.lastIndexOf(":");
  if (text.startsWith("[") || text.indexOf(":") === colon) return text;
  const host = text.slice(0, colon);
  return parseIpv6(host) === undefined ? text : `[${host}]${text.slice(colon)}`;
}

/**
 * The destination a free transport's client names when its server is bound
 * (transparent-TCP and the datagram modes with `-target HOST:PORT` on the
 * server): the unspecified address, which a bound server ignores for its
 * own target and a free server refuses at once, so that no server dials it.
 */
export const BOUND_DESTINATION: HostPort = Object.freeze({ hostname: "0.0.0.0", port: 9 });
