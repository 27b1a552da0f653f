// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Shadowsocks AEAD (SIP004/SIP007: `chacha20-ietf-poly1305`,
 * `aes-128-gcm`, `aes-256-gcm`, `xchacha20-ietf-poly1305`), a free
 * transport wire-compatible with shadowsocks-libev 3.3.5: each connection
 * carries its destination to the server.
 *
 * @example Dialing through a Shadowsocks server
 * ```ts
 * import { shadowsocks } from "@ptkit/ptkit/transports/shadowsocks";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(shadowsocks.name, "shadowsocks");
 * strictEqual(shadowsocks.free, true);
 * ```
 *
 * @module
 */

export { createShadowsocks, shadowsocks, type ShadowsocksOptions } from "./shadowsocks.ts";
