// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: a SOCKS5 address (ATYP, address, port; RFC 1928 section 5), the
// one encoder and decoder for the client's requests, the server's replies
// and the server's reading of requests.

import { type HostPort, isHostName } from "../../net/address.ts";
import { formatIp, isIpLiteral, parseIp } from "../../net/_ip_address.ts";

/** ATYP: IPv4 address. */
export const ATYP_IPV4 = 0x01;
/** ATYP: domain name. */
export const ATYP_NAME = 0x03;
/** ATYP: IPv6 address. */
export const ATYP_IPV6 = 0x04;

/**
 * The length of an address on the wire (ATYP byte, address, 2-byte port),
 * from its first two bytes (ATYP, then the first address byte: a name's
 * length).
 *
 * @param atyp The address type.
 * @param second The byte after it.
 * @returns The length, or -1 for an unknown address type.
 */
export function addressLength(atyp: number, second: number): number {
  if (atyp === ATYP_IPV4) return 1 + 4 + 2;
  if (atyp === ATYP_IPV6) return 1 + 16 + 2;
  if (atyp === ATYP_NAME) return 1 + 1 + second + 2;
  return -1;
}

/**
 * Decode an address (exactly {@linkcode addressLength} bytes).
 *
 * @param bytes ATYP, address, port.
 * @returns The host (IP literals in their canonical form) and port; a name
 * is returned as sent, and `valid` says whether it is a plausible host name
 * (1-255 ASCII letters, digits, `.`, `_`, `-`).
 */
export function decodeAddress(bytes: Uint8Array): HostPort & { readonly valid: boolean } {
  const port = (bytes[bytes.length - 2]! << 8) | bytes[bytes.length - 1]!;
  if (bytes[0] === ATYP_NAME) {
    const hostname = new TextDecoder().decode(bytes.subarray(2, bytes.length - 2));
    return { hostname, port, valid: isHostName(hostname) };
  }
  return { hostname: formatIp(bytes.subarray(1, bytes.length - 2)), port, valid: true };
}

/**
 * Encode a destination: an IP literal as ATYP 1 or 4, anything else as a
 * name (ATYP 3, sent unresolved).
 *
 * @param target The host and port.
 * @returns ATYP, address, port.
 * @throws {RangeError} When a name is empty or longer than 255 bytes, or
 * the port is out of range.
 * @throws {TypeError} When a name holds other than ASCII letters, digits,
 * `.`, `_` and `-`.
 */
export function encodeAddress(target: HostPort): Uint8Array {
  const { hostname, port } = target;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Invalid SOCKS port ${port}: must be an integer in 0-65535`);
  }
  let head: Uint8Array;
  if (isIpLiteral(hostname)) {
    const ip = parseIp(hostname);
    head = new Uint8Array(1 + ip.length);
    head[0] = ip.length === 4 ? ATYP_IPV4 : ATYP_IPV6;
    head.set(ip, 1);
  } else {
    const name = new TextEncoder().encode(hostname);
    if (name.length === 0 || name.length > 255) {
      throw new RangeError(`Invalid SOCKS host name of ${name.length} bytes: expected 1-255`);
    }
    if (!isHostName(hostname)) {
      // No server takes it (ss-server says "invalid host name" and holds
      // the connection as a probe's): refused here, where the caller sees it.
      throw new TypeError(
        `Invalid SOCKS host name of ${name.length} bytes: only ASCII letters, digits, '.', '_' and '-' can be sent`,
      );
    }
    head = new Uint8Array(2 + name.length);
    head[0] = ATYP_NAME;
    head[1] = name.length;
    head.set(name, 2);
  }
  const out = new Uint8Array(head.length + 2);
  out.set(head);
  out[head.length] = port >> 8;
  out[head.length + 1] = port & 0xff;
  return out;
}
