// Copyright the ptkit authors. MIT license.
// Internal: the first half of listen(): the options checked, the
// transport's server side made and its socket bound, nothing accepted yet.
// Apart from server.ts, whose modules serve connections: the managed
// server binds each transport with this module alone before SMETHODS DONE
// (the SMETHOD line needs the address and the side's client options) and
// loads server.ts after it.

import type { ServerTransport, Transport, TransportOptions } from "../transports/transport.ts";
import type { ListenOptions } from "../server.ts";
import { assertTransport } from "../transports/_transport_name.ts";
import { checkEnvironment, checkOptionType } from "../transports/_factory_options.ts";
import { checkFunctionOption, checkPort, checkTimeout } from "./address.ts";
import { withRuntimeCrypto } from "./_runtime_crypto.ts";
import { resolveConnectionLimits } from "./source_limits.ts";
import { checkListenHostname, listenOn } from "./_listen.ts";

/** A transport's server side and the socket it will accept on. */
export interface BoundServer {
  /** The transport's server side. */
  readonly side: ServerTransport;
  /** The listener (a loopback relay's, when a helper listens in its place). */
  readonly tcp: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  /** The helper that listens in the listener's place (the `ssh` server's sshd). */
  readonly helper?: { readonly addr: Deno.NetAddr; close(): Promise<void> };
}

/**
 * Check `options` as `listen()` does, make the transport's server side and
 * bind its socket (or start its helper). The listen backlog and keepalive
 * are set by `listen()` (they need FFI, whose library costs a start 5-10
 * ms).
 *
 * @returns The bound server; the caller closes it, or hands it to `listen()`.
 * @throws What `listen()` throws for these arguments.
 */
export async function bindServer(
  transport: Transport,
  config: TransportOptions,
  options: ListenOptions,
): Promise<BoundServer> {
  assertTransport(transport, "listen");
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot listen: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  const port = checkPort(options.port, "listen");
  // Before the transport is configured.
  const hostname = checkListenHostname(options.hostname ?? "0.0.0.0");
  const { handshakeTimeout, limits, onAcceptError } = options;
  checkEnvironment(options.env, "listen");
  checkTimeout(handshakeTimeout, "handshakeTimeout", "listen");
  checkFunctionOption(onAcceptError, "onAcceptError", "listen");
  // Before the transport is configured (the listener checks them again).
  resolveConnectionLimits(limits, "listen");
  checkFunctionOption(options.onHelperLog, "onHelperLog", "listen");
  // A reusePort of "yes" (or 0) was taken as its truthiness, a
  // helperDirectory of another type failed once the helper started.
  checkOptionType(options.reusePort, "boolean", "reusePort", "listen");
  checkOptionType(options.helperDirectory, "string", "helperDirectory", "listen");
  const side = await transport.server(config, withRuntimeCrypto(options.env));
  let tcp: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  let helper: { addr: Deno.NetAddr; close(): Promise<void> } | undefined;
  try {
    const keepAlive = side.keepAlive;
    if (
      keepAlive !== undefined &&
      !(Number.isInteger(keepAlive) && keepAlive >= 1 && keepAlive <= 32767)
    ) {
      // The kernel refuses it, and accepted sockets would have none: said
      // here rather than served without the keepalive the transport asked for.
      throw new RangeError(
        `Cannot listen: invalid keepAlive ${keepAlive} of transport "${transport.name}": must be an integer from 1 to 32767 seconds`,
      );
    }
    if (side.helper === undefined) {
      tcp = listenOn({ hostname, port }, () =>
        Deno.listen({
          hostname,
          port,
          transport: "tcp",
          ...(options.reusePort ? { reusePort: true } : {}),
        }));
    } else {
      // The helper listens on the bind address; the runtime on a loopback
      // relay it forwards to (the port of an earlier run when it is free).
      // Its modules load only for a transport with a helper (ssh).
      const { RelayListener, startServerHelper } = await import("./_server_helper.ts");
      const relay = new RelayListener(side.helper.relayPort);
      tcp = relay;
      try {
        helper = await startServerHelper(side.helper, relay, hostname, port, options);
      } catch (error) {
        tcp.close();
        throw error;
      }
    }
  } catch (error) {
    side.close?.();
    throw error;
  }
  return helper === undefined ? { side, tcp } : { side, tcp, helper };
}

/**
 * Close a bound server that no listener took: its socket, helper and side.
 *
 * @param bound What {@linkcode bindServer} made.
 */
export async function closeBound(bound: BoundServer): Promise<void> {
  try {
    bound.tcp.close();
  } catch {
    // Closed already.
  }
  await bound.helper?.close();
  bound.side.close?.();
}

/** Servers bound ahead, by the options `listen()` will be given. */
const boundAhead = new WeakMap<ListenOptions, BoundServer>();

/**
 * Have `listen()` (and so `proxy()`), given these very `options`, take
 * `bound` rather than bind again: the managed server binds before
 * SMETHODS DONE and serves after it. `bound` must come from
 * {@linkcode bindServer} with the same listen options.
 *
 * @param options The options `listen()` or `proxy()` will be given.
 * @param bound The server bound for them.
 */
export function useBound(options: ListenOptions, bound: BoundServer): void {
  boundAhead.set(options, bound);
}

/**
 * The server bound ahead for `options`, once (see {@linkcode useBound}).
 *
 * @param options What `listen()` was given.
 * @returns The bound server, or undefined.
 */
export function takeBound(options: ListenOptions): BoundServer | undefined {
  if (typeof options !== "object" || options === null) return undefined;
  const bound = boundAhead.get(options);
  boundAhead.delete(options);
  return bound;
}
