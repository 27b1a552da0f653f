// Copyright the ptkit authors. MIT license.

import type { SignalPipe } from "../../transports/transport.ts";
import type { PtLine } from "../lines/pt_line.ts";
import {
  MAX_MESSAGE_BYTES,
  MAX_MESSAGE_LINE_LENGTH,
  parseMessageLine,
} from "../lines/_message_line.ts";

/** Messages held for a transport that does not read its `signals`. */
const QUEUE = 64;

/**
 * The managed proxy's end of every transport's {@linkcode SignalPipe}:
 * what a transport writes becomes a `CMESSAGE` (client side) or `SMESSAGE`
 * (server side) line on stdout, and the parent's lines of the other kind
 * are delivered to that transport's `readable`. Bad lines (malformed, the
 * wrong direction, an unknown transport, a full queue) are logged and
 * dropped.
 */
export class SignalHub {
  #side: "client" | "server";
  #emit: (line: PtLine) => void;
  #inputs = new Map<string, ReadableStreamDefaultController<Uint8Array>>();
  #pipes = new Map<string, SignalPipe>();
  #closed = false;

  /**
   * Make the hub of one side.
   *
   * @param side `client` (writes `CMESSAGE`, reads `SMESSAGE`) or `server`.
   * @param emit Where outgoing lines and warnings go.
   */
  constructor(side: "client" | "server", emit: (line: PtLine) => void) {
    if (side !== "client" && side !== "server") {
      throw new TypeError(`Invalid side ${JSON.stringify(side)}: expected client or server`);
    }
    this.#side = side;
    this.#emit = emit;
  }

  /**
   * The pipe of one transport (the same object on every call).
   *
   * @param transport The transport's name.
   * @returns Its signals.
   */
  pipe(transport: string): SignalPipe {
    let pipe = this.#pipes.get(transport);
    if (pipe !== undefined) return pipe;
    const outgoing = this.#side === "client" ? "CMESSAGE" : "SMESSAGE";
    const makeReadable = () =>
      new ReadableStream<Uint8Array>({
        start: (controller) => {
          if (this.#closed) controller.close();
          else this.#inputs.set(transport, controller);
        },
      }, { highWaterMark: QUEUE });
    const makeWritable = () =>
      new WritableStream<Uint8Array>({
        write: (chunk) => {
          if (!(chunk instanceof Uint8Array)) {
            throw new TypeError(`Cannot send a message of ${transport}: expected a Uint8Array`);
          }
          if (chunk.length > MAX_MESSAGE_BYTES) {
            throw new RangeError(
              `Cannot send a message of ${transport}: ${chunk.length} bytes exceed ${MAX_MESSAGE_BYTES}`,
            );
          }
          if (chunk.length > 0) this.#emit({ type: outgoing, transport, payload: chunk.slice() });
        },
      });
    // Made at first use: Deno loads its streams then (a transport that never
    // signals, obfs4's, loads none before *METHODS DONE).
    let readable: ReadableStream<Uint8Array> | undefined;
    let writable: WritableStream<Uint8Array> | undefined;
    pipe = {
      get readable() {
        return readable ??= makeReadable();
      },
      get writable() {
        return writable ??= makeWritable();
      },
    };
    this.#pipes.set(transport, pipe);
    return pipe;
  }

  /**
   * Handle one line from the parent (without its newline). Lines that are
   * not `CMESSAGE` / `SMESSAGE` are ignored silently.
   *
   * @param line The line.
   */
  handleLine(line: string): void {
    if (!/^[CS]MESSAGE( |\r?$)/.test(line)) return;
    const incoming = this.#side === "client" ? "SMESSAGE" : "CMESSAGE";
    let message;
    try {
      message = parseMessageLine(line);
    } catch (error) {
      this.#warn(`Ignored a message line: ${(error as Error).message}`);
      return;
    }
    if (message.kind !== incoming) {
      this.#warn(`Ignored ${message.kind} on the ${this.#side} side: expected ${incoming}`);
      return;
    }
    // A pipe whose readable was not asked for yet gets it now (its start
    // registers the controller), so the message waits there as before.
    if (!this.#inputs.has(message.transport)) void this.#pipes.get(message.transport)?.readable;
    const controller = this.#inputs.get(message.transport);
    if (controller === undefined) {
      this.#warn(`Ignored ${message.kind} for unknown transport ${message.transport}`);
      return;
    }
    if ((controller.desiredSize ?? 0) <= 0) {
      this.#warn(`Ignored ${message.kind} for ${message.transport}: ${QUEUE} messages are waiting`);
      return;
    }
    controller.enqueue(message.payload);
    // The operator who passed it sees it arrived (what the transport makes
    // of it is the transport's to say).
    this.#emit({
      type: "LOG",
      severity: "notice",
      message:
        `Passed a ${message.kind} of ${message.payload.length} bytes to ${message.transport}`,
    });
  }

  /**
   * Report a line from the parent that was dropped for its length.
   *
   * @param length The characters seen.
   */
  tooLong(length: number): void {
    this.#warn(
      `Ignored a message line: its ${length} characters exceed ${MAX_MESSAGE_LINE_LENGTH}`,
    );
  }

  #warn(message: string): void {
    this.#emit({ type: "LOG", severity: "warning", message });
  }

  /** End every transport's `readable`. */
  close(): void {
    this.#closed = true;
    for (const controller of this.#inputs.values()) {
      try {
        controller.close();
      } catch {
        // Already closed or cancelled.
      }
    }
    this.#inputs.clear();
  }
}
