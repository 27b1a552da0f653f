// Copyright the ptkit authors. MIT license.

// The parent's parser of PT lines: every keyword, escapes, and bad input.

import { deepStrictEqual, throws } from "node:assert";
import { formatServerTransportOptions, parseSmethodArgs } from "../ipc/lines/_args.ts";
import { MAX_PT_LINE_LENGTH } from "../ipc/lines/pt_line.ts";
import { formatPtLine, parsePtLine } from "../ipc/mod.ts";
import { parseTransportOptions } from "../ipc/lines/_args.ts";
import { IpcOutput } from "../ipc/lines/_output.ts";

Deno.test("parsePtLine parses every keyword of the protocol", () => {
  const cases: [string, unknown][] = [
    ["VERSION 2", { type: "VERSION", version: "2" }],
    ["VERSION-ERROR no-version", { type: "VERSION-ERROR", message: "no-version" }],
    ["ENV-ERROR No TOR_PT_ORPORT set", { type: "ENV-ERROR", message: "No TOR_PT_ORPORT set" }],
    ["PROXY DONE", { type: "PROXY-DONE" }],
    ["PROXY-ERROR SOCKS 4 unsupported", { type: "PROXY-ERROR", message: "SOCKS 4 unsupported" }],
    ["CMETHOD trebuchet socks5 127.0.0.1:19999", {
      type: "CMETHOD",
      transport: "trebuchet",
      mode: "socks5",
      address: { hostname: "127.0.0.1", port: 19999 },
    }],
    ["CMETHOD t transparent-TCP [::1]:80 ARGS:x=y", {
      type: "CMETHOD",
      transport: "t",
      mode: "transparent-TCP",
      address: { hostname: "::1", port: 80 },
    }],
    ["CMETHOD-ERROR trebuchet no rocks available", {
      type: "CMETHOD-ERROR",
      transport: "trebuchet",
      message: "no rocks available",
    }],
    ["CMETHODS DONE", { type: "CMETHODS-DONE" }],
    ["SMETHOD trebuchet 198.51.100.1:19999", {
      type: "SMETHOD",
      transport: "trebuchet",
      address: { hostname: "198.51.100.1", port: 19999 },
      args: {},
    }],
    ["SMETHOD rot_by_N 198.51.100.1:2323 ARGS:N=13 DECLARE:x", {
      type: "SMETHOD",
      transport: "rot_by_N",
      address: { hostname: "198.51.100.1", port: 2323 },
      args: { N: "13" },
    }],
    ["SMETHOD-ERROR trebuchet no cows available", {
      type: "SMETHOD-ERROR",
      transport: "trebuchet",
      message: "no cows available",
    }],
    ["SMETHODS DONE\r", { type: "SMETHODS-DONE" }],
    ['LOG SEVERITY=debug MESSAGE="a \\"q\\" \\\\ \\n\\t\\101"', {
      type: "LOG",
      severity: "debug",
      message: 'a "q" \\ \n\tA',
    }],
    ['STATUS TRANSPORT=obfs4 CONNECT=Failed ERRSTR="timed out"', {
      type: "STATUS",
      transport: "obfs4",
      fields: { CONNECT: "Failed", ERRSTR: "timed out" },
    }],
    ['STATUS TYPE=version IMPLEMENTATION="lyrebird"', {
      type: "STATUS",
      transport: undefined,
      fields: { TYPE: "version", IMPLEMENTATION: "lyrebird" },
    }],
    ["CMESSAGE keyed aGk=", {
      type: "CMESSAGE",
      transport: "keyed",
      payload: new TextEncoder().encode("hi"),
    }],
    ["SMESSAGE keyed AA==", { type: "SMESSAGE", transport: "keyed", payload: new Uint8Array(1) }],
    ["FUTURE_THING", { type: "unknown", keyword: "FUTURE_THING" }],
  ];
  for (const [line, expected] of cases) deepStrictEqual(parsePtLine(line), expected, line);
});

Deno.test("parsePtLine reads what ptkit's own IpcOutput writes", () => {
  const lines: string[] = [];
  const output = new IpcOutput({ stdout: (l) => lines.push(l), logLevel: "debug" });
  output.log("warning", 'quote " backslash \\ newline \n tab \t');
  output.write({
    type: "STATUS",
    transport: "obfs4",
    fields: { CONNECT: "Failed", ERRSTR: 'has "quotes" and spaces' },
  });
  deepStrictEqual(parsePtLine(lines[0]!.slice(0, -1)), {
    type: "LOG",
    severity: "warning",
    message: 'quote " backslash \\ newline \n tab \t',
  });
  deepStrictEqual(parsePtLine(lines[1]!.slice(0, -1)), {
    type: "STATUS",
    transport: "obfs4",
    fields: { CONNECT: "Failed", ERRSTR: 'has "quotes" and spaces' },
  });
});

