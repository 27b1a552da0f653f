// Copyright the ptkit authors. MIT license.

/**
 * A `LOG` line of a managed PT (event type `"log"`). The adapter also
 * dispatches `"warning"` log events of its own for lines it had to ignore.
 *
 * @example Making one
 * ```ts
 * import { PtLogEvent } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * const event = new PtLogEvent("notice", "started");
 * deepStrictEqual([event.type, event.severity, event.message], ["log", "notice", "started"]);
 * ```
 */
export class PtLogEvent extends Event {
  /** `error`, `warning`, `notice`, `info` or `debug` (as the PT wrote it). */
  readonly severity: string;
  /** The message, unescaped. */
  readonly message: string;

  /**
   * Make a log event.
   *
   * @param severity The severity.
   * @param message The message.
   */
  constructor(severity: string, message: string) {
    super("log");
    this.severity = severity;
    this.message = message;
  }
}

/**
 * A `STATUS` line of a managed PT (event type `"status"`).
 *
 * @example Making one
 * ```ts
 * import { PtStatusEvent } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * const event = new PtStatusEvent("obfs4", { CONNECT: "Failed" });
 * deepStrictEqual([event.type, event.transport, event.fields.CONNECT], ["status", "obfs4", "Failed"]);
 * ```
 */
export class PtStatusEvent extends Event {
  /** The `TRANSPORT=` field, when the PT gave one. */
  readonly transport: string | undefined;
  /** The other fields, unquoted. */
  readonly fields: Readonly<Record<string, string>>;

  /**
   * Make a status event.
   *
   * @param transport The transport.
   * @param fields The other fields.
   */
  constructor(transport: string | undefined, fields: Readonly<Record<string, string>>) {
    super("status");
    this.transport = transport;
    this.fields = fields;
  }
}

/**
 * The PT process exited without being asked to (event type `"exit"`);
 * `restartDelay` is when the adapter will launch it again, in
 * milliseconds, or `undefined` when it gives up (a `"failed"` event
 * follows).
 *
 * @example Making one
 * ```ts
 * import { PtExitEvent } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * const event = new PtExitEvent(1, null, 500, 1);
 * deepStrictEqual([event.type, event.code, event.restartDelay], ["exit", 1, 500]);
 * ```
 */
export class PtExitEvent extends Event {
  /** The exit code. */
  readonly code: number;
  /** The signal that ended it, if any. */
  readonly signal: string | null;
  /** Milliseconds until the relaunch, or `undefined` when there is none. */
  readonly restartDelay: number | undefined;
  /** Which relaunch attempt comes next (1 for the first). */
  readonly attempt: number;

  /**
   * Make an exit event.
   *
   * @param code The exit code.
   * @param signal The signal, if any.
   * @param restartDelay Milliseconds until the relaunch, or `undefined`.
   * @param attempt The relaunch attempt that comes next.
   */
  constructor(
    code: number,
    signal: string | null,
    restartDelay: number | undefined,
    attempt: number,
  ) {
    super("exit");
    this.code = code;
    this.signal = signal;
    this.restartDelay = restartDelay;
    this.attempt = attempt;
  }
}

/**
 * The adapter gave up on a PT after failed relaunches (event type
 * `"failed"`); dials fail with `error` from now on.
 *
 * @example Making one
 * ```ts
 * import { PtFailedEvent } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * const event = new PtFailedEvent(new Error("gone"));
 * deepStrictEqual([event.type, event.error.message], ["failed", "gone"]);
 * ```
 */
export class PtFailedEvent extends Event {
  /** Why. */
  readonly error: Error;

  /**
   * Make a failure event.
   *
   * @param error Why the adapter gave up.
   */
  constructor(error: Error) {
    super("failed");
    this.error = error;
  }
}

/**
 * An out-of-band message line of a managed PT (event type `"message"`): a
 * `CMESSAGE` from a client PT or an `SMESSAGE` from a server PT, for the
 * application to deliver to the other side's PT (`sendMessage`).
 *
 * @example Making one
 * ```ts
 * import { PtMessageEvent } from "@ptkit/ptkit/ipc/adapter";
 * import { deepStrictEqual } from "node:assert";
 *
 * const event = new PtMessageEvent("CMESSAGE", "keyed", new Uint8Array([1]));
 * deepStrictEqual([event.type, event.kind, event.transport], ["message", "CMESSAGE", "keyed"]);
 * ```
 */
export class PtMessageEvent extends Event {
  /** `CMESSAGE` (client to server) or `SMESSAGE` (server to client). */
  readonly kind: "CMESSAGE" | "SMESSAGE";
  /** The transport it belongs to. */
  readonly transport: string;
  /** The message, decoded. */
  readonly payload: Uint8Array;

  /**
   * Make a message event.
   *
   * @param kind `CMESSAGE` or `SMESSAGE`.
   * @param transport The transport.
   * @param payload The message.
   */
  constructor(kind: "CMESSAGE" | "SMESSAGE", transport: string, payload: Uint8Array) {
    super("message");
    this.kind = kind;
    this.transport = transport;
    this.payload = payload;
  }
}
