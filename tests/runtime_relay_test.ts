// Copyright the ptkit authors. MIT license.
// relay() over real loopback sockets: how a peer leaves decides whether the
// relay ends normally or with the peer's error.

import { ok, rejects, strictEqual } from "node:assert";
import { relay } from "../net/relay.ts";
import { listen } from "../server.ts";
import { plain } from "../transports/plain.ts";

/** Two connected socket pairs: `left`↔`leftPeer` and `right`↔`rightPeer`. */
async function twoPairs(): Promise<
  { left: Deno.Conn; leftPeer: Deno.Conn; right: Deno.Conn; rightPeer: Deno.Conn }
> {
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

Deno.test("relay ends normally when a transport connection's peer leaves outright while the other end is still sending", async () => {
  // The client sends its end of stream and closes its socket; the other end
  // then sends a little more and its own end of stream. The transport
  // connection's socket write fails first (reset, broken pipe) and errors
  // its encoder; closing it afterwards must report that peer-left error,
  // not the bare "closed or errored" TypeError a Web stream gives.
  await using listener = await listen(plain, {}, { hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const accepted = listener.accept();
  const { right, rightPeer } = await twoPairs();
  const conn = await accepted;
  await conn.ready;
  const done = relay(conn, rightPeer);
  await client.write(new TextEncoder().encode("hi"));
  client.close();
  const chunk = new Uint8Array(1024).fill(1);
  const sleep = () => new Promise((resolve) => setTimeout(resolve, 50));
  // The first chunk reaches the closed client, which answers with a reset;
  // the second is taken by the encoder and fails at the socket, erroring the
  // encoder after the relay's last write succeeded; then the end of stream.
  await sleep();
  await right.write(chunk);
  await sleep();
  await right.write(chunk);
  await sleep();
  await right.closeWrite().catch(() => {});
  const result = await done;
  strictEqual(result.aToB, 2);
  right.close();
});

Deno.test("relay refuses an end that is neither a connection nor streams, with a TypeError naming which, before touching the other", async () => {
  const { left, leftPeer, right, rightPeer } = await twoPairs();
  const streams = { readable: new ReadableStream(), writable: new WritableStream(), close() {} };
  for (
    const [a, b, message] of [
      [{}, leftPeer, /^Cannot relay: end a must be a connection .* got Object$/],
      [leftPeer, { read: () => {}, close() {} }, /^Cannot relay: end b must be .* got Object$/],
      [leftPeer, null, /^Cannot relay: end b must be .* got null$/],
      [{ readable: {}, writable: {}, close() {} }, streams, /^Cannot relay: end a must be /],
    ] as const
  ) {
    await rejects(
      relay(a as unknown as Deno.Conn, b as unknown as Deno.Conn),
      (error: unknown) => error instanceof TypeError && message.test(error.message),
    );
  }
  // Nothing was read or closed: the streams are not locked, the sockets still carry bytes.
  ok(!streams.readable.locked && !streams.writable.locked);
  const done = relay(leftPeer, rightPeer);
  await left.write(new Uint8Array([1, 2]));
  await left.closeWrite();
  const buffer = new Uint8Array(4);
  strictEqual(await right.read(buffer), 2);
  await right.closeWrite();
  strictEqual(await left.read(buffer), null);
  strictEqual((await done).aToB, 2);
  left.close();
  right.close();
});

Deno.test("relay refuses one connection given as both ends, and an end whose stream a reader or writer holds, with a TypeError saying so, before touching either", async () => {
  // JavaScript's 'ReadableStream is locked' before, with end a's stream
  // already taken.
  const { left, leftPeer, right, rightPeer } = await twoPairs();
  await rejects(
    relay(leftPeer, leftPeer),
    (error: unknown) =>
      error instanceof TypeError &&
      error.message === "Cannot relay: ends a and b are the same connection",
  );
  const free = { readable: new ReadableStream(), writable: new WritableStream(), close() {} };
  const held = { readable: new ReadableStream(), writable: new WritableStream(), close() {} };
  const reader = held.readable.getReader();
  await rejects(
    relay(free, held),
    (error: unknown) =>
      error instanceof TypeError &&
      error.message ===
        "Cannot relay: end b's readable is locked (a reader holds it: release it first)",
  );
  reader.releaseLock();
  const writer = held.writable.getWriter();
  await rejects(
    relay(held, free),
    (error: unknown) =>
      error instanceof TypeError &&
      error.message ===
        "Cannot relay: end a's writable is locked (a writer holds it: release it first)",
  );
  writer.releaseLock();
  ok(!free.readable.locked && !free.writable.locked);
  // The sockets still carry bytes.
  const done = relay(leftPeer, rightPeer);
  await left.write(new Uint8Array([1]));
  await left.closeWrite();
  strictEqual(await right.read(new Uint8Array(2)), 1);
  await right.closeWrite();
  strictEqual(await left.read(new Uint8Array(2)), null);
  strictEqual((await done).aToB, 1);
  left.close();
  right.close();
});

Deno.test("relay refuses options that are not an object and a signal that is not an AbortSignal before it touches either end", async () => {
  // They failed with JavaScript's 'signal?.addEventListener is not a
  // function' (after both ends were wrapped) and 'Cannot destructure
  // property 'signal' of 'options' as it is null'.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using left = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const leftPeer = await listener.accept();
  using right = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const rightPeer = await listener.accept();
  await left.write(new Uint8Array([1, 2, 3]));
  for (
    const [options, message] of [
      [{ signal: "stop" }, "Cannot relay: signal must be an AbortSignal, got string"],
      [null, "Cannot relay: options must be an object, got null"],
    ] as const
  ) {
    await rejects(
      relay(leftPeer, rightPeer, options as unknown as { signal?: AbortSignal }),
      (e: unknown) => e instanceof TypeError && e.message === message,
    );
  }
  // Neither end was read or closed: the bytes written before still cross.
  const done = relay(leftPeer, rightPeer);
  const buffer = new Uint8Array(8);
  strictEqual(await right.read(buffer), 3);
  await left.closeWrite();
  await right.closeWrite();
  strictEqual(await left.read(buffer), null);
  strictEqual((await done).aToB, 3);
});
