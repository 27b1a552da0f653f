// Copyright the ptkit authors. MIT license.
// SIP002 `ss://` links as a table: the forms Outline and the Shadowsocks
// apps share, and malformed ones, whose errors never hold the password; and
// `main.ts client ss://...` through ss-server (shadowsocks-libev).

import { deepStrictEqual, ok, throws } from "node:assert";
import { parseSsUri, type SsUri } from "../ipc/cli/_ss_uri.ts";
import { CountingHttpServer, curl, runUntil, TextProcess } from "./cli_util.ts";
import { MAIN } from "./ipc_util.ts";
import { freePort } from "./obfs4_live_helpers.ts";
import { startSsLibev } from "./shadowsocks_util.ts";

const SECRET = "Pw7SecretMark";
const b64url = (text: string) =>
  btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const server = (hostname: string, port: number) => ({ hostname, port });

const ROWS: readonly [name: string, link: string, expected: SsUri | RegExp][] = [
  [
    "base64url userinfo, no padding",
    `ss://${b64url(`chacha20-ietf-poly1305:${SECRET}`)}@192.0.2.1:8388`,
    {
      method: "chacha20-ietf-poly1305",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      tag: "",
    },
  ],
  [
    "base64 userinfo with padding, trailing slash, tag",
    `ss://${btoa(`aes-256-gcm:${SECRET}?`)}@example.com:443/#My%20Server`,
    {
      method: "aes-256-gcm",
      password: `${SECRET}?`,
      server: server("example.com", 443),
      tag: "My Server",
    },
  ],
  [
    "base64url with - and _ (a password with ? and >)",
    `ss://${b64url(`aes-128-gcm:${SECRET}>>??`)}@192.0.2.1:1`,
    { method: "aes-128-gcm", password: `${SECRET}>>??`, server: server("192.0.2.1", 1), tag: "" },
  ],
  [
    "plain percent-encoded userinfo (the 2022 methods)",
    `ss://2022-blake3-aes-256-gcm:${encodeURIComponent(`${SECRET}+/=`)}@[2001:db8::1]:8388#x`,
    {
      method: "2022-blake3-aes-256-gcm",
      password: `${SECRET}+/=`,
      server: server("2001:db8::1", 8388),
      tag: "x",
    },
  ],
  [
    "an '@' left unencoded in the query (RFC 3986 allows it): the userinfo ends before the query",
    `ss://${b64url(`aes-256-gcm:${SECRET}`)}@192.0.2.1:8388/?outline=1&prefix=a@b#x`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      tag: "x",
      prefix: "a@b",
      ignored: ["outline"],
    },
  ],
  [
    "an '@' in the plugin part, with no slash before the query",
    `ss://${b64url(`aes-256-gcm:${SECRET}`)}@192.0.2.1:8388?plugin=p%3Bk%3Du@h`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      plugin: { name: "p", options: { k: "u@h" } },
      tag: "",
    },
  ],
  [
    "go-shadowsocks2's form: plain method:password, the method its AEAD_ name",
    `ss://AEAD_CHACHA20_POLY1305:${SECRET}@192.0.2.1:8488`,
    {
      method: "AEAD_CHACHA20_POLY1305",
      password: SECRET,
      server: server("192.0.2.1", 8488),
      tag: "",
    },
  ],
  [
    "plain userinfo with %3A",
    `ss://aes-256-gcm%3A${SECRET}@192.0.2.1:8388`,
    { method: "aes-256-gcm", password: SECRET, server: server("192.0.2.1", 8388), tag: "" },
  ],
  [
    "a plugin with options, percent-encoded, and other parameters",
    `ss://${
      b64url(`aes-256-gcm:${SECRET}`)
    }@192.0.2.1:8388/?outline=1&plugin=ptkit%3Btransport%3Dobfs4%3Bcert%3Dab%2Bc%3Biat-mode%3D0#tag`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      plugin: { name: "ptkit", options: { transport: "obfs4", cert: "ab+c", "iat-mode": "0" } },
      tag: "tag",
      ignored: ["outline"],
    },
  ],
  [
    "a plugin without options, no slash",
    `ss://${b64url(`aes-256-gcm:${SECRET}`)}@192.0.2.1:8388?plugin=obfs-local`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      plugin: { name: "obfs-local", options: {} },
      tag: "",
    },
  ],
  [
    "a plugin option with an escaped ;",
    `ss://${b64url(`aes-256-gcm:${SECRET}`)}@192.0.2.1:8388/?plugin=p%3Bk%3Da%5C%3Bb`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      plugin: { name: "p", options: { k: "a;b" } },
      tag: "",
    },
  ],
  [
    "the legacy all-base64 form",
    `ss://${btoa(`aes-128-gcm:${SECRET}@192.0.2.9:8000`)}#old`,
    { method: "aes-128-gcm", password: SECRET, server: server("192.0.2.9", 8000), tag: "old" },
  ],
  [
    "standard base64 userinfo with its padding percent-encoded (%3D%3D)",
    `ss://${btoa(`aes-256-gcm:${SECRET}`).replace(/==$/, "%3D%3D")}@192.0.2.1:8388`,
    { method: "aes-256-gcm", password: SECRET, server: server("192.0.2.1", 8388), tag: "" },
  ],
  [
    "standard base64 userinfo with + and / and %3d padding",
    `ss://${btoa(`aes-128-gcm:${SECRET}>>?`).replace(/=/g, "%3d")}@192.0.2.1:1`,
    { method: "aes-128-gcm", password: `${SECRET}>>?`, server: server("192.0.2.1", 1), tag: "" },
  ],
  [
    "a + in the plugin part is a +, not a space (SIP002: percent-encoding, not form encoding)",
    `ss://${
      b64url(`aes-256-gcm:${SECRET}`)
    }@192.0.2.1:8388/?plugin=ptkit%3Btransport%3Dobfs4%3Bcert%3Dab+c/d%3Biat-mode%3D0`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      plugin: { name: "ptkit", options: { transport: "obfs4", cert: "ab+c/d", "iat-mode": "0" } },
      tag: "",
    },
  ],
  [
    "a UTF-8 percent-encoded tag (an emoji, accents)",
    `ss://${b64url(`aes-256-gcm:${SECRET}`)}@192.0.2.1:8388#${encodeURIComponent("🇩🇪 Zürich ✓")}`,
    {
      method: "aes-256-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      tag: "🇩🇪 Zürich ✓",
    },
  ],
  ["another scheme", `ssr://${b64url(`aes-128-gcm:${SECRET}`)}@h:1`, /must start with ss:\/\//],
  ["no port", `ss://${b64url(`aes-128-gcm:${SECRET}`)}@192.0.2.1`, /no port/],
  // One wording for a port out of range, as parseHostPort gives everywhere else.
  [
    "port 0",
    `ss://${b64url(`aes-128-gcm:${SECRET}`)}@192.0.2.1:0`,
    /^Invalid port 0 for ss:\/\/ server "192\.0\.2\.1:0": must be an integer in 1-65535$/,
  ],
  [
    "port 70000",
    `ss://${b64url(`aes-128-gcm:${SECRET}`)}@192.0.2.1:70000`,
    /^Invalid port 70000 for ss:\/\/ server "192\.0\.2\.1:70000": must be an integer in 1-65535$/,
  ],
  ["credentials without a colon", `ss://${b64url(`aes-128-gcm${SECRET}`)}@h:1`, /method:password/],
  ["not base64", `ss://${SECRET}!!@h:1`, /neither base64url nor method:password/],
  ["base64 of bytes that are not UTF-8", "ss://_w@h:1", /not base64 of UTF-8/],
  ["an empty password", `ss://${b64url("aes-128-gcm:")}@h:1`, /password is empty/],
  ["an empty method", `ss://${b64url(`:${SECRET}`)}@h:1`, /method is empty/],
  [
    "a bad percent escape",
    `ss://aes-128-gcm:${SECRET}%zz@h:1`,
    /bad percent-encoding in the credentials/,
  ],
  ["a bad escape in the tag", `ss://${b64url(`aes-128-gcm:${SECRET}`)}@h:1#%`, /the #tag/],
  ["a path", `ss://${b64url(`aes-128-gcm:${SECRET}`)}@h:1/x`, /a path/],
  [
    "a plugin without a name",
    `ss://${b64url(`aes-128-gcm:${SECRET}`)}@h:1/?plugin=%3Bk%3Dv`,
    /no name/,
  ],
  ["two plugins", `ss://${b64url(`a:${SECRET}`)}@h:1/?plugin=a&plugin=b`, /two plugin/],
  ...[`?plugin=`, `?plugin`, `?plugin=&outline=1`, `?plugin=%20`, `?plugin=&plugin=`].map((
    query,
  ): [string, string, SsUri] => [
    `an empty plugin (${query}) is none, as the Shadowsocks apps read it`,
    `ss://${b64url(`aes-128-gcm:${SECRET}`)}@192.0.2.1:8388/${query}`,
    {
      method: "aes-128-gcm",
      password: SECRET,
      server: server("192.0.2.1", 8388),
      tag: "",
      ...(query.includes("outline") ? { ignored: ["outline"] } : {}),
    },
  ]),
  [
    "a plugin option with a trailing backslash",
    `ss://${b64url(`a:${SECRET}`)}@h:1/?plugin=p%3Bk%3D${SECRET}%5C`,
    /trailing backslash/,
  ],
  // Copied from a web page: white space around the link is not its own.
  ...[" ", "\n", "\r\n", "\t", "\u00a0"].map((space): [string, string, SsUri] => [
    `white space ${
      [...space].map((c) => `U+${c.charCodeAt(0).toString(16).padStart(4, "0")}`).join(" ")
    } around the link`,
    `${space}ss://${b64url(`aes-128-gcm:${SECRET}`)}@192.0.2.1:8388#t${space}`,
    { method: "aes-128-gcm", password: SECRET, server: server("192.0.2.1", 8388), tag: "t" },
  ]),
  [
    "a plugin that gives transport twice",
    `ss://${b64url(`a:${SECRET}`)}@h:1/?plugin=ptkit%3Btransport%3Dplain%3Btransport%3Dobfs4`,
    /^Cannot parse the ss:\/\/ link: the plugin gives 'transport' more than once$/,
  ],
  ["legacy without @", `ss://${btoa(`aes-128-gcm:${SECRET}`)}`, /no '@'/],
  ["an empty link", "ss://", /./],
  // RFC 6874: a zone in a URI is written %25 (the link-local server of a LAN).
  [
    "an IPv6 zone written %25, as RFC 6874 has it in a URI",
    `ss://${b64url(`aes-128-gcm:${SECRET}`)}@[fe80::1%25eth0]:8388`,
    {
      method: "aes-128-gcm",
      password: SECRET,
      server: server("fe80::1%eth0", 8388),
      tag: "",
    },
  ],
  [
    "a host name with a percent-encoded letter (RFC 3986 reg-name)",
    `ss://${b64url(`aes-128-gcm:${SECRET}`)}@ex%41mple.com:8388`,
    { method: "aes-128-gcm", password: SECRET, server: server("exAmple.com", 8388), tag: "" },
  ],
  ["a bad IPv6 host", `ss://${b64url(`a:${SECRET}`)}@[::1:1`, /./],
];

for (const [name, link, expected] of ROWS) {
  Deno.test(`parseSsUri: ${name}`, () => {
    if (expected instanceof RegExp) {
      throws(() => parseSsUri(link), (error: Error) => {
        ok(error instanceof SyntaxError || error instanceof RangeError, String(error));
        ok(expected.test(error.message), error.message);
        ok(!error.message.includes(SECRET), `the password in: ${error.message}`);
        ok(!error.message.includes(b64url(`a:${SECRET}`).slice(0, 12)), error.message);
        return true;
      });
      return;
    }
    deepStrictEqual(parseSsUri(link), expected);
  });
}

// --- main.ts client ss://... -------------------------------------------------

Deno.test("main.ts client ss://...: a SOCKS5 proxy through ss-server (names unresolved)", async () => {
  await using http = new CountingHttpServer("hello through a link\n");
  const method = "aes-128-gcm";
  await using ssServer = await startSsLibev("ss-server", { method, password: SECRET });
  const state = await Deno.makeTempDir();
  const socks = freePort();
  const link = `ss://${b64url(`${method}:${SECRET}`)}@127.0.0.1:${ssServer.port}#Test%20box`;
  try {
    await using client = new TextProcess(MAIN, [
      ...["client", link, "--socks", `127.0.0.1:${socks}`, "--state", state],
      ...["--log-level", "debug"],
    ]);
    await client.waitFor(/SOCKS5 proxy: 127\.0\.0\.1:[0-9]+/);
    ok(client.stdout.includes(`Shadowsocks ${method} to 127.0.0.1:${ssServer.port} (Test box)`));
    // Any Shadowsocks server relays to its clients' destinations: no hint
    // that it must be main.ts server or -target socks, nor about torrc.
    ok(!/main\.ts server|-target socks|torrc/.test(client.stdout), client.stdout);
    const result = await curl([
      "--socks5-hostname",
      `127.0.0.1:${socks}`,
      `http://localhost:${http.port}/`,
    ]);
    deepStrictEqual(result.out, "hello through a link\n", result.err + client.stderr);
    deepStrictEqual(await client.interrupt(), 0);
    ok(!(client.stdout + client.stderr).includes(SECRET), "the password was printed");
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client ss://...: bad links and foreign plugins fail with 64, never printing the password", async () => {
  const good = b64url(`aes-128-gcm:${SECRET}`);
  for (
    const [link, message] of [
      [`ss://${good}@127.0.0.1`, /no port/],
      [`ss://aes-128-gcm:${SECRET}%zz@127.0.0.1:1`, /bad percent-encoding/],
      [`ss://${good}@127.0.0.1:1/?plugin=obfs-local%3Bobfs%3Dhttp`, /"obfs-local" is not ptkit/],
      [`ss://${good}@127.0.0.1:1/?plugin=ptkit%3Btransport%3Dbogus`, /Unknown plugin transport/],
      // go-shadowsocks2's link: the method is named, with ss-libev's name for it.
      [
        `ss://AEAD_AES_256_GCM:${SECRET}@127.0.0.1:1`,
        /"AEAD_AES_256_GCM" \(another program's name for aes-256-gcm: write that\)/,
      ],
    ] as const
  ) {
    await using client = new TextProcess(MAIN, ["client", link, "--socks", "127.0.0.1:0"]);
    const status = await client.child.status;
    await client.done;
    deepStrictEqual(status.code, 64, client.stderr);
    ok(message.test(client.stderr), client.stderr);
    ok(!(client.stdout + client.stderr).includes(SECRET), `password printed: ${client.stderr}`);
  }
});

Deno.test("main.ts client ssconf://... (an Outline dynamic access key) is said to be a key to fetch, not an unexpected argument; the key's address is not printed (64)", async () => {
  for (
    const key of [`ssconf://keys.example/${SECRET}#box`, ` SSCONF://keys.example:8443/${SECRET}`]
  ) {
    for (const args of [[key, "--socks", "127.0.0.1:0"], ["--socks", "127.0.0.1:0", key]]) {
      await using client = new TextProcess(MAIN, ["client", ...args]);
      const status = await client.child.status;
      await client.done;
      deepStrictEqual(status.code, 64, client.stderr);
      ok(/Outline dynamic access key/.test(client.stderr), client.stderr);
      ok(!client.stderr.includes("Unexpected argument"), client.stderr);
      ok(!(client.stdout + client.stderr).includes(SECRET), `key printed: ${client.stderr}`);
      ok(!client.stderr.includes("keys.example"), client.stderr);
    }
  }
});

Deno.test("main.ts client ss://...: a link with white space around it (copied from a web page) is the link", async () => {
  const link = `ss://${b64url(`aes-128-gcm:${SECRET}`)}@127.0.0.1:8388`;
  const state = await Deno.makeTempDir();
  try {
    for (const arg of [`${link} `, ` ${link}`, `\t${link}\n`, `\u00a0${link}\u00a0`]) {
      for (const args of [[arg, "--socks", "127.0.0.1:0"], ["--socks", "127.0.0.1:0", arg]]) {
        const { code, out, err } = await runUntil(
          ["client", ...args, "--state", state],
          "SOCKS5 proxy:",
        );
        deepStrictEqual(code, 0, err);
        ok(out.includes("Shadowsocks aes-128-gcm to 127.0.0.1:8388"), out + err);
        ok(!(out + err).includes(SECRET), "password printed");
      }
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client ss://...: an Outline link's prefix= starts each connection's salt, as Outline's clients send it, and ss-server serves it", async () => {
  await using http = new CountingHttpServer("hello with a prefix\n");
  const method = "aes-128-gcm";
  await using ssServer = await startSsLibev("ss-server", { method, password: SECRET });
  // A relay in front of ss-server that keeps each connection's first bytes.
  const firsts: Uint8Array[] = [];
  const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const relaying = (async () => {
    for await (const conn of relay) {
      (async () => {
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port: ssServer.port });
        const buffer = new Uint8Array(4096);
        const n = await conn.read(buffer);
        if (n === null) return conn.close();
        firsts.push(buffer.slice(0, n));
        await upstream.write(buffer.subarray(0, n));
        await Promise.all([
          conn.readable.pipeTo(upstream.writable),
          upstream.readable.pipeTo(conn.writable),
        ])
          .catch(() => {});
      })().catch(() => {});
    }
  })();
  const state = await Deno.makeTempDir();
  const socks = freePort();
  // Outline's HTTPS-request prefix: 16 03 01 00 A8 01 01 (U+00A8 as %C2%A8).
  const link = `ss://${b64url(`${method}:${SECRET}`)}@127.0.0.1:${relay.addr.port}/` +
    `?outline=1&prefix=%16%03%01%00%C2%A8%01%01#x`;
  try {
    await using client = new TextProcess(MAIN, [
      ...["client", link, "--socks", `127.0.0.1:${socks}`, "--state", state],
    ]);
    await client.waitFor(/SOCKS5 proxy: 127\.0\.0\.1:[0-9]+/);
    ok(!/prefix/.test(client.stderr), client.stderr);
    for (let i = 0; i < 2; i++) {
      const result = await curl([
        "--socks5-hostname",
        `127.0.0.1:${socks}`,
        `http://localhost:${http.port}/`,
      ]);
      deepStrictEqual(result.out, "hello with a prefix\n", result.err + client.stderr);
    }
    deepStrictEqual(firsts.length, 2);
    for (const first of firsts) {
      deepStrictEqual([...first.subarray(0, 7)], [0x16, 0x03, 0x01, 0x00, 0xa8, 0x01, 0x01]);
    }
    // The rest of the salt is random: the two connections' salts differ.
    ok(firsts[0]!.subarray(7, 16).some((b, i) => b !== firsts[1]![7 + i]));
    deepStrictEqual(await client.interrupt(), 0);
    ok(!(client.stdout + client.stderr).includes(SECRET), "the password was printed");
  } finally {
    relay.close();
    await relaying.catch(() => {});
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client ss://...: a prefix= Outline's clients refuse (a character above U+00FF) or one as long as the salt is refused (64), naming it", async () => {
  const base = `ss://${b64url(`aes-128-gcm:${SECRET}`)}@127.0.0.1:8388/`;
  for (
    const [query, message] of [
      ["?prefix=%E2%82%AC", /option 'prefix' must be percent-encoded as in an Outline access key/],
      ["?prefix=%A8", /option 'prefix' must be percent-encoded/],
      [`?prefix=${"A".repeat(16)}`, /'prefix' is 16 bytes, but aes-128-gcm's salt is 16/],
    ] as const
  ) {
    await using client = new TextProcess(MAIN, ["client", base + query, "--socks", "127.0.0.1:0"]);
    const status = await client.child.status;
    await client.done;
    deepStrictEqual(status.code, 64, client.stderr);
    ok(message.test(client.stderr), client.stderr);
    ok(!(client.stdout + client.stderr).includes(SECRET), "password printed");
  }
});

Deno.test("main.ts client ss://...?plugin=ptkit;...: the SIP003 plugin's own keys (server, state, loglevel) pasted with the server's options are ignored, not given to the transport", async () => {
  const state = await Deno.makeTempDir();
  try {
    // A cert as the server plugin prints it: 52 bytes, base64 without padding.
    const cert = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(52))))
      .replace(/=+$/, "");
    const plugin = encodeURIComponent(
      `ptkit;server;transport=obfs4;state=${state}/elsewhere;loglevel=debug;cert=${cert};iat-mode=0`,
    );
    const link = `ss://${b64url(`aes-128-gcm:${SECRET}`)}@127.0.0.1:8388/?plugin=${plugin}`;
    const { code, out, err } = await runUntil(
      ["client", link, "--socks", "127.0.0.1:0", "--state", state],
      "SOCKS5 proxy:",
    );
    deepStrictEqual(code, 0, err);
    ok(out.includes("Shadowsocks aes-128-gcm over obfs4 to 127.0.0.1:8388"), out + err);
    // Nothing about unknown options; the link's state= is not used, nor its loglevel.
    ok(!/unknown option|\[debug\]|\[info\]/.test(err), err);
    await Deno.stat(`${state}/elsewhere`).then(
      () => Promise.reject(new Error("the link's state= was used")),
      (error) => ok(error instanceof Deno.errors.NotFound),
    );
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client ss://...?plugin=ptkit;...: a plugin option given twice keeps its first value and is said once (as SIP003 says it), never its value", async () => {
  const state = await Deno.makeTempDir();
  try {
    const repeated: string[] = [];
    const uri = parseSsUri(
      `ss://${b64url(`aes-128-gcm:${SECRET}`)}@127.0.0.1:8388/?plugin=${
        encodeURIComponent("ptkit;transport=plain;foo=FirstMark;foo=SecondMark;bar=1;foo=Third")
      }`,
      { onRepeatedKey: (key) => repeated.push(key) },
    );
    deepStrictEqual(uri.plugin?.options, { transport: "plain", foo: "FirstMark", bar: "1" });
    deepStrictEqual(repeated, ["foo"]);
    const plugin = encodeURIComponent("ptkit;transport=plain;foo=FirstMark;foo=SecondMark");
    const link = `ss://${b64url(`aes-128-gcm:${SECRET}`)}@127.0.0.1:8388/?plugin=${plugin}`;
    const { code, out, err } = await runUntil(
      ["client", link, "--socks", "127.0.0.1:0", "--state", state],
      "SOCKS5 proxy:",
    );
    deepStrictEqual(code, 0, err);
    deepStrictEqual(
      (out + err).match(/.*more than once.*/g),
      ['ptkit client: The link\'s plugin options give "foo" more than once; using its first value'],
      out + err,
    );
    ok(!/FirstMark|SecondMark/.test(out + err), out + err);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

/**
 * Run main.ts client with an aes-128-gcm link whose plugin options
 * (`plugin`, as the link writes them before encoding) its transport
 * refuses: its exit status must be 64; its standard error.
 */
async function refusedLink(plugin: string): Promise<string> {
  const state = await Deno.makeTempDir();
  try {
    const link = `ss://${b64url(`aes-128-gcm:${SECRET}`)}@127.0.0.1:8388/?plugin=${
      encodeURIComponent(plugin)
    }`;
    const { code, err } = await runUntil([
      "client",
      link,
      "--socks",
      "127.0.0.1:0",
      "--state",
      state,
    ]);
    deepStrictEqual(code, 64, err);
    return err;
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

Deno.test("main.ts client ss://...?plugin=ptkit;transport=webtunnel without url=: the error names the link's plugin option, not a bridge line", async () => {
  const err = await refusedLink("ptkit;transport=webtunnel");
  deepStrictEqual(
    err,
    "ptkit: error: Cannot configure webtunnel: missing required option 'url' (the link's plugin option url=https://HOST/SECRET-PATH)\n",
  );
});

Deno.test("main.ts client ss://...?plugin=ptkit;transport=obfs4;cert=<bad>: the error names the link's plugin option cert=, never a layer key obfs4.cert the link does not have", async () => {
  const err = await refusedLink("ptkit;transport=obfs4;cert=abc;iat-mode=0");
  ok(err.includes("(the link's plugin option cert=)\n"), err);
  // The link is carried as Shadowsocks inside a stack of layers, whose
  // keys are written 'obfs4.cert': the link writes cert=.
  ok(!err.includes("obfs4.<key>") && !err.includes("obfs4.cert"), err);
  ok(!err.includes(SECRET), err);
});

Deno.test("main.ts client ss://...: the link may follow the flags; the #tag prints as UTF-8", async () => {
  await using http = new CountingHttpServer("link after flags\n");
  const method = "aes-128-gcm";
  const state = await Deno.makeTempDir();
  const socks = freePort();
  // Standard base64 with its padding percent-encoded, as some apps share it.
  const userinfo = btoa(`${method}:${SECRET}x`).replace(/=/g, "%3D");
  ok(userinfo.includes("%3D"));
  await using ssServer2 = await startSsLibev("ss-server", { method, password: `${SECRET}x` });
  const link = `ss://${userinfo}@127.0.0.1:${ssServer2.port}#${encodeURIComponent("🚀 Box\u202e")}`;
  try {
    await using client = new TextProcess(MAIN, [
      ...["client", "--socks", `127.0.0.1:${socks}`, "--state", state, link],
    ]);
    await client.waitFor(/SOCKS5 proxy: 127\.0\.0\.1:[0-9]+/);
    ok(
      client.stdout.includes(`Shadowsocks ${method} to 127.0.0.1:${ssServer2.port} (🚀 Box?)`),
      client.stdout,
    );
    const result = await curl([
      "--socks5-hostname",
      `127.0.0.1:${socks}`,
      `http://localhost:${http.port}/`,
    ]);
    deepStrictEqual(result.out, "link after flags\n", result.err + client.stderr);
    deepStrictEqual(await client.interrupt(), 0);
    ok(!(client.stdout + client.stderr).includes(SECRET), "the password was printed");
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client ss://... over ptkit's WebTunnel plugin names the host it dials (the URL's), not the link's", async () => {
  const state = await Deno.makeTempDir();
  try {
    const plugin = encodeURIComponent(
      "ptkit;transport=webtunnel;url=https://bridge.example:8443/6d0c2f8a;ver=0.0.3",
    );
    const link = `ss://${b64url(`aes-128-gcm:${SECRET}`)}@192.0.2.1:8388/?plugin=${plugin}`;
    const { code, out, err } = await runUntil(
      ["client", "--socks", "127.0.0.1:0", "--state", state, link],
      "Ctrl-C stops",
    );
    deepStrictEqual(code, 0, err);
    ok(out.includes("Shadowsocks aes-128-gcm over webtunnel to bridge.example:8443\n"), out);
    ok(!(out + err).includes(SECRET), "the password was printed");
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts server --options @FILE and client @FILE: the password never shows on a command line; a missing file is named, exit 64", async () => {
  await using http = new CountingHttpServer("hello from files\n");
  const method = "chacha20-ietf-poly1305";
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/server.options`, `method=${method};password=${SECRET}\n`);
    await using server = new TextProcess(MAIN, [
      ...["server", "--transport", "shadowsocks", "--listen", "127.0.0.1:0"],
      ...["--options", `@${dir}/server.options`, "--allow", "loopback", "--state", `${dir}/s`],
    ]);
    const [, port] = await server.waitFor(/shadowsocks listening on 127\.0\.0\.1:([0-9]+)/);
    await Deno.writeTextFile(
      `${dir}/link`,
      `ss://${b64url(`${method}:${SECRET}`)}@127.0.0.1:${port}\n`,
    );
    const socks = freePort();
    await using client = new TextProcess(MAIN, [
      ...["client", `@${dir}/link`, "--socks", `127.0.0.1:${socks}`, "--state", `${dir}/c`],
    ]);
    await client.waitFor(/SOCKS5 proxy: 127\.0\.0\.1:[0-9]+/);
    const result = await curl([
      "--socks5-hostname",
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${http.port}/`,
    ]);
    deepStrictEqual(result.out, "hello from files\n", result.err + client.stderr + server.stderr);
    for (const pid of [server.child.pid, client.child.pid]) {
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
      ok(!cmdline.includes(SECRET), "the password is on a command line");
    }
    deepStrictEqual(await client.interrupt(), 0);
    deepStrictEqual(await server.interrupt(), 0);
    ok(!(client.stdout + client.stderr + server.stdout + server.stderr).includes(SECRET));
    await using missing = new TextProcess(MAIN, ["client", `@${dir}/nowhere`]);
    deepStrictEqual((await missing.child.status).code, 64);
    await missing.done;
    ok(missing.stderr.includes(`${dir}/nowhere`), missing.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
