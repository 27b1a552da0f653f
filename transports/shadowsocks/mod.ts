// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Shadowsocks AEAD (SIP004/SIP007: `chacha20-ietf-poly1305`,
 * `aes-128-gcm`, `aes-192-gcm`, `aes-256-gcm`, `xchacha20-ietf-poly1305`), a free
 * transport wire-compatible with shadowsocks-libev 3.3.5: each connection
 * carries its destination to the server.
 *
 * @example Dialing through a Shadowsocks server
 * ```ts
 * import { createConnector } from "@ptkit/ptkit/client";
 * import { listen } from "@ptkit/ptkit/server";
 * import { shadowsocks } from "@ptkit/ptkit/transports/shadowsocks";
 * import { deepStrictEqual } from "node:assert";
 *
 * const options = { method: "chacha20-ietf-poly1305", password: "secret" };
 * await using listener = await listen(shadowsocks, options, { hostname: "127.0.0.1", port: 0 });
 * await using connector = await createConnector(shadowsocks, options);
 * await using conn = await connector.dial({
 *   port: listener.addr.port,
 *   destination: { hostname: "example.com", port: 443 }, // a free transport names it
 * });
 * await conn.writable.getWriter().write(new TextEncoder().encode("hello"));
 * await using accepted = await listener.accept();
 * // The server learns where the client goes once its first bytes arrive.
 * deepStrictEqual(await accepted.destination, { hostname: "example.com", port: 443 });
 * const { value } = await accepted.readable.getReader().read();
 * deepStrictEqual(new TextDecoder().decode(value), "hello");
 * ```
 *
 * @module
 */

export { createShadowsocks, shadowsocks, type ShadowsocksOptions } from "./shadowsocks.ts";
