// Copyright the ptkit authors. MIT license.

import type { HostPort } from "./address.ts";

/**
 * The part of `Deno.Conn` the runtime uses for the network side of a
 * connection. `Deno.Conn` satisfies it, and so does anything a custom
 * {@linkcode Dialer} returns (a connection through an upstream proxy, say).
 *
 * The runtime reads and writes with `read` and `write`, never with
 * `readable`/`writable`: a `Deno.Conn`'s `readable` closes the whole socket at
 * end of stream, which would break half-close.
 */
export interface NetConn {
  /** Read into `p`; resolves to the count read, or `null` at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /**
   * Write some of `p`; resolves to the count written, once done with `p`
   * (as `Deno.Conn`'s: the runtime then reuses its buffer).
   */
  write(p: Uint8Array): Promise<number>;
  /** Shut down the write side (send FIN). */
  closeWrite(): Promise<void>;
  /** Close the connection. */
  close(): void;
  /** The local address. */
  readonly localAddr: Deno.Addr;
  /** The remote address. */
  readonly remoteAddr: Deno.Addr;
}

/**
 * Whether `value` has what the runtime uses of a {@linkcode NetConn}: `read`,
 * `write`, `closeWrite` and `close` functions. Internal (the module's entry
 * point does not export it): a dialer's result and a `TransportConn`'s
 * network side are checked with it, and so is a relay's end.
 *
 * @param value Anything.
 * @returns Whether it can serve as a network connection.
 */
export function isNetConn(value: unknown): value is NetConn {
  if (typeof value !== "object" || value === null) return false;
  try {
    const conn = value as Record<string, unknown>;
    return typeof conn.read === "function" && typeof conn.write === "function" &&
      typeof conn.closeWrite === "function" && typeof conn.close === "function";
  } catch {
    return false; // A getter or a proxy that throws.
  }
}

/**
 * Opens the network connection a transport runs over. The default is
 * `Deno.connect`; replace it to go through an upstream proxy or to bind a
 * source address. A dialer that is itself a transport (a PT driven over
 * SOCKS) also receives the connection's settings.
 *
 * @param target Where to connect.
 * @param settings The connection's per-connection settings (empty when none).
 * @param options An abort signal: aborting it gives the attempt up, and the
 * dialer rejects with its reason and closes whatever it opened (the socket
 * being connected, an upstream proxy's connection during its exchange). A
 * dialer that ignores it still works: its connection is closed when it
 * arrives.
 * @returns The open connection.
 */
export type Dialer = (
  target: HostPort,
  settings?: Readonly<Record<string, string>>,
  options?: { readonly signal?: AbortSignal },
) => Promise<NetConn>;

/**
 * The default {@linkcode Dialer}: a direct TCP connection with `Deno.connect`.
 *
 * @param target Where to connect.
 * @param _settings Unused.
 * @param options An abort signal, which gives the connection attempt up.
 * @returns The open connection.
 *
 * @example Dialing a listener
 * ```ts
 * import { tcpDialer } from "./net_conn.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await tcpDialer({ hostname: "127.0.0.1", port: listener.addr.port });
 * (await listener.accept()).close();
 * deepStrictEqual(conn.remoteAddr.transport, "tcp");
 * conn.close();
 * ```
 */
export function tcpDialer(
  target: HostPort,
  _settings?: Readonly<Record<string, string>>,
  options: { readonly signal?: AbortSignal } = {},
): Promise<NetConn> {
  return Deno.connect({
    hostname: target.hostname,
    port: target.port,
    transport: "tcp",
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}
