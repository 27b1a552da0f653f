// Copyright the ptkit authors. MIT license.
// goptlib's proxy_test.go (TestGetProxyURL), transcribed as data:
// TOR_PT_PROXY (null: unset) and the URL goptlib returns ("" for none).

import { type Case, ERROR, type Table } from "./case.ts";

const test = "TestGetProxyURL";

/** TestGetProxyURL. */
export const proxyUrl: Table<string | null, string | typeof ERROR> = {
  source: "goptlib proxy_test.go",
  cases: [
    { test: `${test}: unset`, input: null, expect: "" },
    ...[
      "bogus",
      "http:",
      "://127.0.0.1",
      "//127.0.0.1",
      "http:127.0.0.1",
      "://[::1]",
      "//[::1]",
      "http:[::1]",
      "://localhost",
      "//localhost",
      "http:localhost",
      // No port.
      "http://127.0.0.1",
      "socks4a://127.0.0.1",
      "socks5://127.0.0.1",
      "http://127.0.0.1:",
      "http://[::1]",
      "http://localhost",
      "unknown://localhost/whatever",
      // No host.
      "http://:8080",
      "socks4a://:1080",
      "socks5://:1080",
    ].map((input) => ({ test: `${test}: bad`, input, expect: ERROR })),
    // ptkit takes only IP literal hosts, no path, and three schemes.
    ...([
      ["http://127.0.0.1:8080"],
      ["http://127.0.0.1:8080/"],
      ["http://127.0.0.1:8080/path", "proxyStrict"],
      ["http://[::1]:8080"],
      ["http://[::1]:8080/"],
      ["http://[::1]:8080/path", "proxyStrict"],
      ["http://localhost:8080", "proxyStrict"],
      ["http://localhost:8080/", "proxyStrict"],
      ["http://localhost:8080/path", "proxyStrict"],
      ["http://user@localhost:8080", "proxyStrict"],
      ["http://user:password@localhost:8080", "proxyStrict"],
      ["socks5://localhost:1080", "proxyStrict"],
      ["socks4a://localhost:1080", "proxyStrict"],
      ["unknown://localhost:9999/whatever", "proxyStrict"],
    ] as const).map(([input, differs]: readonly [string, "proxyStrict"?]): Case<string, string> =>
      differs === undefined
        ? { test: `${test}: good`, input, expect: input }
        : { test: `${test}: good`, input, expect: input, differs, ptkit: ERROR }
    ),
  ],
};
