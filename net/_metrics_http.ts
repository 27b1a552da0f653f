// Copyright the ptkit authors. MIT license.
// Internal: the metrics endpoint's HTTP/1.x server. Not Deno.serve: its
// accept loop ends the process when the descriptors run out (an uncaught
// "Too many open files"), and it has no connection limits or head deadline.
// This one is ptkit's accept loop (it backs off and retries on exhaustion,
// limits connections per source) serving one request per connection.

import { closeQuietly, ConnectionLoop } from "./_accept_loop.ts";
import { writeFull } from "./conn_io.ts";
import { HeadBuffer, HeadTooLong } from "../transports/_http_head.ts";
import { concat } from "../transports/_bytes.ts";
import { deferred } from "../transports/_deferred.ts";

/** Longest request head read, in bytes. */
const MAX_HEAD_BYTES = 8 * 1024;
/** Milliseconds a connection has to send its head and take the answer. */
const EXCHANGE_TIMEOUT_MS = 10_000;
/** After the answer: how long and how much of the rest of a request is read and dropped. */
const LINGER_MS = 1_000;
const LINGER_BYTES = 64 * 1024;
/** Scrapers and browsers are few: a flood must not hold many descriptors. */
const LIMITS = { maxConnections: 64, maxHandshakesPerSource: 4, maxConnectionsPerSource: 16 };

/** What a request gets: a status, header fields and a body. */
export interface MetricsResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

/** Answers a request line's method and path (without its query). */
export type MetricsHandler = (method: string, path: string) => MetricsResponse;

const REASONS: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large",
  505: "HTTP Version Not Supported",
};

const encoder = new TextEncoder();

/** The response's bytes, with `Connection: close` (one request per connection). */
function formatResponse(response: MetricsResponse, head: boolean): Uint8Array {
  const body = encoder.encode(response.body ?? "");
  const lines = [
    `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? ""}`,
    ...Object.entries(response.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
    `content-length: ${body.length}`,
    "connection: close",
  ];
  const start = encoder.encode(`${lines.join("\r\n")}\r\n\r\n`);
  return head ? start : concat(start, body);
}

/** The method and path of a request head, or the status refusing it. */
function requestOf(headBytes: Uint8Array): { method: string; path: string } | number {
  // The request line ends in CR LF or a bare LF (as Go's and nginx's HTTP
  // servers take it).
  const end = headBytes.indexOf(10);
  const line = new TextDecoder().decode(end < 0 ? headBytes : headBytes.subarray(0, end))
    .replace(/\r$/, "");
  const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d)\.(\d)$/.exec(line);
  if (match === null) return 400;
  if (match[3] !== "1") return 505;
  let path = match[2]!;
  if (!path.startsWith("/")) {
    // The absolute form (`GET http://host/metrics`), as proxies send it.
    try {
      path = new URL(path).pathname;
    } catch {
      return 400;
    }
  }
  const query = path.indexOf("?");
  return { method: match[1]!, path: query < 0 ? path : path.slice(0, query) };
}

/** Serve one connection: read its head, answer, drop what else it sends for a moment. */
async function exchange(conn: Deno.TcpConn, handler: MetricsHandler): Promise<void> {
  const timer = setTimeout(() => closeQuietly(conn), EXCHANGE_TIMEOUT_MS);
  try {
    const buffer = new HeadBuffer(MAX_HEAD_BYTES);
    const chunk = new Uint8Array(4096);
    let head: Uint8Array | undefined;
    let tooLong = false;
    while (head === undefined && !tooLong) {
      // A reset, or the deadline's close, rejects: the connection just ends.
      const n = await conn.read(chunk);
      if (n === null) return;
      try {
        head = buffer.add(chunk.slice(0, n))?.head;
      } catch (error) {
        if (!(error instanceof HeadTooLong)) throw error;
        tooLong = true;
      }
    }
    let response: MetricsResponse;
    let method = "";
    const request = head === undefined ? 431 : requestOf(head);
    if (typeof request === "number") {
      response = { status: request, body: `${REASONS[request]}\n` };
    } else {
      method = request.method;
      response = handler(request.method, request.path);
    }
    await writeFull(conn, formatResponse(response, method === "HEAD"));
    await conn.closeWrite();
    // Closing with a request body unread would reset the connection, and
    // the client could lose the answer: read a little first.
    clearTimeout(timer);
    const linger = setTimeout(() => closeQuietly(conn), LINGER_MS);
    try {
      let dropped = 0;
      while (dropped < LINGER_BYTES) {
        const n = await conn.read(chunk);
        if (n === null) break;
        dropped += n;
      }
    } finally {
      clearTimeout(linger);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The metrics endpoint's server, shaped as `Deno.serve`'s: `addr`,
 * `finished`, `shutdown()`, `ref()`/`unref()` and `await using`.
 */
export class MetricsHttpServer implements Deno.HttpServer<Deno.NetAddr> {
  #listener: Deno.TcpListener;
  #loop: ConnectionLoop<Deno.TcpConn>;
  #finished = deferred<void>();
  #shutdown: Promise<void> | undefined;

  /**
   * Serve on `listener` until shut down.
   *
   * @param listener A TCP listener the server takes over.
   * @param handler Answers each request.
   * @param signal Shuts the server down when aborted.
   */
  constructor(listener: Deno.TcpListener, handler: MetricsHandler, signal?: AbortSignal) {
    this.#listener = listener;
    this.#loop = new ConnectionLoop(listener, {
      limits: LIMITS,
      serve: (conn) => exchange(conn, handler),
    });
    if (signal !== undefined) {
      if (signal.aborted) void this.shutdown();
      else signal.addEventListener("abort", () => void this.shutdown(), { once: true });
    }
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  ref(): void {
    this.#listener.ref();
  }

  unref(): void {
    this.#listener.unref();
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= this.#loop.close().then(() => this.#finished.resolve());
    return this.#shutdown;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}