Deno.test("parsePtLine refuses malformed, truncated and oversized lines", () => {
  for (
    const line of [
      "",
      "not!a keyword",
      "{json}",
      "VERSION",
      "VERSION 1 2",
      "PROXY",
      "CMETHOD obfs4 socks5",
      "CMETHOD obfs4 socks5 127.0.0.1",
      "CMETHOD obfs4 socks5 127.0.0.1:99999",
      "CMETHOD bad-name socks5 127.0.0.1:1",
      "CMETHOD-ERROR",
      "CMETHODS",
      "SMETHOD obfs4",
      "SMETHOD obfs4 127.0.0.1:1 ARGS:novalue",
      "SMETHOD obfs4 127.0.0.1:1 ARGS:a=1\\",
      'LOG SEVERITY=notice MESSAGE="unterminated',
      'LOG SEVERITY=notice MESSAGE="x"junk',
      "LOG SEVERITY",
      "STATUS =x",
      `LOG MESSAGE=${"x".repeat(MAX_PT_LINE_LENGTH)}`,
      "CMESSAGE hello",
      "CMESSAGE keyed aGk",
      "SMESSAGE keyed aGk= extra",
      `CMESSAGE keyed ${btoa("x".repeat(16385))}`,
    ]
  ) {
    throws(() => parsePtLine(line), SyntaxError, line);
  }
});

Deno.test("parseSmethodArgs unescapes backslash, comma and equals", () => {
  deepStrictEqual(parseSmethodArgs(""), {});
  deepStrictEqual(parseSmethodArgs("cert=ab+/\\=\\=,iat-mode=0"), {
    cert: "ab+/==",
    "iat-mode": "0",
  });
  deepStrictEqual(parseSmethodArgs("k=a=b"), { k: "a=b" });
  throws(() => parseSmethodArgs("=v"), /empty key/);
  throws(() => parseSmethodArgs("a=1,"), /has no '='/);
});

Deno.test("formatServerTransportOptions escapes so that tor-style parsers read it back", () => {
  const options = {
    obfs4: { "iat-mode": "2", "weird:key": "v;a\\l=ue" },
    other: { x: "" },
  };
  const text = formatServerTransportOptions(options);
  const parsed = parseTransportOptions(text);
  deepStrictEqual(parsed.get("obfs4"), options.obfs4);
  deepStrictEqual(parsed.get("other"), options.other);
  deepStrictEqual(formatServerTransportOptions({}), "");
});

Deno.test("parsePtLine reads goptlib's octal escapes as the bytes of UTF-8 text, not one character each", () => {
  // goptlib (obfs4proxy, lyrebird, snowflake) escapes every byte outside
  // printable ASCII as \ooo: "café" is written caf\303\251.
  deepStrictEqual(parsePtLine('LOG SEVERITY=warning MESSAGE="caf\\303\\251 \\342\\200\\224 ok"'), {
    type: "LOG",
    severity: "warning",
    message: "café — ok",
  });
  deepStrictEqual(parsePtLine('STATUS TRANSPORT=t ERRSTR="\\346\\227\\245\\n"'), {
    type: "STATUS",
    transport: "t",
    fields: { ERRSTR: "日\n" },
  });
  // A byte sequence that is not UTF-8 is not dropped: U+FFFD in its place.
  deepStrictEqual(parsePtLine('LOG SEVERITY=info MESSAGE="a\\377b"'), {
    type: "LOG",
    severity: "info",
    message: "a\ufffdb",
  });
});

Deno.test("formatPtLine refuses SMETHOD ARGS it could not send intact (an empty key, a space, a control or non-ASCII character), never showing a value", () => {
  const smethod = (args: Record<string, string>) =>
    formatPtLine({
      type: "SMETHOD",
      transport: "t",
      address: { hostname: "127.0.0.1", port: 1 },
      args,
    });
  // Each of these was written as a line that parsePtLine (and tor) read
  // differently: "ARGS:=v" is refused, "ARGS:k=my secret" cut at the space.
  throws(
    () => smethod({ "": "v" }),
    /^TypeError: Cannot format SMETHOD line: invalid ARGS key ""$/,
  );
  throws(() => smethod({ "a b": "v" }), /invalid ARGS key "a b"/);
  for (const value of ["my secret", "caf\u00e9", "a\nb", "tab\there"]) {
    throws(
      () => smethod({ password: value }),
      (error: Error) =>
        error instanceof TypeError &&
        error.message ===
          'Cannot format SMETHOD line: the value of ARGS key "password" is not printable ASCII without spaces (not shown)',
    );
  }
  // What goptlib escapes still goes through and reads back.
  const args = { cert: "a,b=c\\d", empty: "" };
  deepStrictEqual((parsePtLine(smethod(args)) as { args: unknown }).args, args);
});

