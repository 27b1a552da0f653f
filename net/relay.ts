// Copyright the ptkit authors. MIT license.

import {
  type ChunkSink,
  type ChunkSource,
  connSink,
  connSource,
  describe,
  hasDirectEnds,
  pump,
  streamSink,
  streamSource,
  takeDirectEnds,
} from "./_chunk_io.ts";
import { closeQuietly } from "./_accept_loop.ts";
import { isNetConn, type NetConn } from "./net_conn.ts";
import { checkFactoryOptions, checkSignalOption } from "../transports/_factory_options.ts";

/**
 * Either end of a {@linkcode relay}: a socket-like {@linkcode NetConn}, or a
 * connection defined by Web Streams, such as a {@linkcode TransportConn}
 * (`readable`: bytes from the peer; `writable`: bytes to the peer, closing
 * it is a half-close; `close()`: both directions at once).
 */
export type RelayEnd = NetConn | {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  close(): void;
};

/** The Web Streams form of a {@linkcode RelayEnd}. */
export type StreamConn = Exclude<RelayEnd, NetConn>;

/**
 * Copy bytes both ways between two connections until both directions end,
 * then close both.
 *
 * End of stream on one side half-closes the other (FIN travels through), so
 * a peer can still answer after the other finished writing. An error on
 * either side closes both and rejects with that error, but for one normal
 * way to leave: a peer that sent its end of stream and then closed its
 * socket outright makes writes to it fail with `BrokenPipe` or
 * `ConnectionReset`, and that only ends the relay. One chunk per
 * direction is in flight at a time, so memory stays bounded however slow a
 * reader is.
 *
 * `Deno.Conn` ends are read and written with `read`/`write` (their streams
 * close the socket at end of stream, which would break half-close).
 *
 * @param a One end.
 * @param b The other end.
 * @param options An abort signal: aborting it ends the relay and closes
 * both ends.
 * @returns How many bytes moved each way once both directions have ended:
 * `aToB` read from `a` and written to `b`, `bToA` read from `b` and written
 * to `a`.
 * @throws {TypeError} When an end is neither a connection (`read`, `write`,
 * `closeWrite`, `close`) nor streams (`readable`, `writable`, `close`): the
 * relay rejects before it reads or closes either end; also when `options`
 * is not an object or its `signal` is not an `AbortSignal`, when `a` and
 * `b` are the same connection, or when a reader or writer holds an end's
 * stream.
 *
 * @example Joining two TCP connections
 * ```ts
 * import { relay } from "@ptkit/ptkit/net";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const left = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const leftPeer = await listener.accept();
 * const right = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const rightPeer = await listener.accept();
 * const done = relay(leftPeer, rightPeer);
 * await left.write(new Uint8Array([1, 2, 3]));
 * await left.closeWrite();
 * const buffer = new Uint8Array(8);
 * deepStrictEqual(await right.read(buffer), 3);
 * await right.closeWrite();
 * deepStrictEqual(await left.read(buffer), null);
 * deepStrictEqual(await done, { aToB: 3, bToA: 0 });
 * left.close();
 * right.close();
 * ```
 */
export async function relay(
  a: RelayEnd,
  b: RelayEnd,
  options: { readonly signal?: AbortSignal } = {},
): Promise<{ readonly aToB: number; readonly bToA: number }> {
  for (const [end, name] of [[a, "a"], [b, "b"]] as const) {
    if (!isRelayEnd(end)) {
      throw new TypeError(
        `Cannot relay: end ${name} must be a connection (read, write, closeWrite, close) or readable/writable streams with close(), got ${
          describe(end)
        }`,
      );
    }
  }
  // Checked before either end is touched: a signal that was no AbortSignal
  // failed with JavaScript's 'signal?.addEventListener is not a function'
  // once both ends were wrapped, and null options with a destructuring error.
  checkFactoryOptions(options, "relay", []);
  const { signal } = options;
  checkSignalOption(signal, "relay");
  // Before either end is touched: one connection as both ends read its own
  // socket twice and never settled, and a stream a reader or writer holds
  // failed with JavaScript's 'ReadableStream is locked', the other end's
  // stream already taken.
  if (a === b) throw new TypeError("Cannot relay: ends a and b are the same connection");
  for (const [end, name] of [[a, "a"], [b, "b"]] as const) {
    if ("read" in end && typeof end.read === "function") continue;
    if (hasDirectEnds(end)) continue;
    const { readable, writable } = end as StreamConn;
    if (readable.locked || writable.locked) {
      const [side, holder] = readable.locked ? ["readable", "reader"] : ["writable", "writer"];
      throw new TypeError(
        `Cannot relay: end ${name}'s ${side} is locked (a ${holder} holds it: release it first)`,
      );
    }
  }
  let aToB = 0;
  let bToA = 0;
  // A socket relayed to a transport connection that encodes what it is
  // given at once (obfs4's) is read into spare buffers, each given back
  // once encoded: no fresh buffer per read.
  const [aDirect, bDirect] = [isDirect(a), isDirect(b)];
  const ea = endpoint(a, bDirect);
  const eb = endpoint(b, aDirect);
  linkRelease(ea, eb);
  linkRelease(eb, ea);
  linkRecycle(ea, eb);
  linkRecycle(eb, ea);
  const closeBoth = () => {
    closeQuietly(a);
    closeQuietly(b);
  };
  const onAbort = () => {
    const reason = signal?.reason ?? new Error("Relay aborted");
    ea.source.cancel(reason);
    eb.source.cancel(reason);
    ea.sink.abort(reason);
    eb.sink.abort(reason);
    closeBoth();
  };
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  // A peer that closes its socket after sending its end of stream (rather
  // than only its write side) makes later writes to it fail with a reset or
  // a broken pipe: it chose not to read the rest, which ends the direction
  // towards it, not the relay with an error.
  let aEnded = false;
  let bEnded = false;
  const forward = pump(ea.source, eb.sink, (n) => aToB += n, {
    onEnd: () => aEnded = true,
    sinkGone: (error) => bEnded && isPeerClosed(error),
  });
  const backward = pump(eb.source, ea.sink, (n) => bToA += n, {
    onEnd: () => bEnded = true,
    sinkGone: (error) => aEnded && isPeerClosed(error),
  });
  try {
    // The first failure rejects at once; closing both ends then unblocks the
    // other direction.
    await new Promise<void>((resolve, reject) => {
      let pending = 2;
      const finished = () => --pending === 0 && resolve();
      forward.then(finished, reject);
      backward.then(finished, reject);
    });
    if (signal?.aborted) throw signal.reason;
    return { aToB, bToA };
  } catch (error) {
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    closeBoth();
    forward.catch(() => {});
    backward.catch(() => {});
  }
}

