// Copyright the ptkit authors. MIT license.

import { hmacSha1 } from "../stun/_hmac.ts";
import { encodeChannelData, isChannelData } from "../stun/_channel_data.ts";
import { DestinationPolicy } from "../../net/destination_policy.ts";
import { StunAttr, StunClass, type StunClassValue, StunMethod } from "../stun/_constants.ts";
import {
  decodeXorAddress,
  encodeAddress,
  encodeErrorCode,
  encodeXorAddress,
  u32,
  xorIpv4Key,
} from "../stun/_attributes.ts";
import { longTermKey, verifyFingerprint, verifyIntegrity } from "../stun/_integrity.ts";
import {
  encodeStunMessage,
  getAttribute,
  isStunMessage,
  parseStunMessage,
  type StunAddress,
  type StunAttribute,
  type StunMessage,
} from "../stun/_message.ts";
import { type UdpEndpoint, udpEndpoint } from "../udp_socket.ts";
import { metricsCore, type MetricsRegistry } from "../../net/metrics.ts";
import { countTurnServer } from "../_udp_metrics.ts";
import { sourceKey } from "../../net/source_limits.ts";
import { acceptErrorKind, retryWhileExhausted } from "../../net/_accept_loop.ts";
import { SourceShare } from "../../net/_source_share.ts";
import { systemClock } from "../_clock.ts";
import { realmProblem, usernameProblem } from "./_credential_limits.ts";
import {
  type RequestBudget,
  requestCost,
  SourceRequestRates,
  takeRequestToken,
} from "./_request_rate.ts";

/**
 * Requests a byte-stream client, or a UDP client holding an allocation, may
 * make in a burst, and per millisecond after it.
 */
const STREAM_REQUEST_BURST = 50;
const STREAM_REQUESTS_PER_MS = 50 / 1000;
/**
 * Requests the allocations of one source may make together, in a burst
 * and per millisecond after it: 50 a second each from 100 allocations
 * of 64 KiB requests was 3.5 s of CPU a second from one address.
 */
const HOLDERS_REQUEST_BURST = 500;
const HOLDERS_REQUESTS_PER_MS = 250 / 1000;

/** One TURN client as a front end sees it: a 5-tuple (or a stream) and a way to answer. */
export interface TurnClient {
  /**
   * Unique id of the client's 5-tuple or stream connection (a number where
   * possible: it is looked up for every datagram).
   */
  readonly key: string | number;
  /** The client's transport address, echoed in XOR-MAPPED-ADDRESS. */
  readonly address: StunAddress;
  /**
   * The source the client counts against when a quota is full (see
   * `userQuota`): an IP address or IPv6 /64, as the connection limits use
   * (a stream's client, whose `address` is not known). Defaults to the IP
   * of `address`.
   */
  readonly source?: string;
  /** True on byte streams: ChannelData toward the client is padded to 4. */
  readonly stream?: boolean;
  /**
   * The largest packet the client can be sent, in bytes; larger ones are
   * dropped and counted as `oversize`. Defaults to 65,539 (ChannelData with
   * a full 16-bit length).
   */
  readonly maxPacket?: number;
  /**
   * Send one STUN message or ChannelData frame to the client. `packet` is
   * valid only during the call (it may sit in a receive buffer): copy it to
   * keep it. Returns `false` when the packet was dropped (counted as
   * `sendFailed`); any other value means it was sent.
   */
  send(packet: Uint8Array): unknown;
}

/** A relayed transport address: a socket the server sends to and receives from peers with. */
export interface TurnRelaySocket {
  /** The relayed transport address. */
  readonly address: StunAddress;
  /** The largest datagram it can send to a peer, in bytes (default 65,507). */
  readonly maxDatagram?: number;
  /**
   * Bytes before, and after, each datagram given to `onPacket` that the
   * server may overwrite (4 lets it build ChannelData, padded or not, in
   * place). Default 0.
   */
  readonly headroom?: number;
  /** Send one datagram to a peer; returning `false` means it was dropped, anything else sent. */
  send(data: Uint8Array, peer: UdpEndpoint): unknown;
  /** Release the socket. */
  close(): void;
  /** Called for every datagram from a peer; unset means drop. `data` is valid during the call only. */
  onPacket: ((data: Uint8Array, peer: UdpEndpoint) => void) | undefined;
}

/** What a {@linkcode TurnRelayFactory} is asked to open. */
export interface TurnRelayRequest {
  /** Address family of the relayed address. */
  readonly family: 4 | 6;
  /** The port must be even. */
  readonly evenPort: boolean;
  /** Also reserve port + 1 (returned as the second socket). */
  readonly reserveNext: boolean;
  /**
   * The client's address, as far as it is known: a relay bound to a
   * wildcard address reports the address this host reaches the client from.
   */
  readonly client?: TurnClient["address"];
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
  /**
   * Users given by their long-term key instead (MD5 of `user:realm:password`,
   * 16 bytes: what coturn's `turnadmin -k` prints as `0x...`); a name here
   * wins over the same name in `users`.
   */
  readonly keys?: Readonly<Record<string, Uint8Array>>;
  /** Relay socket factory. */
  readonly relay: TurnRelayFactory;
  /**
   * Clock in milliseconds. Defaults to a monotonic one near the epoch (the
   * UDP pool's): a wall clock stepped back or forward neither stretches nor
   * cuts lifetimes and rate limits.
   */
  readonly now?: () => number;
  /**
   * Where allocations, permissions, channels, relayed and dropped datagrams
   * are counted (`ptkit_turn_*`). Defaults to nowhere.
   */
  readonly metrics?: MetricsRegistry;
  /** Allow loopback peers, 127.0.0.0/8 and ::1 (default false). */
  readonly allowLoopbackPeers?: boolean;
  /**
   * Allow private and link-local peers: RFC 1918, CGNAT, unique-local,
   * site-local, 169.254.0.0/16 and fe80::/10 (default false). Whatever the
   * options, peers are judged by the one `DestinationPolicy` free mode uses:
   * multicast, broadcast, unspecified, documentation, benchmarking and
   * reserved addresses are always refused with 403.
   */
  readonly allowPrivatePeers?: boolean;
  /**
   * Allocations per user (default 1000); more get 486, unless the asking
   * client's source holds fewer of the user's than another source: then
   * that source's oldest allocation is deleted to make room (one source
   * cannot hold a shared user's every allocation, as a bridge's one
   * generated user is shared by all its clients).
   */
  readonly userQuota?: number;
  /**
   * Allocations and reservations in total (default 5000); more get 508,
   * with the same share between sources as `userQuota`.
   */
  readonly totalQuota?: number;
  /**
   * Allocations one source (an IPv4 address, an IPv6 /64; see
   * `TurnClient.source`) holds at once, its port reservations and the
   * Allocates it has in progress counted too (default 500: coturn's
   * `turnutils_uclient -y -m 100` load, all from one address, holds about
   * 200); more get 486
   * (Allocation Quota Reached, RFC 8656 section 7.2), whatever the user, and
   * never evict another's. Without it one address could hold the whole
   * `totalQuota`: its relay sockets, descriptors and memory. A positive
   * integer, or `Infinity` for no limit. Clients over a byte stream are not
   * capped here: each holds one allocation on one connection, and the
   * connections of a source are limited where they are accepted
   * (`maxConnectionsPerSource`, its least recently active one making room),
   * behind a front server that reports no client address all of them
   * from one.
   */
  readonly sourceQuota?: number;
  /** Permissions per allocation (default 256); more get 508. */
  readonly maxPermissions?: number;
  /**
   * Channel bindings per allocation (default 64); more get 508. Each is
   * state the server keeps, and one permission covers a peer's every port.
   */
  readonly maxChannels?: number;
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
  /**
   * Requests one source (an IPv4 address, an IPv6 /64) may make at once
   * (default 500), from clients that hold no live allocation: over UDP their
   * answers (a 401 challenge, a Binding success, an error) go to whatever
   * address the request claims to come from, so a spoofed flood would make
   * the server reflect it at someone else, and each costs the server more
   * than the sender. Past the burst, `requestsPerSecondPerSource`; the rest
   * are dropped without an answer and counted as `rateLimited`. A client
   * holding an allocation proved its credentials: its requests are not
   * counted here, but against a budget of its own (50 at once, then 50 a
   * second, over UDP). Byte-stream clients count against the source they were
   * given (`TurnClient.source`), none when not given. A positive integer, or
   * `Infinity` for no limit.
   */
  readonly requestBurstPerSource?: number;
  /**
   * Requests one source may make a second after its burst (default 100;
   * see `requestBurstPerSource`). A positive number, or `Infinity` for no
   * limit.
   */
  readonly requestsPerSecondPerSource?: number;
  /**
   * Sources whose request rate is tracked (default 16,384; an odd number is
   * rounded up): past it, the half that asked least recently is forgotten
   * (each starts again with a full burst), so that any number of sources
   * takes bounded memory; a source is forgotten only once half as many
   * others asked after it. A positive integer.
   */
  readonly maxRequestSources?: number;
}

