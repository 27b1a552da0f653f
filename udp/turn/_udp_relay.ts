// Copyright the ptkit authors. MIT license.

import { formatIp, parseIp, parseIpv6 } from "../../net/_ip_address.ts";
import { openLibc } from "../../net/_libc.ts";
import { RECEIVE_HEADROOM, SHARED_WAIT, UdpSocket } from "../udp_socket.ts";
import type { TurnRelayFactory, TurnRelayRequest, TurnRelaySocket } from "./_turn_server.ts";

/** Options of {@linkcode createUdpRelayFactory}. */
export interface UdpRelayOptions {
  /**
   * IPv4 address to bind relayed sockets to (e.g. "127.0.0.1"); omit for no
   * IPv4 relaying. With `0.0.0.0` they listen on every address and the
   * relayed address each client is given is the one this host reaches
   * that client from (a route lookup through libc: needs `--allow-ffi`).
   */
  readonly ipv4?: string;
  /**
   * IPv6 address to bind relayed sockets to (e.g. "::1"); omit for no IPv6
   * relaying. `::` as `0.0.0.0` above; without `ipv4`, it relays IPv4 too
   * (on `0.0.0.0`) when this host has an IPv4 route out, as a socket on
   * `::` takes IPv4 clients.
   */
  readonly ipv6?: string;
}

/**
 * Relayed sockets on ptkit's {@linkcode UdpSocket} (see there for the
 * permissions it needs and what FFI adds). Datagrams from peers reach the
 * server with {@linkcode RECEIVE_HEADROOM} bytes of room before them, so
 * ChannelData toward the client is built in place.
 *
 * @param options Addresses to bind relayed sockets to.
 * @returns A relay factory for {@linkcode TurnServer}.
 * @throws {TypeError} When no address is given or one is of the wrong family.
 *
 * @example Opening an even port with the next one reserved
 * ```ts
 * import { createUdpRelayFactory } from "./_udp_relay.ts";
 * import { strictEqual } from "node:assert";
 *
 * const factory = createUdpRelayFactory({ ipv4: "127.0.0.1" });
 * const [a, b] = await factory.open({ family: 4, evenPort: true, reserveNext: true });
 * strictEqual(a!.address.port % 2, 0);
 * strictEqual(b!.address.port, a!.address.port + 1);
 * a!.close();
 * b!.close();
 * ```
 */
export function createUdpRelayFactory(options: UdpRelayOptions): TurnRelayFactory {
  const families: (4 | 6)[] = [];
  options = withImpliedIpv4(options);
  if (options.ipv4 !== undefined) {
    if (parseIp(options.ipv4).length !== 4) {
      throw new TypeError(`Cannot relay on ${JSON.stringify(options.ipv4)}: not IPv4`);
    }
    families.push(4);
  }
  if (options.ipv6 !== undefined) {
    if (parseIp(options.ipv6).length !== 16) {
      throw new TypeError(`Cannot relay on ${JSON.stringify(options.ipv6)}: not IPv6`);
    }
    families.push(6);
  }
  if (families.length === 0) {
    throw new TypeError("Cannot create UDP relay factory: give ipv4 or ipv6");
  }
  for (const host of [options.ipv4, options.ipv6]) {
    // A relayed address of 0.0.0.0 reaches nobody: the route to the client
    // tells which address to give instead, and only libc can ask for it.
    if (host !== undefined && isWildcard(host) && openLibc() === null) {
      throw new TypeError(
        `Cannot relay on ${host}: giving clients a reachable relayed address needs --allow-ffi (a route lookup); bind the relay to one address instead`,
      );
    }
  }
  return {
    families,
    async open(request: TurnRelayRequest): Promise<TurnRelaySocket[]> {
      const host = request.family === 4 ? options.ipv4 : options.ipv6;
      if (host === undefined) throw new RangeError(`Cannot relay IPv${request.family}`);
      const advertised = isWildcard(host) ? routedTo(request) : undefined;
      for (let attempt = 0; attempt < 40; attempt++) {
        // An even port is drawn here (one socket per try) rather than taken
        // from the kernel and closed when odd: every socket opened costs a
        // receive buffer and a search for its descriptor. The kernel picks
        // when the draws keep finding ports in use.
        const drawn = request.evenPort || request.reserveNext ? attempt < 20 : false;
        let first: TurnRelaySocket;
        try {
          first = await relaySocket(host, drawn ? randomEvenPort() : 0, advertised);
        } catch (error) {
          if (drawn) continue;
          throw error;
        }
        if (!request.evenPort && !request.reserveNext) return [first];
        if (first.address.port % 2 !== 0 || first.address.port === 65535) {
          first.close();
          continue;
        }
        if (!request.reserveNext) return [first];
        try {
          const second = await relaySocket(host, first.address.port + 1, advertised);
          return [first, second];
        } catch {
          first.close();
        }
      }
      throw new Error("Cannot open relay socket: no free port pair found");
    },
  };
}

