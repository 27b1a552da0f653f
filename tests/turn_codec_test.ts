// Copyright the ptkit authors. MIT license.

import { DeframerStream } from "../udp/_deframer_stream.ts";
import { stunFraming } from "../udp/stun/framing.ts";
import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import { crc32, longTermKey, verifyFingerprint, verifyIntegrity } from "../udp/stun/_integrity.ts";
import {
  decodeErrorCode,
  decodeXorAddress,
  encodeErrorCode,
  encodeXorAddress,
} from "../udp/stun/_attributes.ts";
import { encodeChannelData, parseChannelData } from "../udp/stun/_channel_data.ts";
import { encodeStunMessage, getAttribute, parseStunMessage } from "../udp/stun/_message.ts";
import { StunAttr, StunClass, StunMethod } from "../udp/stun/_constants.ts";
import { formatIp, parseIp } from "../net/_ip_address.ts";

function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

// RFC 5769 section 2.2 sample IPv4 response.
const RFC5769_RESPONSE = hex(`
  0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220
  002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7
  80280004c07d4c96`);
const RFC5769_PASSWORD = new TextEncoder().encode("VOkJxbRl1RmTxUk/WvJxBt");

Deno.test("decodeXorAddress reads the RFC 5769 IPv4 response", () => {
  const message = parseStunMessage(RFC5769_RESPONSE);
  strictEqual(message.class, StunClass.SuccessResponse);
  const mapped = getAttribute(message, StunAttr.XorMappedAddress)!;
  deepStrictEqual(decodeXorAddress(mapped, message.transactionId), {
    family: 4,
    address: "192.0.2.1",
    port: 32853,
  });
  ok(verifyIntegrity(message, RFC5769_PASSWORD));
  ok(verifyFingerprint(message));
  ok(!verifyIntegrity(message, new TextEncoder().encode("wrong")));
});

Deno.test("encodeStunMessage output passes its own integrity and fingerprint checks", () => {
  const key = longTermKey("u", "r", "p");
  const bytes = encodeStunMessage({
    method: StunMethod.Allocate,
    class: StunClass.Request,
    transactionId: crypto.getRandomValues(new Uint8Array(12)),
    attributes: [{ type: StunAttr.Username, value: new TextEncoder().encode("u") }],
  }, { integrityKey: key, fingerprint: true });
  const message = parseStunMessage(bytes);
  ok(verifyIntegrity(message, key));
  ok(verifyFingerprint(message));
  ok(!verifyIntegrity(message, longTermKey("u", "r", "q")));
  bytes[25]! ^= 1;
  const tampered = parseStunMessage(bytes);
  ok(!verifyIntegrity(tampered, key));
  ok(!verifyFingerprint(tampered));
});

Deno.test("encodeStunMessage sets method and class bits in the message type", () => {
  const tid = new Uint8Array(12);
  const type = (method: number, cls: 0 | 1 | 2 | 3) => {
    const bytes = encodeStunMessage({ method, class: cls, transactionId: tid, attributes: [] });
    return (bytes[0]! << 8) | bytes[1]!;
  };
  strictEqual(type(StunMethod.Allocate, 0), 0x0003);
  strictEqual(type(StunMethod.Allocate, 2), 0x0103);
  strictEqual(type(StunMethod.Allocate, 3), 0x0113);
  strictEqual(type(StunMethod.Send, 1), 0x0016);
  strictEqual(type(StunMethod.Data, 1), 0x0017);
  strictEqual(type(StunMethod.ChannelBind, 2), 0x0109);
  for (const method of Object.values(StunMethod)) {
    for (const cls of [0, 1, 2, 3] as const) {
      const m = parseStunMessage(
        encodeStunMessage({ method, class: cls, transactionId: tid, attributes: [] }),
      );
      strictEqual(m.method, method);
      strictEqual(m.class, cls);
    }
  }
});

Deno.test("encodeStunMessage pads attributes to 4 bytes and round-trips values", () => {
  const tid = crypto.getRandomValues(new Uint8Array(12));
  const attributes = [
    { type: StunAttr.Username, value: new TextEncoder().encode("abcde") },
    { type: StunAttr.Lifetime, value: new Uint8Array([0, 0, 3, 9]) },
    { type: StunAttr.EvenPort, value: new Uint8Array([0x80]) },
    { type: StunAttr.DontFragment, value: new Uint8Array(0) },
    { type: StunAttr.ReservationToken, value: new Uint8Array(8).fill(9) },
    { type: StunAttr.RequestedAddressFamily, value: new Uint8Array([2, 0, 0, 0]) },
    { type: StunAttr.Data, value: new Uint8Array(7).fill(1) },
    { type: StunAttr.ErrorCode, value: encodeErrorCode(420) },
  ];
  const bytes = encodeStunMessage({ method: 3, class: 0, transactionId: tid, attributes });
  strictEqual((bytes.length - 20) % 4, 0);
  const parsed = parseStunMessage(bytes);
  deepStrictEqual(
    parsed.attributes.map((a) => [a.type, [...a.value]]),
    attributes.map((a) => [a.type, [...a.value]]),
  );
  deepStrictEqual(decodeErrorCode(getAttribute(parsed, StunAttr.ErrorCode)!), {
    code: 420,
    reason: "Unknown Attribute",
  });
});

