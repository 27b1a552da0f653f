// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { formatHostPort, type HostPort, parseHostPort } from "../net/address.ts";
import { ipv4Bytes, ipv6Bytes } from "./ip_address.ts";

/** The kinds of addresses the embedded SOCKS server refuses unless allowed. */
export type AddressScope = "loopback" | "private" | "link-local" | "multicast";

const SCOPES: readonly AddressScope[] = ["loopback", "private", "link-local", "multicast"];

/**
 * Which destinations the server's embedded SOCKS5 target (free mode) may
 * connect: public unicast addresses always; loopback, private (RFC 1918,
 * RFC 6598, IPv6 ULA and site-local), link-local and multicast addresses
 * only when their scope is allowed or the exact `ip:port` is listed.
 * Unspecified (`0.0.0.0/8`, `::`), broadcast and reserved (`240/4`)
 * addresses are always refused. IPv4-mapped IPv6 addresses are judged as
 * IPv4.
 *
 * @example Refusing loopback unless allowed
 * ```ts
 * import { DestinationPolicy } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const strict = new DestinationPolicy();
 * deepStrictEqual(strict.refusal("127.0.0.1", 80), "loopback");
 * deepStrictEqual(strict.refusal("::ffff:10.1.2.3", 80), "private");
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
   * @param options Scopes to allow and exact destinations to allow.
   */
  constructor(
    options: { allow?: Iterable<AddressScope>; allowDestinations?: Iterable<HostPort> } = {},
  ) {
    this.#scopes = new Set(options.allow ?? []);
    this.#exact = new Set(
      [...(options.allowDestinations ?? [])].map((d) => key(d.hostname, d.port)),
    );
  }

  /**
   * Parse an allowance list: comma-separated scopes (`loopback`, `private`,
   * `link-local`, `multicast`) and exact `ip:port` destinations; `""` or
   * `none` allows nothing extra.
   *
   * @param text The list.
   * @returns The policy.
   * @throws {SyntaxError} On an unknown item.
   */
  static parse(text: string): DestinationPolicy {
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
      } catch {
        hostPort = undefined;
      }
      if (hostPort === undefined || scopeOf(hostPort.hostname) === undefined) {
        throw new SyntaxError(
          `Cannot parse allowed destination ${JSON.stringify(item)}: expected one of ${
            SCOPES.join(", ")
          } or an ip:port`,
        );
      }
      exact.push(hostPort);
    }
    return new DestinationPolicy({ allow, allowDestinations: exact });
  }

  /**
   * Why a destination is refused, or `undefined` when it is allowed.
   *
   * @param ip An IP literal (IPv6 without brackets).
   * @param port The port.
   * @returns The refused scope (`loopback`, `private`, `link-local`,
   * `multicast`, `unspecified`, `reserved`, `not an IP address`), or
   * `undefined`.
   */
  refusal(ip: string, port: number): string | undefined {
    const scope = scopeOf(ip);
    if (scope === undefined) return "not an IP address";
    if (scope === "public") return undefined;
    if (scope === "unspecified" || scope === "reserved") return scope;
    if (this.#scopes.has(scope)) return undefined;
    if (this.#exact.has(key(ip, port))) return undefined;
    return scope;
  }
}

function key(ip: string, port: number): string {
  const bytes = ipv4Bytes(ip) ?? ipv6Bytes(ip);
  return formatHostPort({ hostname: bytes === undefined ? ip : bytes.join("."), port });
}

type Scope = AddressScope | "public" | "unspecified" | "reserved";

function scopeOf(ip: string): Scope | undefined {
  const v4 = ipv4Bytes(ip);
  if (v4 !== undefined) return scope4(v4);
  const v6 = ipv6Bytes(ip);
  if (v6 === undefined) return undefined;
  if (v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) {
    return scope4(v6.slice(12));
  }
  if (v6.every((b) => b === 0)) return "unspecified";
  if (v6.slice(0, 15).every((b) => b === 0) && v6[15] === 1) return "loopback";
  const [a, b] = v6 as [number, number];
  if ((a & 0xfe) === 0xfc) return "private";
  if (a === 0xfe && (b & 0xc0) === 0x80) return "link-local";
  if (a === 0xfe && (b & 0xc0) === 0xc0) return "private";
  if (a === 0xff) return "multicast";
  return "public";
}

function scope4(bytes: number[]): Scope {
  const [a, b] = bytes as [number, number];
  if (a === 0) return "unspecified";
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && (b & 0xf0) === 16) || (a === 192 && b === 168)) return "private";
  if (a === 100 && (b & 0xc0) === 64) return "private";
  if (a === 169 && b === 254) return "link-local";
  if (a >= 224 && a < 240) return "multicast";
  if (a >= 240) return "reserved";
  return "public";
}
