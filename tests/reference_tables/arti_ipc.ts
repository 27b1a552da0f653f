// Copyright the ptkit authors. MIT license.
// arti's tor-ptmgr src/ipc.rs tests (it_parses_spec_examples): lines a PT
// prints and what the parent makes of them, transcribed as data in the
// shape of ptkit's parsed lines (parsePtLine): arti's ClientTransportLaunched
// is a CMETHOD line, its STATUS map is `transport` plus `fields`, and so on.

import { type Case, ERROR, type Table } from "./case.ts";

/** A parsed line, or a line the parser refuses. */
export type Parsed = Readonly<Record<string, unknown>> | typeof ERROR;

const test = "it_parses_spec_examples";
const at = (hostname: string, port: number) => ({ hostname, port });

/** arti's PT line parser table. */
export const ptLines: Table<string, Parsed> = {
  source: "arti tor-ptmgr src/ipc.rs",
  cases: [
    ...([
      ["VERSION-ERROR no-version", { type: "VERSION-ERROR", message: "no-version" }],
      ["VERSION 1", { type: "VERSION", version: "1" }],
      [
        "ENV-ERROR No TOR_PT_AUTH_COOKIE_FILE when TOR_PT_EXTENDED_SERVER_PORT set",
        {
          type: "ENV-ERROR",
          message: "No TOR_PT_AUTH_COOKIE_FILE when TOR_PT_EXTENDED_SERVER_PORT set",
        },
      ],
      ["PROXY DONE", { type: "PROXY-DONE" }],
      [
        "PROXY-ERROR SOCKS 4 upstream proxies unsupported",
        { type: "PROXY-ERROR", message: "SOCKS 4 upstream proxies unsupported" },
      ],
      [
        "CMETHOD trebuchet socks5 127.0.0.1:19999",
        {
          type: "CMETHOD",
          transport: "trebuchet",
          mode: "socks5",
          address: at("127.0.0.1", 19999),
        },
      ],
      [
        "CMETHOD-ERROR trebuchet no rocks available",
        { type: "CMETHOD-ERROR", transport: "trebuchet", message: "no rocks available" },
      ],
      ["CMETHODS DONE", { type: "CMETHODS-DONE" }],
      [
        "SMETHOD trebuchet 198.51.100.1:19999",
        { type: "SMETHOD", transport: "trebuchet", address: at("198.51.100.1", 19999), args: {} },
      ],
      [
        "SMETHOD rot_by_N 198.51.100.1:2323 ARGS:N=13",
        {
          type: "SMETHOD",
          transport: "rot_by_N",
          address: at("198.51.100.1", 2323),
          args: { N: "13" },
        },
      ],
      [
        "SMETHOD obfs4 198.51.100.1:43734 ARGS:cert=HszPy3vWfjsESCEOo9ZBkRv6zQ/1mGHzc8arF0y2SpwFr3WhsMu8rK0zyaoyERfbz3ddFw,iat-mode=0",
        {
          type: "SMETHOD",
          transport: "obfs4",
          address: at("198.51.100.1", 43734),
          args: {
            cert: "HszPy3vWfjsESCEOo9ZBkRv6zQ/1mGHzc8arF0y2SpwFr3WhsMu8rK0zyaoyERfbz3ddFw",
            "iat-mode": "0",
          },
        },
      ],
      [
        "SMETHOD-ERROR trebuchet no cows available",
        { type: "SMETHOD-ERROR", transport: "trebuchet", message: "no cows available" },
      ],
      [
        'LOG SEVERITY=debug MESSAGE="Connected to bridge A"',
        { type: "LOG", severity: "debug", message: "Connected to bridge A" },
      ],
      [
        'LOG SEVERITY=debug MESSAGE="\\r\\n\\t"',
        { type: "LOG", severity: "debug", message: "\r\n\t" },
      ],
      ["LOG SEVERITY=debug MESSAGE=", { type: "LOG", severity: "debug", message: "" }],
      ['LOG SEVERITY=debug MESSAGE="\\a"', { type: "LOG", severity: "debug", message: "a" }],
    ] as const).map(([input, expect]) => ({ test, input, expect })),
    // arti refuses every octal escape (and \8); ptkit reads them.
    ...Array.from({ length: 9 }, (_, digit): Case<string, Parsed> => ({
      test: `${test}: octal escape \\${digit}`,
      input: `LOG SEVERITY=debug MESSAGE="\\${digit}"`,
      expect: ERROR,
      differs: "readsOctal",
      ptkit: {
        type: "LOG",
        severity: "debug",
        message: digit < 8 ? String.fromCharCode(digit) : "8",
      },
    })),
    {
      test: `${test}: ARGS ending in a backslash`,
      input: "SMETHOD obfs4 198.51.100.1:43734 ARGS:iat-mode=0\\",
      expect: ERROR,
    },
    {
      test: `${test}: '=' in an ARGS value`,
      input: "SMETHOD obfs4 198.51.100.1:43734 ARGS:iat-mode=fo=o",
      expect: ERROR,
      differs: "equalsInArgsValue",
      ptkit: {
        type: "SMETHOD",
        transport: "obfs4",
        address: at("198.51.100.1", 43734),
        args: { "iat-mode": "fo=o" },
      },
    },
    {
      test: `${test}: ARGS without '='`,
      input: "SMETHOD obfs4 198.51.100.1:43734 ARGS:iat-mode",
      expect: ERROR,
    },
    ...([
      [
        "STATUS ADDRESS=198.51.100.123:1234 CONNECT=Success",
        undefined,
        { ADDRESS: "198.51.100.123:1234", CONNECT: "Success" },
      ],
      [
        "STATUS TRANSPORT=obfs4 ADDRESS=198.51.100.123:1234 CONNECT=Success",
        "obfs4",
        { ADDRESS: "198.51.100.123:1234", CONNECT: "Success" },
      ],
      [
        'STATUS ADDRESS=198.51.100.222:2222 CONNECT=Failed FINGERPRINT=<Fingerprint> ERRSTR="Connection refused"',
        undefined,
        {
          ADDRESS: "198.51.100.222:2222",
          CONNECT: "Failed",
          FINGERPRINT: "<Fingerprint>",
          ERRSTR: "Connection refused",
        },
      ],
    ] as const).map(([input, transport, fields]) => ({
      test,
      input,
      expect: { type: "STATUS", transport, fields },
    })),
  ],
};
