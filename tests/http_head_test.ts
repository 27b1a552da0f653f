// Copyright the ptkit authors. MIT license.
// The one HTTP head reader (WebTunnel both sides, the metrics endpoint, the
// upstream proxy's CONNECT reply): lines end in CR LF or a bare LF, as Go's
// net/textproto (webtunnel-server) and nginx read them, wherever the chunks
// split; what follows the head is kept.

import { deepStrictEqual, match, strictEqual, throws } from "node:assert";
import { HeadBuffer, HeadTooLong, parseHttpHead } from "../transports/_http_head.ts";
import { MetricsRegistry } from "../net/metrics.ts";
import { writeFull } from "../net/conn_io.ts";
import { readUntilClosed } from "./obfs4_wire_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Every way to split `bytes` in two, then one byte at a time. */
function splits(bytes: Uint8Array): Uint8Array[][] {
  const ways: Uint8Array[][] = [];
  for (let at = 0; at <= bytes.length; at++) ways.push([bytes.subarray(0, at), bytes.subarray(at)]);
  ways.push([...bytes].map((byte) => new Uint8Array([byte])));
  return ways;
}

Deno.test("HeadBuffer ends a head at the first empty line, whether lines end in CR LF or a bare LF, however the chunks split", () => {
  // Before, only CR LF CR LF ended a head: a request with bare LF line
  // endings, which a Go server answers, waited for ever (408 after 10 s).
  const cases: [string, string][] = [
    ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a"],
    ["GET / HTTP/1.1\nHost: a\n\n", "GET / HTTP/1.1\nHost: a"],
    ["GET / HTTP/1.1\r\nHost: a\r\n\n", "GET / HTTP/1.1\r\nHost: a"],
    ["GET / HTTP/1.1\nHost: a\n\r\n", "GET / HTTP/1.1\nHost: a"],
    ["GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "GET / HTTP/1.1\r\nX: a\rb"],
    ["\r\n\r\n", ""],
  ];
  for (const [sent, head] of cases) {
    for (const chunks of splits(encoder.encode(`${sent}rest`))) {
      const buffer = new HeadBuffer(1024);
      let found: { head: Uint8Array; rest: Uint8Array } | undefined;
      const after: string[] = [];
      for (const chunk of chunks) {
        if (found !== undefined) after.push(decoder.decode(chunk));
        else found = buffer.add(chunk);
      }
      strictEqual(decoder.decode(found?.head), head, JSON.stringify(sent));
      strictEqual(decoder.decode(found!.rest) + after.join(""), "rest", JSON.stringify(sent));
    }
  }
  // A lone CR is not a line ending; a CR CR LF is not an empty line.
  strictEqual(new HeadBuffer(1024).add(encoder.encode("GET / HTTP/1.1\r\r\r\r")), undefined);
  strictEqual(new HeadBuffer(1024).add(encoder.encode("GET / HTTP/1.1\r\nA: b\r\r\n")), undefined);
  // The limit counts the head without its blank line, as before.
  deepStrictEqual(decoder.decode(new HeadBuffer(4).add(encoder.encode("abcd\n\n"))!.head), "abcd");
  throws(() => new HeadBuffer(4).add(encoder.encode("abcde\n\n")), HeadTooLong);
  throws(() => new HeadBuffer(4).add(encoder.encode("abcdefghij")), HeadTooLong);
});

Deno.test("parseHttpHead reads header fields under CR LF and bare LF line endings alike", () => {
  for (const eol of ["\r\n", "\n"]) {
    const head = parseHttpHead(
      encoder.encode(["GET /x HTTP/1.1", "Host: a", "Upgrade: websocket"].join(eol)),
    );
    strictEqual(head.startLine, "GET /x HTTP/1.1");
    deepStrictEqual(head.fields, [["Host", "a"], ["Upgrade", "websocket"]]);
  }
});

Deno.test("metrics endpoint answers a request whose lines end in a bare LF, as Go's and nginx's HTTP servers do", async () => {
  // Before: no answer until the 10 s deadline closed the connection.
  await using server = new MetricsRegistry().serve({ port: 0 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await writeFull(conn, encoder.encode("GET /metrics HTTP/1.1\nHost: x\n\n"));
    const chunks: string[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(decoder.decode(buf.subarray(0, n), { stream: true }));
    }
    const answer = chunks.join("");
    match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    match(answer, /^ptkit_build_info\{/m);
  } finally {
    conn.close();
  }
  // A head that never ends still just ends with the connection.
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await writeFull(idle, encoder.encode("GET /metrics HTTP/1.1\nHost: x\n"));
  await idle.closeWrite();
  strictEqual(await readUntilClosed(idle), 0);
  idle.close();
});
