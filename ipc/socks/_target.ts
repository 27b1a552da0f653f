// Copyright the ptkit authors. MIT license.
// Internal: the server end of a destination chosen by the client (PT 2.0
// draft 1's *free* mode): free mode's SOCKS5 target (a decoded transport
// connection is a SOCKS5 client) and a free transport's own destination
// (Shadowsocks). Either way the destination is resolved here, judged by the
// destination policy and dialed by one function, connectDestination.

import { type Dialer, tcpDialer } from "../../net/net_conn.ts";
import type { RelayEnd } from "../../net/relay.ts";
import { DestinationPolicy } from "../../net/destination_policy.ts";
import { isIpLiteral } from "../../net/_ip_address.ts";
import { socksHandshake } from "./_server_handshake.ts";
import { SocksReply, socksReplyCode, SocksReplyError } from "./_reply.ts";
import { LookupQueue } from "./_lookup_queue.ts";
import { abortable } from "../../net/_abortable.ts";
import { systemResolve } from "../../net/_resolve.ts";

/** Resolves a host name to IP literals (IPv6 without brackets). */
export type Resolver = (hostname: string) => Promise<string[]>;

/** Options for {@linkcode connectDestination}. */
export interface DestinationOptions {
  /** Which destinations may be reached. Defaults to public addresses only. */
  readonly policy?: DestinationPolicy;
  /** Connects the destination (an IP literal). Defaults to `Deno.connect`. */
  readonly dialer?: Dialer;
  /**
   * Resolves names on this (the server) side. Defaults to the system
   * resolver ({@linkcode systemResolve}). Either way lookups are bounded:
   * 128 at once in the process, 8 for one `source`, the others waiting
   * (10 s at most, 64 for one source) in line.
   */
  readonly resolve?: Resolver;
  /**
   * The source the client counts against (`sourceKey` of its address), for
   * the bound on lookups; without one a lookup counts only in all.
   */
  readonly source?: string;
  /**
   * Aborting it gives the destination up: the lookup waiting or under way,
   * the dial under way (the dialer gets it), and the addresses not tried.
   */
  readonly signal?: AbortSignal;
}

/** The most addresses of one name dialed in turn. */
export const MAX_DIAL_ADDRESSES = 4;
/**
 * Longest the destination takes to connect, lookup and every dial
 * together, in ms (a client's SOCKS front end gives up after 60 s too).
 */
export const DESTINATION_TIMEOUT_MS = 60_000;

/**
 * Every lookup a client asks for, in the process: each holds two sockets
 * for up to 10 s, and a client naming hosts whose name servers never answer
 * must not take every lookup's place.
 */
const lookups = new LookupQueue();

/** Options for {@linkcode connectSocksDestination}. */
export interface SocksTargetOptions extends DestinationOptions {
  /** Time the client has for its SOCKS request, in ms. Defaults to 5000. */
  readonly handshakeTimeout?: number;
  /** Aborting it ends the handshake (the caller closes the connection). */
  readonly signal?: AbortSignal;
}

/**
 * Read a SOCKS5 (or SOCKS4a) CONNECT request from a decoded transport
 * connection, resolve a name on this side, refuse what the policy refuses
 * (reply `02`; nothing is dialed), connect, and answer success. The
 * connection's streams are locked only during the handshake: relay the
 * connection itself and the returned end.
 *
 * @param conn The decoded connection (a `TransportConn`).
 * @param options The destination policy, dialer and resolver.
 * @returns The connected destination.
 * @throws {SocksReplyError} When the request is malformed or refused, or
 * the destination cannot be reached (the client got the reply code).
 */
