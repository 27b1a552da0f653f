// Copyright the ptkit authors. MIT license.
// goptlib's pt_test.go, transcribed as data. Environment tables become
// TOR_PT_* variables given to ptkit; line tables become IpcOutput calls;
// the Extended ORPort tables become what a scripted tor sends to and
// receives from ptkit's Extended ORPort client. Not transcribed (Go API
// only, no wire form in ptkit): TestExtOrSendCommand (goptlib's generic
// command writer; ptkit writes only USERADDR, TRANSPORT and DONE, checked
// below) and TestExtOrPortSetupFailSetDeadline (Go's SetDeadline failing).

import { type Case, ERROR, type Table } from "./case.ts";

type Failed = typeof ERROR;

const source = "goptlib pt_test.go";

/** TestErrors: the error lines (keyword and arguments). */
export const errorLines: Table<readonly [string, string], string> = {
  source,
  cases: ([
    [["ENV-ERROR", "XYZ"], "ENV-ERROR XYZ"],
    [["VERSION-ERROR", "XYZ"], "VERSION-ERROR XYZ"],
    [["CMETHOD-ERROR", "method XYZ"], "CMETHOD-ERROR method XYZ"],
    [["SMETHOD-ERROR", "method XYZ"], "SMETHOD-ERROR method XYZ"],
    [["PROXY-ERROR", "XYZ"], "PROXY-ERROR XYZ"],
  ] as const).map(([input, expect]) => ({ test: "TestErrors", input, expect })),
};

/** TestKeywordIsSafe: may this be a line's keyword? */
export const keywordIsSafe: Table<string, boolean> = {
  source,
  cases: [
    { test: "TestKeywordIsSafe", input: "", expect: true, differs: "emptyKeyword", ptkit: false },
    ...([
      ["0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_", true],
      ["CMETHOD", true],
      ["CMETHOD:", false],
      ["a b c", false],
      ["CMETHOD\x7f", false],
      ["CMETHOD\x80", false],
      ["CMETHOD\x81", false],
      ["CMETHOD\xff", false],
      ["\xffCMETHOD", false],
      ["CM\u00c9THOD", false],
    ] as const).map(([input, expect]) => ({ test: "TestKeywordIsSafe", input, expect })),
  ],
};

/** TestArgIsSafe: can this argument go on a line unchanged? */
export const argIsSafe: Table<string, boolean> = {
  source,
  cases: ([
    ["", true],
    ["abc", true],
    ["127.0.0.1:8000", true],
    ["\u00e9tude", false],
    ["a\nb", false],
    ["a\\b", true],
    ["ab\\", true],
    ["ab\\\n", false],
    ["ab\n\\", false],
    ["abc\x7f", true],
    ["abc\x80", false],
    ["abc\x81", false],
    ["abc\xff", false],
    ["abc\xff", false],
    ["var=GVsbG8\\=", true],
  ] as const).map(([input, expect]): Case<string, boolean> =>
    input === "abc\x7f"
      ? { test: "TestArgIsSafe", input, expect, differs: "delReplaced", ptkit: false }
      : { test: "TestArgIsSafe", input, expect }
  ),
};

/** TestGetManagedTransportVer: `TOR_PT_MANAGED_TRANSPORT_VER` (null: unset). */
export const managedTransportVer: Table<string | null, string | Failed> = {
  source,
  cases: [
    { test: "TestGetManagedTransportVer: unset", input: null, expect: ERROR },
    { test: "TestGetManagedTransportVer: bad", input: "", expect: ERROR },
    {
      test: "TestGetManagedTransportVer: bad",
      input: "2",
      expect: ERROR,
      differs: "version2",
      ptkit: "2",
    },
    { test: "TestGetManagedTransportVer: good", input: "1", expect: "1" },
    { test: "TestGetManagedTransportVer: good", input: "1,1", expect: "1" },
    {
      test: "TestGetManagedTransportVer: good",
      input: "1,2",
      expect: "1",
      differs: "version2",
      ptkit: "2",
    },
    {
      test: "TestGetManagedTransportVer: good",
      input: "2,1",
      expect: "1",
      differs: "version2",
      ptkit: "2",
    },
  ],
};