Deno.test("encodeXorAddress round-trips IPv4 and IPv6 addresses", () => {
  const tid = crypto.getRandomValues(new Uint8Array(12));
  for (
    const a of [
      { family: 4, address: "127.0.0.1", port: 3478 },
      { family: 4, address: "255.255.255.255", port: 65535 },
      { family: 6, address: "::1", port: 1 },
      { family: 6, address: "2001:db8:85a3::8a2e:370:7334", port: 40000 },
    ] as const
  ) {
    const value = encodeXorAddress(a, tid);
    strictEqual(value.length, a.family === 4 ? 8 : 20);
    deepStrictEqual(decodeXorAddress(value, tid), a);
  }
  throws(() => decodeXorAddress(new Uint8Array([0, 3, 0, 0, 1, 2, 3, 4]), tid), SyntaxError);
  throws(() => decodeXorAddress(new Uint8Array([0, 2, 0, 0, 1, 2, 3, 4]), tid), SyntaxError);
});

Deno.test("formatIp writes canonical IPv6 text", () => {
  strictEqual(formatIp(parseIp("2001:0db8:0000:0000:0000:0000:0000:0001")), "2001:db8::1");
  strictEqual(formatIp(parseIp("2001:db8:0:1:1:1:1:1")), "2001:db8:0:1:1:1:1:1");
  strictEqual(formatIp(parseIp("::ffff:1.2.3.4")), "::ffff:1.2.3.4");
  throws(() => parseIp("1::2::3"), SyntaxError);
  throws(() => parseIp("256.1.1.1"), SyntaxError);
});

Deno.test("longTermKey is MD5(user:realm:password)", () => {
  // MD5("u:r:p") computed independently with `printf 'u:r:p' | md5sum`.
  deepStrictEqual(longTermKey("u", "r", "p"), hex("44add22b6f3179b751eafd68ee370f7d"));
});

Deno.test("crc32 matches the standard check value, and node:zlib's at every length and alignment", async () => {
  strictEqual(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const { crc32: zlibCrc32 } = await import("node:zlib");
  const bytes = crypto.getRandomValues(new Uint8Array(4096));
  for (let length = 0; length <= 70; length++) {
    for (let offset = 0; offset < 8; offset++) {
      const part = bytes.subarray(offset, offset + length);
      strictEqual(crc32(part), zlibCrc32(part), `length ${length} at ${offset}`);
    }
  }
  strictEqual(crc32(bytes.subarray(3)), zlibCrc32(bytes.subarray(3)));
});

Deno.test("parseStunMessage rejects truncated and overlong input with clear errors", () => {
  const good = encodeStunMessage({
    method: 3,
    class: 0,
    transactionId: new Uint8Array(12),
    attributes: [{ type: StunAttr.Username, value: new Uint8Array(5) }],
  });
  throws(() => parseStunMessage(good.subarray(0, 19)), /shorter than 20/);
  throws(() => parseStunMessage(good.subarray(0, good.length - 4)), /runs past the end/);
  const extra = new Uint8Array(good.length + 4);
  extra.set(good);
  throws(() => parseStunMessage(extra), /trailing bytes/);
  const cookie = good.slice();
  cookie[4] = 0;
  throws(() => parseStunMessage(cookie), /magic cookie/);
  // The attribute claims 200 bytes inside a message of 12.
  const longAttr = good.slice();
  longAttr[22] = 0;
  longAttr[23] = 200;
  throws(() => parseStunMessage(longAttr), /attribute 0x0006 length 200 runs past the end/);
  // The message length leaves only 2 bytes of an attribute header.
  const header = hex("0003 0004 2112a442 000000000000000000000000 0006 0000");
  header[3] = 4;
  const truncated = new Uint8Array(24);
  truncated.set(header.subarray(0, 20));
  truncated.set([0, 6, 0, 8], 20);
  throws(() => parseStunMessage(truncated), /attribute 0x0006 length 8 runs past the end/);
  const odd = good.slice();
  odd[3] = 13;
  throws(() => parseStunMessage(odd), /not a multiple of 4/);
  throws(() => parseStunMessage(hex("4000000000000000000000000000000000000000")), /top bits/);
});

Deno.test("parseStunMessage only throws SyntaxError on random and mutated input", () => {
  const base = encodeStunMessage({
    method: 3,
    class: 0,
    transactionId: new Uint8Array(12),
    attributes: [
      { type: StunAttr.Username, value: new Uint8Array(5) },
      { type: StunAttr.XorPeerAddress, value: new Uint8Array(8) },
    ],
  }, { integrityKey: new Uint8Array(16), fingerprint: true });
  let parsed = 0;
  for (let i = 0; i < 20000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = crypto.getRandomValues(new Uint8Array(Math.floor(Math.random() * 120)));
      if (bytes.length >= 8) bytes.set([bytes[0]! & 0x3f, bytes[1]!, 0, 0, 0x21, 0x12, 0xa4, 0x42]);
      if (bytes.length >= 20) bytes[3] = (bytes.length - 20) & 0xfc;
    } else {
      bytes = base.slice(0, 20 + Math.floor(Math.random() * (base.length - 19)));
      bytes[20 + Math.floor(Math.random() * (bytes.length - 20))]! ^= 1 << (i % 8);
    }
    try {
      const m = parseStunMessage(bytes);
      for (const a of m.attributes) {
        if (a.type === StunAttr.XorPeerAddress) {
          try {
            decodeXorAddress(a.value, m.transactionId);
          } catch (error) {
            ok(error instanceof SyntaxError);
          }
        }
      }
      parsed++;
    } catch (error) {
      ok(error instanceof SyntaxError, String(error));
    }
  }
  ok(parsed > 0);
});

