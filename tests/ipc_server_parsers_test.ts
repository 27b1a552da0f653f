// Copyright the ptkit authors. MIT license.
// Acceptance 2: the server-side parsers and formatters as tables: bind
// addresses, tor's options escaping (in), SMETHOD ARGS escaping (out),
// destination policy, outbound bind addresses, bridge lines.

import { deepStrictEqual, ok, rejects, throws } from "node:assert";
import { TransportConn } from "../net/transport_conn.ts";
import { plain } from "../transports/plain.ts";
import { parseBindAddr } from "../ipc/managed/_bind_addr.ts";
import { parseTransportOptions } from "../ipc/lines/_args.ts";
import { formatSmethodArgs, parseSmethodArgs } from "../ipc/lines/_args.ts";
import { DestinationPolicy } from "../net/mod.ts";
import { boundDial, outboundDialer, parseOutboundBind } from "../ipc/managed/_outbound_dialer.ts";
import { formatBridgeLine, parseBridgeLine } from "../ipc/lines/_bridge_line.ts";
import { readN } from "./ipc_util.ts";

Deno.test("parseBindAddr reads IPv4, bracketed and bare IPv6, and refuses the rest", () => {
  const ok4 = parseBindAddr("obfs4-0.0.0.0:443,plain-127.0.0.1:0");
  deepStrictEqual([...ok4], [
    ["obfs4", { hostname: "0.0.0.0", port: 443 }],
    ["plain", { hostname: "127.0.0.1", port: 0 }],
  ]);
  deepStrictEqual(parseBindAddr("a-[::1]:80").get("a"), { hostname: "::1", port: 80 });
  deepStrictEqual(parseBindAddr("a-[2001:db8::1]:80").get("a"), {
    hostname: "2001:db8::1",
    port: 80,
  });
  // goptlib repairs unbracketed IPv6: the last colon starts the port.
  deepStrictEqual(parseBindAddr("a-::1:80").get("a"), { hostname: "::1", port: 80 });
  deepStrictEqual(parseBindAddr("").size, 0);
  // Empty items are none (89e7fa1: a trailing comma, as in the version list).
  deepStrictEqual([...parseBindAddr("a-1.2.3.4:1,,b-1.2.3.4:2,").keys()], ["a", "b"]);
  // Names split at the first dash only.
  throws(() => parseBindAddr("my-pt-127.0.0.1:1"), SyntaxError);
  for (
    const bad of [
      "a",
      "a-",
      "-1.2.3.4:5",
      "a-host.example:80",
      "a-1.2.3.4",
      "a-1.2.3.4:65536",
      "a-1.2.3.256:1",
      "a-[1.2.3.4]:1",
      "a-[::1]80",
      "a-1.2.3.4:1,a-1.2.3.4:2",
      "a-1.2.3.4:1:2",
    ]
  ) {
    throws(() => parseBindAddr(bad), SyntaxError, bad);
  }
});

Deno.test("parseBindAddr's errors name the variable (or the flag) and the item, in one sentence", () => {
  // Was 'Cannot parse bind address "obfs4-foo:80": ...': an operator who set
  // TOR_PT_SERVER_BINDADDR (tor's ServerTransportListenAddr) or -bindaddr was
  // not told which.
  const cases: [string, string | undefined, string][] = [
    [
      "obfs4",
      undefined,
      'Cannot parse TOR_PT_SERVER_BINDADDR item "obfs4": expected name-addr:port',
    ],
    [
      "ob-fs4-1.2.3.4:1",
      "-bindaddr",
      'Cannot parse -bindaddr item "ob-fs4-1.2.3.4:1": not an IP address',
    ],
    [
      "obfs4-foo:80",
      undefined,
      'Cannot parse TOR_PT_SERVER_BINDADDR item "obfs4-foo:80": not an IP address',
    ],
    [
      "obfs4-1.2.3.4",
      undefined,
      "Cannot parse TOR_PT_SERVER_BINDADDR address of 'obfs4' \"1.2.3.4\": expected host:port " +
      "(IPv6 in brackets)",
    ],
    [
      "obfs4-1.2.3.4:99999",
      "-bindaddr",
      "Invalid port 99999 for -bindaddr address of 'obfs4' \"1.2.3.4:99999\": must be an integer " +
      "in 0-65535",
    ],
    [
      "a-1.2.3.4:1,a-1.2.3.4:2",
      undefined,
      "Cannot parse TOR_PT_SERVER_BINDADDR: 'a' given twice",
    ],
  ];
  for (const [text, what, message] of cases) {
    throws(() => parseBindAddr(text, what), (error: Error) => {
      deepStrictEqual([error.name, error.message], ["SyntaxError", message]);
      return true;
    });
  }
});

