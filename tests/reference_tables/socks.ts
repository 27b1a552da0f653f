// Copyright the ptkit authors. MIT license.
// The SOCKS tables of goptlib (socks_test.go; the SOCKS4a one from goptlib
// 0.5, before it dropped SOCKS4a) and lyrebird/obfs4proxy
// (common/socks5/socks_test.go), transcribed as data. goptlib and lyrebird
// test the same SOCKS5 exchanges; `in` says which files hold a case.
//
// Each SOCKS5 case is one message of a handshake (hex) at its stage; the
// stages before it are the usual ones (greeting 050100 for a request,
// 050102 for RFC 1929 authentication). The result is what the server
// writes in answer, and then: it closes, the handshake goes on (the runner
// finishes it with a CONNECT, after RFC 1929 arguments `k=v` when the
// greeting chose method 02), it refuses the CONNECT that follows with a
// reply code, or (for a request) the destination it will connect.

import { type Case, ERROR, type Source } from "./case.ts";
import type { Difference } from "./differences.ts";

/** Which stage a SOCKS5 message belongs to. */
export type SocksStage =
  | "greeting"
  | "auth"
  | "request"
  /** The reply to a CONNECT that succeeded. */
  | "success reply"
  /** The client sends the message, then hangs up. */
  | "hangup";

/** One SOCKS5 message. */
export interface SocksInput {
  readonly stage: SocksStage;
  readonly send: string;
}

/** What the server does with it. */
export type SocksResult =
  | { readonly reply: string; readonly then: "closed" }
  | {
    readonly reply: string;
    readonly then: "continues";
    /** The transport arguments the CONNECT that follows carries. */
    readonly args?: Readonly<Record<string, string>>;
  }
  | { readonly reply: string; readonly then: { readonly refusedAtConnect: number } }
  | { readonly reply: string; readonly request: { hostname: string; port: number } };

/** A SOCKS5 case and the test files that hold it. */
export interface SocksCase extends Case<SocksInput, SocksResult> {
  readonly in: readonly Source[];
}

const both: readonly Source[] = ["goptlib socks_test.go", "lyrebird common/socks5/socks_test.go"];
const closed = (reply: string): SocksResult => ({ reply, then: "closed" });
const goesOn = (reply: string): SocksResult => ({ reply, then: "continues" });
const failure = (code: string) => `05${code}0001000000000000`;
const refusedAtConnect: SocksResult = { reply: "0100", then: { refusedAtConnect: 0x12 } };

type Row = readonly [
  test: string,
  stage: SocksStage,
  send: string,
  expect: SocksResult,
  difference?: readonly [Difference, SocksResult],
];

