// Copyright the ptkit authors. MIT license.

/**
 * Tor's managed-proxy IPC (PT 1.0 and PT 2.0 draft 1), both sides: what
 * `main.ts` runs when tor (or anything else) launches it as a pluggable
 * transport. Configuration from `TOR_PT_*` variables and flags; the
 * `VERSION`/`CMETHOD`/`SMETHOD`/`LOG` lines; on the client a SOCKS4/5 front
 * end that carries per-connection transport arguments, transparent-TCP mode
 * and upstream proxies; on the server forwarding to tor's ORPort or through
 * the Extended ORPort, and free mode (an embedded SOCKS5 target); the
 * shutdown rules; each transport's `local` (files in the state directory)
 * and `signals` (`CMESSAGE` / `SMESSAGE` lines, see `SignalHub`); and the
 * friendly `server`/`client`/`start` commands.
 *
 * @example Running the client side in-process
 * ```ts
 * import { runManagedProxy } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const lines: string[] = [];
 * const stop = new AbortController();
 * const done = runManagedProxy({
 *   args: ["-ptversion", "1", "-transports", "plain", "-state", await Deno.makeTempDir()],
 *   getEnv: () => undefined,
 *   stdout: (line) => {
 *     lines.push(line);
 *     if (line === "CMETHODS DONE\n") stop.abort();
 *   },
 *   signal: stop.signal,
 *   process: false,
 * });
 * deepStrictEqual(await done, 0);
 * deepStrictEqual(lines[0], "VERSION 1\n");
 * ok(lines[1]!.startsWith("STATUS TRANSPORT=ptkit TYPE=version IMPLEMENTATION=ptkit VERSION="));
 * ok(lines[2]!.startsWith("CMETHOD plain socks5 127.0.0.1:"));
 * ```
 *
 * @module
 */

export * from "./registry.ts";
export * from "./requested_transports.ts";
export * from "./settings.ts";
export * from "./flags.ts";
export * from "./ipc_output.ts";
export * from "./message_line.ts";
export * from "./signal_hub.ts";
export * from "./file_store.ts";
export * from "./upstream_proxy.ts";
export * from "./managed_client.ts";
export * from "./managed_proxy.ts";
export * from "./bind_addr.ts";
export * from "./smethod_args.ts";
export * from "./outbound_dialer.ts";
export * from "./managed_server.ts";
export * from "./bridge_line.ts";
export * from "./cli.ts";
export * from "./version.ts";
