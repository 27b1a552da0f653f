// Copyright the ptkit authors. MIT license.

import { type Framing, lengthFraming, stunFraming } from "@ptkit/ptkit/udp";
import { DeframerStream } from "../udp/_deframer_stream.ts";
import { FramerStream } from "../udp/_framer_stream.ts";
import { toPacketStream } from "../udp/_packet_stream.ts";
import { Buffer } from "node:buffer";
import { deepStrictEqual, match, ok, rejects, strictEqual, throws } from "node:assert";

/** Feed `chunks` through a fresh deframer and collect the datagrams. */
async function deframe(
  framing: Framing,
  chunks: Uint8Array[],
  maxDatagram?: number,
): Promise<Uint8Array[]> {
  const deframer = new DeframerStream(framing, maxDatagram === undefined ? {} : { maxDatagram });
  const writer = deframer.writable.getWriter();
  const writing = (async () => {
    for (const chunk of chunks) await writer.write(chunk);
    await writer.close();
  })();
  writing.catch(() => {});
  const out = await Array.fromAsync(deframer.readable);
  await writing;
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** A deterministic pseudo-random generator (mulberry32). */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A STUN message: header with the magic cookie, then `attributes` (a multiple of 4 bytes). */
function stunMessage(type: number, attributes: Uint8Array, id = 7): Uint8Array {
  const out = new Uint8Array(20 + attributes.byteLength);
  const view = new DataView(out.buffer);
  view.setUint16(0, type);
  view.setUint16(2, attributes.byteLength);
  view.setUint32(4, 0x2112a442);
  out.fill(id, 8, 20);
  out.set(attributes, 20);
  return out;
}

function channelData(channel: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.byteLength);
  const view = new DataView(out.buffer);
  view.setUint16(0, channel);
  view.setUint16(2, data.byteLength);
  out.set(data, 4);
  return out;
}

Deno.test("lengthFraming round-trips every length 0..65,507 through a deframer", async () => {
  const random = prng(1);
  const source = new Uint8Array(65_507);
  crypto.getRandomValues(source.subarray(0, 65_536 / 2));
  crypto.getRandomValues(source.subarray(65_536 / 2));
  const deframer = new DeframerStream(lengthFraming);
  const writer = deframer.writable.getWriter();
  // Frame every length, and cut the framed bytes into chunks of random size
  // (1 byte to 128 KiB), so that headers and payloads split everywhere.
  const writing = (async () => {
    const framer = new FramerStream(lengthFraming);
    const framerWriter = framer.writable.getWriter();
    (async () => {
      for (let n = 0; n <= 65_507; n++) await framerWriter.write(source.subarray(0, n));
      await framerWriter.close();
    })();
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let cut = 1 + Math.floor(random() * 131_072);
    for await (const framed of framer.readable) {
      pending.push(framed);
      pendingBytes += framed.byteLength;
      while (pendingBytes >= cut) {
        const all = concat(pending);
        await writer.write(all.subarray(0, cut));
        pending = [all.subarray(cut)];
        pendingBytes = all.byteLength - cut;
        cut = 1 + Math.floor(random() * 131_072);
      }
    }
    if (pendingBytes > 0) await writer.write(concat(pending));
    await writer.close();
  })();
  let expected = 0;
  for await (const datagram of deframer.readable) {
    strictEqual(datagram.byteLength, expected);
    strictEqual(Buffer.compare(datagram, source.subarray(0, expected)), 0, `length ${expected}`);
    expected++;
  }
  await writing;
  strictEqual(expected, 65_508);
});

Deno.test("lengthFraming reassembles datagrams split at every pair of byte boundaries", async () => {
  const datagrams = [
    new Uint8Array([1, 2, 3]),
    new Uint8Array(0),
    new Uint8Array([9]),
    new Uint8Array(300).fill(5),
  ];
  const stream = concat(datagrams.map((d) => lengthFraming.frame(d, 65_507)));
  for (let i = 0; i <= stream.byteLength; i++) {
    for (let j = i; j <= stream.byteLength; j += 7) {
      const chunks = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
      deepStrictEqual(await deframe(lengthFraming, chunks), datagrams, `split at ${i} and ${j}`);
    }
  }
});

Deno.test("stunFraming reassembles STUN and ChannelData split at every byte boundary", async () => {
  const attributes = new Uint8Array([0x00, 0x06, 0x00, 0x03, 0x75, 0x3a, 0x70, 0x00]);
  const datagrams = [
    stunMessage(0x0001, new Uint8Array(0)), // Binding request, no attributes
    channelData(0x4000, new Uint8Array([1, 2, 3, 4, 5])), // padded to 12 on the stream
    stunMessage(0x0003, attributes, 9), // Allocate with USERNAME
    channelData(0x7fff, new Uint8Array(0)), // empty ChannelData, highest channel
    channelData(0x4001, new Uint8Array([0xaa, 0xbb, 0xcc, 0xdd])), // needs no padding
    stunMessage(0x0113, new Uint8Array(64).fill(3)),
  ];
  const stream = concat(datagrams.map((d) => stunFraming.frame(d, 65_507)));
  strictEqual(stream.byteLength, 20 + 12 + 28 + 4 + 8 + 84);
  // Every single split point, every pair of split points, and one byte at a time.
  for (let i = 0; i <= stream.byteLength; i++) {
    for (let j = i; j <= stream.byteLength; j++) {
      const chunks = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
      deepStrictEqual(await deframe(stunFraming, chunks), datagrams, `split at ${i} and ${j}`);
    }
  }
  const bytes = [...stream].map((b) => new Uint8Array([b]));
  deepStrictEqual(await deframe(stunFraming, bytes), datagrams);
});