/**
 * Where an embedded TURN server (`-mode STUN -target turn`) listening on
 * `listenHost` binds its relayed sockets, given the outbound bind addresses
 * (`TOR_PT_OUTBOUND_BIND_ADDRESS_V4`/`_V6`): the families relayed are those
 * of the listen address (on `::`, IPv6 and, with an IPv4 route out, IPv4),
 * and each family's sockets bind to that family's outbound address when one
 * is given, else to the listen address. An outbound address never takes a
 * family away.
 *
 * @param listenHost The transport's listen address (an IP literal, no brackets).
 * @param outbound The outbound bind addresses, by family.
 * @returns Options for {@linkcode createUdpRelayFactory}.
 *
 * @example A dual-stack listener keeps IPv4 with an IPv6 outbound address
 * ```ts
 * import { relayHostsFor } from "./_udp_relay.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(relayHostsFor("127.0.0.1", { v4: "192.0.2.7" }), { ipv4: "192.0.2.7" });
 * deepStrictEqual(relayHostsFor("::1", {}), { ipv6: "::1" });
 * deepStrictEqual(relayHostsFor("::", { v4: "192.0.2.7", v6: "2001:db8::7" }), {
 *   ipv4: "192.0.2.7",
 *   ipv6: "2001:db8::7",
 * });
 * ```
 */
export function relayHostsFor(
  listenHost: string,
  outbound: { readonly v4?: string | undefined; readonly v6?: string | undefined },
): UdpRelayOptions {
  if (!listenHost.includes(":")) return { ipv4: outbound.v4 ?? listenHost };
  if (!isWildcard(listenHost)) return { ipv6: outbound.v6 ?? listenHost };
  const ipv4 = outbound.v4 ?? withImpliedIpv4({ ipv6: listenHost }).ipv4;
  return { ...(ipv4 === undefined ? {} : { ipv4 }), ipv6: outbound.v6 ?? listenHost };
}

/**
 * `{ ipv6: "::" }` relays IPv4 on `0.0.0.0` as well, when this host has an
 * IPv4 route out: a server socket on `::` is dual-stack and takes IPv4
 * clients, which get IPv4 when they ask for nothing (RFC 8656).
 */
function withImpliedIpv4(options: UdpRelayOptions): UdpRelayOptions {
  const ipv6 = options.ipv6 === undefined ? undefined : parseIpv6(options.ipv6);
  if (options.ipv4 !== undefined || ipv6 === undefined || !ipv6.every((byte) => byte === 0)) {
    return options;
  }
  const source = openLibc()?.routedSource(parseIp(PUBLIC_HOST[4]));
  if (source === undefined || source.every((byte) => byte === 0)) return options;
  return { ...options, ipv4: "0.0.0.0" };
}

/** Where {@linkcode randomEvenPort} draws from: the dynamic ports (RFC 6335), as coturn's relays. */
const DYNAMIC_PORTS = { first: 49152, count: (65534 - 49152) / 2 + 1 } as const;
const portDraw = new Uint16Array(1);

/** A random even port of 49152-65534 (its next port exists). */
function randomEvenPort(): number {
  crypto.getRandomValues(portDraw);
  return DYNAMIC_PORTS.first + 2 * (portDraw[0]! % DYNAMIC_PORTS.count);
}

function isWildcard(host: string): boolean {
  return parseIp(host).every((byte) => byte === 0);
}

/**
 * Where a host's default route goes, for the route lookup when the client's
 * address is not known (a stream client of `-mode STUN -target turn`) or is
 * of the other family (REQUESTED-ADDRESS-FAMILY): libwebrtc's own choice for
 * finding the default local address. Nothing is sent there.
 */
const PUBLIC_HOST = { 4: "8.8.8.8", 6: "2001:4860:4860::8888" } as const;

/**
 * The address this host reaches the request's client from, in the
 * requested family; for a client whose address is not known or not of that
 * family, the address of the default route (peers on the Internet reach
 * this host there).
 */
function routedTo(request: TurnRelayRequest): string {
  const client = request.client;
  const known = client !== undefined && client.family === request.family &&
    !isWildcard(client.address);
  const source = openLibc()?.routedSource(
    parseIp(known ? client.address : PUBLIC_HOST[request.family]),
  );
  if (source === undefined || source.every((byte) => byte === 0)) {
    throw new RangeError(
      `Cannot relay IPv${request.family} on the wildcard address: no route ${
        known ? "to the client" : "out of this host"
      } tells which address to give`,
    );
  }
  return formatIp(source);
}

async function relaySocket(
  host: string,
  port: number,
  advertised: string | undefined,
): Promise<TurnRelaySocket> {
  // One shared wait for all relayed sockets (with FFI): no 64 KiB receive
  // buffer each, as they are held by the thousand, mostly idle.
  const options = { hostname: host, port, [SHARED_WAIT]: true };
  const socket = await UdpSocket.open(options);
  const { family, hostname } = socket.addr;
  const relay: TurnRelaySocket = {
    address: { family, address: advertised ?? hostname, port: socket.addr.port },
    maxDatagram: socket.maxDatagram,
    headroom: RECEIVE_HEADROOM,
    onPacket: undefined,
    send: (data, peer) => socket.send(data, peer),
    close() {
      socket.close();
    },
  };
  socket.onmessage = (data, from) => relay.onPacket?.(data, from);
  return relay;
}
