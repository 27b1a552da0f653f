// Copyright the ptkit authors. MIT license.
// Internal: which client a connection counts against in the per-source
// limits. Not part of the public API.

import type { HostPort } from "./address.ts";
import { classifyIp, isIpLiteral } from "./_ip_address.ts";

/**
 * The client a front server on this host reported for a connection
 * (WebTunnel's `X-Forwarded-For` behind nginx), as a source for the limits;
 * `undefined` when the peer is not on loopback (a reported address is
 * trusted only from a front server beside us: anyone else could name a new
 * client on each connection and escape every per-source share) or nothing
 * was reported.
 *
 * @param conn The connection: its socket's peer and the reported client.
 * @returns The reported client, or `undefined`.
 */
export function reportedSource(
  conn: { readonly remoteAddr: Deno.Addr; readonly clientAddress: HostPort | undefined },
): Deno.NetAddr | undefined {
  const peer = conn.remoteAddr;
  if (peer.transport !== "tcp" || !isIpLiteral(peer.hostname)) return undefined;
  if (classifyIp(peer.hostname) !== "loopback") return undefined;
  const client = conn.clientAddress;
  if (client === undefined || client.hostname === peer.hostname) return undefined;
  return { transport: "tcp", hostname: client.hostname, port: client.port };
}

/**
 * Connections a server helper's relay accepted at an address that stands
 * for one client (sshd's per-key relay address), and that address: the
 * socket, and the transport connection made of it.
 */
export const relaySources: WeakMap<object, Deno.Addr> = new WeakMap();

/**
 * The source a connection counts against when it is accepted: the client a
 * relay address stands for, else the socket's peer.
 *
 * @param conn The accepted socket, or the transport connection made of it.
 * @returns Its source.
 */
export function acceptedSource(conn: { readonly remoteAddr: Deno.Addr }): Deno.Addr {
  return relaySources.get(conn) ?? conn.remoteAddr;
}