Deno.test("stunFraming.frame pads ChannelData and strips UDP padding beyond it", () => {
  const padded = new Uint8Array([0x40, 0x02, 0x00, 0x02, 7, 8, 0, 0]);
  deepStrictEqual(stunFraming.frame(padded, 65_507), padded);
  const overPadded = new Uint8Array([0x40, 0x02, 0x00, 0x01, 7, 0, 0, 0, 0, 0, 0, 0]);
  deepStrictEqual(
    stunFraming.frame(overPadded, 65_507),
    new Uint8Array([0x40, 2, 0, 1, 7, 0, 0, 0]),
  );
});

Deno.test("stunFraming.frame refuses what is not STUN or ChannelData", () => {
  const good = stunMessage(1, new Uint8Array(4));
  throws(() => stunFraming.frame(new Uint8Array([0x80, 0, 0, 0]), 65_507), {
    name: "SyntaxError",
    message: /first byte 0x80 starts neither a STUN message nor ChannelData/,
  });
  throws(() => stunFraming.frame(new Uint8Array([0xc5, 0, 0, 0]), 65_507), SyntaxError);
  throws(() => stunFraming.frame(new Uint8Array(3), 65_507), /too short/);
  throws(() => stunFraming.frame(good.subarray(0, 19), 65_507), /shorter than a STUN header/);
  throws(() => stunFraming.frame(good.subarray(0, 22), 65_507), /length field 4 does not match/);
  const oddLength = stunMessage(1, new Uint8Array(3));
  throws(() => stunFraming.frame(oddLength, 65_507), /not a multiple of 4/);
  throws(
    () => stunFraming.frame(channelData(0x4000, new Uint8Array(5)).subarray(0, 8), 65_507),
    /ChannelData length 5 exceeds/,
  );
  throws(() => stunFraming.frame(good, 23), RangeError);
  throws(() => stunFraming.frame(channelData(0x4000, new Uint8Array(30)), 33), RangeError);
});

Deno.test("DeframerStream reports framing errors as stream errors", async () => {
  const cases: [Framing, Uint8Array[], RegExp, ErrorConstructor, number?][] = [
    [
      lengthFraming,
      [new Uint8Array([0xff, 0xff])],
      /length 65535 exceeds the maximum of 65507/,
      RangeError,
    ],
    [
      lengthFraming,
      [new Uint8Array([0x03, 0xe9])],
      /length 1001 exceeds the maximum of 1000/,
      RangeError,
      1000,
    ],
    [
      lengthFraming,
      [new Uint8Array([0, 5, 1, 2])],
      /ended inside a message \(4 bytes pending\)/,
      SyntaxError,
    ],
    [lengthFraming, [new Uint8Array([0])], /ended inside a message/, SyntaxError],
    [stunFraming, [new Uint8Array([0x80])], /ended inside a message/, SyntaxError],
    [stunFraming, [new Uint8Array([0x80, 0, 0, 0])], /first byte 0x80 starts neither/, SyntaxError],
    [
      stunFraming,
      [stunMessage(1, new Uint8Array(0)), new Uint8Array([0xff, 1, 2, 3])],
      /first byte 0xff/,
      SyntaxError,
    ],
    [
      stunFraming,
      [new Uint8Array([0, 1, 0, 2])],
      /STUN length 2 is not a multiple of 4/,
      SyntaxError,
    ],
    [
      stunFraming,
      [new Uint8Array([0x40, 0, 0xff, 0xff])],
      /ChannelData of 65539 bytes exceeds/,
      RangeError,
    ],
    [
      stunFraming,
      [new Uint8Array([0, 1, 0xff, 0xfc])],
      /message of 65552 bytes exceeds/,
      RangeError,
    ],
    [
      stunFraming,
      [channelData(0x4000, new Uint8Array(1))],
      /ended inside a message \(5 bytes pending\)/,
      SyntaxError,
    ],
  ];
  for (const [framing, chunks, message, type, max] of cases) {
    await rejects(deframe(framing, chunks, max), (error: unknown) => {
      ok(error instanceof type, `${error} should be a ${type.name}`);
      match((error as Error).message, message);
      return true;
    });
  }
});

