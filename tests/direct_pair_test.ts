// Copyright the ptkit authors. MIT license.

// DirectTransform (transports/_direct_pair.ts) runs a transformer without
// Web Streams for the runtime's own connections (obfs4): each case below
// runs the same transformer through a TransformStream of the same
// strategy and through a DirectTransform, and what a reader and a writer
// see must be the same.

import { deepStrictEqual } from "node:assert";
import { DirectTransform, transformStreamOf } from "../transports/_direct_pair.ts";

interface Ends {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(reason?: unknown): Promise<void>;
  readonly ready: Promise<void>;
}

type Make = (transformer: Transformer<Uint8Array, Uint8Array>, highWaterMark: number) => Ends;

const viaStream: Make = (transformer, highWaterMark) => {
  const stream = new TransformStream(transformer, undefined, { highWaterMark });
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  return {
    read: () => reader.read(),
    cancel: (reason) => reader.cancel(reason),
    write: (chunk) => writer.write(chunk),
    close: () => writer.close(),
    abort: (reason) => writer.abort(reason),
    get ready() {
      return writer.ready;
    },
  };
};

const viaDirect: Make = (transformer, highWaterMark) =>
  new DirectTransform(transformer, highWaterMark);

/** The same direct transform seen through the streams a pair's users get. */
const viaAdapter: Make = (transformer, highWaterMark) => {
  const stream = transformStreamOf(new DirectTransform(transformer, highWaterMark));
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  return {
    read: () => reader.read(),
    cancel: (reason) => reader.cancel(reason),
    write: (chunk) => writer.write(chunk),
    close: () => writer.close(),
    abort: (reason) => writer.abort(reason),
    get ready() {
      return writer.ready;
    },
  };
};

const settle = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    (value) => `ok ${describe(value)}`,
    (error) => `error ${error instanceof Error ? error.message : String(error)}`,
  );

function describe(value: unknown): string {
  if (value === undefined) return "";
  const { value: chunk, done } = value as ReadableStreamReadResult<Uint8Array>;
  return done ? "done" : `[${[...chunk!].join(",")}]`;
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setTimeout(resolve, 0));
};

/** Run `scenario` both ways and compare what it records. */
async function same(
  scenario: (make: Make, log: string[]) => Promise<void>,
  makers: Make[] = [viaDirect, viaAdapter],
): Promise<void> {
  const expected: string[] = [];
  await scenario(viaStream, expected);
  for (const make of makers) {
    const got: string[] = [];
    await scenario(make, got);
    deepStrictEqual(got, expected);
  }
}

const twice: Transformer<Uint8Array, Uint8Array> = {
  transform: (chunk, controller) => {
    controller.enqueue(chunk);
    controller.enqueue(chunk.map((b) => b + 1));
  },
  flush: (controller) => controller.enqueue(new Uint8Array([99])),
};

Deno.test("DirectTransform passes chunks, flushes at close and ends reads as a TransformStream does", async () => {
  for (const highWaterMark of [0, 1]) {
    await same(async (make, log) => {
      const t = make(twice, highWaterMark);
      const writes = [t.write(new Uint8Array([1])), t.write(new Uint8Array([5]))];
      const closing = t.close();
      for (let i = 0; i < 6; i++) log.push(await settle(t.read()));
      log.push(...await Promise.all([...writes, closing].map(settle)));
    });
  }
});

Deno.test("DirectTransform: a transform that throws ends both sides with its error", async () => {
  await same(async (make, log) => {
    const t = make({
      transform: (chunk, controller) => {
        if (chunk[0] === 2) throw new Error("bad chunk");
        controller.enqueue(chunk);
      },
    }, 1);
    log.push(await settle(t.write(new Uint8Array([1]))));
    log.push(await settle(t.read()));
    log.push(await settle(t.write(new Uint8Array([2]))));
    log.push(await settle(t.read()));
    log.push(await settle(t.write(new Uint8Array([3]))));
    log.push(await settle(t.ready));
    log.push(await settle(t.close()));
  });
});

Deno.test("DirectTransform: controller.error() from outside rejects a waiting read and later writes", async () => {
  await same(async (make, log) => {
    let controller!: TransformStreamDefaultController<Uint8Array>;
    const t = make({
      start: (c) => {
        controller = c;
      },
      transform: (chunk, c) => c.enqueue(chunk),
    }, 1);
    const reading = settle(t.read());
    await turns();
    log.push(String(controller.desiredSize));
    controller.error(new Error("gone"));
    log.push(String(controller.desiredSize));
    log.push(await reading);
    log.push(await settle(t.write(new Uint8Array([1]))));
  });
});

Deno.test("DirectTransform: with a high-water mark of 0, a transform waits for a read; with 1, for an empty queue", async () => {
  for (const highWaterMark of [0, 1]) {
    await same(async (make, log) => {
      const t = make({
        transform: (chunk, controller) => {
          log.push(`transform ${chunk[0]}`);
          controller.enqueue(chunk);
        },
      }, highWaterMark);
      const first = t.write(new Uint8Array([1]));
      const second = t.write(new Uint8Array([2]));
      await turns();
      log.push("reading");
      log.push(await settle(t.read()));
      await turns();
      log.push(await settle(t.read()));
      await turns();
      log.push(...await Promise.all([first, second].map(settle)));
    });
  }
});

Deno.test("DirectTransform: cancel and abort run the transformer's cancel and end the other side with the reason", async () => {
  for (const end of ["cancel", "abort"] as const) {
    await same(async (make, log) => {
      const t = make({
        transform: (chunk, controller) => controller.enqueue(chunk),
        cancel: (reason) => void log.push(`cancel ${(reason as Error).message}`),
      }, 1);
      log.push(await settle(t.write(new Uint8Array([1]))));
      log.push(await settle(t[end](new Error("stop"))));
      await turns();
      log.push(await settle(t.write(new Uint8Array([2]))));
      if (end === "abort") log.push(await settle(t.read()));
    }, end === "cancel" ? [viaDirect] : [viaDirect, viaAdapter]);
  }
});

Deno.test("DirectTransform: writes wait for a start that returns a promise", async () => {
  await same(async (make, log) => {
    let begin!: () => void;
    const t = make({
      start: (controller) =>
        new Promise<void>((resolve) => {
          begin = () => {
            controller.enqueue(new Uint8Array([0]));
            resolve();
          };
        }),
      transform: (chunk, controller) => {
        log.push(`transform ${chunk[0]}`);
        controller.enqueue(chunk);
      },
    }, 1);
    const writing = t.write(new Uint8Array([1]));
    await turns();
    log.push("starting");
    begin();
    await turns();
    // The queue is full (the start's chunk): the transform waits for a read.
    log.push("started");
    const first = settle(t.read());
    await turns();
    const second = settle(t.read());
    log.push(await first, await second, await settle(writing));
  });
});
