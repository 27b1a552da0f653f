// Copyright the ptkit authors. MIT license.

import { parseIp } from "../../net/_ip_address.ts";
import { sourceKey } from "../../net/source_limits.ts";
import { createUdpRelayFactory } from "./_udp_relay.ts";
import {
  type TurnClient,
  TurnServer,
  type TurnServerOptions,
  type TurnServerStats,
} from "./_turn_server.ts";
import { type UdpEndpoint, UdpSocket, type UdpSocketStats } from "../udp_socket.ts";
import type { StunAddress } from "../stun/_message.ts";

/** Options of {@linkcode serveTurnUdp}. */
export interface ServeTurnUdpOptions extends Omit<TurnServerOptions, "relay"> {
  /** IP literal to listen on, e.g. "127.0.0.1" or "::1". */
  readonly hostname: string;
  /** UDP port; 0 picks one. */
  readonly port: number;
  /**
   * Address to bind relayed sockets to; defaults to `hostname`. `::` relays
   * IPv4 too (see `createUdpRelayFactory`): the listening socket takes IPv4
   * clients there as well.
   */
  readonly relayAddress?: string;
  /** How often expired state is swept, in ms (default 1000). */
  readonly sweepInterval?: number;
}

/** Counters of a {@linkcode TurnUdpServer}. */
export interface TurnUdpServerStats extends TurnServerStats {
  /** The listening socket's counters (datagrams from and to clients). */
  readonly listener: UdpSocketStats;
}

/** A running standalone TURN server on a UDP socket. */
export interface TurnUdpServer {
  /** The bound listening address. */
  readonly addr: { readonly hostname: string; readonly port: number };
  /** The protocol logic (stats, sweep). */
  readonly server: TurnServer;
  /**
   * The server's and the listening socket's counters.
   *
   * @returns A snapshot.
   */
  stats(): TurnUdpServerStats;
  /** Stop: close the listening socket and every relayed socket. */
  close(): Promise<void>;
}

const CLIENT_CACHE_LIMIT = 65_536;
/** The largest UDP payload over IPv4. */
const MAX_IPV4_DATAGRAM = 65_507;

/**
 * Run a standalone TURN server on a UDP socket (ptkit's {@linkcode UdpSocket}:
 * it needs `--unstable-net`, and runs faster with `--allow-ffi`).
 *
 * @param options Listening address, realm, users and the {@linkcode TurnServer} options.
 * @returns The running server.
 *
 * @example Start and stop
 * ```ts
 * import { serveTurnUdp } from "./_udp_server.ts";
 * import { ok } from "node:assert";
 *
 * const turn = await serveTurnUdp({ hostname: "127.0.0.1", port: 0, realm: "r", users: { u: "p" } });
 * ok(turn.addr.port > 0);
 * await turn.close();
 * ```
 */
export async function serveTurnUdp(options: ServeTurnUdpOptions): Promise<TurnUdpServer> {
  parseIp(options.hostname);
  const relayHost = options.relayAddress ?? options.hostname;
  const relay = createUdpRelayFactory(
    parseIp(relayHost).length === 4 ? { ipv4: relayHost } : { ipv6: relayHost },
  );
  const server = new TurnServer({ ...options, relay });
  const socket = await UdpSocket.open({ hostname: options.hostname, port: options.port });
  // One TurnClient per 5-tuple, made on its first datagram: nothing is
  // allocated per datagram afterwards.
  const clients = new Map<number | string, TurnClient>();
  // An IPv4 client of a dual-stack socket takes IPv4 datagrams only.
  const maxPacket = (address: StunAddress) =>
    address.family === 4 ? Math.min(socket.maxDatagram, MAX_IPV4_DATAGRAM) : socket.maxDatagram;
  const clientOf = (from: UdpEndpoint): TurnClient => {
    let client = clients.get(from.key);
    if (client === undefined) {
      if (clients.size >= CLIENT_CACHE_LIMIT) clients.clear();
      const address = unmapped(from);
      // Its source (an IPv4 address, an IPv6 /64), found once: requests of
      // clients without an allocation are limited per source.
      const source = sourceKey({ transport: "udp", hostname: address.address, port: 0 });
      client = {
        key: from.key,
        address,
        ...(source === undefined ? {} : { source }),
        maxPacket: maxPacket(address),
        send: (packet: Uint8Array) => socket.send(packet, from),
      };
      clients.set(from.key, client);
    }
    return client;
  };
  socket.onmessage = (data, from) => server.handle(clientOf(from), data);
  const timer = setInterval(() => server.sweep(), options.sweepInterval ?? 1000);
  let closing: Promise<void> | undefined;
  return {
    addr: { hostname: socket.addr.hostname, port: socket.addr.port },
    server,
    stats: () => ({ ...server.stats(), listener: socket.stats() }),
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        server.close();
        await socket.close();
      })();
      return closing;
    },
  };
}

/**
 * A sender's address as STUN gives it: an IPv4 client of a dual-stack
 * socket (`::ffff:a.b.c.d`) as the IPv4 address it is.
 */
function unmapped(from: UdpEndpoint): StunAddress {
  const mapped = from.family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(from.hostname) : null;
  return mapped
    ? { family: 4, address: mapped[1]!, port: from.port }
    : { family: from.family, address: from.hostname, port: from.port };
}
