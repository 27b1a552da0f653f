// Copyright the ptkit authors. MIT license.

/**
 * ptkit: Pluggable Transports 2.0 for Deno, built on Web Streams.
 *
 * A transport author writes only the byte transformation, as a pair of
 * `TransformStream`s (see {@linkcode Transport}); ptkit supplies the rest:
 * dialers ({@linkcode createConnector}), listeners and proxies
 * ({@linkcode listen}, {@linkcode proxy}) over `Deno.Conn`, and a relay that
 * keeps half-close and backpressure intact ({@linkcode relay}).
 *
 * Entry points: `@ptkit/ptkit/client`, `@ptkit/ptkit/server`,
 * `@ptkit/ptkit/transports` (the contract, helpers and `plain`,
 * runtime-agnostic), `@ptkit/ptkit/transports/obfs4`,
 * `@ptkit/ptkit/transports/shadowsocks`, `@ptkit/ptkit/transports/webtunnel`,
 * `@ptkit/ptkit/transports/ssh`, `@ptkit/ptkit/net`, `@ptkit/ptkit/udp`,
 * `@ptkit/ptkit/ipc` and `@ptkit/ptkit/ipc/adapter`.
 *
 * @example A transport end to end over loopback
 * ```ts
 * import { createConnector, defineTransport, listen, mapChunks } from "@ptkit/ptkit";
 * import { deepStrictEqual } from "node:assert";
 *
 * const shift = (n: number) => mapChunks((c) => c.map((b) => (b + n) & 0xff));
 * const rot = defineTransport({
 *   name: "rot",
 *   parseConfig: (config) => Number(config.n ?? "1"),
 *   pair: (n) => ({ encode: shift(n), decode: shift(-n) }),
 * });
 *
 * await using listener = await listen(rot, { n: "3" }, { hostname: "127.0.0.1", port: 0 });
 * const connector = await createConnector(rot, { n: "3" });
 * await using conn = await connector.dial({ port: listener.addr.port });
 * await conn.writable.getWriter().write(new TextEncoder().encode("hello"));
 * await using accepted = await listener.accept();
 * const { value } = await accepted.readable.getReader().read();
 * deepStrictEqual(new TextDecoder().decode(value), "hello");
 * ```
 *
 * @module
 */

export * from "./transports/mod.ts";
export * from "./net/mod.ts";
export {
  Connector,
  type ConnectorOptions,
  createConnector,
  type DialOptions,
  HelperLimit,
} from "./client.ts";
export {
  type ConnectionLimits,
  DEFAULT_CONNECTION_LIMITS,
  listen,
  type ListenOptions,
  proxy,
  type ProxyOptions,
  type ProxyTarget,
} from "./server.ts";
