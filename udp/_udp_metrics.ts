// Copyright the ptkit authors. MIT license.
// Internal: a UDP pool's datagrams, drops and flows as metrics, read from its
// `stats()` once per scrape (nothing is counted on the data path).

import type { MetricsCore } from "../net/_metrics.ts";
import { CONNECTION_LABEL_RULES, type ConnectionLabels } from "../net/_connection_metrics.ts";
import { UDP_DROP_REASONS, type UdpPoolStats } from "./udp_stats.ts";
import type { TurnServerStats } from "./turn/_turn_server.ts";

/**
 * Count a pool's datagrams each way, drops by reason, flows opened, open and
 * evicted.
 *
 * @param core The registry.
 * @param labels The pool's transport, side and mode.
 * @param stats The pool's statistics.
 * @returns Call when the pool is closed: its last counts are kept.
 */
export function countUdpPool(
  core: MetricsCore,
  labels: ConnectionLabels,
  stats: () => UdpPoolStats,
): () => void {
  const rules = CONNECTION_LABEL_RULES;
  const bound = { transport: labels.transport, side: labels.side, mode: labels.mode };
  let last = stats();
  const stopCollecting = core.onCollect(() => last = stats());
  const datagrams = core.counter(
    "ptkit_udp_datagrams_total",
    "Datagrams carried, by direction: to_tunnel (from the UDP side into transport connections) or from_tunnel.",
    { ...rules, direction: ["to_tunnel", "from_tunnel"] },
  );
  const drops = core.counter(
    "ptkit_udp_dropped_total",
    "Datagrams dropped, by reason (see UdpCounters.drops).",
    { ...rules, reason: UDP_DROP_REASONS },
  );
  const releases = [
    datagrams.labels({ ...bound, direction: "to_tunnel" }).track(() => last.datagramsToTunnel),
    datagrams.labels({ ...bound, direction: "from_tunnel" }).track(() => last.datagramsFromTunnel),
    core.counter("ptkit_udp_flows_total", "UDP flows opened.", rules).labels(bound)
      .track(() => last.flowsOpened),
    core.counter(
      "ptkit_udp_flows_evicted_total",
      "UDP flows closed at maxFlows to make room for a new one (flowsClosed.evicted).",
      rules,
    ).labels(bound).track(() => last.flowsClosed.evicted),
    ...UDP_DROP_REASONS.map((reason) =>
      drops.labels({ ...bound, reason }).track(() => last.drops[reason])
    ),
  ];
  const stopOpen = core.gauge("ptkit_udp_flows_open", "UDP flows open now.", rules).labels(bound)
    .track(() => last.flowsOpen);
  return () => {
    stopCollecting();
    last = stats();
    for (const release of releases) release();
    stopOpen();
  };
}

/**
 * Count a TURN server's allocations, permissions and channels (live and
 * made so far), datagrams relayed each way and drops by reason.
 *
 * @param core The registry.
 * @param stats The server's statistics.
 * @returns Call when the server is closed: its last counts are kept, its live ones drop out.
 */
export function countTurnServer(core: MetricsCore, stats: () => TurnServerStats): () => void {
  let last = stats();
  const stopCollecting = core.onCollect(() => last = stats());
  const gauges = [
    core.gauge("ptkit_turn_allocations", "TURN allocations now.").labels()
      .track(() => last.allocations),
    core.gauge("ptkit_turn_permissions", "TURN permissions now, over all allocations.").labels()
      .track(() => last.permissions),
    core.gauge("ptkit_turn_channels", "TURN channel bindings now, over all allocations.").labels()
      .track(() => last.channels),
  ];
  const relayed = core.counter(
    "ptkit_turn_relayed_total",
    "Datagrams the TURN server relayed, by direction: to_peers or to_clients.",
    { direction: ["to_peers", "to_clients"] },
  );
  const dropped = core.counter(
    "ptkit_turn_dropped_total",
    "Datagrams the TURN server dropped, by reason.",
    { reason: TURN_DROP_REASONS },
  );
  const counters = [
    core.counter("ptkit_turn_allocations_total", "TURN allocations made.").labels()
      .track(() => last.allocationsTotal),
    core.counter("ptkit_turn_permissions_total", "TURN permissions installed or refreshed.")
      .labels().track(() => last.permissionsTotal),
    core.counter("ptkit_turn_channels_total", "TURN channels bound or refreshed.").labels()
      .track(() => last.channelsTotal),
    relayed.labels({ direction: "to_peers" }).track(() => last.relayedToPeers),
    relayed.labels({ direction: "to_clients" }).track(() => last.relayedToClients),
    ...TURN_DROP_REASONS.map((reason) =>
      dropped.labels({ reason }).track(() => last.drops[reason])
    ),
  ];
  return () => {
    stopCollecting();
    last = stats();
    for (const release of counters) release();
    for (const release of gauges) release();
  };
}

const TURN_DROP_REASONS = [
  "malformed",
  "noAllocation",
  "noChannel",
  "noPermission",
  "oversize",
  "sendFailed",
  "rateLimited",
] as const;
