// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type {
  ConnectionPlan,
  HostPort,
  Transport,
  TransportEnvironment,
  TransportOptions,
} from "../transport.ts";
import { defineTransport } from "../define_transport.ts";
import {
  parseWebtunnelAddr,
  parseWebtunnelUrl,
  placeholderAddress,
  type WebtunnelUrl,
} from "./_config.ts";
import { upgradeClientPair, upgradeRequest, upgradeServerPair } from "./_http_upgrade.ts";
import { onTlsServerName } from "../_tls_outcome.ts";

/** The `ver=` a ptkit WebTunnel server reports (its wire is webtunnel-server's). */
export const WEBTUNNEL_VERSION = "0.0.3";

/** Go's default TCP keepalive of a dialed connection, in seconds. */
const KEEPALIVE_SECONDS = 15;

/** One parsed client configuration: how to dial, what to send. */
class ParsedClient {
  readonly request: Uint8Array;
  #url: WebtunnelUrl;
  #dial: HostPort;
  #serverNames: readonly string[];
  /** Index of the server name in use; another is picked after a refusal. */
  #current: number;

  constructor(
    url: WebtunnelUrl,
    dial: HostPort,
    serverNames: readonly string[],
  ) {
    this.#url = url;
    this.#dial = dial;
    this.#serverNames = serverNames;
    this.#current = Math.floor(Math.random() * serverNames.length);
    this.request = upgradeRequest(url.path, url.host);
  }

