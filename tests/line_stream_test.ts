// Copyright the ptkit authors. MIT license.

// The one line splitter of the line protocol (the managed proxy's stdin, a
// driven PT's stdout and stderr) holds at most one line's worth: a line
// longer than allowed is dropped as soon as it is, before its end arrives,
// and the lines after it come through.

import { deepStrictEqual } from "node:assert";
import { LineStream } from "../ipc/lines/_line_stream.ts";

/** Split `chunks` with a LineStream of `maxLength`; returns the lines and the reported lengths. */
async function split(
  chunks: string[],
  maxLength: number,
  onChunk: (index: number, tooLong: number[]) => void = () => {},
): Promise<{ lines: string[]; tooLong: number[] }> {
  const tooLong: number[] = [];
  const stream = new LineStream({ maxLength, onTooLong: (n) => tooLong.push(n) });
  const lines: string[] = [];
  const reading = (async () => {
    for await (const line of stream.readable) lines.push(line);
  })();
  const writer = stream.writable.getWriter();
  for (const [i, chunk] of chunks.entries()) {
    await writer.write(chunk);
    onChunk(i, tooLong);
  }
  await writer.close();
  await reading;
  return { lines, tooLong };
}

Deno.test("LineStream splits lines across chunks and keeps lines of exactly maxLength", async () => {
  const { lines, tooLong } = await split(["ab", "c\nde", "f\n", "0123456789\nlast"], 10);
  deepStrictEqual(lines, ["abc", "def", "0123456789", "last"]);
  deepStrictEqual(tooLong, []);
});

Deno.test("LineStream drops a line longer than maxLength as soon as it is, without waiting for its end", async () => {
  // 25 characters of one line in chunks of 5, then its end and a good line.
  const chunks = ["aaaaa", "aaaaa", "aaaaa", "aaaaa", "aaaaa", "\nnext\n"];
  const { lines, tooLong } = await split(chunks, 10, (i, reported) => {
    // Reported once the buffer passed 10 characters: after the third chunk.
    deepStrictEqual(reported, i < 2 ? [] : [15], `after chunk ${i}`);
  });
  deepStrictEqual(lines, ["next"]);
  deepStrictEqual(tooLong, [15]);
});

Deno.test("LineStream drops a line longer than maxLength that arrives whole", async () => {
  const { lines, tooLong } = await split(["x".repeat(11) + "\nok\n" + "y".repeat(12) + "\n"], 10);
  deepStrictEqual(lines, ["ok"]);
  deepStrictEqual(tooLong, [11, 12]);
});
