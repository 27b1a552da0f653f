// Copyright the ptkit authors. MIT license.
// Child of tests/ipc_stdout_batch_test.ts: after CMETHODS DONE (stdout's
// queue goes asynchronous), write STATUS lines faster than one write takes,
// then flush and exit.

import { flushStdout, IpcOutput } from "../ipc/lines/_output.ts";

const count = Number(Deno.args[0]);
const output = new IpcOutput();
output.write({ type: "VERSION", version: "1" });
output.write({ type: "CMETHODS-DONE" });
for (let i = 0; i < count; i++) {
  output.write({
    type: "STATUS",
    transport: "obfs4",
    fields: { ADDRESS: `192.0.2.${i % 250}:${1000 + i}`, CONNECT: "Success" },
  });
  // Some in bursts, some a task apart.
  if (i % 97 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
}
await flushStdout(10_000);
