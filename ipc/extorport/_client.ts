// Copyright the ptkit authors. MIT license.
// Internal: the PT side of the Extended ORPort (tor's ExtORPort is the
// server): SAFE_COOKIE, then USERADDR, TRANSPORT, DONE, and tor's answer.

import { readExactly, writeFull } from "../../net/conn_io.ts";
import { closeQuietly } from "../../net/_accept_loop.ts";
import type { NetConn } from "../../net/net_conn.ts";
import { formatHostPort, type HostPort } from "../../net/address.ts";
import { formatIp, isIpLiteral, parseIp, unmapIpv4 } from "../../net/_ip_address.ts";
import { metricsCore, type MetricsRegistry } from "../../net/metrics.ts";
import type { Counter } from "../../net/_metrics.ts";
import {
  AUTH_LENGTH,
  clientHash,
  constantTimeEqual,
  SAFE_COOKIE,
  serverHash,
} from "./_safe_cookie.ts";
import {
  CMD_DENY,
  CMD_DONE,
  CMD_OKAY,
  CMD_TRANSPORT,
  CMD_USERADDR,
  encodeCommand,
  readCommand,
} from "./_commands.ts";

/** Options for {@linkcode extOrPortHandshake}. */
export interface ExtOrPortOptions {
  /** The 32-byte cookie (from the cookie file). */
  readonly cookie: Uint8Array;
  /** The transport name sent in `TRANSPORT` (none is sent for `""`). */
  readonly transport: string;
  /**
   * The client's address sent in `USERADDR`, if known. An IPv4-mapped IPv6
   * address (`::ffff:a.b.c.d`, an IPv4 client of a listener on `[::]`) is
   * sent as the IPv4 address it stands for (see {@linkcode formatUserAddr}).
   */
  readonly userAddr?: HostPort;
  /** Deadline for the whole handshake, in ms. Defaults to 5000. */
  readonly timeoutMs?: number;
  /** Fills the client nonce. Defaults to `crypto.getRandomValues`. */
  readonly random?: (bytes: Uint8Array) => void;
}

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
    // tor resets a connection it closes with our bytes unread: still a close.
    if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe) {
      throw new Error(`${closed().message} (${error.message})`, { cause: error });
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function handshake(conn: NetConn, options: ExtOrPortOptions): Promise<void> {
  const encoder = new TextEncoder();
  const read = (n: number) => readExactly(conn, n, closed);
  // 1. Auth types, terminated by 0.
  const types: number[] = [];
  for (;;) {
    const [type] = await read(1);
    if (type === 0) break;
    types.push(type!);
    if (types.length > 16) {
      throw new SyntaxError(
        "Cannot parse Extended ORPort auth types: more than 16 (too many auth types)",
      );
    }
  }
  if (!types.includes(SAFE_COOKIE)) {
    throw new Error(`Extended ORPort offers no SAFE_COOKIE auth (types ${types.join(",")})`);
  }
  // 2. Our choice and nonce.
  const clientNonce = new Uint8Array(AUTH_LENGTH);
  (options.random ?? ((b: Uint8Array) => crypto.getRandomValues(b)))(clientNonce);
  await writeFull(conn, new Uint8Array([SAFE_COOKIE, ...clientNonce]));
  // 3. Server hash and nonce.
  const reply = await read(2 * AUTH_LENGTH);
  const serverNonce = reply.subarray(AUTH_LENGTH);
  const expected = serverHash(options.cookie, clientNonce, serverNonce);
  if (!constantTimeEqual(expected, reply.subarray(0, AUTH_LENGTH))) {
    throw new Error("Extended ORPort server hash is wrong (a different cookie?)");
  }
  // 4. Our hash.
  await writeFull(conn, clientHash(options.cookie, clientNonce, serverNonce));
  // 5. Status.
  const [status] = await read(1);
  if (status !== 1) throw new Error("Extended ORPort authentication failed (wrong cookie)");
  // Metadata.
  const parts: Uint8Array[] = [];
  if (options.userAddr !== undefined) {
    parts.push(encodeCommand(CMD_USERADDR, encoder.encode(formatUserAddr(options.userAddr))));
  }
  if (options.transport !== "") {
    parts.push(encodeCommand(CMD_TRANSPORT, encoder.encode(options.transport)));
  }
  parts.push(encodeCommand(CMD_DONE));
  const metadata = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((offset, p) => (metadata.set(p, offset), offset + p.length), 0);
  await writeFull(conn, metadata);
  for (;;) {
    const { command } = await readCommand(conn, closed);
    if (command === CMD_OKAY) return;
    if (command === CMD_DENY) throw new Error("Extended ORPort denied the connection");
    // CONTROL and unknown commands are ignored.
  }
}

/**
 * The body of a `USERADDR` command: `a.b.c.d:port` or `[ipv6]:port`. An
 * IPv4-mapped IPv6 address (what a dual-stack listener on `[::]` reports for
 * an IPv4 client) is written as its IPv4 address, as goptlib's PTs send it
 * (Go prints such an address in dotted form): tor would otherwise take the
 * client for an IPv6 one, and its bridge statistics (country, IP version)
 * would count every IPv4 client as an IPv6 client of unknown country.
 *
 * @param address The client's address.
 * @returns The text sent.
 */
export function formatUserAddr(address: HostPort): string {
  const { hostname, port } = address;
  if (!hostname.includes(":") || !isIpLiteral(hostname)) return formatHostPort(address);
  const bytes = unmapIpv4(parseIp(hostname));
  return bytes.length === 4
    ? formatHostPort({ hostname: formatIp(bytes), port })
    : formatHostPort(address);
}

function closed(): Error {
  return new Error("Extended ORPort closed the connection during the handshake");
}

/**
 * The counter of one transport's failed Extended ORPort handshakes
 * (`ptkit_extorport_auth_failures_total`): a wrong cookie, `DENY`, a
 * closed connection or the deadline.
 *
 * @param registry Where it is counted.
 * @param transport The transport name (its label).
 * @returns The counter.
 */
export function authFailureCounter(registry: MetricsRegistry, transport: string): Counter {
  return metricsCore(registry).counter(
    "ptkit_extorport_auth_failures_total",
    "Extended ORPort handshakes that failed (wrong cookie, denied, timed out).",
    { transport: "transport name" },
  ).labels({ transport });
}