Deno.test("parseChannelData accepts padding and rejects short frames", () => {
  const padded = encodeChannelData(0x4001, new Uint8Array([1, 2, 3, 4, 5]), true);
  strictEqual(padded.length, 12);
  deepStrictEqual([...parseChannelData(padded).data], [1, 2, 3, 4, 5]);
  strictEqual(parseChannelData(padded).channel, 0x4001);
  throws(() => parseChannelData(padded.subarray(0, 8)), /length 5 runs past the end/);
  throws(() => parseChannelData(new Uint8Array([0x40, 0])), SyntaxError);
  throws(() => encodeChannelData(0x3fff, new Uint8Array(0)), RangeError);
});

Deno.test("DeframerStream(stunFraming) splits the TURN server's STUN and padded ChannelData at any chunking", async () => {
  const frames = [
    encodeStunMessage({
      method: 1,
      class: 0,
      transactionId: new Uint8Array(12).fill(3),
      attributes: [{ type: StunAttr.Software, value: new Uint8Array(3) }],
    }, { fingerprint: true }),
    encodeChannelData(0x4000, new Uint8Array(0), true),
    encodeChannelData(0x4fff, new Uint8Array(13).fill(7), true),
    encodeChannelData(0x4002, new Uint8Array(16).fill(5), true),
  ];
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let o = 0;
  for (const f of frames) {
    all.set(f, o);
    o += f.length;
  }
  for (const size of [1, 2, 3, 5, 7, 64, all.length]) {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < all.length; i += size) chunks.push(all.slice(i, i + size));
    const got = await Array.fromAsync(
      ReadableStream.from(chunks).pipeThrough(new DeframerStream(stunFraming)),
    );
    // ChannelData comes out without its stream padding.
    deepStrictEqual(got.map((f) => [...f]), frames.map((f) => [...unpad(f)]));
  }
});

Deno.test("DeframerStream(stunFraming) errors on garbage and truncated frames", async () => {
  await rejects(
    Array.fromAsync(
      ReadableStream.from([new Uint8Array([0xc0, 1, 2, 3])]).pipeThrough(
        new DeframerStream(stunFraming),
      ),
    ),
    /neither a STUN message nor ChannelData/,
  );
  // A STUN header without the magic cookie is RFC 3489's, carried (see
  // udp_framing_test): only its length can make it garbage.
  await rejects(
    Array.fromAsync(
      ReadableStream.from([new Uint8Array([0, 1, 0, 6, 1, 2, 3, 4, ...new Uint8Array(18)])])
        .pipeThrough(
          new DeframerStream(stunFraming),
        ),
    ),
    /STUN length 6 is not a multiple of 4/,
  );
  await rejects(
    Array.fromAsync(
      ReadableStream.from([new Uint8Array([0x40, 0, 0, 9, 1])]).pipeThrough(
        new DeframerStream(stunFraming),
      ),
    ),
    /ended inside a message/,
  );
});

function unpad(frame: Uint8Array): Uint8Array {
  if ((frame[0]! & 0xc0) !== 0x40) return frame;
  return frame.subarray(0, 4 + ((frame[2]! << 8) | frame[3]!));
}
