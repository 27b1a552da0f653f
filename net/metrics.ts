// Copyright the ptkit authors. MIT license.

import denoJson from "../deno.json" with { type: "json" };
import { cores } from "./_metrics_cores.ts";
import { encodeSnapshot, MetricsCore } from "./_metrics.ts";
import type { MetricsMode } from "./_connection_metrics.ts";
import { processFds } from "./_process_fds.ts";
import { listenOn } from "./_listen.ts";
import { checkPort } from "./address.ts";
import { MetricsHttpServer, type MetricsResponse } from "./_metrics_http.ts";
import {
  checkFactoryOptions,
  checkOptionType,
  checkSignalOption,
} from "../transports/_factory_options.ts";

const modes = new WeakMap<MetricsRegistry, MetricsMode>();

/** The text exposition format's media type, as `GET /metrics` answers. */
const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * A process's metrics, for Prometheus: what the runtime counts (connections
 * accepted, open and closed by outcome, bytes each way, handshake
 * durations, SOCKS replies, UDP datagrams and drops, TURN allocations)
 * once a registry is given to it (`proxy(..., { metrics })`, `main.ts
 * -metrics`), plus `process_start_time_seconds`, `ptkit_build_info` and,
 * on 64-bit Linux with `--allow-ffi` (libc's `getrlimit` and a count of
 * `/proc/self/fd`), `process_open_fds` and `process_max_fds`.
 *
 * Label values come only from closed sets (transport names, `client` or
 * `server`, modes, outcomes, SOCKS reply codes), so no address, key, cookie
 * or bridge secret can reach the output. Counting is cheap on the data
 * path: label sets are bound once per listener, and byte counts are read
 * from the connections' own `stats()` when scraped.
 *
 * @example Exposing the metrics of a proxy
 * ```ts
 * import { MetricsRegistry } from "@ptkit/ptkit/net";
 * import { proxy } from "@ptkit/ptkit/server";
 * import { plain } from "@ptkit/ptkit/transports";
 * import { match } from "node:assert";
 *
 * const metrics = new MetricsRegistry();
 * await using _manager = await proxy(plain, {}, {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   target: { hostname: "127.0.0.1", port: 9 },
 *   metrics,
 * });
 * match(metrics.expose(), /^# TYPE ptkit_build_info gauge$/m);
 * match(metrics.expose(), /^ptkit_connections_open\{transport="plain",side="server",mode="transparent-TCP"\} 0$/m);
 * ```
 */
export class MetricsRegistry {
  /**
   * Make an empty registry with the process metrics.
   *
   * @param options `process: false` leaves out the process metrics (start
   * time, build information, file descriptors): for a worker whose parent
   * reports them. Defaults to true.
   * @throws {TypeError} When `options` is not an object, or `process` is
   * given and is not a boolean.
   */
  constructor(options: { readonly process?: boolean } = {}) {
    checkFactoryOptions(options, "make a metrics registry", []);
    checkOptionType(options.process, "boolean", "process", "make a metrics registry");
    const core = new MetricsCore();
    cores.set(this, core);
    if (options.process ?? true) addProcessMetrics(core);
  }

  /**
   * The metrics now, in the Prometheus text exposition format (version
   * 0.0.4): `# HELP` and `# TYPE` lines, then the samples, each line ending
   * with a line feed.
   *
   * @returns The exposition.
   */
  expose(): string {
    return encodeSnapshot(metricsCore(this).snapshot());
  }

  /**
   * Serve the registry over HTTP for Prometheus to scrape: `GET /metrics`
   * (and `HEAD`) answers the exposition with `Content-Type: text/plain;
   * version=0.0.4; charset=utf-8`, `GET /` a short index, anything else 404
   * (405 for other methods). Listens on loopback unless told otherwise;
   * nothing is logged, not even the listening address.
   *
   * @param options `hostname` to listen on (defaults to `"127.0.0.1"`),
   * `port` (0 picks a free one), and a `signal` that stops the server.
   * @returns The running server (`addr`, `shutdown()`, `await using`).
   * @throws {Deno.errors.AddrInUse} When the port is taken.
   * @throws {TypeError} When the options are malformed (a port that is not
   * a number, a signal that is not an `AbortSignal`).
   * @throws {RangeError} When the port is out of range.
   *
   * @example Scraping the endpoint
   * ```ts
   * import { MetricsRegistry } from "@ptkit/ptkit/net";
   * import { deepStrictEqual, match } from "node:assert";
   *
   * await using server = new MetricsRegistry().serve({ port: 0 });
   * const response = await fetch(`http://127.0.0.1:${server.addr.port}/metrics`);
   * deepStrictEqual(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
   * match(await response.text(), /^ptkit_build_info\{/m);
   * ```
   */
  serve(
    options: { readonly hostname?: string; readonly port: number; readonly signal?: AbortSignal },
  ): Deno.HttpServer<Deno.NetAddr> {
    return serveMetrics(this, options);
  }
}

