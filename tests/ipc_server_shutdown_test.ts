// Copyright the ptkit authors. MIT license.
// The server side ends by the same rules as the client side: stdin close
// (with TOR_PT_EXIT_ON_STDIN_CLOSE=1) and SIGTERM exit 0 at once, closing
// open connections; SIGINT stops accepting and waits for open ones.

import { deepStrictEqual, rejects } from "node:assert";
import { PtProcess, readAll, readN } from "./ipc_util.ts";

async function start(dir: string, orPort: number, exitOnStdinClose: string) {
  const pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_SERVER_TRANSPORTS: "plain",
    TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
    TOR_PT_ORPORT: `127.0.0.1:${orPort}`,
    TOR_PT_STATE_LOCATION: dir,
    TOR_PT_EXIT_ON_STDIN_CLOSE: exitOnStdinClose,
  });
  const line = await pt.waitFor(/^SMETHOD plain /);
  await pt.waitFor(/^SMETHODS DONE$/);
  return { pt, port: Number(line.split(" ")[2]!.split(":")[1]) };
}

async function relayed(port: number, service: Deno.Listener) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new Uint8Array([1]));
  const peer = await service.accept();
  deepStrictEqual(await readN(peer, 1), new Uint8Array([1]));
  return { conn, peer };
}

for (const [how, exitOnStdinClose] of [["stdin close", "1"], ["SIGTERM", "0"]] as const) {
  Deno.test(`main.ts server exits 0 on ${how} and closes open connections`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "ptkit_srvstop_" });
    using service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { pt, port } = await start(dir, service.addr.port, exitOnStdinClose);
    await using _ = pt;
    const { conn, peer } = await relayed(port, service);
    if (how === "stdin close") await pt.closeStdin();
    else pt.child.kill("SIGTERM");
    const { code, stderr } = await pt.exit();
    deepStrictEqual([code, stderr], [0, ""]);
    deepStrictEqual(await readAll(conn), new Uint8Array(0));
    conn.close();
    peer.close();
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("main.ts server drains on SIGINT: open connections go on, then it exits 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_srvstop_" });
  using service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { pt, port } = await start(dir, service.addr.port, "0");
  await using _ = pt;
  const { conn, peer } = await relayed(port, service);
  pt.child.kill("SIGINT");
  await pt.waitFor(/^LOG SEVERITY=notice MESSAGE="SIGINT: no new connections/);
  // A new client is refused, or (if it raced the listener's close in the
  // kernel's backlog) reset or hung up on without ever reaching the service.
  try {
    using late = await Deno.connect({ hostname: "127.0.0.1", port });
    deepStrictEqual(await late.read(new Uint8Array(1)).catch(() => null), null);
  } catch (error) {
    deepStrictEqual(
      error instanceof Deno.errors.ConnectionRefused ||
        error instanceof Deno.errors.ConnectionReset,
      true,
      String(error),
    );
  }
  await rejects(Deno.connect({ hostname: "127.0.0.1", port }), Deno.errors.ConnectionRefused);
  // The open one still relays both ways.
  await peer.write(new Uint8Array([2]));
  deepStrictEqual(await readN(conn, 1), new Uint8Array([2]));
  conn.close();
  peer.close();
  const { code, stderr } = await pt.exit();
  deepStrictEqual([code, stderr], [0, ""]);
  await Deno.remove(dir, { recursive: true });
});
