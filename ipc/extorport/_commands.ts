// Copyright the ptkit authors. MIT license.
// Internal: Extended ORPort messages after authentication, for both sides:
// `CMD (u16 BE) | BODYLEN (u16 BE) | BODY`.

import { readExactly } from "../../net/conn_io.ts";
import type { NetConn } from "../../net/net_conn.ts";

/** PT to tor: end of metadata. */
export const CMD_DONE = 0x0000;
/** PT to tor: the client's address, `1.2.3.4:5678` or `[::1]:5678`. */
export const CMD_USERADDR = 0x0001;
/** PT to tor: the transport's name. */
export const CMD_TRANSPORT = 0x0002;
/** Tor to PT: go ahead. */
export const CMD_OKAY = 0x1000;
/** Tor to PT: connection refused. */
export const CMD_DENY = 0x1001;

/** One command, encoded. */
export function encodeCommand(command: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (body.length > 0xffff) {
    throw new RangeError(`Invalid Extended ORPort command body of ${body.length} bytes`);
  }
  const out = new Uint8Array(4 + body.length);
  out[0] = command >> 8;
  out[1] = command & 0xff;
  out[2] = body.length >> 8;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

/**
 * Read one command.
 *
 * @param conn The connection.
 * @param onEnd Makes the error for a connection that ends first.
 * @returns The command and its body.
 */
export async function readCommand(
  conn: Pick<NetConn, "read">,
  onEnd: (got: number) => Error,
): Promise<{ command: number; body: Uint8Array }> {
  const head = await readExactly(conn, 4, onEnd);
  const length = (head[2]! << 8) | head[3]!;
  return {
    command: (head[0]! << 8) | head[1]!,
    body: length === 0 ? new Uint8Array(0) : await readExactly(conn, length, onEnd),
  };
}