Deno.test("parseTransportOptions: an item without its transport's name says every item needs one, and how torrc's form is written here, quoting nothing", () => {
  // 'shadowsocks:method=aes-256-gcm;password=Sec9Mark' (the name given once)
  // and torrc's 'obfs4 iat-mode=1' said only "item 2 has no 'name:'
  // (expected name:key=value)".
  const every =
    `(expected name:key=value, every item naming its transport: obfs4:a=1;obfs4:b=2, or JSON {"obfs4":{"a":"1","b":"2"}})`;
  const cases: [string, string][] = [
    ["shadowsocks:method=aes-256-gcm;password=Sec9Mark", `item 2 has no 'name:' ${every}`],
    [
      "obfs4 iat-mode=Sec9Mark",
      `item 1 has no 'name:' ${every}; torrc's 'ServerTransportOptions obfs4 a=1' is written obfs4:a=1 here`,
    ],
  ];
  for (const [text, message] of cases) {
    throws(
      () => parseTransportOptions(text),
      (e: Error) =>
        e instanceof SyntaxError &&
        e.message === `Cannot parse transport options: ${message}` &&
        !e.message.includes("Sec9Mark"),
      text,
    );
  }
});

Deno.test("parseTransportOptions undoes tor's escaping of : ; \\ (and keeps = in values)", () => {
  const table: [string, Record<string, Record<string, string>>][] = [
    ["a:k=v", { a: { k: "v" } }],
    ["a:k=v;b:x=1;a:j=2", { a: { k: "v", j: "2" }, b: { x: "1" } }],
    ["a:k=x\\:y", { a: { k: "x:y" } }],
    ["a:k=x\\;y;a:z=1", { a: { k: "x;y", z: "1" } }],
    ["a:k=back\\\\slash", { a: { k: "back\\slash" } }],
    ["a:k=a=b=c", { a: { k: "a=b=c" } }],
    ["a:k\\=1=v", { a: { "k=1": "v" } }],
    ["a:k=", { a: { k: "" } }],
    ["rot_by_N:N=13", { rot_by_N: { N: "13" } }],
    ["a:k=1;a:k=2;b:k=3", { a: { k: "1" }, b: { k: "3" } }],
    ["t\\:1:k=v;t\\=2:k=v;t\\;3:k=v;t\\\\4:k=v", {
      "t:1": { k: "v" },
      "t=2": { k: "v" },
      "t;3": { k: "v" },
      "t\\4": { k: "v" },
    }],
    [
      "scramblesuit:key=banana;automata:rule=110;automata:depth=3",
      { scramblesuit: { key: "banana" }, automata: { rule: "110", depth: "3" } },
    ],
  ];
  for (const [text, expected] of table) {
    deepStrictEqual(Object.fromEntries(parseTransportOptions(text)), expected, text);
  }
  for (const bad of ["a", "a:", ":k=v", "a:k", "a:=v", "a:k=v\\", "a\\", "a:k=v;"]) {
    throws(() => parseTransportOptions(bad), SyntaxError, bad);
  }
});

Deno.test("formatSmethodArgs sorts keys and escapes \\ = , both in keys and values", () => {
  const table: [Record<string, string>, string][] = [
    [{}, ""],
    [{ N: "13" }, "ARGS:N=13"],
    [{ "iat-mode": "0", cert: "AbC+/x" }, "ARGS:cert=AbC+/x,iat-mode=0"],
    [{ k: "a,b" }, "ARGS:k=a\\,b"],
    [{ k: "a=b" }, "ARGS:k=a\\=b"],
    [{ k: "a\\b" }, "ARGS:k=a\\\\b"],
    [{ "k,=\\": "v" }, "ARGS:k\\,\\=\\\\=v"],
    [{ b: "2", a: "1", c: "3" }, "ARGS:a=1,b=2,c=3"],
    [{ k: "semi;colon:" }, "ARGS:k=semi;colon:"],
  ];
  for (const [options, expected] of table) {
    deepStrictEqual(formatSmethodArgs(options), expected);
    if (expected !== "") deepStrictEqual(parseSmethodArgs(expected), options);
  }
  for (const bad of ["ARGS:k", "ARGS:=v", "ARGS:k=v\\", "ARGS:k=v,"]) {
    throws(() => parseSmethodArgs(bad), SyntaxError, bad);
  }
});

