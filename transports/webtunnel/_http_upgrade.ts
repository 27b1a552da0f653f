// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * WebTunnel's one HTTP/1.1 exchange, both sides: the client sends a fixed
 * `GET` with `Connection: upgrade` and `Upgrade: websocket` (no
 * `Sec-WebSocket-Key`: it is not RFC 6455), the server answers
 * `101 Switching Protocols`, then raw bytes flow both ways. Bytes that come
 * with the end of a head already belong to the tunnel.
 *
 * @module
 */

import type { HostPort, TransportPair } from "../transport.ts";
import { deferred } from "../_deferred.ts";
import {
  HeadBuffer,
  headerValues,
  HeadTooLong,
  type HttpHead,
  parseHttpHead,
  statusCode,
} from "../_http_head.ts";

/**
 * Longest request or response head either side reads, in bytes: more than
 * nginx in front passes on (header lines of up to 8 KiB, 32 KiB in all, by
 * its default `large_client_header_buffers`, plus the headers its
 * `proxy_set_header` lines add), since webtunnel-server (Go's
 * `http.ReadRequest`) upgrades any of those; a smaller bound answered 431
 * through nginx where webtunnel-server answers 101.
 */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Milliseconds the server waits for a complete request head. */
export const HEAD_TIMEOUT_MS = 10_000;
/** Milliseconds the server gives a refused client to read its error page. */
const REFUSAL_GRACE_MS = 1_000;
/** The port `USERADDR` gets with an `X-Forwarded-For` address (as webtunnel-server). */
export const FORWARDED_PORT = 60000;

const encoder = new TextEncoder();
/**
 * The decode side reads the peer's head even while nobody reads its output
 * yet (a caller may await `ready` first): room for one chunk, so the head is
 * taken in without demand.
 */
const HEAD_DEMAND: QueuingStrategy<Uint8Array> = { highWaterMark: 1 };

/**
 * The client's request head, byte for byte as Go's `http.Request.Write`
 * sends it in the reference client.
 *
 * @param path The URL's path, escaped, starting with `/` (the secret).
 * @param host The `Host` header: the URL's host without its port (lyrebird's
 * client sends `url.Hostname()`).
 * @returns The request head.
 *
 * @example The request for a bridge URL
 * ```ts
 * import { upgradeRequest } from "./_http_upgrade.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(
 *   new TextDecoder().decode(upgradeRequest("/s3cret", "example.com")),
 *   "GET /s3cret HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Go-http-client/1.1\r\n" +
 *     "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
 * );
 * ```
 */
export function upgradeRequest(path: string, host: string): Uint8Array {
  if (!path.startsWith("/") || !/^[!-~]+$/.test(path)) {
    throw new TypeError(`Invalid WebTunnel path: must start with '/' and hold no spaces`);
  }
  if (!/^[!-~]+$/.test(host) || host.includes("/")) {
    throw new TypeError(`Invalid WebTunnel host ${JSON.stringify(host)}`);
  }
  return encoder.encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: Go-http-client/1.1\r\n` +
      "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
  );
}

/** Whether a comma-separated header field holds `token` (case-insensitive). */
function hasToken(head: HttpHead, name: string, token: string): boolean {
  return headerValues(head, name).some((value) =>
    value.split(",").some((part) => part.trim().toLowerCase() === token)
  );
}

/**
 * The client's pair: sends `request` first, holds the application's bytes
 * until the server answered exactly `101`, then passes bytes both ways
 * unchanged (what came with the response head included). Any other answer
 * fails the connection with an error naming the status.
 *
 * @param request The request head ({@linkcode upgradeRequest}).
 * @param onRefused Called with the status of an answer other than 101.
 * @returns The pair; `ready` resolves on the 101.
 *
 * @example A server that answers 101
 * ```ts
 * import { upgradeClientPair, upgradeRequest } from "./_http_upgrade.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const pair = upgradeClientPair(upgradeRequest("/x", "example.com"));
 * const wire = pair.encode.readable.getReader();
 * deepStrictEqual((await wire.read()).value!.length > 0, true);
 * const answer = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n" +
 *   "Upgrade: websocket\r\n\r\nhi";
 * pair.decode.writable.getWriter().write(new TextEncoder().encode(answer));
 * const { value } = await pair.decode.readable.getReader().read();
 * await pair.ready;
 * deepStrictEqual(new TextDecoder().decode(value), "hi");
 * ```
 */
export function upgradeClientPair(
  request: Uint8Array,
  onRefused?: (status: number) => void,
): TransportPair {
  const upgraded = deferred<void>();
  const head = new HeadBuffer(MAX_HEAD_BYTES);
  let done = false;
  const encode = new TransformStream<Uint8Array, Uint8Array>({
    start: (controller) => controller.enqueue(request),
    transform: async (chunk, controller) => {
      if (!done) await upgraded.promise;
      controller.enqueue(chunk);
    },
  });
  const decode = new TransformStream<Uint8Array, Uint8Array>(
    {
      transform: (chunk, controller) => {
        if (done) {
          controller.enqueue(chunk);
          return;
        }
        try {
          const complete = head.add(chunk);
          if (complete === undefined) return;
          checkResponse(parseHttpHead(complete.head), onRefused);
          done = true;
          upgraded.resolve();
          if (complete.rest.length > 0) controller.enqueue(complete.rest);
        } catch (error) {
          const failure = error instanceof HeadTooLong
            ? new RangeError(
              `WebTunnel server's response head is longer than ${MAX_HEAD_BYTES} bytes`,
            )
            : error;
          upgraded.reject(failure);
          throw failure;
        }
      },
      flush: () => {
        if (done) return;
        const error = new Error("WebTunnel server closed the connection before its response head");
        upgraded.reject(error);
        throw error;
      },
    },
    undefined,
    HEAD_DEMAND,
  );
  return { encode, decode, ready: upgraded.promise };
}

