// Copyright the ptkit authors. MIT license.

import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";
import { encodeChannelData, isChannelData, parseChannelData } from "./channel_data.ts";
import { classifyIp, parseIp } from "./ip_address.ts";
import { StunAttr, StunClass, type StunClassValue, StunMethod } from "./stun_constants.ts";
import { decodeXorAddress, encodeErrorCode, encodeXorAddress, u32 } from "./stun_attributes.ts";
import { longTermKey, verifyFingerprint, verifyIntegrity } from "./stun_integrity.ts";
import {
  encodeStunMessage,
  getAttribute,
  isStunMessage,
  parseStunMessage,
  type StunAddress,
  type StunAttribute,
  type StunMessage,
} from "./stun_message.ts";

/** One TURN client as a front end sees it: a 5-tuple (or a stream) and a way to answer. */
export interface TurnClient {
  /** Unique id of the client's 5-tuple or stream connection. */
  readonly key: string;
  /** The client's transport address, echoed in XOR-MAPPED-ADDRESS. */
  readonly address: StunAddress;
  /** True on byte streams: ChannelData toward the client is padded to 4. */
  readonly stream?: boolean;
  /** Send one STUN message or ChannelData frame to the client. */
  send(packet: Uint8Array): void;
}

/** A relayed transport address: a socket the server sends to and receives from peers with. */
export interface TurnRelaySocket {
  /** The relayed transport address. */
  readonly address: StunAddress;
  /** Send one datagram to a peer. */
  send(data: Uint8Array, peer: StunAddress): void;
  /** Release the socket. */
  close(): void;
  /** Called for every datagram from a peer; unset means drop. */
  onPacket: ((data: Uint8Array, peer: StunAddress) => void) | undefined;
}

/** What a {@linkcode TurnRelayFactory} is asked to open. */
export interface TurnRelayRequest {
  /** Address family of the relayed address. */
  readonly family: 4 | 6;
  /** The port must be even. */
  readonly evenPort: boolean;
  /** Also reserve port + 1 (returned as the second socket). */
  readonly reserveNext: boolean;
}

/** Opens relayed sockets (node:dgram in `createUdpRelayFactory`, fakes in tests). */
export interface TurnRelayFactory {
  /** Families this factory can relay. */
  readonly families: readonly (4 | 6)[];
  /** Open a relay socket (and the reserved next one when asked). */
  open(request: TurnRelayRequest): Promise<TurnRelaySocket[]>;
}

/** Options of {@linkcode TurnServer}. */
export interface TurnServerOptions {
  /** The realm of long-term credentials. */
  readonly realm: string;
  /** Users and passwords. */
  readonly users: Readonly<Record<string, string>>;
  /** Relay socket factory. */
  readonly relay: TurnRelayFactory;
  /** Clock in milliseconds; defaults to `Date.now`. */
  readonly now?: () => number;
  /** Allow 127.0.0.0/8 and ::1 peers (default false). */
  readonly allowLoopbackPeers?: boolean;
  /** Allow RFC 1918, CGNAT, ULA and link-local peers (default false). */
  readonly allowPrivatePeers?: boolean;
  /** Allocations per user (default 1000); more get 486. */
  readonly userQuota?: number;
  /** Allocations and reservations in total (default 5000); more get 508. */
  readonly totalQuota?: number;
  /** Permissions per allocation (default 256); more get 508. */
  readonly maxPermissions?: number;
  /**
   * Accept only RFC 8656 channel numbers 0x4000-0x4FFF. Default false: 0x4000-0x7FFF as in
   * RFC 5766, because coturn's `turnutils_uclient` (and pion) bind numbers up to 0x7FFF.
   */
  readonly strictChannelNumbers?: boolean;
  /** Largest allocation lifetime in seconds (default 3600). */
  readonly maxLifetime?: number;
  /** Nonce lifetime in seconds (default 3600); older nonces get 438. */
  readonly nonceLifetime?: number;
  /** SOFTWARE attribute value (default "ptkit turn"). */
  readonly software?: string;
}

/** Counters of a {@linkcode TurnServer}. */
export interface TurnServerStats {
  /** Live allocations. */
  allocations: number;
  /** Live port reservations. */
  reservations: number;
  /** Datagrams dropped as malformed, unauthenticated indications or without permission. */
  dropped: number;
}