/** TestGetClientTransports: `TOR_PT_CLIENT_TRANSPORTS` (null: unset). */
export const clientTransports: Table<string | null, readonly string[] | Failed> = {
  source,
  cases: [
    { test: "TestGetClientTransports: unset", input: null, expect: ERROR },
    ...([
      ["alpha", ["alpha"]],
      ["alpha,beta", ["alpha", "beta"]],
      ["alpha,beta,gamma", ["alpha", "beta", "gamma"]],
      ["*", ["*"]],
      ["alpha,*,gamma", ["alpha", "*", "gamma"]],
      ["alpha\\,beta", ["alpha\\", "beta"]],
    ] as const).map(([input, expect]) => ({ test: "TestGetClientTransports", input, expect })),
  ],
};

/**
 * TestResolveAddr, as `TOR_PT_ORPORT`: is the address accepted? (The
 * repaired address of `1:2::3:4:9999` is checked by relaying to an
 * unbracketed `::1` ORPort in ipc_reference_fixes_test.ts.)
 */
export const orPort: Table<string, "accepted" | Failed> = {
  source,
  cases: [
    ...[
      "",
      "1.2.3.4",
      "1.2.3.4:",
      "9999",
      ":9999",
      "[1:2::3:4]",
      "[1:2::3:4]:",
      "[1::2::3:4]",
      "1:2::3:4::9999",
      "1:2:3:4::9999",
      "localhost:9999",
      "[localhost]:9999",
      "1.2.3.4:http",
      "1.2.3.4:0x50",
      "1.2.3.4:-65456",
      "1.2.3.4:65536",
      "1.2.3.4:80\x00",
      "1.2.3.4:80 ",
      " 1.2.3.4:80",
      "1.2.3.4 : 80",
    ].map((input): Case<string, "accepted" | Failed> =>
      input === "localhost:9999"
        // Host names in TOR_PT_ORPORT become an ENV-ERROR with issue 11.
        ? { test: "TestResolveAddr: bad", input, expect: ERROR, pending: 11, ptkit: "accepted" }
        : { test: "TestResolveAddr: bad", input, expect: ERROR }
    ),
    ...["1.2.3.4:9999", "[1:2::3:4]:9999", "1:2::3:4:9999"].map((input) => ({
      test: "TestResolveAddr: good",
      input,
      expect: "accepted" as const,
    })),
  ],
};

/** The server variables of TestGetServerBindaddrs (null: unset). */
export interface ServerEnv {
  readonly bindaddr: string | null;
  readonly transports: string | null;
  readonly options: string;
}

/** A transport the server side serves, and where. */
export interface Served {
  readonly name: string;
  readonly addr: string;
}

const FREE = "127.0.0.1:0";

