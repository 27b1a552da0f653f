// Copyright the ptkit authors. MIT license.

import { restateMissingPackage } from "../../transports/_npm_package.ts";
import type { Transport } from "../../transports/transport.ts";

/** What the registry knows of a transport before its module has loaded. */
interface LazyEntry {
  /** The transport's name (checked against the loaded one's). */
  readonly name: string;
  /** Whether it is free (checked against the loaded one's). */
  readonly free: boolean;
  /** Loads its module; called once, at the first `client`/`server`/`generateConfig`. */
  readonly load: () => Promise<Transport>;
}

/**
 * A transport that loads its module only when first configured: a PT that
 * tor starts for obfs4 never loads the Shadowsocks, WebTunnel or SSH code
 * (nor the libraries they import) before `CMETHODS DONE`.
 */
function lazyTransport(entry: LazyEntry): Transport {
  let loading: Promise<Transport> | undefined;
  const loaded = () =>
    loading ??= entry.load().catch((error) => {
      throw restateMissingPackage(error, `transport "${entry.name}"`);
    }).then((transport) => {
      if (transport.name !== entry.name || (transport.free === true) !== entry.free) {
        throw new TypeError(
          `Cannot load transport "${entry.name}": its module exports "${transport.name}"` +
            ` (free: ${transport.free === true}), not what the registry says`,
        );
      }
      return transport;
    });
  const transport: Transport = {
    name: entry.name,
    ...(entry.free ? { free: true } : {}),
    client: async (config, env) => (await loaded()).client(config, env),
    server: async (config, env) => (await loaded()).server(config, env),
    generateConfig: async (env) => {
      const transport = await loaded();
      if (transport.generateConfig === undefined) {
        throw new TypeError(`Cannot generate a configuration: transport "${entry.name}" has none`);
      }
      return await transport.generateConfig(env);
    },
  };
  loaders.set(transport, loaded);
  return transport;
}

/** How each lazy transport loads its module (once; later calls share the first). */
const loaders = new WeakMap<Transport, () => Promise<Transport>>();

/**
 * Start loading a lazy transport's module without waiting for it (the
 * managed server, while it makes and locks its state directory); nothing
 * for any other transport. A failure is left to the transport's first
 * `server`/`client`, which reports it as if nothing had been loaded before.
 *
 * @param transport A transport of the registry.
 *
 * @example Loading obfs4's module ahead of its first use
 * ```ts
 * import { builtinTransports, preloadTransport } from "./_registry.ts";
 *
 * preloadTransport(builtinTransports.get("obfs4")!);
 * ```
 */
export function preloadTransport(transport: Transport): void {
  loaders.get(transport)?.().catch(() => {});
}

/**
 * The transports the `main.ts` executable offers, by name (`plain`,
 * `obfs4`, `webtunnel`, `shadowsocks`, `ssh`), each loaded at its first
 * use. A program of its own offers more with a map of these and its own
 * transports, as `runManagedProxy`'s `registry`.
 *
 * @example Looking a transport up by name
 * ```ts
 * import { builtinTransports } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(builtinTransports.get("plain")?.name, "plain");
 * deepStrictEqual(builtinTransports.get("bogus"), undefined);
 * ```
 */
export const builtinTransports: ReadonlyMap<string, Transport> = new Map<string, Transport>(
  ([
    {
      name: "plain",
      free: false,
      load: async () => (await import("../../transports/plain.ts")).plain,
    },
    {
      name: "obfs4",
      free: false,
      load: async () => (await import("../../transports/obfs4/mod.ts")).obfs4,
    },
    {
      name: "webtunnel",
      free: false,
      load: async () => (await import("../../transports/webtunnel/mod.ts")).webtunnel,
    },
    {
      name: "shadowsocks",
      free: true,
      load: async () => (await import("../../transports/shadowsocks/mod.ts")).shadowsocks,
    },
    {
      name: "ssh",
      free: true,
      load: async () => (await import("../../transports/ssh/mod.ts")).ssh,
    },
  ] satisfies LazyEntry[]).map((entry) => [entry.name, lazyTransport(entry)]),
);

/**
 * The transports that run helper processes (`ssh`): their server has one
 * helper (its own sshd, with the relay it forwards to), so one process
 * serves them whatever `-workers` says (workers would each start one); their
 * client's helper connects by itself, so it cannot honour an upstream
 * proxy (`-proxy`, `TOR_PT_PROXY`) and is refused with one.
 */
export const HELPER_TRANSPORTS: ReadonlySet<string> = new Set(["ssh"]);
