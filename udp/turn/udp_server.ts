// Copyright the ptkit authors. MIT license.

import dgram from "node:dgram";
import { dgramSocketOptions } from "./dgram_options.ts";
import { formatIp, parseIp } from "./ip_address.ts";
import { createUdpRelayFactory } from "./udp_relay.ts";
import { TurnServer, type TurnServerOptions } from "./turn_server.ts";

/** Options of {@linkcode serveTurnUdp}. */
export interface ServeTurnUdpOptions extends Omit<TurnServerOptions, "relay"> {
  /** IP literal to listen on, e.g. "127.0.0.1" or "::1". */
  readonly hostname: string;
  /** UDP port; 0 picks one. */
  readonly port: number;
  /** Address to bind relayed sockets to; defaults to `hostname`. */
  readonly relayAddress?: string;
  /** How often expired state is swept, in ms (default 1000). */
  readonly sweepInterval?: number;
}

/** A running standalone TURN server on a UDP socket. */
export interface TurnUdpServer {
  /** The bound listening address. */
  readonly addr: { readonly hostname: string; readonly port: number };
  /** The protocol logic (stats, sweep). */
  readonly server: TurnServer;
  /** Stop: close the listening socket and every relayed socket. */
  close(): Promise<void>;
}

/**
 * Run a standalone TURN server on a UDP socket (node:dgram, no unstable flags).
 *
 * @param options Listening address, realm, users and the {@linkcode TurnServer} options.
 * @returns The running server.
 *
 * @example Start and stop
 * ```ts
 * import { serveTurnUdp } from "./udp_server.ts";
 * import { ok } from "node:assert";
 *
 * const turn = await serveTurnUdp({ hostname: "127.0.0.1", port: 0, realm: "r", users: { u: "p" } });
 * ok(turn.addr.port > 0);
 * await turn.close();
 * ```
 */
export async function serveTurnUdp(options: ServeTurnUdpOptions): Promise<TurnUdpServer> {
  const hostIp = parseIp(options.hostname);
  const family: 4 | 6 = hostIp.length === 4 ? 4 : 6;
  const relayHost = options.relayAddress ?? options.hostname;
  const relay = createUdpRelayFactory(
    parseIp(relayHost).length === 4 ? { ipv4: relayHost } : { ipv6: relayHost },
  );
  const server = new TurnServer({ ...options, relay });
  const socket = dgram.createSocket(dgramSocketOptions(family));
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(options.port, options.hostname, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  socket.on("error", () => {/* per-datagram errors are ignored */});
  socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    let address = rinfo.address;
    if (family === 6) {
      try {
        address = formatIp(parseIp(address));
      } catch {
        return;
      }
    }
    const port = rinfo.port;
    server.handle({
      key: `${address}|${port}`,
      address: { family, address, port },
      send(packet: Uint8Array) {
        try {
          socket.send(packet, port, address);
        } catch { /* socket closed */ }
      },
    }, new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
  });
  const timer = setInterval(() => server.sweep(), options.sweepInterval ?? 1000);
  const local = socket.address();
  let closing: Promise<void> | undefined;
  return {
    addr: { hostname: local.address, port: local.port },
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(timer);
        server.close();
        socket.close(() => resolve());
      });
      return closing;
    },
  };
}
