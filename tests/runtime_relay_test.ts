// Copyright the ptkit authors. MIT license.
// relay() over real loopback sockets: how a peer leaves decides whether the
// relay ends normally or with the peer's error.

import { ok, rejects, strictEqual } from "node:assert";
import { relay } from "../net/relay.ts";

/** Two connected socket pairs: `left`↔`leftPeer` and `right`↔`rightPeer`. */
async function twoPairs() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const left = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const leftPeer = await listener.accept();
  const right = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const rightPeer = await listener.accept();
  listener.close();
  return { left, leftPeer, right, rightPeer };
}

/** Write 64 KiB chunks until a write fails; returns how many bytes went. */
async function writeUntilFailure(conn: Deno.Conn): Promise<number> {
  const chunk = new Uint8Array(65536).fill(7);
  let sent = 0;
  try {
    for (;;) sent += await conn.write(chunk);
  } catch {
    return sent;
  }
}

Deno.test("relay ends normally when a peer closes its socket after its end of stream", async () => {
  const { left, leftPeer, right, rightPeer } = await twoPairs();
  const done = relay(leftPeer, rightPeer);
  await left.write(new TextEncoder().encode("hi"));
  // A full close, not a half-close: data the relay still forwards to `left`
  // meets a reset, and later writes a broken pipe.
  left.close();
  const writing = writeUntilFailure(right);
  const result = await done;
  strictEqual(result.aToB, 2);
  ok(result.bToA >= 0);
  await writing;
  right.close();
});

/** A stream end whose writes fail with `writeError`; its readable ends at once or never. */
function failingEnd(writeError: Error, ended: boolean) {
  return {
    readable: new ReadableStream<Uint8Array>({
      start: (controller) => ended ? controller.close() : undefined,
    }),
    writable: new WritableStream<Uint8Array>({
      write: () => Promise.reject(writeError),
    }),
    close() {},
  };
}

for (
  const [what, error, ended] of [
    ["a broken pipe from a peer that never sent its end of stream", "BrokenPipe", false],
    ["any other write error, even after the peer's end of stream", "TypeError", true],
  ] as const
) {
  Deno.test(`relay rejects with ${what}`, async () => {
    const { left, leftPeer, right, rightPeer } = await twoPairs();
    left.close();
    leftPeer.close();
    const writeError = error === "BrokenPipe"
      ? new Deno.errors.BrokenPipe("Broken pipe (os error 32)")
      : new TypeError("Cannot write: not a chunk");
    const done = relay(failingEnd(writeError, ended), rightPeer);
    const writing = writeUntilFailure(right);
    await rejects(done, (reason: unknown) => reason === writeError);
    await writing;
    right.close();
  });
}
