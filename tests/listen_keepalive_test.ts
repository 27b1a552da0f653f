// Copyright the ptkit authors. MIT license.
// TCP keepalive set on listening sockets through libc (net/_libc.ts
// setListenKeepAlive, what listen() does for obfs4): every listener sharing
// a port in one process (reusePort, as Web Workers would) gets it, so every
// accepted socket carries it.

import { ok, strictEqual } from "node:assert";
import { openLibc, setConnectionKeepAlive, setListenKeepAlive } from "../net/_libc.ts";
import { clientTimerTo } from "./_util.ts";

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

Deno.test("setConnectionKeepAlive finds a dialed socket below and above the descriptor it found last (its search starts there)", async () => {
  if (openLibc() === null) throw new Error("libc could not be opened");
  const listeners = Array.from(
    { length: 5 },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const open: Deno.Conn[] = [];
  const dial = async (i: number) => {
    const port = (listeners[i]!.addr as Deno.NetAddr).port;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    open.push(conn, await listeners[i]!.accept());
    return conn;
  };
  const arm = (conn: Deno.Conn) =>
    ok(setConnectionKeepAlive(conn.localAddr as Deno.NetAddr, conn.remoteAddr as Deno.NetAddr, 15));
  const armed = async (i: number) =>
    strictEqual((await clientTimerTo((listeners[i]!.addr as Deno.NetAddr).port))[0]?.timer, 2);
  try {
    const a = await dial(0);
    const b = await dial(1);
    const c = await dial(2);
    // The search now starts at c's descriptor.
    arm(c);
    await armed(2);
    // a's and b's descriptors are free again: the next dials take them,
    // below c's.
    for (const conn of [a, b]) conn.close();
    const d = await dial(3);
    arm(d);
    await armed(3);
    // And one above d's again (c's neighbours are taken).
    const e = await dial(4);
    arm(e);
    await armed(4);
  } finally {
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // Closed above.
      }
    }
    for (const listener of listeners) listener.close();
  }
});
