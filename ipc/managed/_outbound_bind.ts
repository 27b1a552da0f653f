// Copyright the ptkit authors. MIT license.
// Internal: the source addresses of outgoing connections, as configured
// (the dialer that uses them is _outbound_dialer.ts, loaded with a side).

import { parseIpv4, parseIpv6 } from "../../net/_ip_address.ts";

/** Source addresses for outgoing connections (`TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6`). */
export interface OutboundBind {
  /** IPv4 source address. */
  readonly v4?: string;
  /** IPv6 source address (without brackets). */
  readonly v6?: string;
}

/**
 * Parse `TOR_PT_OUTBOUND_BIND_ADDRESS_V4` / `_V6` values: an IPv4 literal,
 * and an IPv6 literal in brackets (brackets optional). Empty means unset.
 *
 * @param v4 The IPv4 value, if set.
 * @param v6 The IPv6 value, if set.
 * @returns The source addresses.
 * @throws {SyntaxError} When a value is not an address of its family.
 */
export function parseOutboundBind(v4?: string, v6?: string): OutboundBind {
  const result: { v4?: string; v6?: string } = {};
  if (v4 !== undefined && v4 !== "") {
    if (parseIpv4(v4) < 0) {
      throw new SyntaxError(
        `Cannot parse TOR_PT_OUTBOUND_BIND_ADDRESS_V4 ${JSON.stringify(v4)}: not an IPv4 address`,
      );
    }
    result.v4 = v4;
  }
  if (v6 !== undefined && v6 !== "") {
    const bare = v6.startsWith("[") && v6.endsWith("]") ? v6.slice(1, -1) : v6;
    if (parseIpv6(bare) === undefined || bare.includes(".")) {
      throw new SyntaxError(
        `Cannot parse TOR_PT_OUTBOUND_BIND_ADDRESS_V6 ${JSON.stringify(v6)}: not an IPv6 address`,
      );
    }
    result.v6 = bare;
  }
  return result;
}
