// Copyright the ptkit authors. MIT license.

/**
 * The application IPC adapter (PT 2.0 draft 1, section 4.1): drive any
 * managed PT executable (obfs4proxy, lyrebird, snowflake-client, ptkit's
 * own `main.ts`) from Deno.
 *
 * - {@linkcode launchClient}: start a client PT; each transport becomes a
 *   `client.ts` connector (or a `Dialer`) that dials through the PT's
 *   SOCKS5 port with the transport's arguments (PT 1.0 user/password or
 *   PT 2.0 JSON, by the negotiated version).
 * - {@linkcode launchServer}: start a server PT in front of an ORPort or an
 *   Extended ORPort; each transport's `SMETHOD` address and `ARGS` are what
 *   clients need.
 * - {@linkcode listenExtOrPort}: an Extended ORPort server that hands the
 *   application each connection with its transport and client address,
 *   after SAFE_COOKIE authentication.
 *
 * PTs get a clean environment, a state directory, a start-up timeout, LOG
 * and STATUS lines as events, relaunch with exponential backoff, and the
 * spec's shutdown (close stdin, SIGTERM, SIGKILL) on `close()` or `await
 * using`.
 *
 * @example Launching a client PT
 * ```ts
 * import { launchClient } from "@ptkit/ptkit/ipc/adapter";
 * import { ok } from "node:assert";
 *
 * await using pt = await launchClient({ path: "obfs4proxy", transports: ["obfs4"] });
 * ok(pt.transports.get("obfs4")!.address!.port > 0);
 * ```
 *
 * @module
 */

export {
  ManagedPt,
  type PtEventMap,
  type PtLaunchOptions,
  type PtRestartPolicy,
} from "./managed_pt.ts";
export {
  PtExitEvent,
  PtFailedEvent,
  PtLogEvent,
  PtMessageEvent,
  PtStatusEvent,
} from "./pt_events.ts";
export {
  launchClient,
  type LaunchClientOptions,
  PtClient,
  PtClientTransport,
} from "./pt_client.ts";
export {
  launchServer,
  type LaunchServerOptions,
  PtServer,
  type PtServerTransport,
} from "./pt_server.ts";
export {
  ExtOrPortRequest,
  ExtOrPortServer,
  type ExtOrPortServerOptions,
  listenExtOrPort,
} from "../extorport/server.ts";
export type { PtLaunchResult } from "./pt_startup.ts";
export { type InWorkerOptions, InWorkerPt, startInWorker } from "./in_worker.ts";
export { SocksReplyError } from "../socks/_reply.ts";
