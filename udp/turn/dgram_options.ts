// Copyright the ptkit authors. MIT license.

/** The largest datagram the UDP front end and relayed sockets receive whole under Deno. */
export const MAX_DATAGRAM_UNDER_DENO = 16384;

/**
 * Options for `dgram.createSocket`. Deno's node:dgram polyfill (2.x) allocates a fresh buffer
 * of `recvBufferSize` bytes (doubled on Linux; default 64 KiB) for every datagram and never
 * sets SO_RCVBUF; at 20,000 datagrams/s that allocation dominates and datagrams queue up.
 * Under Deno we ask for 16 KiB per datagram instead; longer datagrams are truncated. Other
 * runtimes keep their defaults.
 *
 * @param family 4 or 6.
 * @returns The socket options.
 *
 * @example Options
 * ```ts
 * import { dgramSocketOptions } from "./dgram_options.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(dgramSocketOptions(6).type, "udp6");
 * ```
 */
export function dgramSocketOptions(
  family: 4 | 6,
): { type: "udp4" | "udp6"; recvBufferSize?: number } {
  const type = family === 4 ? "udp4" : "udp6";
  // deno-lint-ignore no-explicit-any
  const isDeno = typeof (globalThis as any).Deno?.version?.deno === "string";
  return isDeno ? { type, recvBufferSize: MAX_DATAGRAM_UNDER_DENO / 2 } : { type };
}
