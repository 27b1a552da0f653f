// Copyright the ptkit authors. MIT license.

import type { Dialer } from "../net/net_conn.ts";
import { tcpDialer } from "../net/net_conn.ts";
import { relay } from "../net/relay.ts";
import { DestinationPolicy } from "../net/destination_policy.ts";
import { isIpLiteral } from "../net/ip_address.ts";
import { socksHandshake } from "./socks_handshake.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "./socks_reply.ts";
import { streamNetConn } from "./stream_net_conn.ts";
import type { StreamConn } from "../net/relay.ts";

/** Resolves a host name to IP literals (IPv6 without brackets). */
export type Resolver = (hostname: string) => Promise<string[]>;

/** Options for {@linkcode serveSocksTarget}. */
export interface SocksTargetOptions {
  /** Which destinations may be reached. Defaults to public addresses only. */
  readonly policy?: DestinationPolicy;
  /** Connects the destination (an IP literal). Defaults to `Deno.connect`. */
  readonly dialer?: Dialer;
  /** Resolves names on this (the server) side. Defaults to the system resolver. */
  readonly resolve?: Resolver;
  /** Time the client has for its SOCKS request, in ms. Defaults to 5000. */
  readonly handshakeTimeout?: number;
  /** Aborting it closes the connection. */
  readonly signal?: AbortSignal;
}

/**
 * Serve one decoded transport connection as a SOCKS5 (or SOCKS4a) server:
 * the seed's *free* transport, whose server ends in a proxy rather than a
 * fixed service. Reads the CONNECT request, resolves a name on this side,
 * refuses loopback, private, link-local and multicast destinations unless
 * the policy allows them (reply `02`; nothing is dialed), connects, answers
 * and relays. Resolves when the connection is over.
 *
 * @param conn The decoded connection (a `TransportConn`).
 * @param options The destination policy, dialer and resolver.
 * @returns Resolves when the relay ends.
 * @throws {SocksReplyError} When the request is malformed or refused, or
 * the destination cannot be reached (the client got the reply code).
 *
 * @example Refusing a loopback destination
 * ```ts
 * import { serveSocksTarget, SocksReplyError } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, rejects } from "node:assert";
 *
 * const toServer = new TransformStream<Uint8Array, Uint8Array>();
 * const toClient = new TransformStream<Uint8Array, Uint8Array>();
 * const addr = { transport: "tcp", hostname: "127.0.0.1", port: 1 } as const;
 * const served = serveSocksTarget({
 *   readable: toServer.readable,
 *   writable: toClient.writable,
 *   close() {},
 *   localAddr: addr,
 *   remoteAddr: addr,
 * });
 * const writer = toServer.writable.getWriter();
 * const reader = toClient.readable.getReader();
 * await writer.write(new Uint8Array([5, 1, 0]));
 * await reader.read();
 * await writer.write(new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]));
 * deepStrictEqual((await reader.read()).value?.[1], 0x02);
 * await rejects(served, SocksReplyError);
 * ```
 */
export async function serveSocksTarget(
  conn: StreamConn & { readonly localAddr: Deno.Addr; readonly remoteAddr: Deno.Addr },
  options: SocksTargetOptions = {},
): Promise<void> {
  const net = streamNetConn(conn);
  const policy = options.policy ?? new DestinationPolicy();
  const deadline = AbortSignal.timeout(options.handshakeTimeout ?? 5000);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  const onAbort = () => net.close();
  signal.addEventListener("abort", onAbort, { once: true });
  let request;
  try {
    request = await socksHandshake(net, { signal });
  } catch (error) {
    net.close();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  let end;
  try {
    let addresses: string[];
    if (isIpLiteral(request.hostname)) {
      addresses = [request.hostname];
    } else {
      try {
        addresses = await (options.resolve ?? systemResolve)(request.hostname);
      } catch (error) {
        throw new SocksReplyError(
          SocksReply.hostUnreachable,
          "Cannot resolve the destination name",
          { cause: error },
        );
      }
    }
    const allowed = addresses.filter((ip) => policy.refusal(ip, request.port) === undefined);
    if (allowed.length === 0) {
      const why = addresses.length === 0
        ? "no address"
        : policy.refusal(addresses[0]!, request.port);
      throw new SocksReplyError(
        addresses.length === 0 ? SocksReply.hostUnreachable : SocksReply.notAllowed,
        `Destination refused: ${why}`,
      );
    }
    let lastError: unknown;
    for (const ip of allowed) {
      try {
        end = await (options.dialer ?? tcpDialer)({ hostname: ip, port: request.port });
        break;
      } catch (error) {
        lastError = error;
      }
    }
    if (end === undefined) throw lastError;
  } catch (error) {
    await request.reply(socksReplyCode(error)).catch(() => {});
    net.close();
    throw error instanceof SocksReplyError ? error : new SocksReplyError(
      socksReplyCode(error),
      `Cannot connect the destination: ${(error as Error).name}`,
      { cause: error },
    );
  }
  try {
    options.signal?.throwIfAborted();
    await request.reply(SocksReply.succeeded);
    await relay(net, end, options.signal ? { signal: options.signal } : {});
  } catch (error) {
    net.close();
    try {
      end.close();
    } catch {
      // Already closed.
    }
    throw error;
  }
}

async function systemResolve(hostname: string): Promise<string[]> {
  // node:dns loads Node's compatibility layer: only when a name is looked up.
  const { lookup } = await import("node:dns/promises");
  const found = await lookup(hostname, { all: true, verbatim: true });
  return found.map((entry) => entry.address);
}
