// Copyright the ptkit authors. MIT license.
// Internal: error text for LOG lines, with anything like an address removed
// (logs must not hold client IP addresses).

import { acceptErrorKind, ErrorDigest, TransportPairError } from "../../net/_accept_error.ts";
import { LISTEN_ADDRESS, LISTEN_HINT } from "../../net/_listen.ts";
import { redactAddresses } from "../../net/_redact_addresses.ts";

/**
 * An error's message with IP addresses and ports replaced (`redactAddresses`),
 * except the address of a listen that failed (the operator's own).
 *
 * @param error The error.
 * @returns The message.
 */
export function describe(error: unknown): string {
  // A listen address is the operator's own: kept (the cause's text is not).
  if (error instanceof Error && LISTEN_ADDRESS in error) {
    const hint = LISTEN_HINT in error ? error[LISTEN_HINT] : "";
    return `Cannot listen on ${error[LISTEN_ADDRESS]}: ${describe(error.cause)}${hint}`;
  }
  return redactAddresses(error instanceof Error ? error.message : String(error));
}

/**
 * An `onAcceptError` handler that writes `LOG` lines: running out of file
 * descriptors or memory and the global connection limit are `warning`s
 * (the operator's business), and so is a transport whose server `pair()`
 * failed; connections reset before they were accepted
 * and per-source refusals are `info` (what clients and probes cause).
 *
 * @param log Writes one `LOG` line.
 * @param name The transport (or listener) the errors concern.
 * @returns The handler.
 */
export function acceptErrorLogger(
  log: (severity: "warning" | "info", message: string) => void,
  name: string,
): (error: Error, count: number) => void {
  return (error, count) => {
    const refused = error instanceof RangeError;
    // The transport's pair() failed: its author's or the operator's fault,
    // on every connection, so never hidden at the default level.
    const transport = error instanceof TransportPairError;
    const severe = transport ||
      (refused
        ? error.message.includes("(maxConnections)")
        : acceptErrorKind(error) === "exhausted");
    const what = refused || transport ? describe(error) : `accept failed: ${describe(error)}`;
    const times = count === 1 ? "" : ` (${count} times since the last report)`;
    log(severe ? "warning" : "info", `${name}: ${what}${times}`);
  };
}

/** A log function that {@linkcode digestLog} made: `stop()` reports what is still counted. */
export interface DigestedLog {
  (severity: "error" | "warning" | "notice" | "info" | "debug", message: string): void;
  /** Report the counts still held and stop the timer. */
  stop(): void;
}

/**
 * The kind of a per-connection `LOG` line: its text with every
 * double-quoted value (as `JSON.stringify` writes one, escapes included)
 * made `"*"` and every number (decimal, or hexadecimal written `0x...`)
 * made `#`. A peer chooses many of the numbers these lines hold (a frame's
 * claimed length, a chunk's, a first byte) and the values they quote (a
 * SOCKS client's per-connection arguments, `invalid iat-mode "x"`), so
 * counting each text apart would let it write a line per connection by
 * changing them.
 *
 * @param message The line's text.
 * @returns Its kind.
 */
export function lineKind(message: string): string {
  return message.replace(/"(?:[^"\\]|\\.)*"/g, '"*"').replace(/0x[0-9A-Fa-f]+|[0-9]+/g, "#");
}

/**
 * Per-connection `LOG` lines without flooding: the first 10 lines of each
 * kind of text in 10 s (texts that differ only in their numbers or quoted
 * values are one kind, see {@linkcode lineKind}) are written at once, further ones are
 * counted and written as one line with the count (a flood of probes or
 * resets gives a few lines, and a parent that reads slowly never blocks the
 * proxy).
 *
 * @param log Writes one `LOG` line.
 * @returns The digesting log function.
 */
export function digestLog(
  log: (severity: "error" | "warning" | "notice" | "info" | "debug", message: string) => void,
): DigestedLog {
  type Line = Error & { severity: Parameters<typeof log>[0] };
  const digest = new ErrorDigest((error, count) => {
    const times = count === 1 ? "" : ` (${count} times since the last report)`;
    log((error as Line).severity, `${error.message}${times}`);
  }, 10);
  const digested = (severity: Parameters<typeof log>[0], message: string) => {
    digest.add(
      `${severity} ${lineKind(message)}`,
      Object.assign(new Error(message), { severity }),
    );
  };
  return Object.assign(digested, { stop: () => digest.stop() });
}

/**
 * Tells a configuration complaint that is new from one said lately: the
 * same bridge line's arguments are refused on every connection tor retries
 * (seconds apart, for as long as it runs), and the operator needs the
 * warning once, not once a retry. The first time a text is seen, and again
 * once `periodMs` has passed since it was last said, it is new; between,
 * it is not. At most `max` texts are held (the oldest forgotten first).
 *
 * @param periodMs How long a text stays said. Defaults to an hour.
 * @param max How many texts are held. Defaults to 256.
 * @param now The clock.
 * @returns `isNew(text)`, which records `text` as said when it is new.
 */
export function complaintsOnce(
  periodMs = 3_600_000,
  max = 256,
  now: () => number = Date.now,
): (text: string) => boolean {
  const said = new Map<string, number>();
  return (text) => {
    const time = now();
    const last = said.get(text);
    if (last !== undefined && time - last < periodMs) return false;
    said.delete(text);
    said.set(text, time);
    if (said.size > max) said.delete(said.keys().next().value!);
    return true;
  };
}

/**
 * `error` said again with `message`, of the same class (a refusal stays
 * `Deno.errors.ConnectionRefused`, so what callers map it to stays the
 * same), the original as its cause.
 *
 * @param error The error.
 * @param message What to say instead.
 * @returns The new error.
 */
export function restated(error: Error, message: string): Error {
  try {
    const Class = error.constructor as new (message: string, options: ErrorOptions) => Error;
    return new Class(message, { cause: error });
  } catch {
    return new Error(message, { cause: error });
  }
}
