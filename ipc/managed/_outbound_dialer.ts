// Copyright the ptkit authors. MIT license.

import type { Socket } from "node:net";
import type { Dialer, NetConn } from "../../net/net_conn.ts";
import type { HostPort } from "../../net/address.ts";
import { tcpDialer } from "../../net/net_conn.ts";
import { classifyIp, isIpLiteral, parseIpv4, parseIpv6 } from "../../net/_ip_address.ts";
import type { OutboundBind } from "./_outbound_bind.ts";
import { systemResolve } from "../../net/_resolve.ts";

export { type OutboundBind, parseOutboundBind } from "./_outbound_bind.ts";

/**
 * A {@linkcode Dialer} whose connections leave from the given source
 * address of the destination's family. A host name is resolved first (with
 * `resolve`, only when a source address is set) and its first address
 * dialed, bound by that address's family, so that a bridge or target given
 * by name leaves from the bind address as one given by IP address does.
 * Loopback destinations and families without a source address are dialed
 * normally.
 *
 * @param bind The source addresses.
 * @param fallback The dialer for everything else. Defaults to `Deno.connect`.
 * @param resolve Resolves host names. Defaults to {@linkcode systemResolve}.
 * @returns The dialer.
 */
export function outboundDialer(
  bind: OutboundBind,
  fallback: Dialer = tcpDialer,
  resolve: (
    hostname: string,
    options: { signal?: AbortSignal },
  ) => Promise<readonly string[]> = systemResolve,
): Dialer {
  const dial: Dialer = (target: HostPort, settings, options = {}) => {
    const source = outboundSource(bind, target.hostname);
    if (source === undefined) return fallback(target, settings, options);
    return boundDial(target, source, options.signal);
  };
  return async (target: HostPort, settings, options = {}) => {
    if (isIpLiteral(target.hostname) || (bind.v4 === undefined && bind.v6 === undefined)) {
      return await dial(target, settings, options);
    }
    let found: readonly string[];
    try {
      found = await resolve(
        target.hostname,
        options.signal === undefined ? {} : { signal: options.signal },
      );
    } catch (error) {
      throw new Error(
        `Cannot resolve ${JSON.stringify(target.hostname)}: ${
          error instanceof Deno.errors.NotFound ? "no address" : (error as Error).message
        }`,
        { cause: error },
      );
    }
    const [first] = found;
    options.signal?.throwIfAborted();
    if (first === undefined) {
      throw new Error(`Cannot resolve ${JSON.stringify(target.hostname)}: no address`);
    }
    return await dial({ hostname: first, port: target.port }, settings, options);
  };
}

/**
 * The source address to send to `hostname` from: the bind address of its
 * family, or `undefined` (the system's choice) for a loopback destination,
 * a host name (resolve it first: {@linkcode outboundDialer} does), or a
 * family without one.
 *
 * @param bind The bind addresses.
 * @param hostname The destination.
 * @returns The source address, or `undefined`.
 */
export function outboundSource(bind: OutboundBind, hostname: string): string | undefined {
  const v4 = parseIpv4(hostname) >= 0;
  const v6 = !v4 && parseIpv6(hostname) !== undefined;
  const source = v4 ? bind.v4 : v6 ? bind.v6 : undefined;
  return source === undefined || classifyIp(hostname) === "loopback" ? undefined : source;
}

/**
 * Dial `target` from the local address `source` (node:net: `Deno.connect`
 * cannot choose one). Exported for tests.
 *
 * @param target Where to connect.
 * @param source The local address to bind.
 * @param signal Aborting it gives the attempt up (the socket is destroyed).
 * @returns The connection.
 */
export async function boundDial(
  target: HostPort,
  source: string,
  signal?: AbortSignal,
): Promise<NetConn> {
  // node:net loads Node's compatibility layer: only when a bound dial is made.
  const { default: net } = await import("node:net");
  signal?.throwIfAborted();
  const socket = net.connect({ host: target.hostname, port: target.port, localAddress: source });
  return new Promise<NetConn>((resolve, reject) => {
    const fail = (error: unknown) => {
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      // node:net says only "bind EINVAL 203.0.113.7": say which setting.
      if (error instanceof Error && (error as { syscall?: string }).syscall === "bind") {
        const variable = source.includes(":") ? "_V6" : "_V4";
        error.message = `Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS${variable} ${source}: ${
          (error as { code?: string }).code ?? error.message
        } (is it an address of this machine?)`;
      }
      reject(error);
    };
    const onAbort = () => fail(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", fail);
    socket.once("connect", () => {
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", fail);
      resolve(socketConn(socket));
    });
  });
}

function socketConn(socket: Socket): NetConn {
  const queue: Uint8Array[] = [];
  let ended = false;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  socket.on("data", (chunk: Uint8Array) => {
    queue.push(chunk);
    socket.pause();
    notify();
  });
  socket.on("end", () => {
    ended = true;
    notify();
  });
  socket.on("error", (error: Error) => {
    failed = error;
    notify();
  });
  socket.on("close", () => {
    ended = true;
    notify();
  });
  const address = (host: string | undefined, port: number | undefined): Deno.NetAddr => ({
    transport: "tcp",
    hostname: host ?? "",
    port: port ?? 0,
  });
  return {
    async read(p: Uint8Array): Promise<number | null> {
      while (queue.length === 0) {
        if (failed) throw failed;
        if (ended) return null;
        socket.resume();
        await new Promise<void>((resolve) => wake = resolve);
      }
      const head = queue[0]!;
      const n = Math.min(p.length, head.length);
      p.set(head.subarray(0, n));
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
      return n;
    },
    write(p: Uint8Array): Promise<number> {
      return new Promise((resolve, reject) => {
        socket.write(
          p.slice(),
          (error?: Error | null) => error ? reject(error) : resolve(p.length),
        );
      });
    },
    closeWrite(): Promise<void> {
      // A destroyed socket never calls end's callback: its close settles it.
      if (socket.destroyed) return Promise.resolve();
      return new Promise((resolve) => {
        socket.once("close", () => resolve());
        socket.end(() => resolve());
      });
    },
    close(): void {
      socket.destroy();
    },
    get localAddr() {
      return address(socket.localAddress, socket.localPort);
    },
    get remoteAddr() {
      return address(socket.remoteAddress, socket.remotePort);
    },
  };
}
