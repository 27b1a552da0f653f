// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { type Clock, systemClock } from "./_clock.ts";
import type { FlowSettings } from "./_flow.ts";
import { QueueBudget } from "./_queue_budget.ts";
import { checkMaxDatagram, type Framing } from "./framing.ts";
import { lengthFraming } from "./length_framing.ts";
import { checkOptionType } from "../transports/_factory_options.ts";
import { stunFraming } from "./stun/framing.ts";
import { allocationLifetimeMs } from "./stun/_allocation_lifetime.ts";
import type { MetricsRegistry } from "../net/metrics.ts";
import { checkTimeout } from "../net/address.ts";

/**
 * Options both UDP pools take: framing, limits and the idle timeout.
 */
export interface UdpPoolOptions {
  /**
   * How datagrams are framed in the transport connection: `"length"`
   * (`-mode transparent-UDP`) or `"stun"` (`-mode STUN`), or a custom
   * {@linkcode Framing}. Both sides must agree.
   */
  readonly framing: Framing | "length" | "stun";
  /**
   * Close a flow after this many milliseconds without a datagram either
   * way; `Infinity` never does. Defaults to 120,000 (two minutes, RFC 4787's
   * minimum for a NAT's UDP mapping). With `"stun"` framing, a flow that
   * carried a TURN Allocate or Refresh success response stays open at least
   * for the LIFETIME it gave (the allocation would be lost with the flow).
   */
  readonly idleTimeout?: number;
  /** The largest datagram carried, in bytes. Defaults to 65,507. */
  readonly maxDatagram?: number;
  /**
   * Bytes (framed) a connected flow may hold while the transport connection
   * is busy; beyond that datagrams are dropped as `congested`. Defaults to
   * 1 MiB.
   */
  readonly sendBufferBytes?: number;
  /**
   * Bytes (framed) all flows of the pool may hold together while their
   * transport connections are busy (or, on the client, while they connect).
   * Past it, a flow holding 64 KiB or more takes no more: its datagrams are
   * dropped as `congested` (`waiting` while it connects). Defaults to 64 MiB,
   * so clients that do not read hold at most that and 64 KiB (and one
   * datagram) a flow, not `sendBufferBytes` times `maxFlows`.
   */
  readonly poolBufferBytes?: number;
  /**
   * Flows open at once. Defaults to 1024. At the limit, a new flow takes the
   * place of the least recently active one (`flowsClosed.evicted`; on the
   * server, one of the source with the most flows, see `serveUdpServer`).
   */
  readonly maxFlows?: number;
  /**
   * Kernel buffer size to ask for the UDP sockets, in bytes: a positive
   * number (`Infinity`: as much as the kernel allows), checked when the pool
   * starts, though the server opens its sockets per flow. Defaults to as
   * much as the kernel allows for the client's socket (it takes every
   * application's datagrams) and 1 MiB for each of the server's per-flow
   * sockets. Applied only on 64-bit Linux with `--allow-ffi` (see
   * `UdpSocket.bufferSize`); otherwise the system default stays (212,992
   * bytes on stock Linux, a few hundred datagrams, so bursts beyond that are
   * lost in the kernel).
   */
  readonly udpBufferSize?: number;
  /**
   * Time and timers for the idle timeout (a test hook). Defaults to the system clock.
   *
   * @ignore
   */
  readonly clock?: Clock;
  /**
   * Called when a flow ends with an error (framing, connection, dial). The
   * message names no address (a connection the server's `limits` closed in
   * its handshake goes to `onAcceptError` instead). Defaults to ignoring. A callback that throws
   * changes nothing: its first throw is printed with `console.error`, later
   * ones are ignored.
   */
  readonly onError?: (error: unknown) => void;
  /**
   * Where datagrams, drops and flows are counted (`ptkit_udp_*`, mode
   * `STUN` for `"stun"` framing, else `transparent-UDP`); the server side
   * also counts its transport connections (`ptkit_connections_*`).
   * Defaults to nowhere.
   */
  readonly metrics?: MetricsRegistry;
}

/** Resolve a framing option. Internal. */
export function resolveFraming(framing: UdpPoolOptions["framing"], what: string): Framing {
  if (framing === "length") return lengthFraming;
  if (framing === "stun") return stunFraming;
  if (
    typeof framing === "object" && framing !== null && typeof framing.frame === "function" &&
    typeof framing.parseHeader === "function"
  ) return framing;
  throw new TypeError(
    `Cannot ${what}: framing must be "length", "stun" or a Framing, got ${JSON.stringify(framing)}`,
  );
}

function checkCount(value: number | undefined, fallback: number, name: string, what: string) {
  const n = value ?? fallback;
  if (typeof n !== "number") {
    throw new TypeError(`Cannot ${what}: ${name} must be a number, got ${typeof n}`);
  }
  if (!(Number.isInteger(n) && n >= 0) && n !== Infinity) {
    throw new RangeError(`Cannot ${what}: ${name} must be a non-negative integer, got ${n}`);
  }
  return n;
}

/**
 * Resolve and check the options flows share, and `onError`. Internal.
 *
 * @throws {TypeError} When an option is of the wrong type.
 * @throws {RangeError} When a number is out of range.
 */
export function resolveSettings(
  options: UdpPoolOptions & { readonly queueDatagrams?: number; readonly queueBytes?: number },
  what: string,
): FlowSettings & { readonly maxFlows: number } {
  const idleTimeout = options.idleTimeout ?? 120_000;
  // `Infinity` is documented (never idle out); flows arm no timer for it.
  if (idleTimeout !== Infinity) checkTimeout(idleTimeout, "idleTimeout", what);
  const framing = resolveFraming(options.framing, what);
  // Checked here, not at the first failed flow (each of which printed
  // JavaScript's 'is not a function' through the callback guard).
  checkOptionType(options.onError, "function", "onError", what);
  return {
    framing,
    // A flow carrying TURN lives as long as its allocation, idle or not.
    ...(framing === stunFraming ? { holdFor: allocationLifetimeMs } : {}),
    maxDatagram: checkMaxDatagram(options.maxDatagram, what),
    idleTimeout,
    queueDatagrams: checkCount(options.queueDatagrams, 64, "queueDatagrams", what),
    queueBytes: checkCount(options.queueBytes, 256 * 1024, "queueBytes", what),
    sendBufferBytes: checkCount(options.sendBufferBytes, 1024 * 1024, "sendBufferBytes", what),
    budget: new QueueBudget(
      checkCount(options.poolBufferBytes, 64 * 1024 * 1024, "poolBufferBytes", what),
    ),
    maxFlows: checkCount(options.maxFlows, 1024, "maxFlows", what),
    clock: options.clock ?? systemClock,
  };
}
