// Copyright the ptkit authors. MIT license.

import type {
  SignalPipe,
  Transport,
  TransportEnvironment,
  TransportOptions,
} from "../transports/transport.ts";
import { FileStore } from "./file_store.ts";

/** What both sides of the managed proxy know about the transports asked for. */
export interface TransportRequest {
  /** Requested transport names, in order (unknown ones are skipped). */
  readonly transports: readonly string[];
  /** The transports on offer, by name. */
  readonly registry: ReadonlyMap<string, Transport>;
  /** Options per transport name (`*` applies to all). */
  readonly options: ReadonlyMap<string, TransportOptions>;
  /** The state directory, which exists. */
  readonly stateDir: string;
  /** Each transport's out-of-band message pipe (`CMESSAGE`/`SMESSAGE` lines). */
  readonly signals?: (transport: string) => SignalPipe;
}

/** One known, requested transport, ready to configure. */
export interface RequestedTransport {
  /** Its name. */
  readonly name: string;
  /** The transport. */
  readonly transport: Transport;
  /** Its `local` (the state directory) and `signals`. */
  readonly env: TransportEnvironment;
  /** Its options (`*` merged under its own). */
  readonly options: TransportOptions;
}

/**
 * The known transports asked for, each once and in order, with their
 * environment and options: unknown names are skipped, as the seed requires.
 *
 * @param request The names, registry, options, state directory and signals.
 * @returns The transports to start.
 *
 * @example Skipping unknown and repeated names
 * ```ts
 * import { registry, requestedTransports } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual } from "node:assert";
 *
 * const names = requestedTransports({
 *   transports: ["plain", "bogus", "plain"],
 *   registry,
 *   options: new Map(),
 *   stateDir: ".",
 * }).map((t) => t.name);
 * deepStrictEqual(names, ["plain"]);
 * ```
 */
export function requestedTransports(request: TransportRequest): RequestedTransport[] {
  const local = new FileStore(request.stateDir);
  const seen = new Set<string>();
  const result: RequestedTransport[] = [];
  for (const name of request.transports) {
    const transport = request.registry.get(name);
    if (transport === undefined || seen.has(name)) continue;
    seen.add(name);
    const signals = request.signals?.(name);
    result.push({
      name,
      transport,
      env: signals === undefined ? { local } : { local, signals },
      options: { ...request.options.get("*"), ...request.options.get(name) },
    });
  }
  return result;
}
