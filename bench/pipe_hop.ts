// Copyright the ptkit authors. MIT license.
// A raw relay hop in its own process (the baseline for hops ptkit runs as a
// separate process): listens on a free loopback port, prints it, and pipes
// every connection both ways to 127.0.0.1:<target port> with `pipeTo`.

const target = Number(Deno.args[0]);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(listener.addr.port);
for await (const conn of listener) {
  (async () => {
    const out = await Deno.connect({ hostname: "127.0.0.1", port: target });
    await Promise.allSettled([
      conn.readable.pipeTo(out.writable),
      out.readable.pipeTo(conn.writable),
    ]);
  })().catch(() => {});
}
