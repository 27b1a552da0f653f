// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { TransportDestination } from "../transport.ts";
import { ipv4Bytes, ipv6Bytes } from "../../ipc/ip_address.ts";

/** What a host name may hold (ASCII letters, digits, `.`, `_`, `-`; IDNs come as punycode). */
const HOST_NAME = /^[A-Za-z0-9._-]+$/;

/** The longest address header: type, name length, 255-byte name, port. */
export const MAX_ADDRESS_LENGTH = 1 + 1 + 255 + 2;

/**
 * The destination as Shadowsocks' address header (SOCKS5's `ATYP | address
 * | port`): IP literals as type 1 or 4, anything else as a name (type 3,
 * unresolved).
 *
 * @param destination The host and port.
 * @returns The header.
 * @throws {RangeError} When a name is longer than 255 bytes.
 */
export function encodeAddress(destination: TransportDestination): Uint8Array {
  const { hostname, port } = destination;
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  const ip = ipv4Bytes(bare) ?? ipv6Bytes(bare);
  let head: number[];
  if (ip !== undefined) {
    head = [ip.length === 4 ? 1 : 4, ...ip];
  } else {
    const name = new TextEncoder().encode(hostname);
    if (name.length > 255) {
      throw new RangeError(`Invalid destination name of ${name.length} bytes: expected 1-255`);
    }
    head = [3, name.length, ...name];
  }
  return Uint8Array.from([...head, port >> 8, port & 0xff]);
}

/**
 * Read an address header from the start of `bytes`.
 *
 * @param bytes Decrypted bytes from the stream's start.
 * @returns The destination and the header's length, or `undefined` when
 * more bytes are needed.
 * @throws {SyntaxError} On an unknown address type, or a name that is empty
 * or not a host name.
 */
export function decodeAddress(
  bytes: Uint8Array,
): { readonly destination: TransportDestination; readonly length: number } | undefined {
  if (bytes.length < 2) return undefined;
  const type = bytes[0]!;
  let host: string;
  let at: number;
  if (type === 1) {
    if (bytes.length < 7) return undefined;
    host = Array.from(bytes.subarray(1, 5)).join(".");
    at = 5;
  } else if (type === 4) {
    if (bytes.length < 19) return undefined;
    const groups: string[] = [];
    for (let i = 1; i < 17; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
    host = groups.join(":");
    at = 17;
  } else if (type === 3) {
    const n = bytes[1]!;
    if (n === 0) throw new SyntaxError("Cannot read shadowsocks address: empty name");
    if (bytes.length < 2 + n + 2) return undefined;
    host = new TextDecoder().decode(bytes.subarray(2, 2 + n));
    if (!HOST_NAME.test(host)) {
      throw new SyntaxError("Cannot read shadowsocks address: the name is not a host name");
    }
    at = 2 + n;
  } else {
    throw new SyntaxError(
      `Cannot read shadowsocks address: unknown address type 0x${
        type.toString(16).padStart(2, "0")
      }`,
    );
  }
  const port = (bytes[at]! << 8) | bytes[at + 1]!;
  return { destination: { hostname: host, port }, length: at + 2 };
}
