// Copyright the ptkit authors. MIT license.
// Internal: SOCKS reply codes and the error that carries one, for both
// sides (the handshake answers with it, the client throws it).

import { isSettingsRejection } from "../../transports/_settings_error.ts";
import { HandshakeError } from "../../transports/_handshake_error.ts";

/** SOCKS5 reply codes (RFC 1928, and PT 2.0 draft 3 for `0x10`-`0x13`). */
export const SocksReply = {
  /** Succeeded. */
  succeeded: 0x00,
  /** General SOCKS server failure. */
  generalFailure: 0x01,
  /** Connection not allowed by ruleset. */
  notAllowed: 0x02,
  /** Network unreachable. */
  networkUnreachable: 0x03,
  /** Host unreachable. */
  hostUnreachable: 0x04,
  /** Connection refused. */
  connectionRefused: 0x05,
  /** TTL expired (used for timeouts). */
  ttlExpired: 0x06,
  /** Command not supported. */
  commandNotSupported: 0x07,
  /** Address type not supported. */
  addressTypeNotSupported: 0x08,
  /** PT 2.0: parameter block too large. */
  settingsTooLarge: 0x10,
  /** PT 2.0: timeout reading the parameter block. */
  settingsTimeout: 0x11,
  /** PT 2.0: the settings could not be parsed. */
  settingsParseError: 0x12,
  /** PT 2.0: the settings have invalid or missing keys. */
  settingsInvalid: 0x13,
} as const;

const REPLY_NAMES: Readonly<Record<number, string>> = {
  0x01: "general failure",
  0x02: "not allowed",
  0x03: "network unreachable",
  0x04: "host unreachable",
  0x05: "connection refused",
  0x06: "TTL expired",
  0x07: "command not supported",
  0x08: "address type not supported",
  0x10: "settings too large",
  0x11: "timeout",
  0x12: "settings parse error",
  0x13: "invalid or missing settings",
};

/**
 * A reply code as text: `0x05 (connection refused)`.
 *
 * @param code The SOCKS5 reply code.
 * @returns The text.
 */
export function describeReply(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")} (${REPLY_NAMES[code] ?? "unknown"})`;
}

/**
 * An error that carries the SOCKS5 reply code to send for it (RFC 1928
 * section 6, and PT 2.0 draft 3 for 0x10-0x13): thrown by
 * upstream-proxy dialers (passing on the proxy's own code), by the SOCKS
 * handshake, and by an adapter's `dial` when the PT refused the connection.
 *
 * @example Reading the reply code
 * ```ts
 * import { SocksReplyError } from "@ptkit/ptkit/ipc/adapter";
 * import { strictEqual } from "node:assert";
 *
 * const error: unknown = new SocksReplyError(0x05, "Connection refused");
 * strictEqual(error instanceof SocksReplyError && error.code, 0x05);
 * ```
 */
export class SocksReplyError extends Error {
  /** The SOCKS5 reply code. */
  readonly code: number;
  /**
   * The destination the SOCKS request named, when the error came after the
   * request was read (per-connection arguments that do not parse, reply
   * `12`): under tor, the bridge. Absent otherwise. Not enumerable, so that
   * `console.log(error)` does not print it.
   */
  declare readonly destination?: { readonly hostname: string; readonly port: number };

  /**
   * Make the error.
   *
   * @param code The SOCKS5 reply code.
   * @param message What happened.
   * @param options The cause, if any, and the destination the request
   * named, if it was read.
   */
  constructor(
    code: number,
    message: string,
    options?: ErrorOptions & {
      readonly destination?: { readonly hostname: string; readonly port: number };
    },
  ) {
    super(message, options);
    this.name = "SocksReplyError";
    this.code = code;
    if (options?.destination !== undefined) {
      const { hostname, port } = options.destination;
      Object.defineProperty(this, "destination", { value: Object.freeze({ hostname, port }) });
    }
  }
}

/**
 * Map the error a dial failed with to the SOCKS5 reply code that names it:
 * refused or reset `05`, host unreachable or unresolvable `04`, network
 * unreachable `03`, timed out (a transport handshake too) `06`, address not
 * available `08`, settings the transport rejected when it made the
 * connection's pair `13`, a {@linkcode SocksReplyError}'s own code,
 * anything else `01`.
 *
 * @param error The error.
 * @returns The reply code.
 */
export function socksReplyCode(error: unknown): number {
  if (error instanceof SocksReplyError) return error.code;
  if (isSettingsRejection(error)) return SocksReply.settingsInvalid;
  if (error instanceof Deno.errors.ConnectionRefused) return SocksReply.connectionRefused;
  if (error instanceof Deno.errors.ConnectionReset) return SocksReply.connectionRefused;
  if (error instanceof Deno.errors.TimedOut) return SocksReply.ttlExpired;
  // A transport handshake that did not complete in time (obfs4's 60 s).
  if (error instanceof HandshakeError && error.reason === "timeout") return SocksReply.ttlExpired;
  if (error instanceof Deno.errors.NetworkUnreachable) return SocksReply.networkUnreachable;
  if (error instanceof Deno.errors.AddrNotAvailable) return SocksReply.addressTypeNotSupported;
  const code = (error as { code?: unknown })?.code;
  switch (code) {
    case "ECONNREFUSED":
    case "ECONNRESET":
      return SocksReply.connectionRefused;
    case "EHOSTUNREACH":
    case "EHOSTDOWN":
      return SocksReply.hostUnreachable;
    case "ENETUNREACH":
    case "ENETDOWN":
      return SocksReply.networkUnreachable;
    case "ETIMEDOUT":
      return SocksReply.ttlExpired;
    case "EADDRNOTAVAIL":
      return SocksReply.addressTypeNotSupported;
  }
  const message = error instanceof Error ? error.message : "";
  if (/No route to host|os error 113/.test(message)) return SocksReply.hostUnreachable;
  if (/lookup address|Name or service not known|os error -2/.test(message)) {
    return SocksReply.hostUnreachable;
  }
  return SocksReply.generalFailure;
}