/** The SOCKS5 exchanges of goptlib and lyrebird (TestAcceptErrors is goptlib's only). */
export const socks5: readonly SocksCase[] = ([
  ["TestAuthInvalidVersion", "greeting", "030100", closed("")],
  ["TestAuthInvalidNMethods", "greeting", "0500", closed("05ff")],
  ["TestAuthNoneRequired", "greeting", "050100", goesOn("0500")],
  ["TestAuthUsernamePassword", "greeting", "050102", goesOn("0502")],
  [
    "TestAcceptErrors: a SOCKS5 greeting, then EOF, does not stop the listener",
    "hangup",
    "050100",
    goesOn("0500"),
  ],
  ["TestAuthBoth", "greeting", "05020002", goesOn("0502")],
  ["TestAuthUnsupported", "greeting", "050101", closed("05ff")],
  ["TestAuthUnsupported2", "greeting", "0503000102", goesOn("0502")],
  ["TestRFC1929InvalidVersion", "auth", "03054142434445056162636465", closed("0101")],
  ["TestRFC1929InvalidUlen", "auth", "0100056162636465", closed("0101"), [
    "emptyUserPass",
    refusedAtConnect,
  ]],
  ["TestRFC1929InvalidPlen", "auth", "0105414243444500", closed("0101"), [
    "emptyUserPass",
    refusedAtConnect,
  ]],
  ["TestRFC1929InvalidPTArgs", "auth", "01054142434445056162636465", closed("0101"), [
    "argsAtConnect",
    refusedAtConnect,
  ]],
  ["TestRFC1929Success", "auth", "01096b65793d76616c75650100", {
    reply: "0100",
    then: "continues",
    args: { key: "value" },
  }],
  ["TestRequestInvalidHdr: version 03", "request", "030100017f000001235a", closed(failure("01"))],
  ["TestRequestInvalidHdr: command 05", "request", "050500017f000001235a", closed(failure("07"))],
  [
    "TestRequestInvalidHdr: reserved byte 30",
    "request",
    "050130017f000001235a",
    closed(failure("01")),
  ],
  [
    "TestRequestInvalidHdr: address type 05",
    "request",
    "050100057f000001235a",
    closed(failure("08")),
  ],
  ["TestRequestIPv4", "request", "050100017f000001235a", {
    reply: "",
    request: { hostname: "127.0.0.1", port: 9050 },
  }],
  ["TestRequestIPv6", "request", "050100040102030405060708090a0b0c0d0e0f10235a", {
    reply: "",
    request: { hostname: "0102:0304:0506:0708:090a:0b0c:0d0e:0f10", port: 9050 },
  }],
  ["TestRequestFQDN", "request", "050100030b6578616d706c652e636f6d235a", {
    reply: "",
    request: { hostname: "example.com", port: 9050 },
  }],
  ["TestResponseNil", "success reply", "", goesOn("05000001000000000000")],
] as const satisfies readonly Row[]).map(([test, stage, send, expect, difference]: Row) => ({
  in: test.startsWith("TestAcceptErrors") ? ["goptlib socks_test.go"] : both,
  test,
  input: { stage, send },
  expect,
  ...(difference === undefined ? {} : { differs: difference[0], ptkit: difference[1] }),
}));

/** A SOCKS4a CONNECT as goptlib 0.5 read it: destination and arguments (from the user id). */
export type Socks4aResult = typeof ERROR | {
  readonly hostname: string;
  readonly port: number;
  readonly args: Readonly<Record<string, string>>;
};

const socks4aTest = "TestReadSocks4aConnect";

/** goptlib 0.5's SOCKS4a table (Latin-1 request bytes). */
export const socks4a: readonly Case<string, Socks4aResult>[] = [
  ...[
    "",
    "\x04\x01\x12\x34\x01\x02\x03\x04",
    "\x04\x01\x12\x34\x01\x02\x03\x04key=value",
    "\x04\x01\x12\x34\x00\x00\x00\x01key=value\x00",
    "\x04\x01\x12\x34\x00\x00\x00\x01key=value\x00hostname",
    "\x04\x01\x12\x34\x00\x00\x00\x01userid\x00hostname\x00",
    "\x03\x01\x12\x34\x01\x02\x03\x04\x00",
    "\x04\x02\x12\x34\x01\x02\x03\x04\x00",
    "\x05\x01\x00",
  ].map((input) => ({ test: `${socks4aTest}: bad`, input, expect: ERROR })),
  ...([
    ["\x04\x01\x12\x34\x01\x02\x03\x04key=value\x00", { key: "value" }],
    ["\x04\x01\x12\x34\x01\x02\x03\x04\x00", {}],
  ] as const).map(([input, args]) => ({
    test: `${socks4aTest}: IP`,
    input,
    expect: { hostname: "1.2.3.4", port: 0x1234, args },
  })),
  ...([
    ["\x04\x01\x12\x34\x00\x00\x00\x01key=value\x00hostname\x00", { key: "value" }],
    ["\x04\x01\x12\x34\x00\x00\x00\x01\x00hostname\x00", {}],
  ] as const).map(([input, args]) => ({
    test: `${socks4aTest}: host name`,
    input,
    expect: { hostname: "hostname", port: 4660, args },
  })),
  ...([
    ["\x04\x01\x12\x34\x00\x00\x00\x01key=value\x00\x00", { key: "value" }],
    ["\x04\x01\x12\x34\x00\x00\x00\x01\x00\x00", {}],
  ] as const).map(([input, args]) => ({
    test: `${socks4aTest}: empty host name`,
    input,
    expect: { hostname: "", port: 4660, args },
    differs: "socks4aEmptyName" as const,
    ptkit: ERROR,
  })),
];
