// Copyright the ptkit authors. MIT license.

// Which client a connection counts against in the per-source limits (the
// listener, the UDP server pool's flows, the TURN target's allocations): a
// reported client (X-Forwarded-For) is believed only from a front server on
// loopback.

import { deepStrictEqual, strictEqual } from "node:assert";
import { reportedSource } from "../net/_client_source.ts";

const at = (hostname: string): Deno.NetAddr => ({ transport: "tcp", hostname, port: 40000 });
const client = { hostname: "203.0.113.7", port: 50000 };

Deno.test("reportedSource believes a reported client only from a loopback peer", () => {
  deepStrictEqual(reportedSource({ remoteAddr: at("127.0.0.1"), clientAddress: client }), {
    transport: "tcp",
    ...client,
  });
  deepStrictEqual(reportedSource({ remoteAddr: at("::1"), clientAddress: client }), {
    transport: "tcp",
    ...client,
  });
  // Anyone else could name a new client on each connection (red team,
  // round 8: one address took every UDP flow by forging X-Forwarded-For).
  for (const peer of ["192.0.2.2", "10.1.2.3", "2001:db8::1", "localhost"]) {
    strictEqual(reportedSource({ remoteAddr: at(peer), clientAddress: client }), undefined, peer);
  }
  strictEqual(reportedSource({ remoteAddr: at("127.0.0.1"), clientAddress: undefined }), undefined);
  strictEqual(
    reportedSource({ remoteAddr: { transport: "unix", path: "/x" }, clientAddress: client }),
    undefined,
  );
});