/** TestGetServerBindaddrs: which transports are served, where. */
export const serverBindaddrs: Table<ServerEnv, readonly Served[] | Failed> = {
  source,
  cases: [
    {
      test: "TestGetServerBindaddrs: unset",
      input: { bindaddr: null, transports: null, options: "" },
      expect: ERROR,
    },
    ...([
      ["alpha", "alpha", ""],
      ["alpha-1.2.3.4", "alpha", ""],
      ["alpha-1.2.3.4:1111", "", "alpha:key=value"],
      ["alpha-1.2.3.4:1111", "alpha", "key=value"],
      ["alpha\\,beta-1.2.3.4:1111", "alpha\\,beta", ""],
      ["alpha-0.0.0.0:1234,alpha-[::]:1234", "alpha", ""],
      ["alpha-0.0.0.0:1234,alpha-0.0.0.0:1234", "alpha", ""],
    ] as const).map(([bindaddr, transports, options]) => ({
      test: "TestGetServerBindaddrs: bad",
      input: { bindaddr, transports, options },
      expect: ERROR,
    })),
    {
      test: "TestGetServerBindaddrs: good",
      input: {
        bindaddr: "alpha-1.2.3.4:1111,beta-[1:2::3:4]:2222",
        transports: "alpha,beta,gamma",
        options: "alpha:k1=v1,beta:k2=v2,gamma:k3=v3",
      },
      expect: [{ name: "alpha", addr: "1.2.3.4:1111" }, { name: "beta", addr: "[1:2::3:4]:2222" }],
      differs: "freePort",
      ptkit: [
        { name: "alpha", addr: "1.2.3.4:1111" },
        { name: "beta", addr: "[1:2::3:4]:2222" },
        { name: "gamma", addr: FREE },
      ],
    },
    {
      test: "TestGetServerBindaddrs: good",
      input: { bindaddr: "alpha-1.2.3.4:1111", transports: "xxx", options: "" },
      expect: [],
    },
    {
      test: "TestGetServerBindaddrs: good",
      input: { bindaddr: "alpha-1.2.3.4:1111", transports: "alpha,beta,gamma", options: "" },
      expect: [{ name: "alpha", addr: "1.2.3.4:1111" }],
      differs: "freePort",
      ptkit: [
        { name: "alpha", addr: "1.2.3.4:1111" },
        { name: "beta", addr: FREE },
        { name: "gamma", addr: FREE },
      ],
    },
    {
      test: "TestGetServerBindaddrs: good",
      input: {
        bindaddr: "trebuchet-127.0.0.1:1984,ballista-127.0.0.1:4891",
        transports: "trebuchet,ballista",
        options: "trebuchet:secret=nou;trebuchet:cache=/tmp/cache;ballista:secret=yes",
      },
      expect: [
        { name: "trebuchet", addr: "127.0.0.1:1984" },
        { name: "ballista", addr: "127.0.0.1:4891" },
      ],
    },
    {
      test: "TestGetServerBindaddrs: good",
      input: { bindaddr: "alpha-1.2.3.4:1111,beta-[1:2::3:4]:2222", transports: "*", options: "" },
      expect: [],
    },
  ],
};

const HEADER = "! Extended ORPort Auth Cookie !\n";
const COOKIE = "0123456789ABCDEF0123456789ABCDEF";

/** TestReadAuthCookie: the file's content (Latin-1) and the cookie read. */
export const authCookie: Table<string, string | Failed> = {
  source,
  cases: [
    { test: "TestReadAuthCookie: empty", input: "", expect: ERROR },
    {
      test: "TestReadAuthCookie: bad header",
      input: "! Impostor ORPort Auth Cookie !\n" + COOKIE,
      expect: ERROR,
    },
    { test: "TestReadAuthCookie: too short", input: HEADER + COOKIE.slice(0, -1), expect: ERROR },
    { test: "TestReadAuthCookie: too long", input: HEADER + COOKIE + "X", expect: ERROR },
    { test: "TestReadAuthCookie: good", input: HEADER + COOKIE, expect: COOKIE },
  ],
};

/**
 * TestComputeServerHash and TestComputeClientHash: with an all-zero cookie
 * and nonces, the hash tor sends (which ptkit must accept) and the hash
 * ptkit sends back (hex).
 */
export const extOrHashes: Table<"server" | "client", string> = {
  source,
  cases: [
    {
      test: "TestComputeServerHash",
      input: "server",
      expect: "9e221919982a84f75faf60ef926949796268c97833e06960ff265369a90fd6d8",
    },
    {
      test: "TestComputeClientHash",
      input: "client",
      expect: "0f368b1bee24aabc54a9114ce06c070f3ed99d0d368f599ccc6dfdc8bf457a62",
    },
  ],
};

/** TestExtOrSendUserAddr: the client address sent in USERADDR. */
export const extOrUserAddr: Table<string, string> = {
  source,
  cases: [
    "0.0.0.0:0",
    "1.2.3.4:9999",
    "255.255.255.255:65535",
    "[::]:0",
    "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:63335",
  ].map((input) => ({ test: "TestExtOrSendUserAddr", input, expect: input })),
};

/** TestExtOrPortSendTransport: the TRANSPORT command sent for a name (hex; "" for none). */
export const extOrTransport: Table<string, string> = {
  source,
  cases: [
    {
      test: "TestExtOrPortSendTransport",
      input: "",
      expect: "00020000",
      differs: "emptyTransportCommand",
      ptkit: "",
    },
    { test: "TestExtOrPortSendTransport", input: "a", expect: "0002000161" },
    { test: "TestExtOrPortSendTransport", input: "alpha", expect: "00020005616c706861" },
  ],
};