function checkResponse(head: HttpHead, onRefused?: (status: number) => void): void {
  const code = statusCode(head.startLine);
  if (code === undefined) {
    throw new SyntaxError("WebTunnel server sent no HTTP/1.1 status line");
  }
  if (code !== 101) {
    onRefused?.(code);
    // A front server's own answers when the WebTunnel server behind it is down or silent.
    const hint = code === 502 || code === 503 || code === 504
      ? "the front server could not reach the WebTunnel server behind it: check that it runs, on the address the front server passes the secret path to"
      : code === 400
      // nginx's answer to plain HTTP on a port that speaks TLS.
      ? "the front server found the request malformed: a url=http:// whose port speaks TLS gets this; use https://"
      : "check that the url's path is the server's secret path, and that the front server passes that path on with its Upgrade header";
    throw new Error(
      `WebTunnel server answered HTTP status ${code}, not 101 Switching Protocols (${hint})`,
    );
  }
  if (!hasToken(head, "Upgrade", "websocket") || !hasToken(head, "Connection", "upgrade")) {
    throw new Error(
      "WebTunnel server answered 101 without 'Connection: upgrade' and 'Upgrade: websocket'",
    );
  }
}

const REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
};

/**
 * A small, ordinary HTTP error response (what a web server sends), with
 * `Connection: close`.
 *
 * @param status One of 400, 404, 405, 408, 431.
 * @param withBody False for an answer to `HEAD`: the head alone, with the
 * `Content-Length` the page would have (RFC 9110, section 9.3.2).
 * @returns The whole response.
 *
 * @example A 404 page
 * ```ts
 * import { errorResponse } from "./_http_upgrade.ts";
 * import { ok } from "node:assert";
 *
 * ok(new TextDecoder().decode(errorResponse(404)).startsWith("HTTP/1.1 404 Not Found\r\n"));
 * ```
 */
