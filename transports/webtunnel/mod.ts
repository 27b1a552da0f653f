// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * WebTunnel, as Tor deploys it (lyrebird's client, webtunnel-server): TLS to
 * a web server, one HTTP/1.1 upgrade request on a secret path, then raw
 * bytes both ways. The client declares how its connection is made (the URL's
 * host, TLS with the right server name) and the runtime makes it; the server
 * speaks plain HTTP behind a front web server and reports the client's
 * address from `X-Forwarded-For`. Layer other transports inside it with
 * `layerTransports` (obfs4 inside WebTunnel).
 *
 * @example A bridge line's arguments and where the client dials
 * ```ts
 * import { webtunnel } from "@ptkit/ptkit/transports/webtunnel";
 * import { deepStrictEqual } from "node:assert";
 *
 * const server = await webtunnel.server({ url: "https://example.com/s3cret" });
 * deepStrictEqual(server.clientOptions.url, "https://example.com/s3cret");
 * const client = await webtunnel.client({ url: "https://example.com/s3cret" });
 * deepStrictEqual(client.connection?.({ hostname: "2001:db8::1", port: 443 }, {})?.hostname, "example.com");
 * ```
 *
 * @module
 */

export { webtunnel } from "./webtunnel.ts";
