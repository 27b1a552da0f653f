// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

// Shadowsocks' request header is a SOCKS5 address (`ATYP | address | port`):
// read and written by the one SOCKS5 address codec (ipc/socks/_address.ts,
// browser-compatible, no Deno).

import type { HostPort } from "../transport.ts";
import {
  addressLength,
  decodeAddress as decodeSocksAddress,
  encodeAddress as encodeSocksAddress,
} from "../../ipc/socks/_address.ts";

/** The longest address header: type, name length, 255-byte name, port. */
export const MAX_ADDRESS_LENGTH = 1 + 1 + 255 + 2;

/**
 * The destination as Shadowsocks' address header: IP literals as type 1 or
 * 4, anything else as a name (type 3, unresolved).
 *
 * @param destination The host and port.
 * @returns The header.
 * @throws {RangeError} When a name is longer than 255 bytes.
 */
export function encodeAddress(destination: HostPort): Uint8Array {
  const { hostname, port } = destination;
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  return encodeSocksAddress({ hostname: bare, port });
}

/**
 * Read an address header from the start of `bytes`.
 *
 * @param bytes Decrypted bytes from the stream's start.
 * @param what What the header is, for error messages. Defaults to
 * `"shadowsocks address"` (the ssh transport's destination header is the
 * same).
 * @returns The destination and the header's length, or `undefined` when
 * more bytes are needed.
 * @throws {SyntaxError} On an unknown address type, or a name that is empty
 * or not a host name.
 */
export function decodeAddress(
  bytes: Uint8Array,
  what = "shadowsocks address",
): { readonly destination: HostPort; readonly length: number } | undefined {
  if (bytes.length < 2) return undefined;
  const type = bytes[0]!;
  const length = addressLength(type, bytes[1]!);
  if (length < 0) {
    throw new SyntaxError(
      `Cannot read ${what}: unknown address type 0x${type.toString(16).padStart(2, "0")}`,
    );
  }
  if (bytes.length < length) return undefined;
  const { hostname, port, valid } = decodeSocksAddress(bytes.subarray(0, length));
  if (!valid) {
    throw new SyntaxError(`Cannot read ${what}: the name is not a host name`);
  }
  return { destination: { hostname, port }, length };
}

/**
 * Read a Shadowsocks request's address header from the start of `bytes` as
 * shadowsocks-libev's server does: by the address type's low four bits
 * (its high bits once flagged one-time auth), so `0x11` reads as `0x01`.
 *
 * @param bytes Decrypted bytes from the stream's start.
 * @returns As {@linkcode decodeAddress}.
 * @throws {SyntaxError} As {@linkcode decodeAddress}.
 */
export function decodeRequest(
  bytes: Uint8Array,
): { readonly destination: HostPort; readonly length: number } | undefined {
  if (bytes.length === 0 || bytes[0]! < 0x10) return decodeAddress(bytes);
  const masked = bytes.slice(0, MAX_ADDRESS_LENGTH);
  masked[0]! &= 0x0f;
  return decodeAddress(masked);
}