/** Datagrams a {@linkcode TurnServer} dropped, by reason. */
export interface TurnDrops {
  /**
   * Neither STUN nor ChannelData, unparsable, a bad FINGERPRINT, a class the
   * server does not take, or a Send indication with a comprehension-required
   * attribute it does not know or with more than 32 attributes. Binding indications (keepalives) are
   * ignored, not counted; an RFC 3489 Binding request (no magic cookie) is
   * answered, not counted.
   */
  malformed: number;
  /**
   * ChannelData or a Send indication from a client without an allocation,
   * or a peer's datagram reaching an allocation that has expired.
   */
  noAllocation: number;
  /** ChannelData on a channel that is not bound (or expired). */
  noChannel: number;
  /** To or from a peer without a permission. */
  noPermission: number;
  /**
   * Too large for where it goes: over the relay's largest datagram toward a
   * peer, or, toward the client, over its largest packet once framed as
   * ChannelData (4 bytes more) or a Data indication.
   */
  oversize: number;
  /** The relay or the client's socket refused it. */
  sendFailed: number;
  /**
   * Requests dropped unanswered: from a source beyond its
   * `requestBurstPerSource`, then `requestsPerSecondPerSource` (500, then
   * 100 a second, by default; clients holding an allocation are not
   * counted there), or from a byte-stream client, or a UDP client holding
   * an allocation, beyond 50 a second (bursts of 50), or from the
   * allocations of one source together beyond 250 a second (bursts of
   * 500); each budget counts a request as one, and one more per KiB. A TURN client makes a handful; a flood of 20-byte
   * Binding requests cost the server a thousand times what it cost the
   * sender, and over UDP its answers may go to a spoofed address.
   */
  rateLimited: number;
}

/** Counters of a {@linkcode TurnServer}. */
export interface TurnServerStats {
  /** Live allocations. */
  allocations: number;
  /** Live port reservations. */
  reservations: number;
  /** Live permissions, over all allocations. */
  permissions: number;
  /** Live channel bindings, over all allocations. */
  channels: number;
  /** Allocations made so far. */
  allocationsTotal: number;
  /** Allocations deleted so far to make room for a client of a source that held fewer (see `userQuota`). */
  allocationsEvicted: number;
  /** Permissions installed or refreshed so far (by CreatePermission, one per peer address, and ChannelBind). */
  permissionsTotal: number;
  /** Channels bound or refreshed so far. */
  channelsTotal: number;
  /** Datagrams relayed from clients to peers. */
  relayedToPeers: number;
  /** Datagrams relayed from peers to clients. */
  relayedToClients: number;
  /** Datagrams dropped, all reasons together. */
  dropped: number;
  /** Datagrams dropped, by reason. */
  drops: Readonly<TurnDrops>;
}

interface Channel {
  readonly number: number;
  readonly peer: UdpEndpoint;
  expires: number;
}

interface Allocation {
  readonly client: TurnClient;
  /** The source it counts against (see `TurnClient.source`). */
  readonly source: string;
  readonly username: string;
  readonly key: Uint8Array;
  readonly relay: TurnRelaySocket;
  readonly transactionId: string;
  readonly fingerprint: boolean;
  response: Uint8Array;
  expires: number;
  /** Permission expiry by the peer's `ipKey`. */
  readonly permissions: Map<string | number, number>;
  readonly channels: Map<number, Channel>;
  /** Channels by the peer's `key`. */
  readonly peerChannels: Map<string | number, Channel>;
  /** The peer of the last Send indication (the next is most likely to the same). */
  sendPeer: UdpEndpoint | undefined;
  /** The IPv4 peer of the last Data indication, and its XOR-PEER-ADDRESS (the same for any transaction id). */
  dataPeer: number | string | undefined;
  dataPeerXor: Uint8Array;
  /** The client's request budget over UDP (a stream's is its connection's). */
  readonly budget: RequestBudget;
}

const DEFAULT_LIFETIME = 600;
const PERMISSION_LIFETIME = 300;
const CHANNEL_LIFETIME = 600;
const RESERVATION_LIFETIME = 30;

/**
 * The comprehension-required attributes (below 0x8000) each method takes,
 * as coturn knows them: the credentials, PRIORITY and ACCESS-TOKEN in any
 * method, and each method's own. Any other is unknown to that method and
 * gets 420 (RFC 8489 section 7.3.1), as from coturn: BANDWIDTH (0x0010,
 * reserved since RFC 5766), DATA outside a Send indication, or an
 * attribute of another method.
 */
const KNOWN_REQUIRED: ReadonlyMap<number, ReadonlySet<number>> = (() => {
  const common = [
    StunAttr.Username,
    StunAttr.MessageIntegrity,
    StunAttr.Realm,
    StunAttr.Nonce,
    StunAttr.Priority,
    StunAttr.AccessToken,
  ];
  const known = (...own: number[]) => new Set([...common, ...own]);
  return new Map([
    [StunMethod.Binding, known()],
    [
      StunMethod.Allocate,
      known(
        StunAttr.Lifetime,
        StunAttr.RequestedTransport,
        StunAttr.DontFragment,
        StunAttr.EvenPort,
        StunAttr.ReservationToken,
        StunAttr.RequestedAddressFamily,
      ),
    ],
    [StunMethod.Refresh, known(StunAttr.Lifetime, StunAttr.RequestedAddressFamily)],
    [StunMethod.CreatePermission, known(StunAttr.XorPeerAddress)],
    [StunMethod.ChannelBind, known(StunAttr.ChannelNumber, StunAttr.XorPeerAddress)],
    [StunMethod.Send, known(StunAttr.XorPeerAddress, StunAttr.Data, StunAttr.DontFragment)],
  ]);
})();