Deno.test("DestinationPolicy refuses non-public scopes unless allowed", () => {
  const strict = new DestinationPolicy();
  const table: [string, string | undefined][] = [
    ["93.184.216.34", undefined],
    ["8.8.8.8", undefined],
    ["2606:2800:220:1::1", undefined],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["::1", "loopback"],
    ["::ffff:127.0.0.1", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", undefined],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "private"],
    ["fd00::1", "private"],
    ["fc00::1", "private"],
    ["::ffff:10.0.0.1", "private"],
    ["169.254.1.1", "link-local"],
    ["fe80::1", "link-local"],
    ["224.0.0.1", "multicast"],
    ["ff02::1", "multicast"],
    ["0.0.0.0", "unspecified"],
    ["::", "unspecified"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["localhost", "not an IP address"],
  ];
  for (const [ip, expected] of table) deepStrictEqual(strict.refusal(ip, 80), expected, ip);
  const loose = DestinationPolicy.parse("loopback, private,link-local,multicast");
  for (const [ip, expected] of table) {
    const still = expected === "unspecified" || expected === "reserved" ||
      expected === "broadcast" || expected === "not an IP address";
    deepStrictEqual(loose.refusal(ip, 80), still ? expected : undefined, ip);
  }
  const exact = DestinationPolicy.parse("127.0.0.1:8080,[::1]:53");
  deepStrictEqual(exact.refusal("127.0.0.1", 8080), undefined);
  // An IPv4-mapped address is the IPv4 address: the same destination.
  deepStrictEqual(exact.refusal("::ffff:127.0.0.1", 8080), undefined);
  deepStrictEqual(exact.refusal("127.0.0.1", 8081), "loopback");
  deepStrictEqual(exact.refusal("0:0:0:0:0:0:0:1", 53), undefined);
  deepStrictEqual(DestinationPolicy.parse("none").refusal("127.0.0.1", 1), "loopback");
  // Unspecified and reserved addresses stay refused even when listed exactly.
  const never = DestinationPolicy.parse("0.0.0.0:80,240.0.0.1:80,[::]:80");
  deepStrictEqual(never.refusal("0.0.0.0", 80), "unspecified");
  deepStrictEqual(never.refusal("240.0.0.1", 80), "reserved");
  deepStrictEqual(never.refusal("::", 80), "unspecified");
  for (const bad of ["all", "localhost:80", "loopback;private", "127.0.0.1"]) {
    throws(() => DestinationPolicy.parse(bad), SyntaxError, bad);
  }
});

Deno.test("parseOutboundBind checks each family", () => {
  deepStrictEqual(parseOutboundBind(undefined, undefined), {});
  deepStrictEqual(parseOutboundBind("", ""), {});
  deepStrictEqual(parseOutboundBind("198.51.100.7", "[2001:db8::7]"), {
    v4: "198.51.100.7",
    v6: "2001:db8::7",
  });
  deepStrictEqual(parseOutboundBind(undefined, "2001:db8::7"), { v6: "2001:db8::7" });
  for (const [v4, v6] of [["::1", undefined], ["1.2.3", undefined], [undefined, "1.2.3.4"]]) {
    throws(() => parseOutboundBind(v4, v6), SyntaxError);
  }
});

Deno.test("outboundDialer binds the source address, but not for loopback destinations", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  // boundDial itself binds (127.0.0.2 stands in for a public source address).
  const bound = await boundDial({ hostname: "127.0.0.1", port }, "127.0.0.2");
  {
    using peer = await listener.accept();
    deepStrictEqual((peer.remoteAddr as Deno.NetAddr).hostname, "127.0.0.2");
    await bound.write(new Uint8Array([1, 2]));
    deepStrictEqual(await readN(peer, 2), new Uint8Array([1, 2]));
    await peer.write(new Uint8Array([3]));
    const buffer = new Uint8Array(4);
    deepStrictEqual(await bound.read(buffer), 1);
    await bound.closeWrite();
    deepStrictEqual(await readN(peer, 1), new Uint8Array(0));
  }
  bound.close();
  // The dialer leaves loopback destinations alone, as the spec says.
  const dial = outboundDialer({ v4: "127.0.0.2" });
  const direct = await dial({ hostname: "127.0.0.1", port });
  {
    using peer = await listener.accept();
    deepStrictEqual((peer.remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
  }
  direct.close();
  // A non-loopback destination goes through the bound path (a refused dial
  // to an unbindable source address shows it tried to bind).
  await dial({ hostname: "192.0.2.1", port: 9 }).then(
    (conn) => {
      conn.close();
      ok(false, "dial to 192.0.2.1 from 127.0.0.2 should fail");
    },
    (error) => ok(error instanceof Error),
  );
});

Deno.test("a bound connection closed while its transport is open settles: closeWrite after close returns, the TransportConn's closed resolves", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const bound = await boundDial({ hostname: "127.0.0.1", port: listener.addr.port }, "127.0.0.2");
  using _peer = await listener.accept();
  bound.close();
  const late = (what: string) =>
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} hangs`)), 2000));
  await Promise.race([bound.closeWrite(), late("closeWrite after close")]);
  await rejects(bound.write(new Uint8Array([1])));
  // As a pool's flow uses it: closed from this side with its pumps running.
  const again = await boundDial({ hostname: "127.0.0.1", port: listener.addr.port }, "127.0.0.2");
  using _again = await listener.accept();
  const conn = new TransportConn(again, (await plain.client({})).pair({}));
  await conn.ready;
  conn.close();
  await Promise.race([conn.closed, late("TransportConn.closed")]);
});

Deno.test("parseBridgeLine: a port out of range is named with the range a bridge takes, 1-65535, as port 0 is", () => {
  // 70000 said 'word 2 is not an address (must be an integer in 0-65535)':
  // no port named, and a range whose 0 the same line then refused.
  for (const port of [70000, 65536, 0]) {
    for (const host of ["192.0.2.1", "[::1]"]) {
      throws(
        () => parseBridgeLine(`obfs4 ${host}:${port} cert=Sec9Mark iat-mode=0`),
        (e: Error) =>
          e instanceof SyntaxError &&
          e.message === `Invalid port ${port} for bridge address: must be an integer in 1-65535`,
        `${host}:${port}`,
      );
    }
  }
});

Deno.test("parseBridgeLine and formatBridgeLine", () => {
  const fp = "0123456789ABCDEF0123456789ABCDEF01234567";
  const line = parseBridgeLine(`Bridge obfs4 192.0.2.1:443 ${fp} cert=a+b/c iat-mode=0`);
  deepStrictEqual(line, {
    transport: "obfs4",
    address: { hostname: "192.0.2.1", port: 443 },
    fingerprint: fp,
    options: { cert: "a+b/c", "iat-mode": "0" },
  });
  deepStrictEqual(formatBridgeLine(line), `obfs4 192.0.2.1:443 ${fp} cert=a+b/c iat-mode=0`);
  deepStrictEqual(parseBridgeLine("[::1]:80").address, { hostname: "::1", port: 80 });
  deepStrictEqual(parseBridgeLine("plain 127.0.0.1:80").options, {});
  for (const bad of ["", "obfs4", "obfs4 nowhere", "obfs4 1.2.3.4:0", "obfs4 1.2.3.4:1 cert"]) {
    throws(() => parseBridgeLine(bad), SyntaxError, bad);
  }
  // SMETHOD's ARGS form pasted as a bridge line's arguments: said so (the
  // transport only said 'iat-mode' was missing); the value is not quoted.
  throws(
    () => parseBridgeLine("obfs4 127.0.0.1:1 cert=Sec9Mark,iat-mode=0"),
    (e: Error) =>
      e instanceof SyntaxError && /word 3 holds key=value pairs joined by ','/.test(e.message) &&
      !e.message.includes("Sec9Mark"),
  );
  // A comma escaped as SMETHOD escapes it, or one not followed by a key, is a value's.
  deepStrictEqual(parseBridgeLine("x 127.0.0.1:1 password=a\\,b=c").options, {
    password: "a\\,b=c",
  });
  deepStrictEqual(parseBridgeLine("x 127.0.0.1:1 password=a,1").options, { password: "a,1" });
});
