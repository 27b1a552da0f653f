// Copyright the ptkit authors. MIT license.

import type {
  IgnoredOption,
  LocalStore,
  SignalPipe,
  Transport,
  TransportEnvironment,
  TransportOptions,
} from "../../transports/transport.ts";
import { isPlainOptionKey, suggestOptionKey } from "../../transports/_option_keys.ts";
import { FileStore } from "./_file_store.ts";
import type { PtLine } from "../lines/pt_line.ts";
import type { ManagedConfigBase } from "./config.ts";
import type { RunOptions } from "./runner.ts";
import { builtinTransports as defaultRegistry } from "./_registry.ts";

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
  /** Each transport's share of the servers' replay filters (see `TransportEnvironment.replays`). */
  readonly replays?: (transport: string) => TransportEnvironment["replays"];
  /** Told about options a transport ignored (see {@linkcode ignoredOptionLog}). */
  readonly onIgnoredOption?: (ignored: IgnoredOption) => void;
  /** Told what a transport did that the operator should know (see `TransportEnvironment.onNotice`). */
  readonly onNotice?: (message: string) => void;
  /** Told of a state file other users may read (see `FileStore`). */
  readonly onWarning?: (message: string) => void;
  /** The transports' storage in place of the state directory's files. */
  readonly local?: LocalStore;
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
 * environment and options: unknown names are skipped, as PT 2.0 draft 1 requires.
 *
 * @param request The names, registry, options, state directory and signals.
 * @returns The transports to start.
 */
export function requestedTransports(request: TransportRequest): RequestedTransport[] {
  const local = request.local ??
    new FileStore(
      request.stateDir,
      {
        ...(request.onNotice === undefined ? {} : { onNotice: request.onNotice }),
        ...(request.onWarning === undefined ? {} : { onWarning: request.onWarning }),
      },
    );
  const seen = new Set<string>();
  const result: RequestedTransport[] = [];
  for (const name of request.transports) {
    const transport = request.registry.get(name);
    if (transport === undefined || seen.has(name)) continue;
    seen.add(name);
    const signals = request.signals?.(name);
    const replays = request.replays?.(name);
    const { onIgnoredOption, onNotice } = request;
    result.push({
      name,
      transport,
      env: {
        local,
        ...(signals === undefined ? {} : { signals }),
        ...(replays === undefined ? {} : { replays }),
        ...(onIgnoredOption === undefined ? {} : { onIgnoredOption }),
        ...(onNotice === undefined ? {} : { onNotice }),
      },
      options: { ...request.options.get("*"), ...request.options.get(name) },
    });
  }
  return result;
}

/** Most distinct ignored keys logged; later ones are counted, not named. */
const MAX_LOGGED_KEYS = 256;

/**
 * A reporter for options transports ignore: one `LOG` line at `notice` per
 * transport and key for the life of the reporter (a managed proxy keeps one
 * per process), naming the key, never its value, with a "did you mean" hint
 * when there is one: the transport's, else one of `frontEndKeys` (a
 * SIP003 plugin's `state` for `stat`). After 256 distinct keys, one more
 * line says that further keys are not logged (SOCKS clients choose the
 * keys).
 *
 * @param emit Where `LOG` lines go.
 * @param frontEndKeys The keys of the front end that gave the options.
 * @returns The reporter, for `env.onIgnoredOption`.
 */
export function ignoredOptionLog(
  emit: (line: PtLine) => void,
  frontEndKeys: readonly string[] = [],
): (ignored: IgnoredOption) => void {
  const notice = (message: string) => emit({ type: "LOG", severity: "notice", message });
  const seen = new Set<string>();
  let full = false;
  return ({ transport, key, suggestion: own, reason }) => {
    const id = `${transport}\0${key}`;
    if (seen.has(id) || full) return;
    if (seen.size >= MAX_LOGGED_KEYS) {
      full = true;
      notice("Too many unknown options: further ones are ignored without a log line");
      return;
    }
    seen.add(id);
    // The transport's hint names its own keys; a front end's key mistyped
    // (SS_PLUGIN_OPTIONS' `stat` for `state`) gets one too, as a mistyped flag does.
    const suggestion = own ?? suggestOptionKey(key, frontEndKeys);
    // A key with separators may be a piece of a value (a secret): not shown.
    const shown = (text: string) =>
      isPlainOptionKey(text)
        ? text
        : "(a key with separators, possibly part of a value: not shown)";
    notice(
      reason !== undefined
        ? `${transport}: ignoring option '${shown(key)}': ${reason}`
        : `${transport}: ignoring unknown option '${shown(key)}'${
          suggestion === undefined ? "" : ` (did you mean '${shown(suggestion)}'?)`
        }`,
    );
  };
}

/**
 * The known, requested transports of one side, as `runClient` and
 * `runServer` start them: the side's registry (default: `registry`), its
 * `signals`, and ignored options logged through `emit`.
 *
 * @param config The side's configuration.
 * @param options What the side was given beside it.
 * @returns The transports to start, in order.
 */
export function sideTransports(
  config: ManagedConfigBase,
  options: RunOptions,
): RequestedTransport[] {
  return requestedTransports({
    transports: config.transports,
    registry: options.registry ?? defaultRegistry,
    options: config.options,
    stateDir: config.stateDir ?? Deno.cwd(),
    ...(options.signals === undefined ? {} : { signals: options.signals }),
    ...(options.replays === undefined ? {} : { replays: options.replays }),
    ...(options.local === undefined ? {} : { local: options.local }),
    onIgnoredOption: ignoredOptionLog(options.emit, config.frontEndKeys),
    onNotice: (message) => options.emit({ type: "LOG", severity: "notice", message }),
    onWarning: (message) => options.emit({ type: "LOG", severity: "warning", message }),
  });
}
