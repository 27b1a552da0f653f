// Copyright the ptkit authors. MIT license.

import type { ConnStats, TransportConn } from "./transport_conn.ts";

/** Statistics of a listening server (PT 2.0 draft 1's Server Manager "get stats"). */
export interface ServerStats {
  /** When the server started, in milliseconds since the epoch. */
  readonly startTime: number;
  /** Connections accepted so far. */
  readonly connectionsAccepted: number;
  /** Connections open now. */
  readonly connectionsOpen: number;
  /** Connections that ended with an error. */
  readonly connectionsFailed: number;
  /** Application bytes sent to clients, over all connections. */
  readonly appBytesWritten: number;
  /** Application bytes received from clients, over all connections. */
  readonly appBytesRead: number;
  /** Bytes sent on the network, over all connections. */
  readonly wireBytesWritten: number;
  /** Bytes received from the network, over all connections. */
  readonly wireBytesRead: number;
}

type Counters = {
  -readonly [K in keyof Omit<ConnStats, "startTime">]: number;
};

/** Adds up the statistics of a server's connections, open and closed. */
export class StatsCollector {
  #startTime = Date.now();
  #accepted = 0;
  #failed = 0;
  #open = new Set<TransportConn>();
  #closed: Counters = {
    appBytesWritten: 0,
    appBytesRead: 0,
    wireBytesWritten: 0,
    wireBytesRead: 0,
  };

  /** Count a new connection and follow it until it closes. */
  add(conn: TransportConn): void {
    this.#accepted++;
    this.#open.add(conn);
    conn.closed.then(() => {
      this.#open.delete(conn);
      if (conn.error !== undefined) this.#failed++;
      const stats = conn.stats();
      for (const key of Object.keys(this.#closed) as (keyof Counters)[]) {
        this.#closed[key] += stats[key];
      }
    });
  }

  /** The connections open now. */
  get open(): ReadonlySet<TransportConn> {
    return this.#open;
  }

  /** A snapshot of the totals. */
  snapshot(): ServerStats {
    const totals = { ...this.#closed };
    for (const conn of this.#open) {
      const stats = conn.stats();
      for (const key of Object.keys(totals) as (keyof Counters)[]) totals[key] += stats[key];
    }
    return {
      startTime: this.#startTime,
      connectionsAccepted: this.#accepted,
      connectionsOpen: this.#open.size,
      connectionsFailed: this.#failed,
      ...totals,
    };
  }
}
