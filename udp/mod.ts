// Copyright the ptkit authors. MIT license.

/**
 * UDP over transports (PT 2.0 section 3.3.5): packet streams, the two
 * framings that carry datagrams on a byte stream (`length` for
 * transparent UDP, `stun` for STUN/TURN), and the connection pools of the PT
 * client ({@linkcode serveUdpClient}, Table 1) and PT server
 * ({@linkcode serveUdpServer}, Table 2), all on one UDP socket layer,
 * {@linkcode UdpSocket}.
 *
 * The socket layer is `Deno.listenDatagram`, chosen by measurement: echoing
 * loopback datagrams it took about half the CPU time of `node:dgram` (whose
 * Deno polyfill allocates 64 KiB per datagram and ignores
 * `recvBufferSize`) at a fraction of the latency, and it receives into one
 * reused buffer, so 65,507-byte datagrams arrive whole. Permissions:
 * `--allow-net`, and `--unstable-net` (or `"unstable": ["net"]` in deno.json,
 * as ptkit's own has), since `Deno.listenDatagram` is unstable in Deno 2. With `--allow-ffi` on 64-bit Linux the
 * sockets also raise their kernel buffers to what the kernel allows and
 * receive and send in batches through libc; without it they work with the
 * kernel's default buffers (bursts beyond a few hundred datagrams are then
 * dropped by the kernel and show in `/proc/net/snmp` as `RcvbufErrors`).
 *
 * @example Datagrams over a transport, both sides
 * ```ts
 * import { serveUdpClient, serveUdpServer, UdpSocket } from "@ptkit/ptkit/udp";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using echo = await UdpSocket.open();
 * echo.onmessage = (data, from) => echo.send(data, from);
 * await using server = await serveUdpServer({
 *   transport: plain, config: {}, hostname: "127.0.0.1", port: 0,
 *   target: echo.addr, framing: "length",
 * });
 * await using client = await serveUdpClient({
 *   transport: plain, config: server.clientOptions,
 *   server: { port: server.addr.port }, framing: "length",
 * });
 * await using app = await UdpSocket.open({ connect: client.addr });
 * const reply = new Promise<Uint8Array>((resolve) => app.onmessage = (d) => resolve(d.slice()));
 * app.send(new Uint8Array([1, 2, 3]));
 * deepStrictEqual(await reply, new Uint8Array([1, 2, 3]));
 * deepStrictEqual(client.stats().datagramsToTunnel, 1);
 * ```
 *
 * @module
 */

export type { Framing } from "./framing.ts";
export { lengthFraming } from "./length_framing.ts";
export { stunFraming } from "./stun/framing.ts";
export {
  type UdpEndpoint,
  UdpSocket,
  type UdpSocketOptions,
  type UdpSocketStats,
} from "./udp_socket.ts";
export type { UdpPoolOptions } from "./pool_options.ts";
export type { UdpCounters, UdpFlowStats, UdpPoolStats } from "./udp_stats.ts";
export { serveUdpClient, type UdpClientOptions, type UdpClientPool } from "./client_pool.ts";
export { serveUdpServer, type UdpServerOptions, type UdpServerPool } from "./server_pool.ts";
