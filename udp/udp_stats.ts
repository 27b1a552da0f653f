// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Why a datagram was dropped: the keys of {@linkcode UdpCounters.drops}.
 * Internal (the `udp` entry point does not export it).
 */
export type UdpDropReason = keyof UdpCounters["drops"];

/** Every reason a datagram is dropped for, for iterating. */
export const UDP_DROP_REASONS: readonly UdpDropReason[] = [
  "waiting",
  "congested",
  "oversize",
  "invalid",
  "writeFailed",
  "dialFailed",
  "closed",
  "tooManyFlows",
  "udpSendFailed",
];

/**
 * Why a flow ended: {@linkcode UdpFlowStats.closeReason}. Internal (the
 * `udp` entry point does not export it).
 */
export type UdpCloseReason = NonNullable<UdpFlowStats["closeReason"]>;

/** Every reason a flow ends for, for iterating. */
export const UDP_CLOSE_REASONS: readonly UdpCloseReason[] = [
  "idle",
  "peerClosed",
  "framingError",
  "connectionError",
  "writeFailed",
  "dialFailed",
  "shutdown",
  "evicted",
];

/** Datagram and byte counts, each way, and drops by reason. */
export interface UdpCounters {
  /** Datagrams from the UDP side written into the transport connection. */
  readonly datagramsToTunnel: number;
  /** Their bytes (datagram payloads, without framing). */
  readonly bytesToTunnel: number;
  /** Datagrams from the transport connection sent on the UDP side. */
  readonly datagramsFromTunnel: number;
  /** Their bytes. */
  readonly bytesFromTunnel: number;
  /**
   * Datagrams dropped, by reason:
   *
   * - `waiting`: the flow's transport connection was not connected yet and
   *   the waiting queue was full (always, with a queue of 0: PT 2.0 draft 1's Table 1).
   * - `congested`: the transport connection did not take bytes fast enough and
   *   the flow's send buffer was full.
   * - `oversize`: larger than `maxDatagram`.
   * - `invalid`: the framing cannot carry it (not STUN or ChannelData in STUN mode).
   * - `writeFailed`: queued when writing to the transport connection failed.
   * - `dialFailed`: queued when the transport connection could not be opened, or
   *   arriving from a new source while new dials wait after a failed dial or handshake.
   * - `closed`: queued or arriving when the flow closed (idle, peer closed, shutdown).
   * - `tooManyFlows`: would have opened a flow beyond `maxFlows` with no open
   *   flow to take the place of (`maxFlows` 0).
   * - `udpSendFailed`: the UDP socket refused to send it.
   */
  readonly drops: Readonly<
    Record<
      | "waiting"
      | "congested"
      | "oversize"
      | "invalid"
      | "writeFailed"
      | "dialFailed"
      | "closed"
      | "tooManyFlows"
      | "udpSendFailed",
      number
    >
  >;
}

/** A flow's state. */
export type UdpFlowState = UdpFlowStats["state"];

/** One flow's statistics. No addresses, so they are safe to log. */
export interface UdpFlowStats extends UdpCounters {
  /** A number identifying the flow within its pool. */
  readonly id: number;
  /** Its state (PT 2.0 draft 1, Table 1; server flows are always `connected`). */
  readonly state: "waiting" | "connected" | "closed";
  /**
   * When it opened, in milliseconds since the epoch, by the pool's clock
   * (monotonic: `performance.timeOrigin + performance.now()`, whole).
   */
  readonly startTime: number;
  /** When the last datagram went either way, in milliseconds since the epoch (as `startTime`). */
  readonly lastActivity: number;
  /**
   * Why it closed, once it has:
   *
   * - `idle`: no datagram either way for `idleTimeout`.
   * - `peerClosed`: the other end closed the transport connection.
   * - `framingError`: the byte stream from the peer was not validly framed.
   * - `connectionError`: the transport connection failed (network, transport).
   * - `writeFailed`: writing a datagram to the transport connection failed.
   * - `dialFailed`: the transport connection could not be opened.
   * - `shutdown`: the pool was closed.
   * - `evicted`: the pool was at `maxFlows` and a new flow took its place. On
   *   the client, this was the least recently active flow (a datagram from a
   *   new source came). On the server, a connection came from a source with
   *   fewer flows than another (this was the least recently active flow of
   *   the source with the most), or from a source holding as many as any
   *   other (this was that source's own least recently active flow).
   */
  readonly closeReason?:
    | "idle"
    | "peerClosed"
    | "framingError"
    | "connectionError"
    | "writeFailed"
    | "dialFailed"
    | "shutdown"
    | "evicted";
  /** Datagrams waiting to be written to the transport connection. */
  readonly queuedDatagrams: number;
  /** Their framed bytes. */
  readonly queuedBytes: number;
}

/** A pool's statistics: its flows' counters summed, open and closed. */
export interface UdpPoolStats extends UdpCounters {
  /** Flows opened so far. */
  readonly flowsOpened: number;
  /** Flows open now. */
  readonly flowsOpen: number;
  /** Flows closed so far, by reason (those of {@linkcode UdpFlowStats.closeReason}). */
  readonly flowsClosed: Readonly<Record<NonNullable<UdpFlowStats["closeReason"]>, number>>;
}

/** Zeroed drop counters. Internal. */
export function zeroDrops(): Record<UdpDropReason, number> {
  return Object.fromEntries(UDP_DROP_REASONS.map((r) => [r, 0])) as Record<UdpDropReason, number>;
}

/** Mutable counters. Internal. */
export interface MutableCounters {
  datagramsToTunnel: number;
  bytesToTunnel: number;
  datagramsFromTunnel: number;
  bytesFromTunnel: number;
  drops: Record<UdpDropReason, number>;
}

/** Zeroed counters. Internal. */
export function zeroCounters(): MutableCounters {
  return {
    datagramsToTunnel: 0,
    bytesToTunnel: 0,
    datagramsFromTunnel: 0,
    bytesFromTunnel: 0,
    drops: zeroDrops(),
  };
}

/** Add `from` into `into`. Internal. */
export function addCounters(into: MutableCounters, from: UdpCounters): void {
  into.datagramsToTunnel += from.datagramsToTunnel;
  into.bytesToTunnel += from.bytesToTunnel;
  into.datagramsFromTunnel += from.datagramsFromTunnel;
  into.bytesFromTunnel += from.bytesFromTunnel;
  for (const reason of UDP_DROP_REASONS) into.drops[reason] += from.drops[reason];
}
