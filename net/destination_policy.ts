// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import {
  checkHostPort,
  checkPort,
  formatHostPort,
  type HostPort,
  parseHostPort,
} from "./address.ts";
import { checkFactoryOptions, checkOptionType } from "../transports/_factory_options.ts";
import { suggestOptionKey } from "../transports/_option_keys.ts";
import { classifyIp, formatIp, type IpAddressClass, parseIp, unmapIpv4 } from "./_ip_address.ts";

/** The kinds of destinations a {@linkcode DestinationPolicy} can be told to allow. */
export type AddressScope = "loopback" | "private" | "link-local" | "multicast";

const SCOPES: readonly AddressScope[] = ["loopback", "private", "link-local", "multicast"];

/** Which scope each class of address falls in; absent: never allowed (public: always). */
const SCOPE_OF: Readonly<Partial<Record<IpAddressClass, AddressScope>>> = {
  "loopback": "loopback",
  "private": "private",
  "shared": "private",
  "unique-local": "private",
  "site-local": "private",
  "link-local": "link-local",
  "multicast": "multicast",
};

/**
 * Which destinations a server may connect on a client's behalf: the one
 * policy of free mode's embedded SOCKS5 target (`-target socks`) and of
 * the TURN server's peers (`-target turn`, `main.ts turn`). Public unicast
 * addresses are always allowed; `loopback`, `private` (RFC 1918, CGNAT
 * `100.64.0.0/10`, unique-local `fc00::/7`, site-local `fec0::/10`),
 * `link-local` and `multicast` addresses only when their scope is allowed
 * or the exact `ip:port` is listed; unspecified (`0.0.0.0/8`, `::`),
 * broadcast, documentation, benchmarking and reserved addresses never.
 * Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible,
 * NAT64, 6to4) are judged by it. Classes are those of `classifyIp`.
 *
 * @example Refusing loopback unless allowed
 * ```ts
 * import { DestinationPolicy } from "@ptkit/ptkit/net";
 * import { deepStrictEqual } from "node:assert";
 *
 * const strict = new DestinationPolicy();
 * deepStrictEqual(strict.refusal("127.0.0.1", 80), "loopback");
 * deepStrictEqual(strict.refusal("::ffff:10.1.2.3", 80), "private");
 * deepStrictEqual(strict.refusal("fec0::1", 80), "private");
 * deepStrictEqual(strict.refusal("93.184.216.34", 443), undefined);
 * const loose = DestinationPolicy.parse("loopback,192.168.1.5:8080");
 * deepStrictEqual(loose.refusal("127.0.0.1", 80), undefined);
 * deepStrictEqual(loose.refusal("192.168.1.5", 8080), undefined);
 * deepStrictEqual(loose.refusal("192.168.1.5", 22), "private");
 * ```
 */
export class DestinationPolicy {
  #scopes: Set<AddressScope>;
  #exact: Set<string>;