/**
 * Whether `packet` is an RFC 3489 Binding request: a STUN header without the
 * magic cookie, type 0x0001, a length that is the rest of the packet.
 */
function isRfc3489Binding(packet: Uint8Array): boolean {
  return packet.length >= 20 && packet[0] === 0 && packet[1] === 1 &&
    ((packet[2]! << 8) | packet[3]!) === packet.length - 20 && packet.length % 4 === 0;
}

/**
 * Attributes a Send indication may carry: XOR-PEER-ADDRESS, DATA,
 * DONT-FRAGMENT, FINGERPRINT and room for optional ones. Each is parsed
 * and looked over for every datagram relayed this way: a 60 KB indication
 * of 5000 attributes cost the server 543 us, one of 64,000 bytes of DATA
 * 101 us.
 */
const MAX_SEND_ATTRIBUTES = 32;

/**
 * Whether the STUN message `packet` (its length checked) has more than
 * `limit` attributes, counted by their headers alone.
 */
function attributesOver(packet: Uint8Array, limit: number): boolean {
  let count = 0;
  for (
    let at = 20;
    at + 4 <= packet.length;
    at += 4 + ((((packet[at + 2]! << 8) | packet[at + 3]!) + 3) & ~3)
  ) {
    if (++count > limit) return true;
  }
  return false;
}

/**
 * The comprehension-required attribute types (below 0x8000) of `message`
 * its method does not take, each once, at most 32.
 */
function unknownRequired(message: StunMessage): number[] {
  const known = KNOWN_REQUIRED.get(message.method);
  const types = message.attributes.map((a) => a.type);
  return [...new Set(types.filter((t) => t < 0x8000 && !known?.has(t)))].slice(0, 32);
}

/**
 * The family a REQUESTED-ADDRESS-FAMILY value asks for (RFC 8656 section
 * 18.1: 0x01 IPv4, 0x02 IPv6), or `undefined` for any other value or
 * length (440 Address Family not Supported).
 */