export async function connectSocksDestination(
  conn: RelayEnd,
  options: SocksTargetOptions = {},
): Promise<RelayEnd> {
  const deadline = AbortSignal.timeout(options.handshakeTimeout ?? 5000);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  let request;
  try {
    request = await socksHandshake(conn, { signal });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  let end: RelayEnd | undefined;
  try {
    end = await connectDestination(request, options);
    options.signal?.throwIfAborted();
    await request.reply(SocksReply.succeeded);
    return end;
  } catch (error) {
    try {
      end?.close();
    } catch {
      // Already closed.
    }
    const refused = asReplyError(error);
    if (end === undefined) await request.reply(refused.code).catch(() => {});
    throw refused;
  }
}

/**
 * Connect a destination the client chose: resolve a name on this side,
 * refuse what the policy refuses (nothing is dialed), then dial the allowed
 * addresses in turn. Free mode's SOCKS5 target and free transports
 * (`TransportConn.destination`) both come here.
 *
 * @param destination A host name or an IP literal (IPv6 without brackets), and a port.
 * @param options The destination policy, dialer and resolver.
 * @returns The connected destination.
 * @throws {SocksReplyError} When the name does not resolve (`04`), the
 * policy refuses every address (`02`), or no address can be reached (the
 * code of the last failure).
 */
export async function connectDestination(
  destination: { readonly hostname: string; readonly port: number },
  options: DestinationOptions = {},
): Promise<RelayEnd> {
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new SocksReplyError(
          SocksReply.ttlExpired,
          `Cannot connect the destination: not within ${DESTINATION_TIMEOUT_MS} ms`,
        ),
      ),
    DESTINATION_TIMEOUT_MS,
  );
  const signal = options.signal === undefined
    ? deadline.signal
    : AbortSignal.any([deadline.signal, options.signal]);
  try {
    return await connectWithin(destination, options, signal);
  } finally {
    clearTimeout(timer);
  }
}

async function connectWithin(
  destination: { readonly hostname: string; readonly port: number },
  options: DestinationOptions,
  signal: AbortSignal,
): Promise<RelayEnd> {
  const policy = options.policy ?? new DestinationPolicy();
  let addresses: string[];
  if (isIpLiteral(destination.hostname)) {
    addresses = [destination.hostname];
  } else {
    try {
      const resolve = options.resolve ?? ((name: string) => systemResolve(name, { signal }));
      addresses = await untilAborted(
        lookups.run(options.source, () => resolve(destination.hostname), signal),
        signal,
      );
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw new SocksReplyError(
        SocksReply.hostUnreachable,
        "Cannot resolve the destination name",
        { cause: error },
      );
    }
  }
  const allowed = addresses.filter((ip) => policy.refusal(ip, destination.port) === undefined);
  if (allowed.length === 0) {
    const why = addresses.length === 0
      ? "no address"
      : policy.refusal(addresses[0]!, destination.port);
    throw new SocksReplyError(
      addresses.length === 0 ? SocksReply.hostUnreachable : SocksReply.notAllowed,
      `Destination refused: ${why}`,
    );
  }
  let lastError: unknown;
  // A name's owner chooses how many addresses it has (thousands, over
  // TCP), each dial of a silent one taking two minutes: a few are tried,
  // the families taking turns (a host without IPv4 still gets to IPv6).
  for (const ip of alternateFamilies(allowed).slice(0, MAX_DIAL_ADDRESSES)) {
    if (signal.aborted) throw signal.reason;
    try {
      return await abortable(
        (options.dialer ?? tcpDialer)({ hostname: ip, port: destination.port }, undefined, {
          signal,
        }),
        signal,
      );
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      lastError = error;
    }
  }
  throw asReplyError(lastError);
}

/** The addresses, IPv4 and IPv6 taking turns, each family in its order. */
function alternateFamilies(addresses: readonly string[]): string[] {
  const v4 = addresses.filter((ip) => !ip.includes(":"));
  const v6 = addresses.filter((ip) => ip.includes(":"));
  const turns: string[] = [];
  for (let i = 0; i < Math.max(v4.length, v6.length); i++) {
    if (i < v4.length) turns.push(v4[i]!);
    if (i < v6.length) turns.push(v6[i]!);
  }
  return turns;
}

/** `pending`, or a rejection with `signal`'s reason as soon as it aborts. */
function untilAborted<T>(pending: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) {
      // `pending` may still reject (a lookup queue refuses an aborted
      // signal at once): unhandled, that would end the process.
      pending.catch(() => {});
      return onAbort();
    }
    signal.addEventListener("abort", onAbort, { once: true });
    pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** A failure as the SOCKS reply it gets (a dial error named, never an address). */
function asReplyError(error: unknown): SocksReplyError {
  return error instanceof SocksReplyError ? error : new SocksReplyError(
    socksReplyCode(error),
    `Cannot connect the destination: ${(error as Error).name}`,
    { cause: error },
  );
}
