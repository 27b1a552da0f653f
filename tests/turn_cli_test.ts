// Copyright the ptkit authors. MIT license.

// The standalone TURN server's peer policy from the command line: loopback
// peers are refused unless --allow-loopback-peers is given; private ones
// always.

import dgram from "node:dgram";
import { ok, strictEqual } from "node:assert";
import type { StunAddress } from "../udp/stun/_message.ts";
import { StunMethod } from "../udp/stun/_constants.ts";
import { startTurnCli } from "./turn_util.ts";
import { errorCode, Queue, StunTestClient } from "./turn_test_client.ts";

/** The answer to a CreatePermission for each peer, from a fresh allocation. */
async function permissionCodes(port: number, peers: StunAddress[]): Promise<number[]> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    const inbox = new Queue<Uint8Array>();
    socket.on("message", (msg: Uint8Array) => inbox.push(new Uint8Array(msg)));
    const c = new StunTestClient({ inbox, send: (b) => socket.send(b, port, "127.0.0.1") });
    strictEqual(errorCode(await c.allocate()), 0);
    const codes: number[] = [];
    for (const peer of peers) {
      codes.push(errorCode(await c.withPeer(StunMethod.CreatePermission, peer)));
    }
    return codes;
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

const PEERS: StunAddress[] = [
  { family: 4, address: "127.0.0.1", port: 9 },
  { family: 4, address: "10.0.0.1", port: 9 },
  { family: 4, address: "8.8.8.8", port: 9 },
];

for (
  const [flags, expected] of [[[], [403, 403, 0]], [["--allow-loopback-peers"], [
    0,
    403,
    0,
  ]]] as const
) {
  Deno.test(`turn CLI ${flags.join(" ") || "without flags"}: CreatePermission to loopback, private and public peers answers ${expected.join(", ")}`, async () => {
    const { child, port } = await startTurnCli([
      ...["--listen", "127.0.0.1:0", "--user", "u:p", "--realm", "pt.test"],
      ...flags,
    ]);
    try {
      const codes = await permissionCodes(port, PEERS);
      ok(codes.length === 3);
      strictEqual(codes.join(","), expected.join(","));
    } finally {
      child.kill("SIGTERM");
      strictEqual((await child.status).code, 0);
    }
  });
}
