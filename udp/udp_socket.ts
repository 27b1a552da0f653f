// Copyright the ptkit authors. MIT license.

import dgram from "node:dgram";
import { setUdpBufferSize } from "./socket_buffer.ts";

/** A UDP address. */
export interface UdpAddress {
  /** IP address (IPv6 without brackets) or host name. */
  readonly hostname: string;
  /** Port. */
  readonly port: number;
}

/** Options for {@linkcode UdpSocket.open}. */
export interface UdpSocketOptions {
  /** Local address to bind. Defaults to `"127.0.0.1"` (`"::1"` for an IPv6 peer). */
  readonly hostname?: string;
  /** Local port; 0 (the default) picks a free one. */
  readonly port?: number;
  /** Connect to this peer: only its datagrams are received, and `send` needs no address. */
  readonly connect?: UdpAddress;
  /**
   * Kernel receive and send buffer size in bytes. Defaults to the system's
   * (Linux: net.core.rmem_default, often 212,992 bytes, a few hundred small
   * datagrams). Deno's `node:dgram` does not apply this, so on Linux it is
   * set through libc when the process has `--allow-ffi`, and left alone
   * otherwise; see {@linkcode UdpSocket.bufferSize}.
   */
  readonly bufferSize?: number;
}

function isIPv6(hostname: string): boolean {
  return hostname.includes(":");
}

/**
 * A UDP socket (a thin wrapper over `node:dgram`, which needs no unstable
 * flag in Deno). Datagrams arrive through {@linkcode UdpSocket.onmessage};
 * there is no backpressure, as with any UDP socket.
 *
 * @example Echoing one datagram
 * ```ts
 * import { UdpSocket } from "@ptkit/ptkit/udp";
 * import { deepStrictEqual } from "node:assert";
 *
 * const server = await UdpSocket.open({ hostname: "127.0.0.1" });
 * server.onmessage = (data, from) => server.send(data, from);
 * const client = await UdpSocket.open({ connect: server.addr });
 * const reply = new Promise<Uint8Array>((resolve) => client.onmessage = resolve);
 * await client.send(new Uint8Array([1, 2]));
 * deepStrictEqual(await reply, new Uint8Array([1, 2]));
 * await client.close();
 * await server.close();
 * ```
 */
export class UdpSocket implements AsyncDisposable {
  #socket: dgram.Socket;
  #closed = false;
  #closing: Promise<void> | undefined;
  #connected: boolean;
  #lastSend: Promise<unknown> = Promise.resolve();
  #bufferSize: number | undefined;

  /** Called with each datagram received and its sender. */
  onmessage: ((data: Uint8Array, from: UdpAddress) => void) | undefined;
  /** Called with errors the socket reports outside of a send. Defaults to ignoring them. */
  onerror: ((error: Error) => void) | undefined;

  private constructor(socket: dgram.Socket, connected: boolean) {
    this.#socket = socket;
    this.#connected = connected;
    socket.on("message", (message: Uint8Array, rinfo: dgram.RemoteInfo) => {
      // Copy: Deno's node:dgram hands each datagram in its own 64 KiB buffer.
      const data = new Uint8Array(message.byteLength);
      data.set(message);
      this.onmessage?.(data, { hostname: rinfo.address, port: rinfo.port });
    });
    socket.on("error", (error: Error) => this.onerror?.(error));
  }

  /**
   * Open a socket: bind it, and connect it when asked.
   *
   * @param options Where to bind and what to connect to.
   * @returns The open socket.
   */
  static async open(options: UdpSocketOptions = {}): Promise<UdpSocket> {
    const peer = options.connect;
    const hostname = options.hostname ?? (peer && isIPv6(peer.hostname) ? "::1" : "127.0.0.1");
    const type = isIPv6(hostname) ? "udp6" : "udp4";
    const size = options.bufferSize;
    // Not recvBufferSize: Deno's node:dgram does not apply it to the socket,
    // but allocates a buffer that large for every datagram it receives.
    const socket = dgram.createSocket({ type });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(options.port ?? 0, hostname, () => {
          socket.off("error", reject);
          resolve();
        });
      });
      if (peer) {
        await new Promise<void>((resolve, reject) => {
          socket.connect(peer.port, peer.hostname, (error?: Error) => {
            if (error) reject(error);
            else resolve();
          });
        });
      }
    } catch (error) {
      await new Promise<void>((resolve) => {
        try {
          socket.close(() => resolve());
        } catch {
          resolve();
        }
      });
      throw error;
    }
    const udp = new UdpSocket(socket, peer !== undefined);
    if (size !== undefined) udp.#bufferSize = setUdpBufferSize(socket.address().port, size);
    return udp;
  }

  /**
   * The receive buffer size the kernel granted when `bufferSize` was
   * applied, or `undefined` when it was not asked for or could not be set
   * (not Linux, or no `--allow-ffi`).
   */
  get bufferSize(): number | undefined {
    return this.#bufferSize;
  }

  /** The local address. */
  get addr(): UdpAddress {
    const { address, port } = this.#socket.address();
    return { hostname: address, port };
  }

  /**
   * Send one datagram.
   *
   * @param data The datagram.
   * @param to The receiver; omit it on a connected socket.
   * @returns Resolves once the datagram was handed to the kernel; rejects
   * when that failed.
   */
  send(data: Uint8Array, to?: UdpAddress): Promise<void> {
    // One send at a time: Deno's node:dgram may reorder a burst of sends
    // issued in the same tick (seen on a socket's first sends).
    const sent = this.#lastSend.then(() =>
      new Promise<void>((resolve, reject) => {
        const done = (error: Error | null) => error ? reject(error) : resolve();
        try {
          if (to && !this.#connected) this.#socket.send(data, to.port, to.hostname, done);
          else this.#socket.send(data, done);
        } catch (error) {
          reject(error);
        }
      })
    );
    this.#lastSend = sent.catch(() => {});
    return sent;
  }

  /**
   * Close the socket. Calling it again returns the same promise.
   *
   * @returns Resolves once the socket is closed.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
    return this.#closing;
  }

  /** Whether {@linkcode UdpSocket.close} was called. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Close the socket and wait until it is. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