Deno.test("parsePtLine reads \\xHH escapes as bytes, as tor's C-string reader does", () => {
  // tor (src/lib/encoding/cstring.c unescape_string) takes \x and two hex
  // digits as one byte; they join octal escapes in the UTF-8 text.
  deepStrictEqual(parsePtLine('LOG SEVERITY=notice MESSAGE="\\x41 caf\\xC3\\251 \\x7e"'), {
    type: "LOG",
    severity: "notice",
    message: "A café ~",
  });
});

Deno.test("a CMETHOD or SMETHOD line with port 0 is malformed, as tor reads it ('Transport address has no port'), and formatPtLine does not write one", () => {
  // tor's parse_cmethod_line and parse_smethod_line refuse a port of 0;
  // taking it gave launchClient a transport whose every dial failed with
  // Deno's 'Invalid port (out of range): 0'.
  for (
    const line of [
      "CMETHOD obfs4 socks5 127.0.0.1:0",
      "CMETHOD obfs4 socks5 [::1]:0",
      "SMETHOD obfs4 127.0.0.1:0 ARGS:cert=abc",
    ]
  ) {
    throws(() => parsePtLine(line), (error: Error) => {
      deepStrictEqual(error instanceof SyntaxError, true, line);
      deepStrictEqual(/port/.test(error.message), true, error.message);
      return true;
    });
  }
  deepStrictEqual(parsePtLine("CMETHOD obfs4 socks5 127.0.0.1:1"), {
    type: "CMETHOD",
    transport: "obfs4",
    mode: "socks5",
    address: { hostname: "127.0.0.1", port: 1 },
  });
  for (
    const line of [
      {
        type: "CMETHOD",
        transport: "obfs4",
        mode: "socks5",
        address: { hostname: "127.0.0.1", port: 0 },
      },
      {
        type: "SMETHOD",
        transport: "obfs4",
        address: { hostname: "127.0.0.1", port: 0 },
        args: {},
      },
    ] as const
  ) {
    throws(() => formatPtLine(line), TypeError);
  }
});

Deno.test("a CMETHOD or SMETHOD line with a host name is malformed, as tor reads it (an IP address is needed), and formatPtLine does not write one", () => {
  // tor's parse_cmethod_line and parse_smethod_line take the address with
  // tor_addr_parse ('Error parsing transport address'), arti as a
  // SocketAddr: a PT that prints a name works under ptkit's adapter only,
  // and its SOCKS port was looked up in DNS at every dial.
  for (
    const [line, shown] of [
      ["CMETHOD obfs4 socks5 localhost:1080", "localhost:1080"],
      ["CMETHOD obfs4 socks5 pt.example:1080", "pt.example:1080"],
      ["SMETHOD obfs4 bridge.example:443 ARGS:cert=abc", "bridge.example:443"],
    ]
  ) {
    throws(() => parsePtLine(line!), (error: Error) => {
      deepStrictEqual(error instanceof SyntaxError, true, line);
      deepStrictEqual(
        error.message,
        `Cannot parse ${line!.slice(0, 7)} line: PT address "${shown}" has a host name where ` +
          "an IP address belongs (tor refuses it)",
      );
      return true;
    });
  }
  for (const hostname of ["localhost", "bridge.example"]) {
    throws(
      () =>
        formatPtLine({
          type: "CMETHOD",
          transport: "obfs4",
          mode: "socks5",
          address: { hostname, port: 1080 },
        }),
      TypeError,
    );
    throws(
      () =>
        formatPtLine({
          type: "SMETHOD",
          transport: "obfs4",
          address: { hostname, port: 1 },
          args: {},
        }),
      TypeError,
    );
  }
  deepStrictEqual(parsePtLine("SMETHOD obfs4 [2001:db8::1]:443").type, "SMETHOD");
});

Deno.test("a CMETHOD or SMETHOD line with a bad address says so in one sentence: no 'Cannot parse' inside 'Cannot parse', no capital mid-sentence", () => {
  // Was: 'Cannot parse CMETHOD line: Cannot parse PT address "127.0.0.1": ...'
  // and 'Cannot parse CMETHOD line: Invalid port 0 for PT address ...'.
  const cases: [string, string][] = [
    [
      "CMETHOD obfs4 socks5 127.0.0.1",
      'Cannot parse CMETHOD line: PT address "127.0.0.1": expected host:port (IPv6 in brackets)',
    ],
    [
      "SMETHOD obfs4 1.2.3.4:x",
      'Cannot parse SMETHOD line: PT address "1.2.3.4:x": invalid port',
    ],
    [
      "CMETHOD obfs4 socks5 127.0.0.1:0",
      'Cannot parse CMETHOD line: invalid port 0 for PT address "127.0.0.1:0": must be an integer in 1-65535',
    ],
  ];
  for (const [line, message] of cases) {
    throws(() => parsePtLine(line), (error: Error) => {
      deepStrictEqual([error.name, error.message], ["SyntaxError", message]);
      return true;
    });
  }
});
