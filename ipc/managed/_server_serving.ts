// Copyright the ptkit authors. MIT license.
// Internal: what the managed server serves connections with, loaded by
// server.ts once its transports are bound and SMETHODS DONE is out: proxy()
// and its accept loop, relays and limits, and what each target does with a
// connection. The server side's start needs none of them.

import type { Dialer } from "../../net/net_conn.ts";
import { sourceKey } from "../../net/source_limits.ts";
import { SourceShare } from "../../net/_source_share.ts";
import type { RelayEnd } from "../../net/relay.ts";
import type { TransportConn } from "../../net/transport_conn.ts";
import { closeQuietly, retryWhileExhausted } from "../../net/_accept_loop.ts";
import type { ProxyTarget } from "../../server.ts";
import type { TurnServer } from "../../udp/turn/_turn_server.ts";
import type { ServerTarget } from "./config.ts";
import type { TargetHandlers } from "./server.ts";
import { describe } from "./_log.ts";
import type { MetricsRegistry } from "../../net/metrics.ts";
import { acceptedSource, reportedSource } from "../../net/_client_source.ts";

export { proxy } from "../../server.ts";
export { takeBound, useBound } from "../../net/_server_bind.ts";
export { clientFailures } from "../../net/_client_failure.ts";
export { outboundDialer } from "./_outbound_dialer.ts";

/**
 * What `proxy()` does with each connection of one transport, for a TCP
 * target. A free transport's connections go where they name (resolved here,
 * judged by the policy) with the `free` and `socks` targets, and to the
 * fixed target with the others (a bridge under tor: its ORPort).
 */
export function targetOf(
  target: Exclude<ServerTarget, { kind: "udp" }>,
  name: string,
  free: boolean,
  base: Dialer,
  log: (severity: "info", message: string) => void,
  handlers: TargetHandlers,
  { turn, perSource, metrics, cookieName }: {
    readonly turn: TurnServer | undefined;
    /** The most TURN connections one source holds (`maxConnectionsPerSource`). */
    readonly perSource: number;
    readonly metrics?: MetricsRegistry;
    /** How the Extended ORPort's auth cookie is named in messages. */
    readonly cookieName: string;
  },
): ProxyTarget {
  // Right after a flood the process may be out of descriptors for a moment.
  const dial = (address: { hostname: string; port: number }, signal: AbortSignal) =>
    retryWhileExhausted(() => base(address, undefined, { signal }), signal);
  if (target.kind === "free" || (free && target.kind === "socks")) {
    return async (conn, { signal }) => {
      const destination = await conn.destination;
      if (destination === undefined) {
        throw new TypeError(`Transport '${name}' is not free: it names no destination`);
      }
      return await handlers.connectDestination!(destination, {
        policy: target.policy,
        dialer: (address, _settings, options) => dial(address, options?.signal ?? signal),
        ...lookupSource(conn),
        signal: untilClosed(conn, signal),
      });
    };
  }
  switch (target.kind) {
    case "orport":
      // A connection closed meanwhile (a limit made room, its client reset
      // it) gives the dial up: a silent ORPort holds no socket for minutes.
      return (conn, { signal }) => {
        const dialing = untilClosed(conn, signal);
        return markDialFailure(dial(target.address, dialing), dialing);
      };
    case "extorport": {
      const failures = metrics === undefined
        ? undefined
        : handlers.authFailureCounter!(metrics, name);
      return async (conn, { signal }) => {
        const { readCookieFile, extOrPortHandshake } = handlers;
        // The cookie first: a cookie that cannot be read holds no
        // connection to tor. Out of descriptors for a moment, its read
        // waits as the dial does, rather than drop the client.
        let cookie: Uint8Array;
        try {
          cookie = await retryWhileExhausted(() => readCookieFile!(target.cookieFile), signal);
        } catch (error) {
          failures?.inc();
          throw new Error(`${cookieName} cannot be read: ${describe(error)}`, {
            cause: error,
          });
        }
        const dialing = untilClosed(conn, signal);
        const end = await markDialFailure(dial(target.address, dialing), dialing);
        try {
          // The transport's report (WebTunnel's X-Forwarded-For) when it
          // is an IP literal, else the socket's peer: TransportConn.clientAddress.
          const client = conn.clientAddress;
          await extOrPortHandshake!(end, {
            cookie,
            transport: name,
            ...(client === undefined ? {} : { userAddr: client }),
          });
        } catch (error) {
          failures?.inc();
          closeQuietly(end);
          throw error;
        }
        log("info", `${name}: Extended ORPort authenticated, connection accepted`);
        return end;
      };
    }
    case "socks":
      return (conn, { signal }) =>
        handlers.connectSocksDestination!(conn, {
          policy: target.policy,
          dialer: (address, _settings, options) => dial(address, options?.signal ?? signal),
          signal: untilClosed(conn, signal),
          ...lookupSource(conn),
        });
    case "turn": {
      // Each connection's client is the source its allocations count
      // against: the one a front server on loopback reported, else the peer.
      // A source at perSource gives up its least recently active connection
      // to a new one, as serveUdpServer's flows (SourceShare.makeRoom).
      const ends = new SourceShare<TurnEnd>();
      return (conn) => {
        const source = sourceKey(reportedSource(conn) ?? acceptedSource(conn));
        const key = source ?? "";
        const victim = ends.makeRoom(key, perSource, Infinity, (end) => end.lastActivity);
        if (victim) {
          ends.delete(victim);
          victim.evict(
            new RangeError(
              `Connection closed: its source opened more than ${perSource} TURN connections (maxConnectionsPerSource); its least recently active one made room`,
            ),
          );
        }
        const end = turnEnd(turn!, handlers.serveTurnStream!, source, target.idleTimeout);
        ends.add(key, end);
        const release = () => ends.delete(end);
        end.done.then(release, release);
        return Promise.resolve(end.relay);
      };
    }
  }
}

