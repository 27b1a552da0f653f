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
import { formatIp, isIpLiteral, parseIp } from "../../net/_ip_address.ts";

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
 * Whether shadowsocks-libev's server takes `name` as a host name to look up
 * (its `validate_hostname`): 1-255 bytes, not starting with `.`, labels of
 * 1-63 letters, digits, `_` and `-` that neither start nor end with `-`
 * (one trailing `.` allowed). It holds any other name's connection as a
 * probe's ("invalid host name").
 */
function libevHostName(name: string): boolean {
  if (name.length < 1 || name.length > 255 || name.startsWith(".")) return false;
  const labels = (name.endsWith(".") ? name.slice(0, -1) : name).split(".");
  return labels.every((label) => /^[0-9A-Za-z_](?:[0-9A-Za-z_-]{0,61}[0-9A-Za-z_])?$/.test(label));
}

/**
 * Read a Shadowsocks request's address header from the start of `bytes` as
 * shadowsocks-libev's server does: by the address type's low four bits
 * (its high bits once flagged one-time auth), so `0x11` reads as `0x01`; a
 * name that is an IP literal (`::1` too) as that address; any other name
 * only when its `validate_hostname` takes it.
 *
 * @param bytes Decrypted bytes from the stream's start.
 * @returns As {@linkcode decodeAddress}.
 * @throws {SyntaxError} As {@linkcode decodeAddress}, and on a name
 * shadowsocks-libev refuses.
 */
export function decodeRequest(
  bytes: Uint8Array,
): { readonly destination: HostPort; readonly length: number } | undefined {
  let header = bytes;
  if (bytes.length > 0 && bytes[0]! >= 0x10) {
    header = bytes.slice(0, MAX_ADDRESS_LENGTH);
    header[0]! &= 0x0f;
  }
  if (header.length < 2 || header[0] !== 3 || header.length < 2 + header[1]! + 2) {
    return decodeAddress(header);
  }
  const length = 2 + header[1]! + 2;
  const name = new TextDecoder().decode(header.subarray(2, length - 2));
  if (isIpLiteral(name)) {
    const port = (header[length - 2]! << 8) | header[length - 1]!;
    return { destination: { hostname: formatIp(parseIp(name)), port }, length };
  }
  if (!libevHostName(name)) {
    throw new SyntaxError("Cannot read shadowsocks address: the name is not a host name");
  }
  return decodeAddress(header);
}