export function errorResponse(status: number, withBody = true): Uint8Array {
  const reason = REASONS[status];
  if (reason === undefined) throw new RangeError(`Unsupported HTTP error status ${status}`);
  const body = `<html>\r\n<head><title>${status} ${reason}</title></head>\r\n<body>\r\n` +
    `<center><h1>${status} ${reason}</h1></center>\r\n</body>\r\n</html>\r\n`;
  return encoder.encode(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/html\r\n` +
      `Content-Length: ${encoder.encode(body).length}\r\nConnection: close\r\n` +
      (status === 405 ? "Allow: GET\r\n" : "") + `\r\n${withBody ? body : ""}`,
  );
}

const SWITCHING = encoder.encode(
  "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
);

/**
 * An upgrade request the server refused, with the status it answered: what
 * a server pair's `ready` rejects with for probes and stray web clients.
 *
 * @example Telling refusals apart
 * ```ts
 * import { UpgradeRefused } from "./_http_upgrade.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const error = new UpgradeRefused(404, "not an upgrade");
 * deepStrictEqual([error instanceof UpgradeRefused, error.status], [true, 404]);
 * ```
 */
export class UpgradeRefused extends Error {
  /** The HTTP status sent back. */
  readonly status: number;

  /**
   * Make the error.
   *
   * @param status The HTTP status sent back.
   * @param message Why, without any client data.
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "UpgradeRefused";
    this.status = status;
  }
}

/**
 * The server's pair: reads one request head (any path: routing is the front
 * server's job) within {@linkcode HEAD_TIMEOUT_MS} and
 * {@linkcode MAX_HEAD_BYTES}; a `GET` with `Connection: upgrade` and
 * `Upgrade: websocket` gets `101` and the connection becomes a byte tunnel
 * (bytes pipelined after the head included); anything else gets a small
 * error page (404 for a request that is not an upgrade, 405 for another
 * method, its head alone for `HEAD`, 400 for a malformed head, 431 for a
 * long one, 408 for a slow one) and `ready` rejects with {@linkcode UpgradeRefused}. `clientAddress` is
 * the last `X-Forwarded-For` value, the one the front server added (port
 * {@linkcode FORWARDED_PORT}).
 *
 * @returns The pair.
 *
 * @example Accepting an upgrade
 * ```ts
 * import { upgradeRequest, upgradeServerPair } from "./_http_upgrade.ts";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const pair = upgradeServerPair();
 * const request = new TextEncoder().encode(
 *   "GET /any HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n" +
 *     "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n\r\ntunnel",
 * );
 * pair.decode.writable.getWriter().write(request);
 * const decoded = pair.decode.readable.getReader().read();
 * await pair.ready;
 * const { value } = await pair.encode.readable.getReader().read();
 * ok(new TextDecoder().decode(value).startsWith("HTTP/1.1 101 "));
 * deepStrictEqual(await pair.clientAddress, { hostname: "192.0.2.7", port: 60000 });
 * deepStrictEqual(new TextDecoder().decode((await decoded).value), "tunnel");
 * ```
 */
export function upgradeServerPair(): TransportPair {
  const upgraded = deferred<void>();
  const address = deferred<HostPort | undefined>();
  const head = new HeadBuffer(MAX_HEAD_BYTES);
  let state: "head" | "open" | "refused" = "head";
  let encodeController!: TransformStreamDefaultController<Uint8Array>;
  let grace: ReturnType<typeof setTimeout> | undefined;
  let refusal: UpgradeRefused | undefined;
  const finishRefusal = () => {
    clearTimeout(grace);
    if (refusal !== undefined) upgraded.reject(refusal);
  };
  const refuse = (status: number, why: string, withBody = true) => {
    clearTimeout(timer);
    if (state !== "head") return;
    state = "refused";
    refusal = new UpgradeRefused(status, `WebTunnel request refused with HTTP ${status}: ${why}`);
    address.resolve(undefined);
    try {
      encodeController.enqueue(errorResponse(status, withBody));
      encodeController.terminate();
    } catch {
      // The connection is gone already.
    }
    // The page goes out with a FIN; the client closing (or a grace period)
    // ends the connection.
    grace = setTimeout(finishRefusal, REFUSAL_GRACE_MS);
  };
  const timer = setTimeout(
    () => refuse(408, `no complete request head within ${HEAD_TIMEOUT_MS} ms`),
    HEAD_TIMEOUT_MS,
  );
  const encode = new TransformStream<Uint8Array, Uint8Array>({
    start: (controller) => {
      encodeController = controller;
    },
    transform: async (chunk, controller) => {
      if (state !== "open") await upgraded.promise;
      controller.enqueue(chunk);
    },
    cancel: () => clearTimeout(timer),
  });
  const decode = new TransformStream<Uint8Array, Uint8Array>(
    {
      transform: (chunk, controller) => {
        if (state === "open") {
          controller.enqueue(chunk);
          return;
        }
        if (state === "refused") return; // Discarded: the answer is given.
        let complete;
        try {
          complete = head.add(chunk);
        } catch {
          refuse(431, `request head longer than ${MAX_HEAD_BYTES} bytes`);
          return;
        }
        if (complete === undefined) return;
        let request: HttpHead;
        try {
          request = parseHttpHead(complete.head);
        } catch {
          refuse(400, "malformed request head");
          return;
        }
        const line = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/1\.[01]$/.exec(request.startLine);
        if (line === null) return refuse(400, "malformed request line");
        if (line[1] !== "GET") return refuse(405, "method is not GET", line[1] !== "HEAD");
        if (
          !hasToken(request, "Upgrade", "websocket") || !hasToken(request, "Connection", "upgrade")
        ) {
          return refuse(404, "not an upgrade to websocket");
        }
        clearTimeout(timer);
        state = "open";
        encodeController.enqueue(SWITCHING);
        address.resolve(forwardedFor(request));
        upgraded.resolve();
        if (complete.rest.length > 0) controller.enqueue(complete.rest);
      },
      cancel: () => {
        clearTimeout(timer);
        if (state === "refused") finishRefusal();
      },
      flush: () => {
        clearTimeout(timer);
        if (state === "refused") return finishRefusal();
        if (state === "head") {
          state = "refused";
          const error = new UpgradeRefused(
            400,
            "Client closed the connection before its request head",
          );
          address.resolve(undefined);
          upgraded.reject(error);
          throw error;
        }
      },
    },
    undefined,
    HEAD_DEMAND,
  );
  return { encode, decode, ready: upgraded.promise, clientAddress: address.promise };
}

/**
 * The last `X-Forwarded-For` value, as given (the runtime checks it is an
 * IP), less a port the front added: the address the front server itself saw. Values before it are what
 * the client sent (nginx's `$proxy_add_x_forwarded_for` appends to them),
 * so taking the first, as webtunnel-server does, let a client choose its own
 * `USERADDR` and source for the per-source limits.
 */
function forwardedFor(head: HttpHead): HostPort | undefined {
  const last = headerValues(head, "X-Forwarded-For").at(-1)?.split(",").at(-1)?.trim();
  if (last === undefined || last === "") return undefined;
  // The client's port, where a front adds it ("192.0.2.7:4711",
  // "[2001:db8::5]:4711": Azure Application Gateway), is not USERADDR's.
  const withPort = /^(?:\[([^\]]*)\]|([0-9.]+))(?::\d{1,5})?$/.exec(last);
  const hostname = withPort === null ? last : withPort[1] ?? withPort[2]!;
  return { hostname, port: FORWARDED_PORT };
}
