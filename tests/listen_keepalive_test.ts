// Copyright the ptkit authors. MIT license.
// TCP keepalive set on listening sockets through libc (net/_libc.ts
// setListenKeepAlive, what listen() does for obfs4): every listener sharing
// a port in one process (reusePort, as Web Workers would) gets it, so every
// accepted socket carries it.

import { ok, strictEqual } from "node:assert";
import { openLibc, setListenKeepAlive } from "../net/_libc.ts";

/** The kernel timer (`tr`) of each server socket on `port` (/proc/net/tcp), by client port. */
async function serverTimers(port: number): Promise<Map<number, number>> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const timers = new Map<number, number>();
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    // State 01: established; the local end is the server's port.
    if (fields[1]?.endsWith(hex) && fields[3] === "01") {
      timers.set(parseInt(fields[2]!.split(":")[1]!, 16), Number(fields[5]!.split(":")[0]));
    }
  }
  return timers;
}

Deno.test("setListenKeepAlive: two listeners sharing a port in one process (reusePort) both get keepalive, so every accepted socket has it", async () => {
  ok(openLibc() !== null, "libc through FFI is needed (run with --allow-ffi on Linux)");
  const first = Deno.listen({ hostname: "127.0.0.1", port: 0, reusePort: true });
  const port = first.addr.port;
  const second = Deno.listen({ hostname: "127.0.0.1", port, reusePort: true });
  const clients: Deno.TcpConn[] = [];
  const accepted: Deno.TcpConn[] = [];
  try {
    ok(setListenKeepAlive(first.addr, 15));
    ok(setListenKeepAlive(second.addr, 15));
    // The kernel spreads connections over both listeners by their ports'
    // hash: 32 land on both (all on one: a chance of 2^-31).
    const COUNT = 32;
    const accepting = [first, second].map(async (listener) => {
      for await (const conn of listener) accepted.push(conn);
    });
    for (let i = 0; i < COUNT; i++) {
      clients.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    const timers = await serverTimers(port);
    strictEqual(timers.size, COUNT);
    const without = clients.filter((c) => timers.get(c.localAddr.port) !== 2).length;
    strictEqual(without, 0, `${without} of ${COUNT} accepted sockets have no keepalive timer`);
    first.close();
    second.close();
    await Promise.allSettled(accepting);
  } finally {
    for (const conn of [...clients, ...accepted]) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    for (const listener of [first, second]) {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
    }
  }
});