/**
 * `signal`, also aborted when `conn` closes (a limit closed it to make
 * room, its client reset it): its destination or fixed target is given
 * up, not dialed on for minutes.
 */
function untilClosed(conn: TransportConn, signal: AbortSignal): AbortSignal {
  const closed = new AbortController();
  conn.closed.then(() => closed.abort(new Error("Connection closed before its destination")));
  return AbortSignal.any([signal, closed.signal]);
}

/**
 * The source a free destination's name lookups count against: the client a
 * front server on loopback reported, else the peer (as TURN's quota).
 */
function lookupSource(conn: TransportConn): { readonly source?: string } {
  const source = sourceKey(reportedSource(conn) ?? acceptedSource(conn));
  return source === undefined ? {} : { source };
}

/**
 * The embedded TURN server as one end of a relay: STUN messages and
 * ChannelData written to it are one TURN client's, what the server sends
 * that client comes out of it. The client's own address is not echoed in
 * XOR-MAPPED-ADDRESS: an application would hand it to its peers.
 */
function turnEnd(
  server: TurnServer,
  serveTurnStream: typeof import("../../udp/turn/_stream_server.ts").serveTurnStream,
  source: string | undefined,
  idleTimeout: number | undefined,
): TurnEnd {
  const stop = new AbortController();
  // When a frame last went either way: the idlest goes first at the limit.
  const touch: Transformer<Uint8Array, Uint8Array> = {
    transform(chunk, controller) {
      end.lastActivity = performance.now();
      controller.enqueue(chunk);
    },
  };
  const toServer = new TransformStream<Uint8Array, Uint8Array>(touch);
  const fromServer = new TransformStream<Uint8Array, Uint8Array>(touch);
  const done = serveTurnStream(server, {
    readable: toServer.readable,
    writable: fromServer.writable,
  }, {
    signal: stop.signal,
    ...(source === undefined ? {} : { source }),
    ...(idleTimeout === undefined ? {} : { idleTimeout }),
  });
  const end: TurnEnd = {
    relay: {
      readable: fromServer.readable,
      writable: toServer.writable,
      close: () => stop.abort(),
    },
    evict: (why) => stop.abort(why),
    lastActivity: performance.now(),
    done,
  };
  return end;
}

/** One connection's end in the embedded TURN server. */
interface TurnEnd {
  /** What the connection is relayed to. */
  readonly relay: RelayEnd;
  /** End it to make room for another connection of its source. */
  evict(why: Error): void;
  /** When a frame last went either way (`performance.now()`). */
  lastActivity: number;
  /** Settles when the connection's TURN client is gone. */
  readonly done: Promise<void>;
}

/**
 * Errors of dialing a fixed target (tor's ORPort or Extended ORPort, or
 * `-target HOST:PORT`), so that the log line says which side refused: a
 * bare "Connection refused" reads as the client's doing. Marked, not
 * wrapped: the outcome metrics classify the error itself. No address is
 * logged.
 */
export const dialFailures: WeakSet<object> = new WeakSet<object>();

/**
 * `dialing`, its error marked as a fixed target's dial failure, unless
 * `signal` gave the dial up (the connection closed: the target is not to
 * blame, and the log line must not say it is).
 */
async function markDialFailure<T>(dialing: Promise<T>, signal: AbortSignal): Promise<T> {
  try {
    return await dialing;
  } catch (error) {
    if (!signal.aborted && typeof error === "object" && error !== null) dialFailures.add(error);
    throw error;
  }
}
