// Copyright the ptkit authors. MIT license.

import dgram from "node:dgram";
import { dgramSocketOptions } from "./dgram_options.ts";
import { formatIp, parseIp } from "./ip_address.ts";
import type { StunAddress } from "./stun_message.ts";
import type { TurnRelayFactory, TurnRelayRequest, TurnRelaySocket } from "./turn_server.ts";

/** Options of {@linkcode createUdpRelayFactory}. */
export interface UdpRelayOptions {
  /** IPv4 address to bind relayed sockets to (e.g. "127.0.0.1"); omit for no IPv4 relaying. */
  readonly ipv4?: string;
  /** IPv6 address to bind relayed sockets to (e.g. "::1"); omit for no IPv6 relaying. */
  readonly ipv6?: string;
}

/**
 * Relayed sockets on node:dgram (works in Deno without unstable flags).
 *
 * @param options Addresses to bind relayed sockets to.
 * @returns A relay factory for {@linkcode TurnServer}.
 * @throws {TypeError} When no address is given.
 *
 * @example Opening an even port with the next one reserved
 * ```ts
 * import { createUdpRelayFactory } from "./udp_relay.ts";
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
  return {
    families,
    async open(request: TurnRelayRequest): Promise<TurnRelaySocket[]> {
      const host = request.family === 4 ? options.ipv4 : options.ipv6;
      if (host === undefined) throw new RangeError(`Cannot relay IPv${request.family}`);
      for (let attempt = 0; attempt < 40; attempt++) {
        const first = await bindSocket(request.family, host, 0);
        if (!request.evenPort && !request.reserveNext) return [first];
        if (first.address.port % 2 !== 0 || first.address.port === 65535) {
          first.close();
          continue;
        }
        if (!request.reserveNext) return [first];
        try {
          const second = await bindSocket(request.family, host, first.address.port + 1);
          return [first, second];
        } catch {
          first.close();
        }
      }
      throw new Error("Cannot open relay socket: no free port pair found");
    },
  };
}

function bindSocket(family: 4 | 6, host: string, port: number): Promise<TurnRelaySocket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(dgramSocketOptions(family));
    let closed = false;
    const onError = (error: Error) => {
      closed = true;
      try {
        socket.close();
      } catch { /* already closed */ }
      reject(error);
    };
    socket.once("error", onError);
    socket.bind(port, host, () => {
      socket.off("error", onError);
      socket.on("error", () => {/* per-datagram errors (ICMP) are ignored */});
      const local = socket.address();
      const relay: TurnRelaySocket = {
        address: { family, address: formatIp(parseIp(local.address)), port: local.port },
        onPacket: undefined,
        send(data: Uint8Array, peer: StunAddress) {
          if (closed) return;
          try {
            socket.send(data, peer.port, peer.address);
          } catch { /* dropped like any UDP datagram */ }
        },
        close() {
          if (closed) return;
          closed = true;
          socket.close();
        },
      };
      socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
        const handler = relay.onPacket;
        if (!handler) return;
        let address = rinfo.address;
        if (family === 6) {
          try {
            address = formatIp(parseIp(address));
          } catch {
            return;
          }
        }
        handler(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), {
          family,
          address,
          port: rinfo.port,
        });
      });
      resolve(relay);
    });
  });
}
