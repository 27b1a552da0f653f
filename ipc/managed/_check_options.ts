// Copyright the ptkit authors. MIT license.
// Internal: checking a transport's options before anything runs.

import type { HostPort } from "../../net/address.ts";
import type {
  Transport,
  TransportEnvironment,
  TransportOptions,
} from "../../transports/transport.ts";
import { MemoryStore } from "../../transports/memory_store.ts";

/**
 * Check that `options` alone configure a client of `transport`: a
 * transport given no options at start waits for each connection's (tor's
 * SOCKS arguments), so making one connection's streams is what finds a
 * missing key. The check neither sends messages nor touches the state
 * directory: keys it makes are thrown away.
 */
export async function checkComplete(
  transport: Transport,
  options: TransportOptions,
  env: TransportEnvironment | undefined,
): Promise<void> {
  // The check is not the client, and announces and keeps nothing: its
  // messages go nowhere (the ssh client's key went out twice) and its state
  // stays in memory (a key the check stored on disk was never announced by
  // the client after it). A transport that needs a message pipe gets one.
  const { signals, ...rest } = env ?? {};
  const checking: TransportEnvironment = {
    ...rest,
    local: new MemoryStore(),
    ...(signals === undefined ? {} : {
      signals: { readable: new ReadableStream(), writable: new WritableStream() },
    }),
  };
  const side = await transport.client(options, checking);
  const pair = side.pair({}, transport.free ? { hostname: "192.0.2.1", port: 9 } : undefined);
  // The streams are never used: closed at once, nothing left pending.
  const quiet = () => {};
  pair.ready?.catch(quiet);
  pair.destination?.catch(quiet);
  pair.clientAddress?.catch(quiet);
  for (const stream of [pair.encode, pair.decode]) {
    stream.writable.abort().catch(quiet);
    stream.readable.cancel().catch(quiet);
  }
}

/**
 * Check a transport's options for one side without touching the disk: the
 * side is configured with its state in memory (keys made for the check are
 * thrown away) and closed again. The SIP003 plugin checks its options so
 * before it makes its state directory: options it refuses leave nothing on
 * disk.
 *
 * @param transport The transport.
 * @param side Which side the options configure.
 * @param options Its options.
 * @throws Whatever the transport throws for options it refuses.
 */
export async function checkOptionsInMemory(
  transport: Transport,
  side: "client" | "server",
  options: TransportOptions,
): Promise<void> {
  const env: TransportEnvironment = { local: new MemoryStore() };
  if (side === "client") return await checkComplete(transport, options, env);
  const server = await transport.server(options, env);
  server.close?.();
}

/**
 * Where a client of `transport` with `options` dials for `address`: the
 * transport's connection plan's host and port when it plans its
 * connections (WebTunnel dials its url='s host, or addr=), else `address`
 * itself (also when the options are refused: the caller reports that).
 *
 * @param transport The transport, when known.
 * @param address The server's address as given (a bridge line's, an
 * `ss://` link's, SS_REMOTE).
 * @param options The client's options.
 * @returns The address dialed.
 */
export async function dialedAddress(
  transport: Transport | undefined,
  address: HostPort,
  options: Readonly<Record<string, string>>,
): Promise<HostPort> {
  try {
    const plan = (await transport?.client({ ...options }))?.connection?.(address, {});
    return { hostname: plan?.hostname ?? address.hostname, port: plan?.port ?? address.port };
  } catch {
    return address;
  }
}