Deno.test("DeframerStream delivers the datagrams before a framing error", async () => {
  const deframer = new DeframerStream(lengthFraming);
  const writer = deframer.writable.getWriter();
  writer.write(new Uint8Array([0, 1, 42, 0xff, 0xff])).catch(() => {});
  const reader = deframer.readable.getReader();
  deepStrictEqual((await reader.read()).value, new Uint8Array([42]));
  await rejects(reader.read(), RangeError);
  await rejects(writer.closed, RangeError);
});

Deno.test("FramerStream errors on a datagram it cannot frame, or drops it with onDrop", async () => {
  const strict = new FramerStream(stunFraming);
  const strictWriter = strict.writable.getWriter();
  strictWriter.write(new Uint8Array([1, 2, 3, 4])).catch(() => {});
  await rejects(strict.readable.getReader().read(), SyntaxError);

  const dropped: string[] = [];
  const lenient = new FramerStream(lengthFraming, {
    maxDatagram: 4,
    onDrop: (error, datagram) => dropped.push(`${error.name} ${datagram.byteLength}`),
  });
  const writer = lenient.writable.getWriter();
  writer.write(new Uint8Array(5));
  writer.write(new Uint8Array([1]));
  writer.close();
  deepStrictEqual(await Array.fromAsync(lenient.readable), [new Uint8Array([0, 1, 1])]);
  deepStrictEqual(dropped, ["RangeError 5"]);
  throws(() => new FramerStream(lengthFraming, { maxDatagram: 70_000 }), RangeError);
  throws(() => new DeframerStream(lengthFraming, { maxDatagram: -1 }), RangeError);
});

Deno.test("toPacketStream carries datagrams over a TCP connection and reports garbage without throwing", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dialed = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const accepted = await listener.accept();
  const a = toPacketStream(dialed, stunFraming);
  const b = toPacketStream(accepted, stunFraming);
  const message = stunMessage(1, new Uint8Array(8).fill(1));
  const writer = a.writable.getWriter();
  await writer.write(message);
  await writer.write(channelData(0x4000, new Uint8Array([5])));
  const reader = b.readable.getReader();
  deepStrictEqual((await reader.read()).value, message);
  deepStrictEqual((await reader.read()).value, channelData(0x4000, new Uint8Array([5])));
  // Garbage on a byte stream: that packet stream errors, nothing escapes.
  writer.releaseLock();
  const garbage = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const garbageAccepted = await listener.accept();
  const c = toPacketStream(garbageAccepted, stunFraming);
  await garbage.write(new Uint8Array([0xc0, 0, 0, 0]));
  await rejects(c.readable.getReader().read(), /first byte 0xc0/);
  garbage.close();
  await a.writable.close();
  deepStrictEqual((await reader.read()).done, true);
  await b.writable.close().catch(() => {});
});

// RFC 3489 (classic STUN) has no magic cookie: legacy SIP phones send its
// Binding requests, which main.ts turn answers; STUN mode refused them as a
// framing error, so they never reached the embedded TURN server.
Deno.test("stunFraming carries an RFC 3489 message (no magic cookie) both ways", async () => {
  const legacy = new Uint8Array(20);
  legacy.set([0x00, 0x01, 0x00, 0x00]);
  legacy.set(crypto.getRandomValues(new Uint8Array(16)), 4);
  deepStrictEqual(stunFraming.frame(legacy, 65_507), legacy);
  const deframer = new DeframerStream(stunFraming);
  const writer = deframer.writable.getWriter();
  void writer.write(legacy);
  const { value } = await deframer.readable.getReader().read();
  deepStrictEqual(value, legacy);
  await writer.close().catch(() => {});
});

Deno.test("lengthFraming.frame refuses a datagram its two-byte length cannot carry, whatever maxDatagram says, and both framings name a datagram that is not bytes", () => {
  // A 70,000-byte datagram with maxDatagram 100,000 was framed with the
  // length 70,000 & 0xffff = 4,464: the peer took 4,464 bytes as the
  // datagram and the rest as garbage frames.
  for (const n of [65_536, 70_000]) {
    throws(
      () => lengthFraming.frame(new Uint8Array(n), 100_000),
      (e: unknown) =>
        e instanceof RangeError &&
        e.message === `Cannot frame datagram: ${n} bytes exceeds the maximum of 65535`,
    );
  }
  deepStrictEqual(
    lengthFraming.frame(new Uint8Array(65_535), 100_000).subarray(0, 2),
    new Uint8Array([0xff, 0xff]),
  );
  for (const framing of [lengthFraming, stunFraming]) {
    for (
      const [bad, got] of [
        ["abc", "string (3 characters)"],
        [null, "null"],
        [[1, 2, 3, 4], "Array (4 items)"],
      ] as const
    ) {
      throws(
        () => framing.frame(bad as unknown as Uint8Array, 65_507),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message === `Cannot frame datagram: expected a Uint8Array, got ${got}`,
        `${framing.name} ${got}`,
      );
    }
  }
});
