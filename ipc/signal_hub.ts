// Copyright the ptkit authors. MIT license.

import type { SignalPipe } from "../transports/transport.ts";
import type { IpcOutput } from "./ipc_output.ts";
import { MAX_MESSAGE_BYTES, parseMessageLine } from "./message_line.ts";

/** Messages held for a transport that does not read its `signals`. */
const QUEUE = 64;

/**
 * The managed proxy's end of every transport's {@linkcode SignalPipe}:
 * what a transport writes becomes a `CMESSAGE` (client side) or `SMESSAGE`
 * (server side) line on stdout, and the parent's lines of the other kind
 * are delivered to that transport's `readable`. Bad lines (malformed, the
 * wrong direction, an unknown transport, a full queue) are logged and
 * dropped.
 *
 * @example Relaying a message both ways
 * ```ts
 * import { IpcOutput } from "./ipc_output.ts";
 * import { SignalHub } from "./signal_hub.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const lines: string[] = [];
 * const hub = new SignalHub("client", new IpcOutput({ stdout: (l) => lines.push(l) }));
 * const pipe = hub.pipe("keyed");
 * await pipe.writable.getWriter().write(new TextEncoder().encode("hi"));
 * hub.handleLine("SMESSAGE keyed aGk=");
 * const { value } = await pipe.readable.getReader().read();
 * deepStrictEqual([lines, value], [["CMESSAGE keyed aGk=\n"], new TextEncoder().encode("hi")]);
 * hub.close();
 * ```
 */
export class SignalHub {
  #side: "client" | "server";
  #output: IpcOutput;
  #inputs = new Map<string, ReadableStreamDefaultController<Uint8Array>>();
  #pipes = new Map<string, SignalPipe>();
  #closed = false;

  /**
   * Make the hub of one side.
   *
   * @param side `client` (writes `CMESSAGE`, reads `SMESSAGE`) or `server`.
   * @param output Where outgoing lines and warnings go.
   */
  constructor(side: "client" | "server", output: IpcOutput) {
    if (side !== "client" && side !== "server") {
      throw new TypeError(`Invalid side ${JSON.stringify(side)}: expected client or server`);
    }
    this.#side = side;
    this.#output = output;
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
    const readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        if (this.#closed) controller.close();
        else this.#inputs.set(transport, controller);
      },
    }, { highWaterMark: QUEUE });
    const writable = new WritableStream<Uint8Array>({
      write: (chunk) => {
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`Cannot send a message of ${transport}: expected a Uint8Array`);
        }
        if (chunk.length > MAX_MESSAGE_BYTES) {
          throw new RangeError(
            `Cannot send a message of ${transport}: ${chunk.length} bytes exceed ${MAX_MESSAGE_BYTES}`,
          );
        }
        if (chunk.length > 0) this.#output.message(outgoing, transport, chunk);
      },
    });
    pipe = { readable, writable };
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
      this.#output.log("warning", `Ignored a message line: ${(error as Error).message}`);
      return;
    }
    if (message.kind !== incoming) {
      this.#output.log(
        "warning",
        `Ignored ${message.kind} on the ${this.#side} side: expected ${incoming}`,
      );
      return;
    }
    const controller = this.#inputs.get(message.transport);
    if (controller === undefined) {
      this.#output.log(
        "warning",
        `Ignored ${message.kind} for unknown transport ${message.transport}`,
      );
      return;
    }
    if ((controller.desiredSize ?? 0) <= 0) {
      this.#output.log(
        "warning",
        `Ignored ${message.kind} for ${message.transport}: ${QUEUE} messages are waiting`,
      );
      return;
    }
    controller.enqueue(message.payload);
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
