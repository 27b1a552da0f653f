// Copyright the ptkit authors. MIT license.
// Internal: a server transport's helper process (the ssh server's sshd)
// started behind a listener on the bind address; `listen()` loads it only
// for a transport that has one.

import type { ServerTransport } from "../transports/transport.ts";
import type { ListenOptions } from "../server.ts";
import { HelperSupervisor } from "./_helper_process.ts";
import { HelperFront } from "./_helper_front.ts";
import { RelayListener } from "./_relay_listener.ts";
import { raiseListenBacklog } from "./_libc.ts";
import { closeQuietly } from "./_accept_loop.ts";
import { listenOn } from "./_listen.ts";

export { RelayListener };

/**
 * Start `serverHelper` behind a listener on `hostname:port`, its tunnels
 * relayed to `relay`.
 */
export async function startServerHelper(
  serverHelper: NonNullable<ServerTransport["helper"]>,
  relay: RelayListener,
  hostname: string,
  port: number,
  options: ListenOptions,
): Promise<{ addr: Deno.NetAddr; close(): Promise<void> }> {
  // The runtime listens on the bind address and counts each source's
  // unauthenticated connections; the helper listens on loopback.
  const listener = listenOn(
    { hostname, port },
    () => Deno.listen({ hostname, port, transport: "tcp" }),
  );
  raiseListenBacklog(listener.addr);
  let front: HelperFront | undefined;
  let supervisor: HelperSupervisor | undefined;
  // A directory made here, for this listener only: its files (the host
  // key, the helper's configuration) go with it.
  let made: string | undefined;
  const removeMade = async () => {
    if (made !== undefined) await Deno.remove(made, { recursive: true }).catch(() => {});
  };
  try {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
    const helperAt = { hostname: "127.0.0.1", port: probe.addr.port };
    probe.close();
    const directory = options.helperDirectory ??
      (made = await Deno.makeTempDir({ prefix: "ptkit-helper-" }));
    supervisor = await HelperSupervisor.start((context) => serverHelper.process(context), {
      directory,
      listen: helperAt,
      relay: { hostname: relay.addr.hostname, port: relay.addr.port },
      relayHosts: (hostnames) => {
        for (const error of relay.listenOn(hostnames)) {
          options.onHelperLog?.(
            "warning",
            `Cannot accept a client key's tunnels at its own relay address: ${error.message}`,
          );
        }
      },
      onHandshaken: (helperPort) => front?.handshaken(helperPort),
      ...(options.onHelperLog === undefined ? {} : { onLog: options.onHelperLog }),
    });
    front = new HelperFront(listener, helperAt, {
      ...(options.limits === undefined ? {} : { limits: options.limits }),
      ...(options.onAcceptError === undefined ? {} : { onAcceptError: options.onAcceptError }),
    });
    const started = { front, supervisor };
    return {
      addr: started.front.addr,
      close: async () => {
        await started.front.close();
        await started.supervisor.close();
        await removeMade();
      },
    };
  } catch (error) {
    // The front refusing its limits has closed the listener already; the
    // helper started for it is stopped, not left running.
    closeQuietly(listener);
    await supervisor?.close();
    await removeMade();
    throw error;
  }
}