function requestedFamily(value: Uint8Array): 4 | 6 | undefined {
  if (value.length !== 4) return undefined;
  return value[0] === 1 ? 4 : value[0] === 2 ? 6 : undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * TURN server logic (RFC 8656, UDP relaying) without I/O: front ends feed it datagrams or
 * frames with {@linkcode TurnServer.handle}; relay sockets come from a
 * {@linkcode TurnRelayFactory}; time comes from an injectable clock.
 *
 * @example Answering an unauthenticated Allocate with 401
 * ```ts
 * import { TurnServer } from "./_turn_server.ts";
 * import { encodeStunMessage, getAttribute, parseStunMessage } from "../stun/_message.ts";
 * import { StunAttr, StunMethod } from "../stun/_constants.ts";
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
  #givenKeys: Readonly<Record<string, Uint8Array>>;
  #relay: TurnRelayFactory;
  #now: () => number;
  #peers: DestinationPolicy;
  #userQuota: number;
  #totalQuota: number;
  #sourceQuota: number;
  /** Allocates in progress (waiting for their relay socket), by source. */
  #pendingFrom = new Map<string, number>();
  #maxPermissions: number;
  #maxChannels: number;
  #maxLifetime: number;
  #maxChannel: number;
  #nonceLifetime: number;
  #software: Uint8Array;
  #secret: Uint8Array = crypto.getRandomValues(new Uint8Array(16));
  /** Each client's last nonce whose MAC was good, and its expiry (ms). */
  #validNonces = new WeakMap<TurnClient, { nonce: string; expiry: number }>();
  #ids = new Uint8Array(12 * 256);
  #idsAt = this.#ids.length;
  #allocations = new Map<string | number, Allocation>();
  #pending = new Map<string | number, string>();
  #keys = new Map<string, Uint8Array>();
  #userCounts = new Map<string, number>();
  /** Allocations by source, oldest first. */
  #bySource = new SourceShare<Allocation>();
  /** Allocations that a pending Allocate will delete (two never pick the same). */
  #claimed = new Set<Allocation>();
  #reservations = new Map<
    string,
    { socket: TurnRelaySocket; expires: number; owner: string | number; source: string }
  >();
  /** The live reservation tokens of each source, oldest first. */
  #reservedFrom = new Map<string, string[]>();
  /** The live reservation token of each client: one at a time. */
  #reservedBy = new Map<string | number, string>();
  #drops: TurnDrops = {
    malformed: 0,
    noAllocation: 0,
    noChannel: 0,
    noPermission: 0,
    oversize: 0,
    sendFailed: 0,
    rateLimited: 0,
  };
  /** Byte-stream clients' request budgets (a connection keeps its client object). */
  #requestBudgets = new WeakMap<TurnClient, RequestBudget>();
  /** Sources' request budgets; undefined with no per-source limit. */
  #sourceRates: SourceRequestRates | undefined;
  /** The request budgets of sources' allocations together; undefined with no per-source limit. */
  #holderRates: SourceRequestRates | undefined;
  #toPeers = 0;
  #toClients = 0;
  #allocationsTotal = 0;
  #evicted = 0;
  #permissionsTotal = 0;
  #channelsTotal = 0;
  #closed = false;
  #stopCounting: (() => void) | undefined;

  /**
   * Create the server logic.
   *
   * @param options Realm, users, relay factory, clock, peer policy and quotas.
   */
  constructor(options: TurnServerOptions) {
    if (typeof options.realm !== "string" || options.realm === "") {
      throw new TypeError("Cannot create TURN server: realm must be a non-empty string");
    }
    const problem = realmProblem(options.realm) ??
      [...Object.keys(options.users), ...Object.keys(options.keys ?? {})].map(usernameProblem)
        .find((p) => p !== undefined);
    if (problem !== undefined) throw new RangeError(`Cannot create TURN server: ${problem}`);
    for (const key of Object.values(options.keys ?? {})) {
      if (!(key instanceof Uint8Array) || key.length !== 16) {
        throw new RangeError("Cannot create TURN server: a user's key must be 16 bytes");
      }
    }
    this.#realm = options.realm;
    this.#users = options.users;
    this.#givenKeys = options.keys ?? {};
    this.#relay = options.relay;
    this.#now = options.now ?? systemClock.now;
    this.#peers = new DestinationPolicy({
      allow: [
        ...(options.allowLoopbackPeers ? ["loopback" as const] : []),
        ...(options.allowPrivatePeers ? ["private" as const, "link-local" as const] : []),
      ],
    });
    this.#userQuota = options.userQuota ?? 1000;
    this.#totalQuota = options.totalQuota ?? 5000;
    this.#sourceQuota = checkLimit("sourceQuota", options.sourceQuota, 500);
    this.#maxPermissions = options.maxPermissions ?? 256;
    this.#maxChannels = options.maxChannels ?? 64;
    this.#maxLifetime = options.maxLifetime ?? 3600;
    this.#maxChannel = options.strictChannelNumbers ? 0x4fff : 0x7fff;
    this.#nonceLifetime = options.nonceLifetime ?? 3600;
    this.#software = encoder.encode(options.software ?? "ptkit turn");
    const burst = checkLimit("requestBurstPerSource", options.requestBurstPerSource, 500);
    const rate = checkLimit(
      "requestsPerSecondPerSource",
      options.requestsPerSecondPerSource,
      100,
      "positive number or Infinity",
    );
    const sources = checkLimit(
      "maxRequestSources",
      options.maxRequestSources,
      16_384,
      "positive integer",
    );
    if (burst !== Infinity && rate !== Infinity) {
      this.#sourceRates = new SourceRequestRates(burst, rate, sources);
      this.#holderRates = new SourceRequestRates(
        HOLDERS_REQUEST_BURST,
        HOLDERS_REQUESTS_PER_MS * 1000,
        sources,
      );
    }
    if (options.metrics !== undefined) {
      this.#stopCounting = countTurnServer(metricsCore(options.metrics), () => this.stats());
    }
  }

  /**
   * Counters: live allocations and reservations, datagrams relayed and dropped.
   *
   * @returns A snapshot.
   */
  stats(): TurnServerStats {
    const d = this.#drops;
    let permissions = 0;
    let channels = 0;
    for (const allocation of this.#allocations.values()) {
      permissions += allocation.permissions.size;
      channels += allocation.channels.size;
    }
    return {
      allocations: this.#allocations.size,
      reservations: this.#reservations.size,
      permissions,
      channels,
      allocationsTotal: this.#allocationsTotal,
      allocationsEvicted: this.#evicted,
      permissionsTotal: this.#permissionsTotal,
      channelsTotal: this.#channelsTotal,
      relayedToPeers: this.#toPeers,
      relayedToClients: this.#toClients,
      // Every reason, as the JSDoc says (rateLimited was left out): summed
      // from the record, so a reason added later is counted too.
      dropped: Object.values(d).reduce((sum, n) => sum + n, 0),
      drops: { ...d },
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
      this.#drops.malformed++;
    }
  }

  #takeRequestToken(client: TurnClient, now: number, cost: number): boolean {
    let budget = this.#requestBudgets.get(client);
    if (budget === undefined) {
      this.#requestBudgets.set(client, budget = { tokens: STREAM_REQUEST_BURST, at: now });
    }
    return takeRequestToken(budget, now, STREAM_REQUEST_BURST, STREAM_REQUESTS_PER_MS, cost);
  }

  /**
   * Whether a request of `client` is answered (a byte-stream connection's
   * budget, then its source's); counted as `rateLimited` when not. Taken
   * before the request is parsed: a flood costs a look-up each. A request
   * costs one token and one more per KiB ({@linkcode requestCost}).
   */
  #admitRequest(client: TurnClient, size: number): boolean {
    const now = this.#now();
    const cost = requestCost(size);
    if (client.stream === true && !this.#takeRequestToken(client, now, cost)) {
      this.#drops.rateLimited++;
      return false;
    }
    const rates = this.#sourceRates;
    if (rates === undefined) return true;
    // A client holding an allocation proved its credentials from there: it
    // takes from a budget of its own (see #admitHolderRequest), not its
    // source's, so a flood from its source does not keep it from refreshing.
    const allocation = this.#allocations.get(client.key);
    if (allocation !== undefined && allocation.expires > now) return true;
    // A stream given no source (its peer unknown) has its own budget only.
    const source = client.stream === true ? client.source : this.#sourceOf(client);
    if (source === undefined || rates.take(source, now, cost)) return true;
    this.#drops.rateLimited++;
    return false;
  }

  /**
   * Whether a well-formed request of `client` is answered, when it holds an
   * allocation: over UDP 50 at once, then 50 a second, of its own (a
   * stream's connection has that budget already), and 500 at once, then
   * 250 a second, for all the allocations of its source together; each
   * request costs one token and one more per KiB. Counted as `rateLimited`
   * when not. Its flood of signed requests (each a MAC checked and one
   * made: Refresh, CreatePermission, ChannelBind), or of Binding requests
   * sent as from its 5-tuple (answered there), is bounded, not answered
   * without end, and so are a source's many allocations together. Taken
   * once the request parsed: garbage costs a failed parse only.
   */
  #admitHolderRequest(client: TurnClient, size: number): boolean {
    const allocation = this.#allocations.get(client.key);
    const now = this.#now();
    if (allocation === undefined || allocation.expires <= now) return true;
    const cost = requestCost(size);
    if (
      client.stream !== true &&
      !takeRequestToken(allocation.budget, now, STREAM_REQUEST_BURST, STREAM_REQUESTS_PER_MS, cost)
    ) {
      this.#drops.rateLimited++;
      return false;
    }
    const source = client.stream === true ? client.source : this.#sourceOf(client);
    if (source === undefined || this.#holderRates?.take(source, now, cost) !== false) return true;
    this.#drops.rateLimited++;
    return false;
  }

  /** The source `client` counts against (see `TurnClient.source`). */
  #sourceOf(client: TurnClient): string {
    return client.source ??
      sourceKey({ transport: "udp", hostname: client.address.address, port: 0 }) ?? "";
  }

  #dispatch(client: TurnClient, packet: Uint8Array): void {
    if (isChannelData(packet)) {
      this.#onChannelData(client, packet);
      return;
    }
    if (!isStunMessage(packet)) {
      if (!isRfc3489Binding(packet)) this.#drops.malformed++;
      else if (
        this.#admitRequest(client, packet.length) &&
        this.#admitHolderRequest(client, packet.length)
      ) {
        this.#answerRfc3489(client, packet);
      }
      return;
    }
    // The class bits of the message type (C1 is 0x0100, C0 0x0010): 00 is a request.
    if (
      (packet[0]! & 0x01) === 0 && (packet[1]! & 0x10) === 0 &&
      !this.#admitRequest(client, packet.length)
    ) {
      return;
    }
    // A Send indication (0x0016) of more attributes than any client sends
    // is dropped before it is parsed.
    if (
      packet[0] === 0x00 && packet[1] === 0x16 && attributesOver(packet, MAX_SEND_ATTRIBUTES)
    ) {
      this.#drops.malformed++;
      return;
    }
    let message: StunMessage;
    try {
      message = parseStunMessage(packet);
    } catch {
      this.#drops.malformed++;
      return;
    }
    if (!verifyFingerprint(message)) {
      this.#drops.malformed++;
      return;
    }
    if (message.class === StunClass.Request) {
      if (this.#admitHolderRequest(client, packet.length)) this.#onRequest(client, message);
    } else if (message.class === StunClass.Indication && message.method === StunMethod.Binding) {
      // A keepalive (RFC 8489 section 3; ICE agents and coturn's clients
      // send them): nothing to answer, nothing dropped, as coturn.
    } else if (message.class === StunClass.Indication && message.method === StunMethod.Send) {
      // An indication with a comprehension-required attribute we do not
      // know is discarded (RFC 8489 section 6.3.2), not relayed.
      if (unknownRequired(message).length > 0) this.#drops.malformed++;
      else this.#onSend(client, message);
    } else {
      this.#drops.malformed++;
    }
  }

  /**
   * Answer a Binding request of an RFC 3489 client (no magic cookie), as
   * RFC 8489 section 11 says a server should and coturn does: its 16-byte
   * transaction id echoed, MAPPED-ADDRESS instead of XOR-MAPPED-ADDRESS, no
   * FINGERPRINT (such a client knows none). Legacy SIP phones and NAT
   * probes use the one address as STUN and TURN server.
   */
  #answerRfc3489(client: TurnClient, request: Uint8Array): void {
    const response = encodeStunMessage({
      method: StunMethod.Binding,
      class: StunClass.SuccessResponse,
      transactionId: request.subarray(8, 20),
      attributes: [
        { type: StunAttr.MappedAddress, value: encodeAddress(client.address) },
        { type: StunAttr.Software, value: this.#software },
      ],
    });
    response.set(request.subarray(4, 8), 4);
    client.send(response);
  }

  /**
   * Forget a client (its stream closed): delete its allocation.
   *
   * @param key The client's key.
   */
  disconnect(key: string | number): void {
    this.#pending.delete(key);
    const allocation = this.#allocations.get(key);
    if (allocation) this.#delete(allocation);
    // Its reservation goes too: reconnecting must not pile them up.
    const token = this.#reservedBy.get(key);
    if (token !== undefined) this.#dropReservation(token);
  }

  /**
   * How long a client's allocation has left, in ms by the server's clock
   * (0 when it has none): a quiet TURN client says nothing between its
   * refreshes, and a connection it holds is not idle until then.
   *
   * @param key The client's key.
   * @returns The milliseconds left, or 0.
   */
  allocationLeft(key: string | number): number {
    const allocation = this.#allocationOf(key);
    return allocation === undefined ? 0 : allocation.expires - this.#now();
  }

  /** Delete expired allocations, permissions, channels and reservations. */
  sweep(): void {
    const now = this.#now();
    for (const allocation of this.#allocations.values()) {
      if (allocation.expires <= now) {
        this.#delete(allocation);
        continue;
      }
      this.#purge(allocation, now);
    }
    for (const [token, reservation] of this.#reservations) {
      if (reservation.expires <= now) this.#dropReservation(token);
    }
  }

  /** Delete an allocation's expired permissions and channels. */
  #purge(allocation: Allocation, now: number): void {
    for (const [ip, expires] of allocation.permissions) {
      if (expires <= now) allocation.permissions.delete(ip);
    }
    for (const channel of allocation.channels.values()) {
      if (channel.expires <= now) {
        allocation.channels.delete(channel.number);
        allocation.peerChannels.delete(channel.peer.key);
      }
    }
  }

  /** Forget a reservation and close its socket (it may have been taken already). */
  #dropReservation(token: string, close = true): void {
    const reservation = this.#reservations.get(token);
    if (reservation === undefined) return;
    this.#reservations.delete(token);
    if (this.#reservedBy.get(reservation.owner) === token) {
      this.#reservedBy.delete(reservation.owner);
    }
    const held = this.#reservedFrom.get(reservation.source);
    const at = held?.indexOf(token) ?? -1;
    if (at >= 0) held!.splice(at, 1);
    if (held?.length === 0) this.#reservedFrom.delete(reservation.source);
    if (close) reservation.socket.close();
  }

  /** Close every relay socket and stop handling input. */
  close(): void {
    this.#closed = true;
    for (const allocation of [...this.#allocations.values()]) this.#delete(allocation);
    for (const reservation of this.#reservations.values()) reservation.socket.close();
    this.#reservations.clear();
    this.#reservedBy.clear();
    this.#reservedFrom.clear();
    this.#pending.clear();
    this.#stopCounting?.();
  }

  #delete(allocation: Allocation): void {
    if (this.#allocations.get(allocation.client.key) !== allocation) return;
    this.#allocations.delete(allocation.client.key);
    this.#bySource.delete(allocation);
    const count = (this.#userCounts.get(allocation.username) ?? 1) - 1;
    if (count <= 0) this.#userCounts.delete(allocation.username);
    else this.#userCounts.set(allocation.username, count);
    allocation.relay.onPacket = undefined;
    allocation.relay.close();
  }

  /**
   * Room for one more allocation of `username` from `source`. At a full
   * quota (the user's, or all: allocations, reservations and, when given,
   * the Allocates still opening their relay), the oldest unclaimed
   * allocation of the source that holds the most, when `source` holds at
   * least two fewer; it is deleted once the new allocation is made (a
   * request that fails deletes nothing).
   *
   * @param pending Allocates in progress, or undefined to leave the total
   * quota out (a reservation becoming an allocation does not add to it).
   * @param slots What the Allocate takes from the total quota: 2 with
   * EVEN-PORT R (the allocation and its reservation), else 1. One deleted
   * allocation makes room for one.
   * @returns The allocation to delete, undefined when there is room, or
   * the error code: 486 (the user's quota), 508 (the total).
   */
  #room(
    source: string,
    username: string,
    pending: number | undefined,
    slots = 1,
  ): Allocation | 486 | 508 | undefined {
    const unclaimed = (a: Allocation) => !this.#claimed.has(a);
    let victim: Allocation | undefined;
    if ((this.#userCounts.get(username) ?? 0) >= this.#userQuota) {
      victim = this.#bySource.largest(source, (a) => unclaimed(a) && a.username === username)?.[0];
      if (victim === undefined) return 486;
    }
    const taken = this.#allocations.size + (pending ?? 0) + this.#reservations.size;
    if (pending !== undefined && taken + slots > this.#totalQuota) {
      // Deleting the user's own victim frees a slot too; more than one is never deleted.
      if (taken + slots - 1 > this.#totalQuota) return 508;
      victim ??= this.#bySource.largest(source, unclaimed)?.[0];
      if (victim === undefined) return 508;
    }
    return victim;
  }

  /**
   * Whether `source` would hold more than `sourceQuota` with `slots` more:
   * its allocations, reservations and Allocates in progress counted. Never
   * for a byte-stream client (see `sourceQuota`).
   */
  #sourceFull(client: TurnClient, source: string, slots: number): boolean {
    if (client.stream === true) return false;
    const held = this.#bySource.count(source) + (this.#reservedFrom.get(source)?.length ?? 0) +
      (this.#pendingFrom.get(source) ?? 0);
    return held + slots > this.#sourceQuota;
  }

  #allocationOf(key: string | number): Allocation | undefined {
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
      { type: StunAttr.Nonce, value: encoder.encode(this.#makeNonce(client)) },
    ]);
  }

  /**
   * A nonce for `client` alone: its MAC covers the client's key (its 5-tuple,
   * or its stream), so an authenticated request seen on the way and sent
   * again from another address gets 438, not an allocation on the user's
   * account (coturn keeps a nonce per session, to the same effect).
   */
  #makeNonce(client: TurnClient): string {
    const expiry = Math.floor(this.#now() + this.#nonceLifetime * 1000).toString(16);
    const salt = hexOf(crypto.getRandomValues(new Uint8Array(4)));
    return `${expiry}.${salt}.${this.#nonceMac(`${expiry}.${salt}`, client)}`;
  }

  #nonceMac(expiry: string, client: TurnClient): string {
    const mac = hmacSha1(this.#secret, encoder.encode(`${expiry}.${client.key}`));
    return Array.from(mac.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  #nonceValid(nonce: string, client: TurnClient): boolean {
    // A client signs its requests with the nonce it was given until it goes
    // stale: its MAC is checked once, and its expiry remembered.
    let known = this.#validNonces.get(client);
    if (known === undefined || known.nonce !== nonce) {
      const match = /^([0-9a-f]{1,13})\.([0-9a-f]{8})\.([0-9a-f]{16})$/.exec(nonce);
      if (!match || match[3] !== this.#nonceMac(`${match[1]}.${match[2]}`, client)) return false;
      this.#validNonces.set(client, known = { nonce, expiry: parseInt(match[1]!, 16) });
    }
    return known.expiry > this.#now();
  }

  /**
   * Answer 420 with UNKNOWN-ATTRIBUTES, and return true, when `request`
   * carries a comprehension-required attribute its method does not take
   * (RFC 8489 section 7.3.1). `key` signs the answer of an authenticated
   * request.
   */
  #refusedUnknown(client: TurnClient, request: StunMessage, key?: Uint8Array): boolean {
    const unknown = unknownRequired(request);
    if (unknown.length === 0) return false;
    const value = new Uint8Array(unknown.length * 2);
    unknown.forEach((t, i) => {
      value[i * 2] = t >> 8;
      value[i * 2 + 1] = t & 0xff;
    });
    this.#error(client, request, 420, key, [{ type: StunAttr.UnknownAttributes, value }]);
    return true;
  }

  #onRequest(client: TurnClient, request: StunMessage): void {
    // A request with a comprehension-required attribute its method does not
    // take gets 420, as from coturn: a Binding at once, a TURN request once
    // it is authenticated (before, it gets 401 like any other).
    if (request.method === StunMethod.Binding) {
      if (this.#refusedUnknown(client, request)) return;
      this.#reply(client, request, StunClass.SuccessResponse, [
        {
          type: StunAttr.XorMappedAddress,
          value: encodeXorAddress(client.address, request.transactionId),
        },
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
    // Another realm is wrong credentials, before the nonce is looked at, as
    // coturn answers: 437 to an Allocate, 441 to another request (RFC 8489
    // section 9.2.4 checks that REALM is present, not its value; RFC 8656
    // gives 441 for credentials other than the allocation's).
    const realm = decoder.decode(realmBytes);
    if (realm !== this.#realm) {
      this.#error(client, request, request.method === StunMethod.Allocate ? 437 : 441);
      return;
    }
    if (!this.#nonceValid(decoder.decode(nonceBytes), client)) {
      this.#challenge(client, request, 438);
      return;
    }
    const username = decoder.decode(usernameBytes);
    const password = Object.hasOwn(this.#users, username) ? this.#users[username] : undefined;
    const given = Object.hasOwn(this.#givenKeys, username) ? this.#givenKeys[username] : undefined;
    if (password === undefined && given === undefined) {
      this.#challenge(client, request, 401);
      return;
    }
    // One key per user, derived once: MESSAGE-INTEGRITY checks reuse it.
    let key = given ?? this.#keys.get(username);
    if (key === undefined) {
      if (this.#keys.size >= 1024) this.#keys.clear();
      // No key given: the user has a password (checked above).
      this.#keys.set(username, key = longTermKey(username, realm, password!));
    }
    if (!verifyIntegrity(request, key)) {
      this.#challenge(client, request, 401);
      return;
    }
    if (request.method === StunMethod.Allocate) {
      // Allocate waits for a relay socket: it keeps its own copy of the
      // request, as the packet may sit in a receive buffer that is reused.
      this.#allocate(client, parseStunMessage(request.raw.slice()), username, key).catch(() => {
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
    if (this.#refusedUnknown(client, request, key)) return;
    if (request.method === StunMethod.Refresh) this.#refresh(allocation, request);
    else if (request.method === StunMethod.CreatePermission) {
      this.#createPermission(allocation, request);
    } else this.#channelBind(allocation, request);
  }

  /**
   * The lifetime a request gets, in seconds (0 to delete); `undefined` when
   * its LIFETIME is not 4 bytes (RFC 8656 section 18.4), a malformed
   * request that gets 400, as coturn answers.
   */
  #lifetime(request: StunMessage): number | undefined {
    const value = getAttribute(request, StunAttr.Lifetime);
    if (!value) return DEFAULT_LIFETIME;
    if (value.length !== 4) return undefined;
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
    // Missing, not 4 bytes, or given twice: 400, as coturn answers.
    const transports = request.attributes.filter((a) => a.type === StunAttr.RequestedTransport);
    if (!transport || transport.length !== 4 || transports.length > 1) {
      this.#error(client, request, 400, key);
      return;
    }
    if (this.#refusedUnknown(client, request, key)) return;
    if (transport[0] !== 17) {
      this.#error(client, request, 442, key);
      return;
    }
    const evenPort = getAttribute(request, StunAttr.EvenPort);
    const token = getAttribute(request, StunAttr.ReservationToken);
    const familyValue = getAttribute(request, StunAttr.RequestedAddressFamily);
    // A RESERVATION-TOKEN is 8 bytes (RFC 8656 section 18.9): another
    // length is a malformed request (400, as coturn), not an unknown token (508).
    if (token && (evenPort || familyValue || token.length !== 8)) {
      this.#error(client, request, 400, key);
      return;
    }
    const asked = this.#lifetime(request);
    if ((evenPort && evenPort.length !== 1 && evenPort.length !== 4) || asked === undefined) {
      this.#error(client, request, 400, key);
      return;
    }
    // Unasked, RFC 8656 section 7.2 gives IPv4, an IPv6 client's too (as
    // coturn does: Debian's turnutils_uclient over IPv6 takes nothing
    // else), and 440 when IPv4 is not relayed (an IPv6-only server, as
    // coturn answers). A RESERVATION-TOKEN names no family (none may be
    // given beside it): the reserved socket's is used.
    const families = this.#relay.families;
    let family: 4 | 6 = 4;
    if (!familyValue && !token && !families.includes(4)) {
      this.#error(client, request, 440, key);
      return;
    }
    if (familyValue) {
      const f = requestedFamily(familyValue);
      if (f === undefined || !this.#relay.families.includes(f)) {
        this.#error(client, request, 440, key);
        return;
      }
      family = f;
    }
    const source = this.#sourceOf(client);
    const reserveNext = evenPort !== undefined && (evenPort[0]! & 0x80) !== 0;
    const slots = reserveNext ? 2 : 1;
    // A token's reservation, of this source, is counted already: turning
    // it into an allocation takes nothing more.
    const tokenOf = token ? this.#reservations.get(hexOf(token)) : undefined;
    if (this.#sourceFull(client, source, tokenOf?.source === source ? 0 : slots)) {
      this.#error(client, request, 486, key);
      return;
    }
    let victim = this.#room(source, username, token ? undefined : this.#pending.size, slots);
    if (typeof victim === "number") {
      this.#error(client, request, victim, key);
      return;
    }
    const lifetime = asked || DEFAULT_LIFETIME;
    let sockets: TurnRelaySocket[];
    if (token) {
      const hex = hexOf(token);
      const reservation = this.#reservations.get(hex);
      if (!reservation || reservation.expires <= this.#now()) {
        this.#error(client, request, 508, key);
        return;
      }
      this.#dropReservation(hex, false);
      sockets = [reservation.socket];
    } else {
      this.#pending.set(client.key, tid);
      this.#pendingFrom.set(source, (this.#pendingFrom.get(source) ?? 0) + 1);
      // While the relay opens, no other Allocate picks the same allocation to delete.
      const claim = victim;
      if (claim !== undefined) this.#claimed.add(claim);
      const open = () =>
        this.#relay.open({
          family,
          evenPort: evenPort !== undefined,
          reserveNext,
          client: client.address,
        });
      try {
        try {
          sockets = await open();
        } catch (error) {
          if (acceptErrorKind(error) !== "exhausted") throw error;
          // Out of descriptors before a quota is reached (a ulimit -n
          // below them): room is made as at a full quota, now, since only
          // a closed socket gives a descriptor back; else one source
          // holding them all would lock every other out. Then the open
          // waits for a descriptor as a dial does.
          const freed = victim ?? this.#bySource.largest(source, (a) => !this.#claimed.has(a))?.[0];
          victim = undefined;
          if (freed !== undefined) {
            this.#delete(freed);
            this.#evicted++;
          }
          sockets = await retryWhileExhausted(open);
        }
      } catch {
        if (this.#pending.get(client.key) === tid) {
          this.#pending.delete(client.key);
          this.#error(client, request, 508, key);
        }
        return;
      } finally {
        if (claim !== undefined) this.#claimed.delete(claim);
        const opening = this.#pendingFrom.get(source)! - 1;
        if (opening === 0) this.#pendingFrom.delete(source);
        else this.#pendingFrom.set(source, opening);
      }
      if (this.#pending.get(client.key) !== tid || this.#closed) {
        for (const s of sockets) s.close();
        return;
      }
      this.#pending.delete(client.key);
      // Allocates that were pending beside this one may have filled either
      // quota since: decide again, from here to the end without a wait.
      victim = this.#sourceFull(client, source, slots)
        ? 486
        : this.#room(source, username, 0, slots);
      if (typeof victim === "number") {
        for (const s of sockets) s.close();
        this.#error(client, request, victim, key);
        return;
      }
    }
    const relay = sockets[0]!;
    const allocation: Allocation = {
      client,
      source,
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
      sendPeer: undefined,
      dataPeer: undefined,
      dataPeerXor: new Uint8Array(0),
      budget: { tokens: STREAM_REQUEST_BURST, at: this.#now() },
    };
    relay.onPacket = (data, peer) => {
      try {
        this.#onPeerPacket(allocation, data, peer);
      } catch {
        this.#drops.malformed++;
      }
    };
    this.#allocations.set(client.key, allocation);
    if (victim !== undefined) {
      this.#delete(victim);
      this.#evicted++;
    }
    this.#bySource.add(source, allocation);
    this.#allocationsTotal++;
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
      // One reservation per client: a new one ends the last (a client
      // looping Allocate and Refresh 0 held a socket each round).
      const earlier = this.#reservedBy.get(client.key);
      if (earlier !== undefined) this.#dropReservation(earlier);
      const token = hexOf(tokenBytes);
      this.#reservations.set(token, {
        socket: reserved,
        expires: this.#now() + RESERVATION_LIFETIME * 1000,
        owner: client.key,
        source,
      });
      this.#reservedBy.set(client.key, token);
      // And a source holds at most one more than its allocations (a new
      // client key per round, a new connection or port, made them pile up).
      let tokens = this.#reservedFrom.get(source);
      if (tokens === undefined) this.#reservedFrom.set(source, tokens = []);
      tokens.push(token);
      const bound = this.#bySource.count(source) + 1;
      while (tokens.length > bound) this.#dropReservation(tokens[0]!);
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
    // Any value that does not name the allocation's family, IPv4 or IPv6 or
    // neither, is a mismatch: 443 (RFC 8656 section 7.3; coturn 4.6 too).
    const familyValue = getAttribute(request, StunAttr.RequestedAddressFamily);
    if (familyValue && requestedFamily(familyValue) !== allocation.relay.address.family) {
      this.#error(allocation.client, request, 443, allocation.key);
      return;
    }
    const lifetime = this.#lifetime(request);
    if (lifetime === undefined) {
      this.#error(allocation.client, request, 400, allocation.key);
      return;
    }
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

  /**
   * Returns an error code, or the peer address. `anyPort` for
   * CreatePermission, whose port is ignored (RFC 8656 section 9: permissions
   * are by IP address), so port 0 is taken there, as coturn takes it; a
   * channel binds a transport address, and port 0 is none (403).
   */
  #checkPeer(
    allocation: Allocation,
    value: Uint8Array,
    tid: Uint8Array,
    anyPort = false,
  ): UdpEndpoint | number {
    let peer: UdpEndpoint;
    try {
      const address = decodeXorAddress(value, tid);
      peer = udpEndpoint(address.address, address.port);
    } catch {
      return 400;
    }
    if (peer.family !== allocation.relay.address.family) return 443;
    if (peer.port === 0 && !anyPort) return 403;
    if (this.#peers.refusal(peer.hostname, peer.port) !== undefined) return 403;
    return peer;
  }

  #createPermission(allocation: Allocation, request: StunMessage): void {
    const peers: UdpEndpoint[] = [];
    for (const a of request.attributes) {
      if (a.type !== StunAttr.XorPeerAddress) continue;
      const peer = this.#checkPeer(allocation, a.value, request.transactionId, true);
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
    // A peer listed several times is one permission (a port of the same
    // address too: permissions are by IP address).
    const distinct = new Set(peers.map((p) => p.ipKey));
    const fits = () => {
      let fresh = 0;
      for (const ip of distinct) if (!allocation.permissions.has(ip)) fresh++;
      return allocation.permissions.size + fresh <= this.#maxPermissions;
    };
    if (!fits()) {
      // Expired ones make room (and one of these peers' may be among them).
      this.#purge(allocation, this.#now());
      if (!fits()) {
        this.#error(allocation.client, request, 508, allocation.key);
        return;
      }
    }
    const expires = this.#now() + PERMISSION_LIFETIME * 1000;
    for (const ip of distinct) allocation.permissions.set(ip, expires);
    this.#permissionsTotal += distinct.size;
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
    const byNumber = allocation.channels.get(number);
    const byPeer = allocation.peerChannels.get(peer.key);
    if (
      (byNumber && byNumber.expires > now && byNumber.peer.key !== peer.key) ||
      (byPeer && byPeer.expires > now && byPeer.number !== number)
    ) {
      this.#error(allocation.client, request, 400, allocation.key);
      return;
    }
    if (
      !allocation.permissions.has(peer.ipKey) &&
      allocation.permissions.size >= this.#maxPermissions
    ) {
      this.#error(allocation.client, request, 508, allocation.key);
      return;
    }
    if (byNumber === undefined && byPeer === undefined) {
      if (allocation.channels.size >= this.#maxChannels) this.#purge(allocation, now);
      if (allocation.channels.size >= this.#maxChannels) {
        this.#error(allocation.client, request, 508, allocation.key);
        return;
      }
    }
    if (byNumber) allocation.peerChannels.delete(byNumber.peer.key);
    if (byPeer) allocation.channels.delete(byPeer.number);
    const channel: Channel = { number, peer, expires: now + CHANNEL_LIFETIME * 1000 };
    allocation.channels.set(number, channel);
    allocation.peerChannels.set(peer.key, channel);
    allocation.permissions.set(peer.ipKey, now + PERMISSION_LIFETIME * 1000);
    this.#channelsTotal++;
    this.#permissionsTotal++;
    this.#reply(allocation.client, request, StunClass.SuccessResponse, [], allocation.key);
  }

  #permitted(allocation: Allocation, ipKey: string | number, now: number): boolean {
    const expires = allocation.permissions.get(ipKey);
    return expires !== undefined && expires > now;
  }

  /** A live allocation of `client` for the data path, or undefined (counted). */
  #dataAllocation(client: TurnClient, now: number): Allocation | undefined {
    const allocation = this.#allocations.get(client.key);
    if (allocation === undefined) {
      this.#drops.noAllocation++;
      return undefined;
    }
    if (allocation.expires <= now) {
      this.#delete(allocation);
      this.#drops.noAllocation++;
      return undefined;
    }
    return allocation;
  }

  /** Send `data` to `peer` through the allocation's relay, counting the outcome. */
  #toPeer(allocation: Allocation, data: Uint8Array, peer: UdpEndpoint): void {
    if (data.byteLength > (allocation.relay.maxDatagram ?? MAX_UDP_PAYLOAD)) {
      this.#drops.oversize++;
    } else if (allocation.relay.send(data, peer) === false) {
      this.#drops.sendFailed++;
    } else {
      this.#toPeers++;
    }
  }

  /**
   * Send a ChannelData frame or Data indication to the allocation's client,
   * counting the outcome; `size` is its length without stream padding.
   */
  #toClient(allocation: Allocation, packet: Uint8Array, size: number): void {
    const client = allocation.client;
    if (size > (client.maxPacket ?? MAX_CLIENT_PACKET)) {
      this.#drops.oversize++;
    } else if (client.send(packet) === false) {
      this.#drops.sendFailed++;
    } else {
      this.#toClients++;
    }
  }

  #onSend(client: TurnClient, message: StunMessage): void {
    const now = this.#now();
    const allocation = this.#dataAllocation(client, now);
    if (allocation === undefined) return;
    const peerValue = getAttribute(message, StunAttr.XorPeerAddress);
    const data = getAttribute(message, StunAttr.Data);
    if (!peerValue || !data) {
      this.#drops.malformed++;
      return;
    }
    const peer = this.#sendPeer(allocation, peerValue, message.transactionId);
    // Port 0 is no transport address (a permission to its IP may exist).
    if (peer === undefined || peer.port === 0) {
      this.#drops.malformed++;
      return;
    }
    if (!this.#permitted(allocation, peer.ipKey, now)) {
      this.#drops.noPermission++;
      return;
    }
    this.#toPeer(allocation, data, peer);
  }

  /**
   * The peer a Send indication's XOR-PEER-ADDRESS names, or undefined when
   * malformed: the allocation's last one when the same IPv4 address and
   * port (no text made), else decoded and remembered.
   */
  #sendPeer(
    allocation: Allocation,
    value: Uint8Array,
    transactionId: Uint8Array,
  ): UdpEndpoint | undefined {
    const last = allocation.sendPeer;
    if (last !== undefined && last.family === 4 && xorIpv4Key(value) === last.key) return last;
    try {
      const address = decodeXorAddress(value, transactionId);
      return allocation.sendPeer = udpEndpoint(address.address, address.port);
    } catch {
      return undefined;
    }
  }

  /** A random transaction id for a Data indication, from a pool refilled 256 ids at a time. */
  #indicationId(): Uint8Array {
    if (this.#idsAt === this.#ids.length) {
      crypto.getRandomValues(this.#ids);
      this.#idsAt = 0;
    }
    return this.#ids.subarray(this.#idsAt, this.#idsAt += 12);
  }

  /** ChannelData from a client: looked up by numbers, relayed as a view of the packet. */
  #onChannelData(client: TurnClient, packet: Uint8Array): void {
    const now = this.#now();
    const allocation = this.#dataAllocation(client, now);
    if (allocation === undefined) return;
    if (packet.length < 4) {
      this.#drops.malformed++;
      return;
    }
    const length = (packet[2]! << 8) | packet[3]!;
    if (4 + length > packet.length) {
      this.#drops.malformed++;
      return;
    }
    const channel = allocation.channels.get((packet[0]! << 8) | packet[1]!);
    if (channel === undefined || channel.expires <= now) {
      this.#drops.noChannel++;
      return;
    }
    if (!this.#permitted(allocation, channel.peer.ipKey, now)) {
      this.#drops.noPermission++;
      return;
    }
    this.#toPeer(allocation, packet.subarray(4, 4 + length), channel.peer);
  }

  #onPeerPacket(allocation: Allocation, data: Uint8Array, peer: UdpEndpoint): void {
    const now = this.#now();
    if (allocation.expires <= now) {
      this.#delete(allocation);
      this.#drops.noAllocation++;
      return;
    }
    if (!this.#permitted(allocation, peer.ipKey, now)) {
      this.#drops.noPermission++;
      return;
    }
    const channel = allocation.peerChannels.get(peer.key);
    if (channel !== undefined && channel.expires > now) {
      if (data.length > 0xffff) {
        this.#drops.oversize++;
        return;
      }
      this.#toClient(
        allocation,
        this.#channelData(allocation, channel.number, data),
        4 + data.length,
      );
      return;
    }
    // A Data indication: header (20), XOR-PEER-ADDRESS (up to 24), DATA (4 + padded), FINGERPRINT (8).
    if (20 + 24 + 4 + ((data.length + 3) & ~3) + 8 > 20 + 0xffff) {
      this.#drops.oversize++;
      return;
    }
    const transactionId = this.#indicationId();
    let xorPeer: Uint8Array;
    if (peer.family === 4 && allocation.dataPeer === peer.key) {
      xorPeer = allocation.dataPeerXor;
    } else {
      const address: StunAddress = { family: peer.family, address: peer.hostname, port: peer.port };
      xorPeer = encodeXorAddress(address, transactionId);
      if (peer.family === 4) {
        allocation.dataPeer = peer.key;
        allocation.dataPeerXor = xorPeer;
      }
    }
    const indication = encodeStunMessage({
      method: StunMethod.Data,
      class: StunClass.Indication,
      transactionId,
      attributes: [
        { type: StunAttr.XorPeerAddress, value: xorPeer },
        { type: StunAttr.Data, value: data },
      ],
    }, { fingerprint: allocation.fingerprint });
    this.#toClient(allocation, indication, indication.length);
  }

  /**
   * ChannelData carrying `data`: built in place in the relay's headroom when
   * it has some (no copy), else encoded into a new buffer.
   */
  #channelData(allocation: Allocation, number: number, data: Uint8Array): Uint8Array {
    const pad = allocation.client.stream === true;
    if ((allocation.relay.headroom ?? 0) < 4) return encodeChannelData(number, data, pad);
    const size = pad ? (data.length + 3) & ~3 : data.length;
    const frame = new Uint8Array(data.buffer, data.byteOffset - 4, 4 + size);
    frame[0] = number >> 8;
    frame[1] = number & 0xff;
    frame[2] = data.length >> 8;
    frame[3] = data.length & 0xff;
    for (let i = 4 + data.length; i < frame.length; i++) frame[i] = 0;
    return frame;
  }
}

/** The default largest datagram toward a peer: the largest UDP payload over IPv4. */
const MAX_UDP_PAYLOAD = 65_507;
/** The default largest packet toward a client: ChannelData with a full 16-bit length. */
const MAX_CLIENT_PACKET = 4 + 0xffff;

/** A limit option: the default when undefined, else checked to be what `must` says. */
function checkLimit(
  name: string,
  value: number | undefined,
  fallback: number,
  must:
    | "positive integer or Infinity"
    | "positive number or Infinity"
    | "positive integer" = "positive integer or Infinity",
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw new TypeError(`Cannot create TURN server: ${name} must be a number, got ${typeof value}`);
  }
  const valid = value === Infinity
    ? must !== "positive integer"
    : value > 0 && (must === "positive number or Infinity"
      ? Number.isFinite(value)
      : Number.isSafeInteger(value));
  if (!valid) {
    throw new RangeError(`Cannot create TURN server: ${name} must be a ${must}, got ${value}`);
  }
  return value;
}

function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}
