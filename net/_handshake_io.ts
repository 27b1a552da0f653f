// Copyright the ptkit authors. MIT license.
// Internal: byte reads and writes on either kind of connection during a
// handshake (SOCKS on a TCP socket or inside a transport connection), then
// the connection handed back as it is, so that relaying it copies nothing
// more than relaying any connection does.

import type { NetConn } from "./net_conn.ts";
import type { RelayEnd, StreamConn } from "./relay.ts";

/** Whether `end` is read with `read()` (a `Deno.Conn` and the like) rather than streams. */
export function isNetConn(end: RelayEnd): end is NetConn {
  return "read" in end && typeof end.read === "function";
}

/**
 * Reads and writes a {@linkcode NetConn} or a {@linkcode StreamConn} for a
 * handshake. A `NetConn` is read and written directly (a read never takes
 * more than it asks for). A `StreamConn`'s streams are locked while the
 * handshake runs; {@linkcode HandshakeIo.finish} unlocks them and gives the
 * connection back, with any bytes read past the handshake in front.
 */
export class HandshakeIo {
  #conn: RelayEnd;
  #net: NetConn | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #rest: Uint8Array = new Uint8Array(0);

  /**
   * Start a handshake on a connection.
   *
   * @param conn The connection.
   */
  constructor(conn: RelayEnd) {
    this.#conn = conn;
    if (isNetConn(conn)) this.#net = conn;
  }

  /** Bytes read from the connection and not yet taken by {@linkcode HandshakeIo.read}. */
  get buffered(): number {
    return this.#rest.length;
  }

  /**
   * Read into `p`.
   *
   * @param p Where to put the bytes.
   * @returns The count read, or `null` at the end of the stream.
   */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#net !== undefined) return await this.#net.read(p);
    if (this.#rest.length === 0) {
      this.#reader ??= (this.#conn as StreamConn).readable.getReader();
      const { value, done } = await this.#reader.read();
      if (done) return null;
      this.#rest = value;
    }
    const n = Math.min(p.length, this.#rest.length);
    p.set(this.#rest.subarray(0, n));
    this.#rest = this.#rest.subarray(n);
    return n;
  }

  /**
   * Write `p` (all of it, for a stream connection).
   *
   * @param p The bytes.
   * @returns The count written.
   */
  async write(p: Uint8Array): Promise<number> {
    if (this.#net !== undefined) return await this.#net.write(p);
    this.#writer ??= (this.#conn as StreamConn).writable.getWriter();
    await this.#writer.write(p.slice());
    return p.length;
  }

  /**
   * End the handshake: the connection to use from now on. That is the
   * connection itself unless bytes were read past the handshake; then a
   * stream connection that gives them first and the rest of the
   * connection after.
   *
   * @returns The connection.
   */
  finish(): RelayEnd {
    this.#writer?.releaseLock();
    this.#writer = undefined;
    const reader = this.#reader;
    const rest = this.#rest;
    this.#reader = undefined;
    this.#rest = new Uint8Array(0);
    if (rest.length === 0 || reader === undefined) {
      reader?.releaseLock();
      return this.#conn;
    }
    const conn = this.#conn as StreamConn;
    const readable = new ReadableStream<Uint8Array>({
      start: (controller) => controller.enqueue(rest),
      pull: async (controller) => {
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
    return { readable, writable: conn.writable, close: () => conn.close() };
  }
}
