// Copyright the ptkit authors. MIT license.
// goptlib's args_test.go, transcribed as data: tor's `k=v;k=v` SOCKS
// arguments, TOR_PT_SERVER_TRANSPORT_OPTIONS and the SMETHOD ARGS encoding.
// goptlib keeps every value of a key; ptkit keeps the first, which is what
// goptlib's Args.Get (what transports call) returns, so results are
// compared through the first value of each key. (TestArgsGet and
// TestArgsAdd test goptlib's Go Args type and have no wire form.)

import { type Args, type Case, ERROR, type Table } from "./case.ts";

type Parsed = Args | typeof ERROR;

/** TestParseClientParameters: the `k=v;k=v` list in a SOCKS user name. */
export const clientParameters: Table<string, Parsed> = {
  source: "goptlib args_test.go",
  cases: [
    ...[
      "key",
      "key\\",
      "=value",
      "==value",
      "==key=value",
      "key=value\\",
      "a=b;key=value\\",
      "a;b=c",
      ";",
      "key=value;",
      ";key=value",
      "key\\=value",
    ].map((input): Case<string, Parsed> => ({
      test: "TestParseClientParameters: bad",
      input,
      expect: ERROR,
    })),
    ...([
      ["", {}],
      ["key=", { key: [""] }],
      ["key==", { key: ["="] }],
      ["key=value", { key: ["value"] }],
      ["a=b=c", { a: ["b=c"] }],
      ["a=bc==", { a: ["bc=="] }],
      ["key=a\nb", { key: ["a\nb"] }],
      ["key=value\\;", { key: ["value;"] }],
      ['key="value"', { key: ['"value"'] }],
      ['key=""value""', { key: ['""value""'] }],
      ['"key=value"', { '"key': ['value"'] }],
      ["key=value;key=value", { key: ["value", "value"] }],
      ["key=value1;key=value2", { key: ["value1", "value2"] }],
      ["key1=value1;key2=value2;key1=value3", { key1: ["value1", "value3"], key2: ["value2"] }],
      ["\\;=\\;;\\\\=\\;", { ";": [";"], "\\": [";"] }],
      ["a\\=b=c", { "a=b": ["c"] }],
      [
        "shared-secret=rahasia;secrets-file=/tmp/blob",
        { "shared-secret": ["rahasia"], "secrets-file": ["/tmp/blob"] },
      ],
      ["rocks=20;height=5.6", { rocks: ["20"], height: ["5.6"] }],
    ] as const).map(([input, expect]) => ({
      test: "TestParseClientParameters: good",
      input,
      expect,
    })),
  ],
};

/** TestParseServerTransportOptions: `TOR_PT_SERVER_TRANSPORT_OPTIONS`. */
export const serverTransportOptions: Table<string, Readonly<Record<string, Args>> | typeof ERROR> =
  {
    source: "goptlib args_test.go",
    cases: [
      ...[
        "t\\",
        ":=",
        "t:=",
        ":k=",
        ":=v",
        "t:=v",
        "t:=v",
        "t:k\\",
        "t:k=v;",
        "abc",
        "t:",
        "key=value",
        "=value",
        "t:k=v\\",
        "t1:k=v;t2:k=v\\",
        "t:=key=value",
        "t:==key=value",
        "t:;key=value",
        "t:key\\=value",
      ].map((input) => ({ test: "TestParseServerTransportOptions: bad", input, expect: ERROR })),
      ...([
        ["", {}],
        ["t:k=v", { t: { k: ["v"] } }],
        ["t:k=v=v", { t: { k: ["v=v"] } }],
        ["t:k=vv==", { t: { k: ["vv=="] } }],
        ["t1:k=v1;t2:k=v2;t1:k=v3", { t1: { k: ["v1", "v3"] }, t2: { k: ["v2"] } }],
        ["t\\:1:k=v;t\\=2:k=v;t\\;3:k=v;t\\\\4:k=v", {
          "t:1": { k: ["v"] },
          "t=2": { k: ["v"] },
          "t;3": { k: ["v"] },
          "t\\4": { k: ["v"] },
        }],
        ["t:k\\:1=v;t:k\\=2=v;t:k\\;3=v;t:k\\\\4=v", {
          t: { "k:1": ["v"], "k=2": ["v"], "k;3": ["v"], "k\\4": ["v"] },
        }],
        ["t:k=v\\:1;t:k=v\\=2;t:k=v\\;3;t:k=v\\\\4", {
          t: { k: ["v:1", "v=2", "v;3", "v\\4"] },
        }],
        ["trebuchet:secret=nou;trebuchet:cache=/tmp/cache;ballista:secret=yes", {
          trebuchet: { secret: ["nou"], cache: ["/tmp/cache"] },
          ballista: { secret: ["yes"] },
        }],
      ] as const).map(([input, expect]) => ({
        test: "TestParseServerTransportOptions: good",
        input,
        expect,
      })),
    ],
  };

/**
 * TestEncodeSmethodArgs: the `ARGS:` field of an SMETHOD line (without its
 * `ARGS:` prefix, which goptlib adds elsewhere).
 */
export const smethodArgs: Table<Args | null, string> = {
  source: "goptlib args_test.go",
  cases: [
    { test: "TestEncodeSmethodArgs: nil", input: null, expect: "" },
    { test: "TestEncodeSmethodArgs: empty", input: {}, expect: "" },
    {
      test: "TestEncodeSmethodArgs: several values per key",
      input: { j: ["v1", "v2", "v3"], k: ["v1", "v2", "v3"] },
      expect: "j=v1,j=v2,j=v3,k=v1,k=v2,k=v3",
      differs: "oneValuePerKey",
      ptkit: "j=v1,k=v1",
    },
    {
      test: "TestEncodeSmethodArgs: escaping",
      input: { "=,\\": ["=", ",", "\\"] },
      expect: "\\=\\,\\\\=\\=,\\=\\,\\\\=\\,,\\=\\,\\\\=\\\\",
      differs: "oneValuePerKey",
      ptkit: "\\=\\,\\\\=\\=",
    },
    { test: "TestEncodeSmethodArgs: one key", input: { secret: ["yes"] }, expect: "secret=yes" },
    {
      test: "TestEncodeSmethodArgs: keys sorted",
      input: { secret: ["nou"], cache: ["/tmp/cache"] },
      expect: "cache=/tmp/cache,secret=nou",
    },
  ],
};