/**
 * The registry behind a {@linkcode MetricsRegistry}. Internal.
 *
 * @param registry The public registry.
 * @returns Its core.
 */
export function metricsCore(registry: MetricsRegistry): MetricsCore {
  const core = cores.get(registry);
  if (core === undefined) {
    throw new TypeError("Invalid metrics registry: not made by new MetricsRegistry()");
  }
  return core;
}

/**
 * The same registry, with `mode` as the mode label of what a server counts
 * in it (`proxy()` otherwise says `transparent-TCP`). Internal: the managed
 * server's free mode (`socks5`) and embedded TURN (`STUN`).
 *
 * @param registry The registry.
 * @param mode The mode label.
 * @returns A registry sharing its metrics.
 */
export function withMode(registry: MetricsRegistry, mode: MetricsMode): MetricsRegistry {
  const view = Object.create(MetricsRegistry.prototype) as MetricsRegistry;
  cores.set(view, metricsCore(registry));
  modes.set(view, mode);
  return view;
}

/**
 * The mode label a registry made by {@linkcode withMode} carries.
 *
 * @param registry The registry.
 * @returns Its mode, if any.
 */
export function metricsMode(registry: MetricsRegistry): MetricsMode | undefined {
  return modes.get(registry);
}

function addProcessMetrics(core: MetricsCore): void {
  core.gauge(
    "ptkit_build_info",
    "ptkit's version and the Deno version running it; always 1.",
    { version: [denoJson.version], deno: [Deno.version.deno] },
  ).labels({ version: denoJson.version, deno: Deno.version.deno }).set(1);
  core.gauge(
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch, in seconds.",
  )
    .labels().set(Math.floor(performance.timeOrigin) / 1000);
  // Deno lets only --allow-all read /proc/self: the descriptors are read
  // through libc (--allow-ffi), and left out where that cannot be done.
  const fds = processFds();
  if (fds === undefined) return;
  core.gauge("process_open_fds", "Number of open file descriptors.").labels().track(fds.open);
  core.gauge("process_max_fds", "Maximum number of open file descriptors (the soft limit).")
    .labels().track(fds.max);
}

/**
 * Serve a registry over HTTP (see {@linkcode MetricsRegistry.serve}). Internal.
 *
 * @param registry What to expose.
 * @param options Where to listen.
 * @returns The running server.
 */
function serveMetrics(
  registry: MetricsRegistry,
  options: { readonly hostname?: string; readonly port: number; readonly signal?: AbortSignal },
): Deno.HttpServer<Deno.NetAddr> {
  // Checked before listening: no options failed with 'Cannot read
  // properties of undefined', a port "9" listened on port 9, and a signal
  // that was no AbortSignal threw JavaScript's own error with the port
  // already open.
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot serve metrics: options must be an object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const port = checkPort(options.port, "serve metrics");
  const signal: unknown = options.signal;
  checkSignalOption(signal, "serve metrics");
  const core = metricsCore(registry);
  const at = { hostname: options.hostname ?? "127.0.0.1", port };
  const listener = listenOn(at, () => Deno.listen(at));
  return new MetricsHttpServer(listener, (method, path): MetricsResponse => {
    if (path !== "/metrics" && path !== "/") return { status: 404, body: "Not found\n" };
    if (method !== "GET" && method !== "HEAD") {
      return { status: 405, headers: { allow: "GET, HEAD" }, body: "Method not allowed\n" };
    }
    if (path === "/") {
      return {
        status: 200,
        headers: { "content-type": "text/html; charset=utf-8" },
        body:
          '<!doctype html><title>ptkit metrics</title><h1>ptkit</h1><p><a href="/metrics">Metrics</a></p>\n',
      };
    }
    return {
      status: 200,
      headers: { "content-type": CONTENT_TYPE, "cache-control": "no-store" },
      body: encodeSnapshot(core.snapshot()),
    };
  }, options.signal);
}
