// Copyright the ptkit authors. MIT license.
// Test helpers for the TURN tests: a STUN client over any datagram wire, and a fake relay.

import { decodeErrorCode, decodeXorAddress, encodeXorAddress } from "../udp/stun/_attributes.ts";
import {
  encodeStunMessage,
  getAttribute,
  parseStunMessage,
  type StunAddress,
  type StunAttribute,
  type StunMessage,
} from "../udp/stun/_message.ts";
import { isChannelData } from "../udp/stun/_channel_data.ts";
import { longTermKey } from "../udp/stun/_integrity.ts";
import { StunAttr, StunClass, StunMethod } from "../udp/stun/_constants.ts";
import type {
  TurnRelayFactory,
  TurnRelayRequest,
  TurnRelaySocket,
} from "../udp/turn/_turn_server.ts";
import { type UdpEndpoint, udpEndpoint } from "../udp/udp_socket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An async FIFO. */
export class Queue<T> {
  #items: T[] = [];
  #waiters: ((item: T) => void)[] = [];
  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }
  pop(timeoutMs = 10_000): Promise<T> {
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise<T>((resolve, reject) => {
      const waiter = (value: T) => {
        clearTimeout(timer);
        resolve(value);
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`No packet within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }
  get size(): number {
    return this.#items.length;
  }
}

/** A datagram wire to a TURN server. */
export interface Wire {
  send(bytes: Uint8Array): void;
  readonly inbox: Queue<Uint8Array>;
}

/** Options of one request. */
export interface RequestOptions {
  /** Add USERNAME/REALM/NONCE/MESSAGE-INTEGRITY (default true once a nonce is known). */
  auth?: boolean;
  /** Override the password used for MESSAGE-INTEGRITY. */
  password?: string;
  /** Override the user name. */
  username?: string;
  /** Add FINGERPRINT (default true). */
  fingerprint?: boolean;
  /** Corrupt the FINGERPRINT. */
  badFingerprint?: boolean;
  /** Fixed transaction id. */
  transactionId?: Uint8Array;
}

/** A STUN/TURN client for tests; packets that are not the awaited response go to `other`. */
export class StunTestClient {
  readonly wire: Wire;
  username: string;
  password: string;
  realm = "";
  nonce = "";
  readonly other: Uint8Array[] = [];

  constructor(wire: Wire, username = "u", password = "p") {
    this.wire = wire;
    this.username = username;
    this.password = password;
  }

  build(method: number, attributes: StunAttribute[], options: RequestOptions = {}): Uint8Array {
    const transactionId = options.transactionId ?? crypto.getRandomValues(new Uint8Array(12));
    const auth = options.auth ?? this.nonce !== "";
    const username = options.username ?? this.username;
    const attrs = [...attributes];
    if (auth) {
      attrs.push(
        { type: StunAttr.Username, value: encoder.encode(username) },
        { type: StunAttr.Realm, value: encoder.encode(this.realm) },
        { type: StunAttr.Nonce, value: encoder.encode(this.nonce) },
      );
    }
    const bytes = encodeStunMessage(
      { method, class: StunClass.Request, transactionId, attributes: attrs },
      {
        ...(auth
          ? { integrityKey: longTermKey(username, this.realm, options.password ?? this.password) }
          : {}),
        fingerprint: options.fingerprint ?? true,
      },
    );
    if (options.badFingerprint) bytes[bytes.length - 1]! ^= 0xff;
    return bytes;
  }

  /** Send a request and wait for the response with its transaction id. */
  async request(
    method: number,
    attributes: StunAttribute[] = [],
    options: RequestOptions = {},
  ): Promise<StunMessage> {
    const bytes = this.build(method, attributes, options);
    this.wire.send(bytes);
    return await this.response(bytes.subarray(8, 20));
  }

  async response(transactionId: Uint8Array): Promise<StunMessage> {
    for (;;) {
      const packet = await this.wire.inbox.pop();
      if (!isChannelData(packet)) {
        const m = parseStunMessage(packet);
        if (
          m.class !== StunClass.Indication &&
          m.transactionId.every((b, i) => b === transactionId[i])
        ) {
          return m;
        }
      }
      this.other.push(packet);
    }
  }

  /** Send an authenticated request, learning REALM and NONCE from a 401/438 first. */
  async authed(method: number, attributes: StunAttribute[] = []): Promise<StunMessage> {
    for (let i = 0; i < 3; i++) {
      const m = await this.request(method, attributes, { auth: this.nonce !== "" });
      const code = errorCode(m);
      if (code === 401 || code === 438) {
        const nonce = getAttribute(m, StunAttr.Nonce);
        const realm = getAttribute(m, StunAttr.Realm);
        if (nonce && realm && (this.nonce === "" || code === 438)) {
          this.nonce = decoder.decode(nonce);
          this.realm = decoder.decode(realm);
          continue;
        }
      }
      return m;
    }
    throw new Error("Authentication loop");
  }

  /** Send an authenticated `method` request naming `peer` in XOR-PEER-ADDRESS; returns the response. */
  async withPeer(
    method: number,
    peer: StunAddress,
    extra: StunAttribute[] = [],
  ): Promise<StunMessage> {
    const transactionId = crypto.getRandomValues(new Uint8Array(12));
    this.wire.send(this.build(method, [
      { type: StunAttr.XorPeerAddress, value: encodeXorAddress(peer, transactionId) },
      ...extra,
    ], { transactionId }));
    return await this.response(transactionId);
  }

  /** Send a Send indication (RFC 8656 section 11) carrying `data` to `peer`, with `extra` attributes after. */
  sendIndication(peer: StunAddress, data: Uint8Array, extra: StunAttribute[] = []): void {
    const transactionId = crypto.getRandomValues(new Uint8Array(12));
    this.wire.send(encodeStunMessage({
      method: StunMethod.Send,
      class: StunClass.Indication,
      transactionId,
      attributes: [
        { type: StunAttr.XorPeerAddress, value: encodeXorAddress(peer, transactionId) },
        { type: StunAttr.Data, value: data },
        ...extra,
      ],
    }, { fingerprint: true }));
  }

  /** Allocate a UDP relay; returns the response. */
  allocate(extra: StunAttribute[] = []): Promise<StunMessage> {
    return this.authed(StunMethod.Allocate, [
      { type: StunAttr.RequestedTransport, value: new Uint8Array([17, 0, 0, 0]) },
      ...extra,
    ]);
  }
}

/** The ERROR-CODE of a message, or 0 for a success. */
export function errorCode(m: StunMessage): number {
  const value = getAttribute(m, StunAttr.ErrorCode);
  return value ? decodeErrorCode(value).code : 0;
}

/** The XOR-RELAYED-ADDRESS of an Allocate response. */
export function relayedAddress(m: StunMessage): StunAddress {
  return decodeXorAddress(getAttribute(m, StunAttr.XorRelayedAddress)!, m.transactionId);
}

/** LIFETIME of a response in seconds. */
export function lifetimeOf(m: StunMessage): number {
  const v = getAttribute(m, StunAttr.Lifetime)!;
  return new DataView(v.buffer, v.byteOffset, 4).getUint32(0);
}

/** A relay socket that records what it sends. */
export class FakeRelaySocket implements TurnRelaySocket {
  readonly address: StunAddress;
  readonly sent: { data: Uint8Array; peer: StunAddress }[] = [];
  closed = false;
  onPacket: ((data: Uint8Array, peer: UdpEndpoint) => void) | undefined = undefined;
  constructor(address: StunAddress) {
    this.address = address;
  }
  send(data: Uint8Array, peer: UdpEndpoint): void {
    if (!this.closed) {
      this.sent.push({
        data: data.slice(),
        peer: { family: peer.family, address: peer.hostname, port: peer.port },
      });
    }
  }
  /** A datagram from `peer` arrives. */
  receive(data: Uint8Array, peer: StunAddress): void {
    this.onPacket?.(data, udpEndpoint(peer.address, peer.port));
  }
  close(): void {
    this.closed = true;
  }
}

/** A relay factory handing out fake sockets on consecutive ports. */
export class FakeRelay implements TurnRelayFactory {
  readonly families: readonly (4 | 6)[] = [4];
  readonly sockets: FakeRelaySocket[] = [];
  #port = 50000;
  open(request: TurnRelayRequest): Promise<TurnRelaySocket[]> {
    if (request.evenPort && this.#port % 2) this.#port++;
    const make = () => {
      const s = new FakeRelaySocket({ family: 4, address: "127.0.0.1", port: this.#port++ });
      this.sockets.push(s);
      return s;
    };
    const out = [make()];
    if (request.reserveNext) out.push(make());
    return Promise.resolve(out);
  }
  /** The socket bound to a relayed address. */
  socketAt(address: StunAddress): FakeRelaySocket {
    return this.sockets.find((s) => s.address.port === address.port)!;
  }
}
