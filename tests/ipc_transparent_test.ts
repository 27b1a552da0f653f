// Copyright the ptkit authors. MIT license.
// transparent-TCP client mode, configured by flags alone, and SOCKS5 CONNECT
// to an IPv6 destination.

import { deepStrictEqual } from "node:assert";
import { proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { ECHO_MAIN, PtProcess, readN, requireBinary } from "./ipc_util.ts";

Deno.test("main.ts transparent-TCP relays curl to a page through plain and a ptkit proxy", async () => {
  const curl = requireBinary("curl", "curl");
  const state = await Deno.makeTempDir();
  const page = "transparent\n".repeat(500);
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(page),
  );
  await using bridge = await proxy(plain, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: { hostname: "127.0.0.1", port: http.addr.port },
  });
  await using pt = new PtProcess([
    "-client",
    "-transports",
    "plain",
    "-mode",
    "transparent-TCP",
    "-proxylistenaddr",
    "127.0.0.1:0",
    "-target",
    `127.0.0.1:${bridge.addr.port}`,
    "-state",
    state,
    "-exit-on-stdin-close",
  ], {});
  const front = await pt.cmethod("plain", "transparent-TCP");
  for (let i = 0; i < 3; i++) {
    const result = await new Deno.Command(curl, {
      args: ["-sS", "--max-time", "20", `http://127.0.0.1:${front.port}/`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    deepStrictEqual(new TextDecoder().decode(result.stderr), "");
    deepStrictEqual(new TextDecoder().decode(result.stdout), page);
  }
  deepStrictEqual(bridge.stats().connectionsAccepted, 3);
  await pt.closeStdin();
  deepStrictEqual((await pt.exit()).code, 0);
  await http.shutdown();
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts transparent-TCP gives -options to the transport (tor form and JSON)", async () => {
  const state = await Deno.makeTempDir();
  using target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  for (
    const options of ["echo:cert=a\\;b;echo:iat-mode=1", '{"echo":{"cert":"a;b","iat-mode":1}}']
  ) {
    await using pt = new PtProcess(
      [
        "-transports",
        "echo",
        "-mode",
        "transparent-TCP",
        "-target",
        `127.0.0.1:${target.addr.port}`,
        "-options",
        options,
        "-state",
        state,
        "-exit-on-stdin-close",
      ],
      {},
      { program: ECHO_MAIN },
    );
    const front = await pt.cmethod("echo", "transparent-TCP");
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: front.port });
    using peer = await target.accept();
    // Instance 2: the first configuration is main.ts's check at start (the
    // transparent modes take no per-connection arguments, so -options is
    // checked whole); the connector made after it serves every connection.
    const expected = JSON.stringify({ config: { cert: "a;b", "iat-mode": "1" }, instance: 2 });
    const line = new TextDecoder().decode(await readN(conn, expected.length + 1));
    deepStrictEqual(line, expected + "\n");
    await conn.write(new Uint8Array([42]));
    deepStrictEqual(await readN(peer, 1), new Uint8Array([42]));
    await pt.closeStdin();
    deepStrictEqual((await pt.exit()).code, 0);
  }
  await Deno.remove(state, { recursive: true });
});

Deno.test("main.ts SOCKS5 CONNECT reaches an IPv6 destination", async () => {
  const state = await Deno.makeTempDir();
  using service = Deno.listen({ hostname: "::1", port: 0 });
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  });
  const socks = await pt.cmethod("plain");
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: socks.port });
  await conn.write(new Uint8Array([5, 1, 0]));
  deepStrictEqual(await readN(conn, 2), new Uint8Array([5, 0]));
  const p = service.addr.port;
  await conn.write(
    new Uint8Array([5, 1, 0, 4, ...new Array(15).fill(0), 1, p >> 8, p & 255]),
  );
  using peer = await service.accept();
  deepStrictEqual((await readN(conn, 10))[1], 0);
  await peer.write(new Uint8Array([6]));
  deepStrictEqual(await readN(conn, 1), new Uint8Array([6]));
  await pt.closeStdin();
  deepStrictEqual((await pt.exit()).code, 0);
  await Deno.remove(state, { recursive: true });
});
