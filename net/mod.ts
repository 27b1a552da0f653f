// Copyright the ptkit authors. MIT license.

/**
 * The network runtime under `client.ts` and `server.ts`: connections through
 * transports ({@linkcode TransportConn}), listeners, the relay that joins two
 * connections with half-close, dialers, address parsing, and the crypto
 * backend transports get (native libsodium where `--allow-ffi` allows it,
 * WebAssembly elsewhere: {@linkcode runtimeCrypto}). These use `Deno.*`;
 * transports themselves do not.
 *
 * @example Relaying between two sockets
 * ```ts
 * import { relay } from "@ptkit/ptkit/net";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const at = { hostname: "127.0.0.1", port: listener.addr.port };
 * using client = await Deno.connect(at);
 * const clientEnd = await listener.accept();
 * const service = await Deno.connect(at);
 * const serviceEnd = await listener.accept();
 * const relaying = relay(clientEnd, serviceEnd);
 * await client.write(new TextEncoder().encode("hi"));
 * await client.closeWrite(); // the FIN travels through
 * const buffer = new Uint8Array(8);
 * deepStrictEqual(new TextDecoder().decode(buffer.subarray(0, (await service.read(buffer))!)), "hi");
 * deepStrictEqual(await service.read(buffer), null);
 * service.close();
 * deepStrictEqual(await relaying, { aToB: 2, bToA: 0 });
 * ```
 *
 * @module
 */

export { formatHostPort, type HostPort, parseHostPort } from "./address.ts";
export { DestinationPolicy } from "./destination_policy.ts";
export type { Dialer, NetConn } from "./net_conn.ts";
export { readExactly } from "./conn_io.ts";
export { relay, type RelayEnd } from "./relay.ts";
export { type ConnStats, TransportConn, type TransportConnOptions } from "./transport_conn.ts";
export { TransportListener } from "./transport_listener.ts";
export { ServerManager } from "./server_manager.ts";
export type { ServerStats } from "./server_stats.ts";
export { runtimeCrypto } from "./native_crypto.ts";
export { MetricsRegistry } from "./metrics.ts";
