// Copyright the ptkit authors. MIT license.

// Child of obfs4_keypair_worker_test.ts: a connection made before its obfs4
// server side closed, whose pair waits for the side's crypto backend,
// completes its handshake after close(); then everything is closed, and the
// process must end on its own. Prints "still running" and exits with 3 when
// something (a key pair worker) keeps it alive.

import { createObfs4, obfs4 } from "../transports/obfs4/mod.ts";

const generated = JSON.parse(Deno.args[0]!);
// With the key pair worker (not the default), whose thread would keep the process running.
const server = await createObfs4({ keyPairWorker: true }).server(generated.server);
const client = await obfs4.client(generated.client);
const s = server.pair(); // The side's backend is not loaded yet.
server.close!(); // The listener closes; the connection goes on.
const c = client.pair({});
const up = c.encode.readable.pipeTo(s.decode.writable);
const down = s.encode.readable.pipeTo(c.decode.writable);
await Promise.all([c.ready, s.ready]);
await c.encode.writable.close();
await s.encode.writable.close();
await Promise.all([up, down]);
client.close!();
// Fires only while something else keeps the event loop running.
Deno.unrefTimer(setTimeout(() => {
  console.log("still running");
  Deno.exit(3);
}, 5_000));