  plan(): ConnectionPlan {
    const { hostname, port } = this.#dial;
    // lyrebird's webtunnel client dials with Go's net.Dial: keepalive probes
    // after 15 s idle, then every 15 s (a censor watching an idle
    // connection sees them).
    const keepAlive = KEEPALIVE_SECONDS;
    if (!this.#url.tls) return { hostname, port, keepAlive };
    const names = this.#serverNames;
    const serverNames = [...names.slice(this.#current), ...names.slice(0, this.#current)];
    const tls = { serverNames };
    // A name that failed its TLS handshake is not tried first again: the
    // next connections start with the one that worked, as lyrebird rerolls.
    onTlsServerName(tls, (name) => {
      const index = names.indexOf(name);
      if (index >= 0) this.#current = index;
    });
    return { hostname, port, keepAlive, tls };
  }

  /** The server refused the upgrade: use another server name next time, as the reference does. */
  refused(): void {
    const n = this.#serverNames.length;
    if (n > 1) this.#current = (this.#current + 1 + Math.floor(Math.random() * (n - 1))) % n;
  }
}

function parseClient(
  config: TransportOptions,
  env: TransportEnvironment,
): ParsedClient {
  if (config.url === undefined) {
    throw new TypeError(
      "Cannot configure webtunnel: missing required option 'url' (the bridge line's url=https://HOST/SECRET-PATH)",
    );
  }
  const url = parseWebtunnelUrl(config.url);
  if (config.cert !== undefined) {
    throw new TypeError(
      "Cannot configure webtunnel: option 'cert' (certificate chain pinning) is not " +
        "supported: Deno's TLS does not expose the server's certificate chain",
    );
  }
  const report = (key: string, reason: string) => {
    if (config[key] !== undefined) env.onIgnoredOption?.({ transport: "webtunnel", key, reason });
  };
  if (config.utls !== "none") {
    report("utls", "Deno cannot shape its TLS ClientHello; plain TLS is used");
  }
  report("utls-authority", "Deno verifies the certificate against the SNI only");
  // sni-imitation= asks for another name in the SNI than the certificate's
  // (the bridge line hides its host from a censor). Deno verifies against
  // the name it sends, so it would send the URL host: the name the line
  // hides. Refused, unless servername= is given: lyrebird sends that one
  // then, as ptkit does.
  if (config["sni-imitation"] !== undefined && url.tls) {
    if (config.servername === undefined) {
      throw new TypeError(
        "Cannot configure webtunnel: option 'sni-imitation' cannot be honoured: Deno's TLS " +
          "verifies the certificate against the name it sends, so the URL host, which the " +
          "bridge line hides, would go out as SNI; give servername= (sent instead) or " +
          "remove sni-imitation= to send the URL host",
      );
    }
    report("sni-imitation", "servername is sent as SNI, as lyrebird does when both are given");
  } else {
    report("sni-imitation", "the URL is not https: there is no SNI");
  }
  const names = (config.servername ?? "").split(",").map((name) => name.trim())
    .filter((name) => name !== "");
  return new ParsedClient(
    url,
    config.addr === undefined ? url : parseWebtunnelAddr(config.addr),
    names.length === 0 ? [url.hostname] : names,
  );
}

interface ClientSide {
  readonly role: "client";
  /** The parsed configuration for one connection's settings. */
  readonly resolve: (settings: TransportOptions) => ParsedClient;
}

interface ServerConfig {
  readonly role: "server";
  readonly url: string;
  readonly ver: string;
}

type Config = ClientSide | ServerConfig;

const CLIENT_KEYS = [
  "url",
  "ver",
  "addr",
  "servername",
  "sni-imitation",
  "utls",
  "utls-authority",
  "cert",
];

/** A secret path shorter than this (after its `/`) is said at configuration. */
const SHORT_SECRET_PATH = 16;

/**
 * The `webtunnel` transport (Tor's WebTunnel: TLS, one HTTP/1.1 upgrade,
 * then raw bytes), client and server.
 *
 * **Client** (bridge line `webtunnel [2001:db8:...]:443 FINGERPRINT url=...
 * ver=...`): dials the `url=` host and port (or `addr=`, `host:port`, an IP
 * address or a name, IPv6 in brackets; the bridge line's address is only bookkeeping for tor), runs
 * TLS for `https` with SNI from the URL host or `servername=` (a comma list:
 * one is used, another after a failed TLS handshake or a refused upgrade),
 * sends the upgrade request and accepts nothing but `101`. `ver=` is
 * informational. `utls=` and `utls-authority=` are accepted and reported
 * (`env.onIgnoredOption` with a reason): Deno cannot shape its ClientHello,
 * so plain TLS with the SNI above is used. `sni-imitation=` with
 * `servername=` is reported too (servername is sent, as lyrebird does);
 * alone, it fails with a `TypeError`: Deno verifies the certificate against
 * the name it sends, so it would send the URL host, the name the bridge
 * line hides. `cert=` (certificate chain pinning instead of CA
 * verification) fails with a `TypeError`: Deno's TLS does not expose the
 * peer's chain. Other keys are ignored and reported.
 *
 * **Server** (`ServerTransportOptions webtunnel url=https://example.com/secret`):
 * plain HTTP on its listen address, behind a front web server (nginx,
 * Caddy) that holds the certificate and forwards the secret path with the
 * upgrade headers and `X-Forwarded-For`. Any path is accepted; requests that
 * are not upgrades get a small error page. The client's address for the
 * Extended ORPort is the last `X-Forwarded-For` value (the front server's). `clientOptions` are
 * `url` and `ver`; `bridgeAddress` is a placeholder in 2001:db8::/32
 * derived from the URL, port 443. A secret path shorter than 16 characters
 * is said to `env.onNotice` (its length, never the path).
 *
 * The client trusts the runtime's roots: Deno's, `DENO_CERT`, and the
 * connector's `caCerts` (`createConnector` in `@ptkit/ptkit/client`).
 *
 * @example A client's connection plan and the server's bridge line arguments
 * ```ts
 * import { webtunnel } from "@ptkit/ptkit/transports/webtunnel";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const client = await webtunnel.client({ url: "https://localhost:8443/s3cret" });
 * deepStrictEqual(client.connection?.({ hostname: "2001:db8::1", port: 443 }, {}), {
 *   hostname: "localhost",
 *   port: 8443,
 *   keepAlive: 15,
 *   tls: { serverNames: ["localhost"] },
 * });
 * const server = await webtunnel.server({ url: "https://example.com/s3cret" });
 * deepStrictEqual(server.clientOptions, { url: "https://example.com/s3cret", ver: "0.0.3" });
 * ok(server.bridgeAddress?.hostname.startsWith("2001:db8:"));
 * ```
 */
export const webtunnel: Transport = defineTransport<Config>({
  name: "webtunnel",
  optionKeys: { client: CLIENT_KEYS, server: ["url", "ver"] },
  parseConfig(config: TransportOptions, role, env): Config {
    if (role === "server") {
      if (config.url === undefined) {
        throw new TypeError(
          "Cannot configure webtunnel: missing required option 'url' (the public https://HOST/SECRET-PATH its front server passes on, given as --options 'url=...', or under tor as 'ServerTransportOptions webtunnel url=...' in torrc)",
        );
      }
      const { path } = parseWebtunnelUrl(config.url);
      // The path is the one secret between a prober and the tunnel (the
      // front server passes it on): a short one is said, never shown.
      const secret = path.slice(1).length;
      if (secret < SHORT_SECRET_PATH) {
        env?.onNotice?.(
          `The webtunnel url's secret path is ${secret} characters long: a prober that guesses it reaches the tunnel through the front server; use a long random one (openssl rand -hex 16)`,
        );
      }
      return { role, url: config.url, ver: config.ver ?? WEBTUNNEL_VERSION };
    }
    // The bridge line's arguments may also come with each connection (SOCKS).
    const parse = (options: TransportOptions) => parseClient(options, env);
    const fixed = Object.keys(config).length === 0 ? undefined : parse(config);
    return {
      role,
      resolve: (settings) =>
        Object.keys(settings).length === 0
          ? fixed ?? parse(config)
          : parse({ ...config, ...settings }),
    };
  },
  connection(config, _destination, settings): ConnectionPlan {
    return (config as ClientSide).resolve(settings).plan();
  },
  pair(config, _role, settings) {
    if (config.role === "server") return upgradeServerPair();
    const client = config.resolve(settings);
    return upgradeClientPair(client.request, () => client.refused());
  },
  clientOptions(config) {
    const server = config as ServerConfig;
    return { url: server.url, ver: server.ver };
  },
  bridgeAddress(config) {
    return { hostname: placeholderAddress((config as ServerConfig).url), port: 443 };
  },
});
