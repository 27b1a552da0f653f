// Copyright the ptkit authors. MIT license.

/**
 * The network runtime under `client.ts` and `server.ts`: connections through
 * transports ({@linkcode TransportConn}), listeners, the relay that joins two
 * connections with half-close, dialers, address parsing, and the crypto
 * backend transports get (native libsodium where `--allow-ffi` allows it,
 * WebAssembly elsewhere: {@linkcode runtimeCrypto}). These use
 * `Deno.*`; transports themselves do not.
 *
 * @example Relaying between two sockets
 * ```ts
 * import { relay } from "@ptkit/ptkit/net";
 * import { ok } from "node:assert";
 *
 * ok(typeof relay === "function");
 * ```
 *
 * @module
 */

export { checkPort, formatHostPort, type HostPort, parseHostPort } from "./address.ts";
export { classifyIp, formatIp, type IpAddressClass, parseIp } from "./ip_address.ts";
export { DestinationPolicy } from "./destination_policy.ts";
export * from "./userinfo.ts";
export * from "./net_conn.ts";
export * from "./conn_io.ts";
export * from "./relay.ts";
export * from "./transport_conn.ts";
export * from "./transport_listener.ts";
export * from "./server_manager.ts";
export * from "./native_crypto.ts";
export type { ServerStats } from "./server_stats.ts";
