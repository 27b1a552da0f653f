// Copyright the ptkit authors. MIT license.
// A raw relay hop with the platform's own `pipeTo`, both ways: the baseline
// ptkit's hops are measured against. Run as a script it is a hop in its own
// process: it prints its port and relays to 127.0.0.1:<first argument>.

/** Listen on a free loopback port and pipe every connection to `targetPort`. */
export function pipeToHop(targetPort: number): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const out = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        await Promise.allSettled([
          conn.readable.pipeTo(out.writable),
          out.readable.pipeTo(conn.writable),
        ]);
      })().catch(() => {});
    }
  })().catch(() => {});
  return { port: listener.addr.port, close: () => listener.close() };
}

if (import.meta.main) {
  console.log(pipeToHop(Number(Deno.args[0])).port);
}
