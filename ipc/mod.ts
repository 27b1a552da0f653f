// Copyright the ptkit authors. MIT license.

/**
 * Tor's managed-proxy IPC (PT 1.0 and PT 2.0 draft 1), both sides: what
 * `main.ts` runs when tor (or anything else) launches it as a pluggable
 * transport, in three layers.
 *
 * - {@linkcode parseManagedConfig}: `TOR_PT_*` variables and flags in, a
 *   typed {@linkcode ManagedConfig} or a {@linkcode ManagedConfigError}
 *   (the error line and exit code) out; pure.
 * - {@linkcode runClient} and {@linkcode runServer}: one side from a typed
 *   configuration, reporting {@linkcode PtLine} values. The client side is
 *   a SOCKS4/5 front end carrying per-connection transport arguments,
 *   transparent TCP or datagrams, optionally through an upstream proxy or
 *   in free mode; the server side forwards to tor's ORPort or Extended
 *   ORPort, a fixed service, free mode's SOCKS5 target, UDP or the embedded
 *   TURN server.
 * - {@linkcode runManagedProxy}: both, with the protocol lines on stdout
 *   ({@linkcode formatPtLine}; {@linkcode parsePtLine} reads them back),
 *   each transport's `local` (files in the state directory) and `signals`
 *   (`CMESSAGE` / `SMESSAGE` lines), and the shutdown rules.
 *
 * @example Running the client side in-process
 * ```ts
 * import { runManagedProxy } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const state = await Deno.makeTempDir();
 * const lines: string[] = [];
 * const stop = new AbortController();
 * const done = runManagedProxy({
 *   args: ["-ptversion", "1", "-transports", "plain", "-state", state],
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
 * await Deno.remove(state, { recursive: true });
 * ```
 *
 * @module
 */

export {
  type ClientConfig,
  type ManagedConfig,
  ManagedConfigError,
  parseManagedConfig,
  type ServerConfig,
  type UpstreamProxy,
} from "./managed/config.ts";
export { type ManagedProxyOptions, runManagedProxy } from "./managed/managed_proxy.ts";
export { builtinTransports } from "./managed/_registry.ts";
export { runClient } from "./managed/client.ts";
export { runServer } from "./managed/server.ts";
export type { RunningProxy, RunOptions } from "./managed/runner.ts";
export { formatPtLine, parsePtLine, type PtLine } from "./lines/pt_line.ts";
