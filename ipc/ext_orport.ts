// Copyright the ptkit authors. MIT license.

import { readFull, writeFull } from "../net/conn_io.ts";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import type { NetConn } from "../net/net_conn.ts";
import { formatHostPort, type HostPort } from "../net/address.ts";

/** Options for {@linkcode extOrPortHandshake}. */
export interface ExtOrPortOptions {
  /** The 32-byte cookie (see `readAuthCookie`). */
  readonly cookie: Uint8Array;
  /** The transport name sent in `TRANSPORT` (none is sent for `""`). */
  readonly transport: string;
  /** The client's address sent in `USERADDR`, if known. */
  readonly userAddr?: HostPort;
  /** Deadline for the whole handshake, in ms. Defaults to 5000. */
  readonly timeoutMs?: number;
  /** Fills the client nonce. Defaults to `crypto.getRandomValues`. */
  readonly random?: (bytes: Uint8Array) => void;
}

const SERVER_TO_CLIENT = "ExtORPort authentication server-to-client hash";
const CLIENT_TO_SERVER = "ExtORPort authentication client-to-server hash";
const CMD_DONE = 0x0000;
const CMD_USERADDR = 0x0001;
const CMD_TRANSPORT = 0x0002;
const CMD_OKAY = 0x1000;
const CMD_DENY = 0x1001;

/**
 * Speak the Extended ORPort protocol on a fresh connection to tor's
 * ExtORPort: SAFE_COOKIE authentication, then `USERADDR`, `TRANSPORT` and
 * `DONE`, then wait for `OKAY`. Resolves when application bytes may flow.
 * The whole exchange has a deadline; on any failure the connection is
 * closed and the promise rejects.
 *
 * @param conn The connection to the ExtORPort.
 * @param options The cookie, the transport name and the client's address.
 * @returns Resolves once tor answered `OKAY`.
 * @throws {Error} When tor offers no SAFE_COOKIE, its hash is wrong, it
 * rejects our hash (a wrong cookie), answers `DENY`, closes, sends a
 * malformed message, or the deadline passes.
 *
 * @example Failing against a peer that closes at once
 * ```ts
 * import { extOrPortHandshake } from "@ptkit/ptkit/ipc";
 * import { rejects } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * (await listener.accept()).close();
 * await rejects(extOrPortHandshake(conn, { cookie: new Uint8Array(32), transport: "plain" }));
 * ```
 */
export async function extOrPortHandshake(conn: NetConn, options: ExtOrPortOptions): Promise<void> {
  if (options.cookie.length !== 32) {
    throw new RangeError(`Invalid auth cookie: expected 32 bytes, got ${options.cookie.length}`);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, options.timeoutMs ?? 5000);
  try {
    await handshake(conn, options);
  } catch (error) {
    closeQuietly(conn);
    if (timedOut) throw new Error("Extended ORPort handshake timed out", { cause: error });
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function handshake(conn: NetConn, options: ExtOrPortOptions): Promise<void> {
  const encoder = new TextEncoder();
  // 1. Auth types, terminated by 0.
  const types: number[] = [];
  for (;;) {
    const [type] = await readExactly(conn, 1);
    if (type === 0) break;
    types.push(type!);
    if (types.length > 16) throw new Error("Extended ORPort sent too many auth types");
  }
  if (!types.includes(1)) {
    throw new Error(`Extended ORPort offers no SAFE_COOKIE auth (types ${types.join(",")})`);
  }
  // 2. Our choice and nonce.
  const clientNonce = new Uint8Array(32);
  (options.random ?? ((b: Uint8Array) => crypto.getRandomValues(b)))(clientNonce);
  await writeFull(conn, concat(new Uint8Array([1]), clientNonce));
  // 3. Server hash and nonce.
  const reply = await readExactly(conn, 64);
  const serverHash = reply.subarray(0, 32);
  const serverNonce = reply.subarray(32, 64);
  const expected = hmac(
    sha256,
    options.cookie,
    concat(encoder.encode(SERVER_TO_CLIENT), clientNonce, serverNonce),
  );
  if (!constantTimeEqual(expected, serverHash)) {
    throw new Error("Extended ORPort server hash is wrong (a different cookie?)");
  }
  // 4. Our hash.
  const clientHash = hmac(
    sha256,
    options.cookie,
    concat(encoder.encode(CLIENT_TO_SERVER), clientNonce, serverNonce),
  );
  await writeFull(conn, clientHash);
  // 5. Status.
  const [status] = await readExactly(conn, 1);
  if (status !== 1) throw new Error("Extended ORPort authentication failed (wrong cookie)");
  // Metadata.
  const parts: Uint8Array[] = [];
  if (options.userAddr !== undefined) {
    parts.push(command(CMD_USERADDR, encoder.encode(formatHostPort(options.userAddr))));
  }
  if (options.transport !== "") {
    parts.push(command(CMD_TRANSPORT, encoder.encode(options.transport)));
  }
  parts.push(command(CMD_DONE, new Uint8Array(0)));
  await writeFull(conn, concat(...parts));
  for (;;) {
    const head = await readExactly(conn, 4);
    const cmd = (head[0]! << 8) | head[1]!;
    const length = (head[2]! << 8) | head[3]!;
    if (length > 0) await readExactly(conn, length);
    if (cmd === CMD_OKAY) return;
    if (cmd === CMD_DENY) throw new Error("Extended ORPort denied the connection");
    // CONTROL and unknown commands are ignored.
  }
}

function command(cmd: number, body: Uint8Array): Uint8Array {
  if (body.length > 0xffff) throw new RangeError("Extended ORPort command body too long");
  return concat(new Uint8Array([cmd >> 8, cmd & 0xff, body.length >> 8, body.length & 0xff]), body);
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function readExactly(conn: Pick<NetConn, "read">, n: number): Promise<Uint8Array> {
  return readFull(
    conn,
    n,
    (_got) => new Error(`Extended ORPort closed the connection during the handshake`),
  );
}

function closeQuietly(conn: NetConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