/**
 * Whether `value` can be an end of a {@linkcode relay}: an object with
 * `read`, `write`, `closeWrite` and `close` (a {@linkcode NetConn}), or with
 * `readable` and `writable` streams and `close`. Internal (the module's
 * entry point does not export it): `proxy` checks what a target function
 * returned with it.
 *
 * @param value Anything.
 * @returns Whether `relay` takes it.
 */
export function isRelayEnd(value: unknown): value is RelayEnd {
  if (typeof value !== "object" || value === null) return false;
  try {
    const end = value as Record<string, unknown>;
    if (typeof end.close !== "function") return false;
    if (typeof end.read === "function") return isNetConn(value);
    // A transport connection's streams are made when first asked for.
    if (hasDirectEnds(value)) return true;
    const readable = end.readable as { getReader?: unknown } | null | undefined;
    const writable = end.writable as { getWriter?: unknown } | null | undefined;
    return typeof readable?.getReader === "function" && typeof writable?.getWriter === "function";
  } catch {
    return false; // A getter or a proxy that throws.
  }
}

interface Endpoint {
  readonly source: ChunkSource;
  readonly sink: ChunkSink;
  /** A socket's read into spare buffers: gives a chunk's buffer back. */
  readonly release?: (chunk: Uint8Array) => void;
  /** A transport connection's: have `release` told of each chunk its sink encoded. */
  readonly releaseTo?: (release: (chunk: Uint8Array) => void) => void;
  /** A socket's: its sink writes each chunk in full and keeps nothing of it. */
  readonly socket?: true;
  /** A transport connection's: its chunks may be reused once the next is read. */
  readonly recycleReads?: () => void;
}

/** Whether `end` is a transport connection a relay reads and writes directly. */
function isDirect(end: RelayEnd): boolean {
  return !("read" in end && typeof end.read === "function") && hasDirectEnds(end);
}

/** Chunks read from `from` and written to `to` go back to `from` once `to` encoded them. */
function linkRelease(from: Endpoint, to: Endpoint): void {
  if (from.release !== undefined && to.releaseTo !== undefined) to.releaseTo(from.release);
}

/**
 * Chunks read from `from` and written to `to` go back to `from` once the
 * next is read, when `to` is a socket (whose write is done then).
 */
function linkRecycle(from: Endpoint, to: Endpoint): void {
  if (to.socket === true) from.recycleReads?.();
}

/** `end`'s source and sink; a socket's source reads into spare buffers with `reuse`. */
function endpoint(end: RelayEnd, reuse: boolean): Endpoint {
  if ("read" in end && typeof end.read === "function") {
    // Relayed bytes go out when they arrive, as Go's sockets (TCP_NODELAY by
    // default) send them: Nagle's algorithm would hold a small answer back
    // until the previous one is acknowledged.
    if ("setNoDelay" in end && typeof end.setNoDelay === "function") end.setNoDelay(true);
    const source = connSource(end, undefined, reuse);
    return {
      source,
      sink: connSink(end),
      socket: true,
      ...(reuse ? { release: (chunk: Uint8Array) => source.release(chunk) } : {}),
    };
  }
  // A transport connection is read and written as its streams would be,
  // without making them.
  if (hasDirectEnds(end)) return takeDirectEnds(end);
  const conn = end as StreamConn;
  return { source: streamSource(conn.readable, "Relay source"), sink: streamSink(conn.writable) };
}

function isPeerClosed(error: unknown): boolean {
  for (let e = error, depth = 0; e !== undefined && depth < 8; depth++) {
    if (e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset) {
      return true;
    }
    e = e instanceof Error ? e.cause : undefined;
  }
  return false;
}
