// Copyright the ptkit authors. MIT license.

// Parsers that wait for more bytes (the UDP deframers, the HTTP head reader
// of WebTunnel and the metrics endpoint) hold about the bytes they wait on,
// however they arrive: a peer that sends one byte per segment must not make
// each byte cost an array, or a whole read buffer (red team, round 8).

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { HeadBuffer } from "../transports/_http_head.ts";

/**
 * Bytes held outside the JS heap by a parser given 20,000 bytes one per
 * read, each a view of a 4 KiB buffer (tests/byte_retention_main.ts).
 */
async function heldByParser(parser: "deframer" | "head" | "straddle"): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--v8-flags=--expose-gc",
      new URL("./byte_retention_main.ts", import.meta.url).pathname,
      parser,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

for (const parser of ["deframer", "head"] as const) {
  Deno.test(`A ${parser} given 20,000 bytes one per read holds about the bytes, not a buffer per byte`, async () => {
    // 82 MB before: each byte kept its 4 KiB buffer.
    const held = await heldByParser(parser);
    ok(held < 2 * 2 ** 20, `${held} bytes held outside the heap for 20,000 waiting`);
  });
}

Deno.test("A deframer whose frames straddle every 64 KiB read lets each read go once it is read", async () => {
  // 62.5 MiB before (review): up to 1024 read buffers stayed in the queue.
  const held = await heldByParser("straddle");
  ok(held < 4 * 2 ** 20, `${held} bytes held outside the heap`);
});

Deno.test("HeadBuffer copies what it keeps: the chunks given may be reused at once", () => {
  const buffer = new HeadBuffer(1024);
  const read = new Uint8Array(64);
  const text = "GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
  let result;
  for (const char of text) {
    read[0] = char.charCodeAt(0);
    result = buffer.add(read.subarray(0, 1)) ?? result;
    read.fill(0);
  }
  strictEqual(new TextDecoder().decode(result!.head), "GET / HTTP/1.1\r\nHost: a");
  deepStrictEqual(new TextDecoder().decode(result!.rest), "");
});