interface Channel {
  readonly number: number;
  readonly peer: StunAddress;
  readonly peerKey: string;
  expires: number;
}

interface Allocation {
  readonly client: TurnClient;
  readonly username: string;
  readonly key: Uint8Array;
  readonly relay: TurnRelaySocket;
  readonly transactionId: string;
  readonly fingerprint: boolean;
  response: Uint8Array;
  expires: number;
  readonly permissions: Map<string, number>;
  readonly channels: Map<number, Channel>;
  readonly peerChannels: Map<string, Channel>;
}

const DEFAULT_LIFETIME = 600;
const PERMISSION_LIFETIME = 300;
const CHANNEL_LIFETIME = 600;
const RESERVATION_LIFETIME = 30;

const KNOWN_REQUIRED = new Set<number>([
  StunAttr.MappedAddress,
  StunAttr.Username,
  StunAttr.MessageIntegrity,
  StunAttr.ErrorCode,
  StunAttr.UnknownAttributes,
  StunAttr.ChannelNumber,
  StunAttr.Lifetime,
  StunAttr.Bandwidth,
  StunAttr.XorPeerAddress,
  StunAttr.Data,
  StunAttr.Realm,
  StunAttr.Nonce,
  StunAttr.XorRelayedAddress,
  StunAttr.RequestedAddressFamily,
  StunAttr.EvenPort,
  StunAttr.RequestedTransport,
  StunAttr.DontFragment,
  StunAttr.MessageIntegritySha256,
  StunAttr.XorMappedAddress,
  StunAttr.ReservationToken,
  StunAttr.Priority,
  StunAttr.UseCandidate,
]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * TURN server logic (RFC 8656, UDP relaying) without I/O: front ends feed it datagrams or
 * frames with {@linkcode TurnServer.handle}; relay sockets come from a
 * {@linkcode TurnRelayFactory}; time comes from an injectable clock.
 *
 * @example Answering an unauthenticated Allocate with 401
 * ```ts
 * import { TurnServer } from "./turn_server.ts";
 * import { encodeStunMessage, getAttribute, parseStunMessage } from "./stun_message.ts";
 * import { StunAttr, StunMethod } from "./stun_constants.ts";
 * import { strictEqual, ok } from "node:assert";
 *
 * const server = new TurnServer({
 *   realm: "r",
 *   users: { u: "p" },
 *   relay: { families: [4], open: () => Promise.reject(new Error("unused")) },
 * });
 * const sent: Uint8Array[] = [];
 * const client = {
 *   key: "c1",
 *   address: { family: 4, address: "127.0.0.1", port: 5000 },
 *   send: (p: Uint8Array) => sent.push(p),
 * } as const;
 * server.handle(client, encodeStunMessage({
 *   method: StunMethod.Allocate,
 *   class: 0,
 *   transactionId: new Uint8Array(12),
 *   attributes: [{ type: StunAttr.RequestedTransport, value: new Uint8Array([17, 0, 0, 0]) }],
 * }));
 * const answer = parseStunMessage(sent[0]!);
 * strictEqual(answer.class, 3);
 * ok(getAttribute(answer, StunAttr.Nonce));
 * server.close();
 * ```
 */
export class TurnServer {
  #realm: string;
  #users: Readonly<Record<string, string>>;
  #relay: TurnRelayFactory;
  #now: () => number;
  #allowLoopback: boolean;
  #allowPrivate: boolean;
  #userQuota: number;
  #totalQuota: number;
  #maxPermissions: number;
  #maxLifetime: number;
  #maxChannel: number;
  #nonceLifetime: number;
  #software: Uint8Array;
  #secret: Uint8Array = crypto.getRandomValues(new Uint8Array(16));
  #allocations = new Map<string, Allocation>();
  #pending = new Map<string, string>();
  #userCounts = new Map<string, number>();
  #reservations = new Map<string, { socket: TurnRelaySocket; expires: number }>();
  #dropped = 0;
  #closed = false;

  /**
   * Create the server logic.
   *
   * @param options Realm, users, relay factory, clock, peer policy and quotas.
   */
  constructor(options: TurnServerOptions) {
    if (typeof options.realm !== "string" || options.realm === "") {
      throw new TypeError("Cannot create TURN server: realm must be a non-empty string");
    }
    this.#realm = options.realm;
    this.#users = options.users;
    this.#relay = options.relay;
    this.#now = options.now ?? Date.now;
    this.#allowLoopback = options.allowLoopbackPeers ?? false;
    this.#allowPrivate = options.allowPrivatePeers ?? false;
    this.#userQuota = options.userQuota ?? 1000;
    this.#totalQuota = options.totalQuota ?? 5000;
    this.#maxPermissions = options.maxPermissions ?? 256;
    this.#maxLifetime = options.maxLifetime ?? 3600;
    this.#maxChannel = options.strictChannelNumbers ? 0x4fff : 0x7fff;
    this.#nonceLifetime = options.nonceLifetime ?? 3600;
    this.#software = encoder.encode(options.software ?? "ptkit turn");
  }

  /**
   * Counters: live allocations and reservations, dropped datagrams.
   *
   * @returns A snapshot.
   */
  stats(): TurnServerStats {
    return {
      allocations: this.#allocations.size,
      reservations: this.#reservations.size,
      dropped: this.#dropped,
    };
  }

  /**
   * Handle one datagram (or one frame of a stream) from a client. Malformed input is dropped.
   *
   * @param client The client it came from.
   * @param packet The bytes.
   */
  handle(client: TurnClient, packet: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.#dispatch(client, packet);
    } catch {
      // A datagram that trips a bug is dropped; the server keeps serving everyone else.
      this.#dropped++;
    }
  }

  #dispatch(client: TurnClient, packet: Uint8Array): void {
    if (isChannelData(packet)) {
      this.#onChannelData(client, packet);
      return;
    }
    if (!isStunMessage(packet)) {
      this.#dropped++;
      return;
    }
    let message: StunMessage;
    try {
      message = parseStunMessage(packet);
    } catch {
      this.#dropped++;
      return;
    }
    if (!verifyFingerprint(message)) {
      this.#dropped++;
      return;
    }
    if (message.class === StunClass.Request) {
      this.#onRequest(client, message);
    } else if (message.class === StunClass.Indication && message.method === StunMethod.Send) {
      this.#onSend(client, message);
    } else {
      this.#dropped++;
    }
  }

  /**
   * Forget a client (its stream closed): delete its allocation.
   *
   * @param key The client's key.
   */
  disconnect(key: string): void {
    this.#pending.delete(key);
    const allocation = this.#allocations.get(key);
    if (allocation) this.#delete(allocation);
  }

  /** Delete expired allocations, permissions, channels and reservations. */
  sweep(): void {
    const now = this.#now();
    for (const allocation of this.#allocations.values()) {
      if (allocation.expires <= now) {
        this.#delete(allocation);
        continue;
      }
      for (const [ip, expires] of allocation.permissions) {
        if (expires <= now) allocation.permissions.delete(ip);
      }
      for (const channel of allocation.channels.values()) {
        if (channel.expires <= now) {
          allocation.channels.delete(channel.number);
          allocation.peerChannels.delete(channel.peerKey);
        }
      }
    }
    for (const [token, reservation] of this.#reservations) {
      if (reservation.expires <= now) {
        this.#reservations.delete(token);
        reservation.socket.close();
      }
    }
  }

  /** Close every relay socket and stop handling input. */
  close(): void {
    this.#closed = true;
    for (const allocation of [...this.#allocations.values()]) this.#delete(allocation);
    for (const reservation of this.#reservations.values()) reservation.socket.close();
    this.#reservations.clear();
    this.#pending.clear();
  }

  #delete(allocation: Allocation): void {
    if (this.#allocations.get(allocation.client.key) !== allocation) return;
    this.#allocations.delete(allocation.client.key);
    const count = (this.#userCounts.get(allocation.username) ?? 1) - 1;
    if (count <= 0) this.#userCounts.delete(allocation.username);
    else this.#userCounts.set(allocation.username, count);
    allocation.relay.onPacket = undefined;
    allocation.relay.close();
  }

  #allocationOf(key: string): Allocation | undefined {
    const allocation = this.#allocations.get(key);
    if (allocation && allocation.expires <= this.#now()) {
      this.#delete(allocation);
      return undefined;
    }
    return allocation;
  }

  #reply(
    client: TurnClient,
    request: StunMessage,
    cls: StunClassValue,
    attributes: StunAttribute[],
    key?: Uint8Array,
  ): Uint8Array {
    attributes.push({ type: StunAttr.Software, value: this.#software });
    const bytes = encodeStunMessage(
      { method: request.method, class: cls, transactionId: request.transactionId, attributes },
      key ? { integrityKey: key, fingerprint: true } : { fingerprint: true },
    );
    client.send(bytes);
    return bytes;
  }

  #error(
    client: TurnClient,
    request: StunMessage,
    code: number,
    key?: Uint8Array,
    extra: StunAttribute[] = [],
  ): void {
    this.#reply(
      client,
      request,
      StunClass.ErrorResponse,
      [{ type: StunAttr.ErrorCode, value: encodeErrorCode(code) }, ...extra],
      key,
    );
  }

  #challenge(client: TurnClient, request: StunMessage, code: 401 | 438): void {
    this.#error(client, request, code, undefined, [
      { type: StunAttr.Realm, value: encoder.encode(this.#realm) },
      { type: StunAttr.Nonce, value: encoder.encode(this.#makeNonce()) },
    ]);
  }

  #makeNonce(): string {
    const expiry = (this.#now() + this.#nonceLifetime * 1000).toString(16);
    const salt = hexOf(crypto.getRandomValues(new Uint8Array(4)));
    return `${expiry}.${salt}.${this.#nonceMac(`${expiry}.${salt}`)}`;
  }

  #nonceMac(expiry: string): string {
    const mac = hmac(sha1, this.#secret, encoder.encode(expiry));
    return Array.from(mac.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  #nonceValid(nonce: string): boolean {
    const match = /^([0-9a-f]{1,13})\.([0-9a-f]{8})\.([0-9a-f]{16})$/.exec(nonce);
    if (!match || match[3] !== this.#nonceMac(`${match[1]}.${match[2]}`)) return false;
    return parseInt(match[1]!, 16) > this.#now();
  }

  #onRequest(client: TurnClient, request: StunMessage): void {
    if (request.method === StunMethod.Binding) {
      this.#reply(client, request, StunClass.SuccessResponse, [
        {
          type: StunAttr.XorMappedAddress,
          value: encodeXorAddress(client.address, request.transactionId),
        },
      ]);
      return;
    }
    const unknown = [
      ...new Set(
        request.attributes.map((a) => a.type).filter((t) => t < 0x8000 && !KNOWN_REQUIRED.has(t)),
      ),
    ].slice(0, 32);
    if (unknown.length > 0) {
      const value = new Uint8Array(unknown.length * 2);
      unknown.forEach((t, i) => {
        value[i * 2] = t >> 8;
        value[i * 2 + 1] = t & 0xff;
      });
      this.#error(client, request, 420, undefined, [
        { type: StunAttr.UnknownAttributes, value },
      ]);
      return;
    }
    const known: number[] = [
      StunMethod.Allocate,
      StunMethod.Refresh,
      StunMethod.CreatePermission,
      StunMethod.ChannelBind,
    ];
    if (!known.includes(request.method)) {
      this.#error(client, request, 400);
      return;
    }
    // Long-term credentials (RFC 8489 section 9.2.4).
    if (request.integrityOffset < 0) {
      this.#challenge(client, request, 401);
      return;
    }
    const usernameBytes = getAttribute(request, StunAttr.Username);
    const realmBytes = getAttribute(request, StunAttr.Realm);
    const nonceBytes = getAttribute(request, StunAttr.Nonce);
    if (!usernameBytes || !realmBytes || !nonceBytes) {
      this.#error(client, request, 400);
      return;
    }
    if (!this.#nonceValid(decoder.decode(nonceBytes))) {
      this.#challenge(client, request, 438);
      return;
    }
    const username = decoder.decode(usernameBytes);
    const password = Object.hasOwn(this.#users, username) ? this.#users[username] : undefined;
    const realm = decoder.decode(realmBytes);
    if (password === undefined || realm !== this.#realm) {
      this.#challenge(client, request, 401);
      return;
    }
    const key = longTermKey(username, realm, password);
    if (!verifyIntegrity(request, key)) {
      this.#challenge(client, request, 401);
      return;
    }
    if (request.method === StunMethod.Allocate) {
      this.#allocate(client, request, username, key).catch(() => {
        this.#pending.delete(client.key);
      });
      return;
    }
    const allocation = this.#allocationOf(client.key);
    if (!allocation) {
      this.#error(client, request, 437, key);
      return;
    }
    if (allocation.username !== username) {
      this.#error(client, request, 441, key);
      return;
    }
    if (request.method === StunMethod.Refresh) this.#refresh(allocation, request);
    else if (request.method === StunMethod.CreatePermission) {
      this.#createPermission(allocation, request);
    } else this.#channelBind(allocation, request);
  }

  #lifetime(request: StunMessage): number {
    const value = getAttribute(request, StunAttr.Lifetime);
    if (!value || value.length !== 4) return DEFAULT_LIFETIME;
    const asked = new DataView(value.buffer, value.byteOffset, 4).getUint32(0);
    if (asked === 0) return 0;
    return Math.max(DEFAULT_LIFETIME, Math.min(asked, this.#maxLifetime));
  }

  async #allocate(
    client: TurnClient,
    request: StunMessage,
    username: string,
    key: Uint8Array,
  ): Promise<void> {
    const tid = hexOf(request.transactionId);
    const existing = this.#allocationOf(client.key);
    if (existing) {
      if (existing.transactionId === tid) client.send(existing.response);
      else this.#error(client, request, 437, key);
      return;
    }
    if (this.#pending.has(client.key)) return; // A retransmission; the answer is on its way.
    const transport = getAttribute(request, StunAttr.RequestedTransport);
    if (!transport || transport.length !== 4) {
      this.#error(client, request, 400, key);
      return;
    }
    if (transport[0] !== 17) {
      this.#error(client, request, 442, key);
      return;
    }
    const evenPort = getAttribute(request, StunAttr.EvenPort);
    const token = getAttribute(request, StunAttr.ReservationToken);
    const familyValue = getAttribute(request, StunAttr.RequestedAddressFamily);
    if (token && (evenPort || familyValue)) {
      this.#error(client, request, 400, key);
      return;
    }
    if (evenPort && evenPort.length !== 1 && evenPort.length !== 4) {
      this.#error(client, request, 400, key);
      return;
    }
    let family: 4 | 6 = this.#relay.families.includes(4) ? 4 : this.#relay.families[0] ?? 4;
    if (familyValue) {
      const f = familyValue[0] === 1 ? 4 : familyValue[0] === 2 ? 6 : 0;
      if (f === 0 || familyValue.length !== 4) {
        this.#error(client, request, 440, key);
        return;
      }
      if (!this.#relay.families.includes(f)) {
        this.#error(client, request, 440, key);
        return;
      }
      family = f;
    }
    if ((this.#userCounts.get(username) ?? 0) >= this.#userQuota) {
      this.#error(client, request, 486, key);
      return;
    }
    if (this.#allocations.size + this.#pending.size + this.#reservations.size >= this.#totalQuota) {
      this.#error(client, request, 508, key);
      return;
    }
    const lifetime = this.#lifetime(request) || DEFAULT_LIFETIME;
    let sockets: TurnRelaySocket[];
    if (token) {
      const hex = hexOf(token);
      const reservation = this.#reservations.get(hex);
      if (!reservation || reservation.expires <= this.#now()) {
        this.#error(client, request, 508, key);
        return;
      }
      this.#reservations.delete(hex);
      sockets = [reservation.socket];
    } else {
      const reserveNext = evenPort !== undefined && (evenPort[0]! & 0x80) !== 0;
      this.#pending.set(client.key, tid);
      try {
        sockets = await this.#relay.open({
          family,
          evenPort: evenPort !== undefined,
          reserveNext,
        });
      } catch {
        if (this.#pending.get(client.key) === tid) {
          this.#pending.delete(client.key);
          this.#error(client, request, 508, key);
        }
        return;
      }
      if (this.#pending.get(client.key) !== tid || this.#closed) {
        for (const s of sockets) s.close();
        return;
      }
      this.#pending.delete(client.key);
    }
    const relay = sockets[0]!;
    const allocation: Allocation = {
      client,
      username,
      key,
      relay,
      transactionId: tid,
      fingerprint: request.fingerprintOffset >= 0,
      response: new Uint8Array(0),
      expires: this.#now() + lifetime * 1000,
      permissions: new Map(),
      channels: new Map(),
      peerChannels: new Map(),
    };
    relay.onPacket = (data, peer) => {
      try {
        this.#onPeerPacket(allocation, data, peer);
      } catch {
        this.#dropped++;
      }
    };
    this.#allocations.set(client.key, allocation);
    this.#userCounts.set(username, (this.#userCounts.get(username) ?? 0) + 1);
    const attributes: StunAttribute[] = [
      {
        type: StunAttr.XorRelayedAddress,
        value: encodeXorAddress(relay.address, request.transactionId),
      },
      { type: StunAttr.Lifetime, value: u32(lifetime) },
      {
        type: StunAttr.XorMappedAddress,
        value: encodeXorAddress(client.address, request.transactionId),
      },
    ];
    const reserved = sockets[1];
    if (reserved) {
      const tokenBytes = crypto.getRandomValues(new Uint8Array(8));
      reserved.onPacket = undefined;
      this.#reservations.set(hexOf(tokenBytes), {
        socket: reserved,
        expires: this.#now() + RESERVATION_LIFETIME * 1000,
      });
      attributes.push({ type: StunAttr.ReservationToken, value: tokenBytes });
    }
    allocation.response = this.#reply(
      client,
      request,
      StunClass.SuccessResponse,
      attributes,
      key,
    );
  }

  #refresh(allocation: Allocation, request: StunMessage): void {
    const familyValue = getAttribute(request, StunAttr.RequestedAddressFamily);
    if (familyValue && (familyValue[0] === 1 ? 4 : 6) !== allocation.relay.address.family) {
      this.#error(allocation.client, request, 443, allocation.key);
      return;
    }
    const lifetime = this.#lifetime(request);
    if (lifetime === 0) this.#delete(allocation);
    else allocation.expires = this.#now() + lifetime * 1000;
    this.#reply(
      allocation.client,
      request,
      StunClass.SuccessResponse,
      [{ type: StunAttr.Lifetime, value: u32(lifetime) }],
      allocation.key,
    );
  }

  /** Returns an error code, or the peer address. */
  #checkPeer(allocation: Allocation, value: Uint8Array, tid: Uint8Array): StunAddress | number {
    let peer: StunAddress;
    try {
      peer = decodeXorAddress(value, tid);
    } catch {
      return 400;
    }
    if (peer.family !== allocation.relay.address.family) return 443;
    const kind = classifyIp(parseIp(peer.address));
    if (kind === "forbidden" || peer.port === 0) return 403;
    if (kind === "loopback" && !this.#allowLoopback) return 403;
    if (kind === "private" && !this.#allowPrivate) return 403;
    return peer;
  }

  #createPermission(allocation: Allocation, request: StunMessage): void {
    const peers: StunAddress[] = [];
    for (const a of request.attributes) {
      if (a.type !== StunAttr.XorPeerAddress) continue;
      const peer = this.#checkPeer(allocation, a.value, request.transactionId);
      if (typeof peer === "number") {
        this.#error(allocation.client, request, peer, allocation.key);
        return;
      }
      peers.push(peer);
    }
    if (peers.length === 0) {
      this.#error(allocation.client, request, 400, allocation.key);
      return;
    }
    const fresh = peers.filter((p) => !allocation.permissions.has(p.address)).length;
    if (allocation.permissions.size + fresh > this.#maxPermissions) {
      this.sweep();
      if (allocation.permissions.size + fresh > this.#maxPermissions) {
        this.#error(allocation.client, request, 508, allocation.key);
        return;
      }
    }
    const expires = this.#now() + PERMISSION_LIFETIME * 1000;
    for (const p of peers) allocation.permissions.set(p.address, expires);
    this.#reply(allocation.client, request, StunClass.SuccessResponse, [], allocation.key);
  }

  #channelBind(allocation: Allocation, request: StunMessage): void {
    const numberValue = getAttribute(request, StunAttr.ChannelNumber);
    const peerValue = getAttribute(request, StunAttr.XorPeerAddress);
    if (!numberValue || numberValue.length !== 4 || !peerValue) {
      this.#error(allocation.client, request, 400, allocation.key);
      return;
    }
    const number = (numberValue[0]! << 8) | numberValue[1]!;
    if (number < 0x4000 || number > this.#maxChannel) {
      this.#error(allocation.client, request, 400, allocation.key);
      return;
    }
    const peer = this.#checkPeer(allocation, peerValue, request.transactionId);
    if (typeof peer === "number") {
      this.#error(allocation.client, request, peer, allocation.key);
      return;
    }
    const now = this.#now();
    const peerKey = `${peer.address}|${peer.port}`;
    const byNumber = allocation.channels.get(number);
    const byPeer = allocation.peerChannels.get(peerKey);
    if (
      (byNumber && byNumber.expires > now && byNumber.peerKey !== peerKey) ||
      (byPeer && byPeer.expires > now && byPeer.number !== number)
    ) {
      this.#error(allocation.client, request, 400, allocation.key);
      return;
    }
    if (
      !allocation.permissions.has(peer.address) &&
      allocation.permissions.size >= this.#maxPermissions
    ) {
      this.#error(allocation.client, request, 508, allocation.key);
      return;
    }
    if (byNumber) allocation.peerChannels.delete(byNumber.peerKey);
    if (byPeer) allocation.channels.delete(byPeer.number);
    const channel: Channel = { number, peer, peerKey, expires: now + CHANNEL_LIFETIME * 1000 };
    allocation.channels.set(number, channel);
    allocation.peerChannels.set(peerKey, channel);
    allocation.permissions.set(peer.address, now + PERMISSION_LIFETIME * 1000);
    this.#reply(allocation.client, request, StunClass.SuccessResponse, [], allocation.key);
  }

  #permitted(allocation: Allocation, ip: string): boolean {
    const expires = allocation.permissions.get(ip);
    return expires !== undefined && expires > this.#now();
  }

  #onSend(client: TurnClient, message: StunMessage): void {
    const allocation = this.#allocationOf(client.key);
    const peerValue = getAttribute(message, StunAttr.XorPeerAddress);
    const data = getAttribute(message, StunAttr.Data);
    if (!allocation || !peerValue || !data) {
      this.#dropped++;
      return;
    }
    let peer: StunAddress;
    try {
      peer = decodeXorAddress(peerValue, message.transactionId);
    } catch {
      this.#dropped++;
      return;
    }
    if (!this.#permitted(allocation, peer.address)) {
      this.#dropped++;
      return;
    }
    allocation.relay.send(data, peer);
  }

  #onChannelData(client: TurnClient, packet: Uint8Array): void {
    const allocation = this.#allocationOf(client.key);
    if (!allocation) {
      this.#dropped++;
      return;
    }
    let parsed;
    try {
      parsed = parseChannelData(packet);
    } catch {
      this.#dropped++;
      return;
    }
    const channel = allocation.channels.get(parsed.channel);
    if (
      !channel || channel.expires <= this.#now() ||
      !this.#permitted(allocation, channel.peer.address)
    ) {
      this.#dropped++;
      return;
    }
    allocation.relay.send(parsed.data, channel.peer);
  }

  #onPeerPacket(allocation: Allocation, data: Uint8Array, peer: StunAddress): void {
    const now = this.#now();
    if (allocation.expires <= now) {
      this.#delete(allocation);
      return;
    }
    if (!this.#permitted(allocation, peer.address)) {
      this.#dropped++;
      return;
    }
    const channel = allocation.peerChannels.get(`${peer.address}|${peer.port}`);
    if (channel && channel.expires > now) {
      allocation.client.send(encodeChannelData(channel.number, data, allocation.client.stream));
      return;
    }
    if (data.length > 0xffff - 64) {
      this.#dropped++;
      return;
    }
    const transactionId = crypto.getRandomValues(new Uint8Array(12));
    allocation.client.send(encodeStunMessage({
      method: StunMethod.Data,
      class: StunClass.Indication,
      transactionId,
      attributes: [
        { type: StunAttr.XorPeerAddress, value: encodeXorAddress(peer, transactionId) },
        { type: StunAttr.Data, value: data },
      ],
    }, { fingerprint: allocation.fingerprint }));
  }
}

function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}