/** TestExtOrPortSendDone: the DONE command (hex). */
export const extOrDone: Table<null, string> = {
  source,
  cases: [{ test: "TestExtOrPortSendDone", input: null, expect: "00000000" }],
};

/** What ptkit reads of one command from tor: its body and what is left after it. */
export interface Received {
  readonly body: string;
  readonly leftover: string;
}

/**
 * TestExtOrPortRecvCommand: a command from tor (Latin-1). ptkit ignores
 * commands other than OKAY and DENY, so a good command is followed by OKAY
 * and the leftover bytes: ptkit must read the command's body exactly (then
 * OKAY) and leave the leftover for the relay.
 */
export const extOrReceive: Table<string, Received | Failed> = {
  source,
  cases: [
    ...["", "\x12", "\x12\x34", "\x12\x34\x00", "\x12\x34\x00\x01"].map((input) => ({
      test: "TestExtOrPortRecvCommand: bad",
      input,
      expect: ERROR,
    })),
    ...([
      ["\x12\x34\x00\x00", "", ""],
      ["\x12\x34\x00\x00more", "", "more"],
      ["\x12\x34\x00\x04body", "body", ""],
      ["\x12\x34\x00\x04bodymore", "body", "more"],
    ] as const).map(([input, body, leftover]) => ({
      test: "TestExtOrPortRecvCommand: good",
      input,
      expect: { body, leftover },
    })),
  ],
};

/** The metadata commands ptkit sends before DONE. */
export interface Metadata {
  readonly userAddr?: string;
  readonly transport?: string;
}

/** TestExtOrPortSetMetadata: client address and transport name ("" for none). */
export const extOrMetadata: Table<{ readonly addr: string; readonly name: string }, Metadata> = {
  source,
  cases: [
    [{ addr: "", name: "" }, {}],
    [{ addr: "127.0.0.1:40000", name: "" }, { userAddr: "127.0.0.1:40000" }],
    [{ addr: "", name: "alpha" }, { transport: "alpha" }],
    [
      { addr: "127.0.0.1:40000", name: "alpha" },
      { userAddr: "127.0.0.1:40000", transport: "alpha" },
    ],
  ].map(([input, expect]) => ({
    test: "TestExtOrPortSetMetadata",
    input: input as { addr: string; name: string },
    expect: expect as Metadata,
  })),
};

/** Where TestMakeStateDir points `TOR_PT_STATE_LOCATION`. */
export type StateLocation =
  | "unset"
  | "an existing directory"
  | "a new directory"
  | "a new directory in a new directory"
  | "a file"
  | "below a file";

/** TestMakeStateDir: is the state directory there afterwards? */
export const stateDir: Table<StateLocation, "created" | Failed> = {
  source,
  cases: [
    {
      test: "TestMakeStateDir: unset",
      input: "unset",
      expect: ERROR,
      differs: "stateDefault",
      ptkit: "created",
    },
    ...(["an existing directory", "a new directory", "a new directory in a new directory"] as const)
      .map((input) => ({ test: "TestMakeStateDir: good", input, expect: "created" as const })),
    ...(["a file", "below a file"] as const).map((input) => ({
      test: "TestMakeStateDir: bad",
      input,
      expect: ERROR,
    })),
  ],
};

const ALL_BYTES = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join("");

/** TestEncodeCString: a LOG message, and what the parent decodes. */
export const cString: Table<string, string> = {
  source,
  cases: [
    "",
    '"',
    '""',
    'abc"def',
    "\\",
    "\\\\",
    "\x0123abc",
    "\n\r\t\x7f",
    "\\377",
    ALL_BYTES,
  ].map((input): Case<string, string> => {
    const lossy = input.replace(/[^\x20-\x7e\n\r\t]/g, "?");
    return lossy === input
      ? { test: "TestEncodeCString", input, expect: input }
      : { test: "TestEncodeCString", input, expect: input, differs: "noOctal", ptkit: lossy };
  }),
};
