// Copyright the ptkit authors. MIT license.

/**
 * STUN and TURN method numbers (RFC 8489, RFC 8656).
 *
 * @example Method numbers
 * ```ts
 * import { StunMethod } from "./_constants.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(StunMethod.Allocate, 0x003);
 * ```
 */
export const StunMethod = {
  Binding: 0x001,
  Allocate: 0x003,
  Refresh: 0x004,
  Send: 0x006,
  Data: 0x007,
  CreatePermission: 0x008,
  ChannelBind: 0x009,
} as const;

/**
 * STUN message classes.
 *
 * @example Classes
 * ```ts
 * import { StunClass } from "./_constants.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(StunClass.ErrorResponse, 3);
 * ```
 */
export const StunClass = {
  Request: 0,
  Indication: 1,
  SuccessResponse: 2,
  ErrorResponse: 3,
} as const;

/** A STUN message class number, 0-3. */
export type StunClassValue = 0 | 1 | 2 | 3;

/**
 * STUN and TURN attribute types.
 *
 * @example Attribute types
 * ```ts
 * import { StunAttr } from "./_constants.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(StunAttr.XorPeerAddress, 0x0012);
 * ```
 */
export const StunAttr = {
  MappedAddress: 0x0001,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  UnknownAttributes: 0x000a,
  ChannelNumber: 0x000c,
  Lifetime: 0x000d,
  Bandwidth: 0x0010,
  XorPeerAddress: 0x0012,
  Data: 0x0013,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorRelayedAddress: 0x0016,
  RequestedAddressFamily: 0x0017,
  EvenPort: 0x0018,
  RequestedTransport: 0x0019,
  DontFragment: 0x001a,
  AccessToken: 0x001b,
  MessageIntegritySha256: 0x001c,
  PasswordAlgorithm: 0x001d,
  Userhash: 0x001e,
  XorMappedAddress: 0x0020,
  ReservationToken: 0x0022,
  Priority: 0x0024,
  UseCandidate: 0x0025,
  AdditionalAddressFamily: 0x8000,
  AddressErrorCode: 0x8001,
  PasswordAlgorithms: 0x8002,
  AlternateDomain: 0x8003,
  Icmp: 0x8004,
  Software: 0x8022,
  AlternateServer: 0x8023,
  Fingerprint: 0x8028,
  IceControlled: 0x8029,
  IceControlling: 0x802a,
} as const;

/**
 * Reason phrases for the STUN/TURN error codes this server sends.
 *
 * @example Reason phrases
 * ```ts
 * import { STUN_ERROR_REASONS } from "./_constants.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(STUN_ERROR_REASONS[437], "Allocation Mismatch");
 * ```
 */
export const STUN_ERROR_REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthenticated",
  403: "Forbidden",
  420: "Unknown Attribute",
  437: "Allocation Mismatch",
  438: "Stale Nonce",
  440: "Address Family not Supported",
  441: "Wrong Credentials",
  442: "Unsupported Transport Protocol",
  443: "Peer Address Family Mismatch",
  486: "Allocation Quota Reached",
  500: "Server Error",
  508: "Insufficient Capacity",
};

/** The STUN magic cookie, 0x2112A442. */
export const STUN_MAGIC_COOKIE = 0x2112a442;

/** FINGERPRINT is the CRC-32 of the message XOR this value, 0x5354554e ("STUN"). */
export const STUN_FINGERPRINT_XOR = 0x5354554e;
