// Copyright the ptkit authors. MIT license.
// Internal: what the managed client serves connections with, loaded by
// client.ts once its listeners are bound (after CMETHODS DONE for tor's
// SOCKS front ends): the SOCKS server, connectors, relays, the accept loop
// and metrics. The client side's start needs none of them.

import { relay } from "../../net/relay.ts";
import { ConnectionLoop } from "../../net/_accept_loop.ts";
import type { ConnectionMetrics, ConnectionRecord } from "../../net/_connection_metrics.ts";
import type { RunningProxy } from "./runner.ts";

export { createConnector, HelperLimit } from "../../client.ts";
export { SocksServer } from "../socks/_socks_server.ts";
export { HTTP_REQUEST_MESSAGE } from "../socks/_server_handshake.ts";
export { SocksReply, socksReplyCode, SocksReplyError } from "../socks/_reply.ts";
export { socks5Connect } from "../socks/_client.ts";
export { retryWhileExhausted } from "../../net/_accept_loop.ts";
export { metricsCore } from "../../net/metrics.ts";
export { ConnectionMetrics, markOutcome } from "../../net/_connection_metrics.ts";

/** Time a transparent-TCP connection's transport connection has to come up, in ms (as the SOCKS front end's `connectTimeout`). */
const CONNECT_TIMEOUT_MS = 60_000;

/** Accepts TCP connections and relays each to whatever `dial` returns. */
export class Forwarder implements RunningProxy {
  #addr: Deno.NetAddr;
  #loop: ConnectionLoop<Deno.TcpConn>;

  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    dial: (
      record: ConnectionRecord,
      signal: AbortSignal,
    ) => Promise<{ close(): void } & Parameters<typeof relay>[1]>,
    onError: (error: unknown) => void,
    onAcceptError: (error: Error, count: number) => void,
    metrics?: ConnectionMetrics,
  ) {
    this.#addr = listener.addr;
    this.#loop = new ConnectionLoop(listener, {
      // No handshake on this side: only the total is limited.
      limits: { maxConnectionsPerSource: Infinity },
      onAcceptError,
      ...(metrics === undefined ? {} : { metrics }),
      serve: async (conn, { signal, handshaken, record }) => {
        handshaken();
        // The transport connection has CONNECT_TIMEOUT_MS to come up (a
        // bridge that never answers must not hold the slot for good).
        const giveUp = new AbortController();
        const timer = setTimeout(
          () => giveUp.abort(new Error("Cannot connect: timed out")),
          CONNECT_TIMEOUT_MS,
        );
        try {
          const end = await dial(record, AbortSignal.any([signal, giveUp.signal]));
          clearTimeout(timer);
          if (signal.aborted) {
            end.close();
            return;
          }
          await relay(conn, end, { signal });
        } catch (error) {
          record.fail(error);
          if (!signal.aborted) onError(error);
        } finally {
          clearTimeout(timer);
        }
      },
    });
  }

  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  drain(): Promise<void> {
    return this.#loop.drain();
  }

  close(): Promise<void> {
    return this.#loop.close(new Error("Closed"));
  }
}