  /**
   * Make a policy.
   *
   * @param options `allow`: scopes to allow (`loopback`, `private`,
   * `link-local`, `multicast`); `allowDestinations`: exact IP addresses and
   * ports to allow. Both default to none: public destinations only.
   * @throws {TypeError} When `options` is not an object, `allow` or
   * `allowDestinations` is not an iterable (an array; a string is refused),
   * a scope is unknown, or an allowed destination is not an object with a
   * string hostname and a number port.
   * @throws {RangeError} When an allowed destination's port is not an
   * integer in 1-65535.
   * @throws {SyntaxError} When an allowed destination is not an IP address.
   */
  constructor(
    options: {
      readonly allow?: Iterable<AddressScope>;
      readonly allowDestinations?: Iterable<HostPort>;
    } = {},
  ) {
    // A string is iterable: allow: "loopback" was read letter by letter
    // ('Invalid destination scope "l"'), and null options failed with
    // 'Cannot read properties of null'.
    checkFactoryOptions(options, "make a destination policy", []);
    for (const name of ["allow", "allowDestinations"] as const) {
      const value: unknown = options[name];
      if (
        value !== undefined &&
        (typeof value !== "object" || value === null || !(Symbol.iterator in value))
      ) {
        throw new TypeError(
          `Cannot make a destination policy: ${name} must be an array, got ${
            value === null ? "null" : typeof value
          }${typeof value === "string" ? ` (write [${JSON.stringify(value)}])` : ""}`,
        );
      }
    }
    this.#scopes = new Set(options.allow ?? []);
    for (const scope of this.#scopes) {
      if (!SCOPES.includes(scope)) {
        throw new TypeError(
          `Invalid destination scope ${JSON.stringify(scope)}: expected ${SCOPES.join(", ")}`,
        );
      }
    }
    // Each an IP address and a port 1-65535: port 0, a missing port or a
    // port given as text was taken and matched nothing.
    this.#exact = new Set(
      [...(options.allowDestinations ?? [])].map((d, i) => {
        const { hostname, port } = checkHostPort(d, `allowDestinations[${i}]`, 1);
        return key(parseIp(hostname), port);
      }),
    );
  }

  /**
   * Parse an allowance list: comma-separated scopes (`loopback`, `private`,
   * `link-local`, `multicast`) and exact `ip:port` destinations; `""` or
   * `none` allows nothing extra.
   *
   * @param text The list (`-allow`).
   * @returns The policy.
   * @throws {TypeError} When `text` is not a string.
   * @throws {SyntaxError} On an item that is neither.
   *
   * @example Parsing `-allow`
   * ```ts
   * import { DestinationPolicy } from "@ptkit/ptkit/net";
   * import { deepStrictEqual, throws } from "node:assert";
   *
   * const policy = DestinationPolicy.parse("private,[::1]:53");
   * deepStrictEqual(policy.refusal("10.0.0.1", 80), undefined);
   * deepStrictEqual(policy.refusal("::1", 53), undefined);
   * throws(() => DestinationPolicy.parse("everything"), SyntaxError);
   * ```
   */
  static parse(text: string): DestinationPolicy {
    // A number or null failed with JavaScript's 'text.split is not a function'.
    checkOptionType(text, "string", "the list", "parse allowed destinations", true);
    const allow: AddressScope[] = [];
    const exact: HostPort[] = [];
    for (const raw of text.split(",")) {
      const item = raw.trim();
      if (item === "" || item === "none") continue;
      if ((SCOPES as readonly string[]).includes(item)) {
        allow.push(item as AddressScope);
        continue;
      }
      let hostPort: HostPort | undefined;
      try {
        hostPort = parseHostPort(item, "allowed destination");
        parseIp(hostPort.hostname);
        // Port 0 matches nothing: refused here as any item that is no ip:port.
        checkPort(hostPort.port, "allowed destination", 1);
      } catch {
        hostPort = undefined;
      }
      if (hostPort === undefined) {
        throw new SyntaxError(
          `Cannot parse allowed destination ${JSON.stringify(item)}: expected one of ${
            SCOPES.join(", ")
          } or an ip:port${allowHint(item)}`,
        );
      }
      exact.push(hostPort);
    }
    return new DestinationPolicy({ allow, allowDestinations: exact });
  }

  /**
   * The allowance list, as {@linkcode DestinationPolicy.parse} reads it
   * (`none` when nothing extra is allowed): what a worker process is sent.
   *
   * @returns Comma-separated scopes, then exact `ip:port` destinations.
   *
   * @example A policy survives a round trip through its text
   * ```ts
   * import { DestinationPolicy } from "@ptkit/ptkit/net";
   * import { deepStrictEqual } from "node:assert";
   *
   * const policy = DestinationPolicy.parse("private, [::1]:53");
   * deepStrictEqual(policy.toString(), "private,[::1]:53");
   * deepStrictEqual(DestinationPolicy.parse(policy.toString()).refusal("::1", 53), undefined);
   * deepStrictEqual(new DestinationPolicy().toString(), "none");
   * ```
   */
  toString(): string {
    return [...this.#scopes, ...this.#exact].join(",") || "none";
  }

  /**
   * Why a destination is refused, or `undefined` when it is allowed.
   *
   * @param ip An IP literal (IPv6 without brackets).
   * @param port The port.
   * @returns The refused scope (`loopback`, `private`, `link-local`,
   * `multicast`) or class (`unspecified`, `broadcast`, `documentation`,
   * `benchmarking`, `reserved`), `not an IP address`, or `undefined`.
   * @throws {TypeError} When `port` is not a number.
   * @throws {RangeError} When `port` is not an integer in 0-65535.
   */
  refusal(ip: string, port: number): string | undefined {
    // A port out of range matched no allowed destination and said nothing.
    checkPort(port, "destination policy refusal");
    let bytes: Uint8Array;
    try {
      bytes = parseIp(ip);
    } catch {
      return "not an IP address";
    }
    const kind = classifyIp(bytes);
    if (kind === "public") return undefined;
    const scope = SCOPE_OF[kind];
    if (scope === undefined) return kind;
    if (this.#scopes.has(scope) || this.#exact.has(key(bytes, port))) return undefined;
    return scope;
  }
}

/** An exact destination's key: IPv4-mapped addresses count as IPv4. */
function key(bytes: Uint8Array, port: number): string {
  return formatHostPort({ hostname: formatIp(unmapIpv4(bytes)), port });
}

/**
 * What an `--allow` item that parsed as nothing was likely meant to be: a
 * scope mistyped (`loopbak`, `localhost`), or an address without its port.
 */
function allowHint(item: string): string {
  const scope = item.toLowerCase() === "localhost" ? "loopback" : suggestOptionKey(item, SCOPES);
  if (scope !== undefined) return ` (did you mean ${scope}?)`;
  let ip: Uint8Array;
  try {
    ip = parseIp(item);
  } catch {
    return "";
  }
  const ipClass = classifyIp(ip);
  const scopeOf = (SCOPES as readonly string[]).includes(ipClass)
    ? `, or the scope ${ipClass}`
    : "";
  return ` (an address needs its port: ${item.includes(":") ? `[${item}]` : item}:PORT${scopeOf})`;
}
