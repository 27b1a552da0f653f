// Copyright the ptkit authors. MIT license.
// No secret is ever printed: every error path we can reach is driven with
// marker secrets (upstream proxy passwords, the Extended ORPort cookie, obfs4
// private keys and drbg seeds, TURN passwords) and client addresses
// (127.0.0.x sources), and none may appear on stdout, stderr, or in an error
// that reaches either. Processes run with -logLevel debug where they take it,
// so every LOG line is seen.

import { ok } from "node:assert";
import { MAIN, startMicrosocks } from "./ipc_util.ts";
import { TextProcess } from "./cli_util.ts";
import { type FakeBehaviour, FakeExtOrPort } from "./ext_orport_fake.ts";
import { boundDial } from "../ipc/managed/_outbound_dialer.ts";
import { launchClient } from "../ipc/adapter/mod.ts";
import { parseTransportOptions } from "../ipc/lines/_args.ts";
import { parseUpstreamProxy } from "../ipc/managed/_proxy_uri.ts";

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const base64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));

// --- The marker secrets -----------------------------------------------------

const PROXY_MARK = "Px7qSecretMark";
/** A password as tor writes it verbatim: '@' and ':' inside. */
const PROXY_PASSWORD = `p@${PROXY_MARK}:w0rdTail9`;
const PROXY_USER = `alice:${PROXY_PASSWORD}`;
const TURN_MARK = "TuRn4SecretMark";
/** A Shadowsocks password (and its base64 key form). */
const SS_MARK = "Ss5SecretMarkPassword";
const SS_KEY = base64(enc.encode("Ss5SecretMarkKey-0123456789abcde")); // 32 bytes
const COOKIE = enc.encode("CooKie-Secret-Marker-0123456789!"); // 32 bytes
const HEADER_MARK = enc.encode("HeAder-Secret-Marker-abcdefghij\n"); // 32 bytes
const PRIVATE_KEY = crypto.getRandomValues(new Uint8Array(32));
const DRBG_SEED = crypto.getRandomValues(new Uint8Array(24));
const NODE_ID = crypto.getRandomValues(new Uint8Array(20));
const CLIENTS = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"];

/** Every form a marker could be printed in. */
function markerForms(): string[] {
  const forms = [PROXY_MARK, "w0rdTail9", TURN_MARK, SS_MARK, SS_KEY.slice(0, 16), ...CLIENTS];
  for (const bytes of [COOKIE, HEADER_MARK]) {
    const text = new TextDecoder().decode(bytes).trim();
    forms.push(text.slice(0, 14), text.slice(-14), hex(bytes).slice(0, 16), base64(bytes));
  }
  for (const bytes of [PRIVATE_KEY, DRBG_SEED]) {
    const h = hex(bytes);
    forms.push(h.slice(0, 16), h.slice(-16), h.toUpperCase().slice(8, 24));
    forms.push(base64(bytes).slice(0, 16));
  }
  return forms;
}

// --- Running main.ts and collecting everything it prints ---------------------

interface RunOptions {
  /** Once the output matches, run `action`, then stop the process. */
  readonly ready?: RegExp;
  readonly action?: (output: string) => Promise<void>;
}

/**
 * Run main.ts with `args` and `env` (nothing else inherited); when `ready`
 * matches its stdout, do `action`, let it log, then stop it with SIGTERM.
 * Without `ready` it must end on its own. Returns all it printed on stdout
 * and stderr.
 */
async function run(
  args: string[],
  env: Record<string, string>,
  options: RunOptions = {},
): Promise<string> {
  await using pt = new TextProcess(MAIN, args, env);
  if (options.ready !== undefined) {
    await pt.waitFor(options.ready);
    await options.action?.(pt.stdout);
    // Let the process log what the action caused.
    await new Promise((resolve) => setTimeout(resolve, 500));
    pt.child.kill("SIGTERM");
  }
  // Error paths end on their own; one still up after 30 s is stopped (and
  // then fails its expectation).
  const timer = setTimeout(() => pt.child.kill("SIGTERM"), 30_000);
  await pt.child.status;
  clearTimeout(timer);
  await pt.done;
  return pt.stdout + pt.stderr;
}

function closedPort(): number {
  using listener = Deno.listen({ hostname: CLOSED_HOST, port: 0 });
  return listener.addr.port;
}

/**
 * Where {@linkcode closedPort}'s ports are: not 127.0.0.1, where each PT
 * here listens on a port of the kernel's choice, which could be the one
 * just closed (the CI of stop 45: the "down" upstream proxy was the PT's
 * own SOCKS port, which answered reply 0x12).
 */
const CLOSED_HOST = "127.0.0.2";

/** The port of the first METHOD line in `output`. */
function methodPort(output: string): number {
  const match = /^[CS]METHOD [A-Za-z0-9_]+ (?:socks5 )?127\.0\.0\.1:([0-9]+)/m.exec(output);
  if (match === null) throw new Error(`No METHOD line in ${output}`);
  return Number(match[1]);
}

/**
 * Connect to `port` from `source`; write each message in turn, waiting for
 * an answer between them (SOCKS forbids pipelining), then read until the
 * peer closes (at most 3 s).
 */
async function fromClient(port: number, source: string, ...messages: Uint8Array[]): Promise<void> {
  const conn = await boundDial({ hostname: "127.0.0.1", port }, source);
  const timer = setTimeout(() => conn.close(), 3000);
  const buffer = new Uint8Array(4096);
  try {
    for (const [i, message] of messages.entries()) {
      await conn.write(message);
      if (i < messages.length - 1 && (await conn.read(buffer)) === null) return;
    }
    while ((await conn.read(buffer)) !== null) {
      // Discard.
    }
  } catch {
    // Reset, or closed by the timer.
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed.
    }
  }
}

/** A SOCKS5 CONNECT request for 127.0.0.1:`port` (or `ip`). */
function connectRequest(port: number, ip = [127, 0, 0, 1]): Uint8Array {
  return new Uint8Array([5, 1, 0, 1, ...ip, port >> 8, port & 255]);
}

/** SOCKS5 CONNECT from `source` through the PT's SOCKS port to `ip` (127.0.0.1):`target`. */
function socksFrom(source: string, target: number, ip?: number[]) {
  return (output: string) =>
    fromClient(methodPort(output), source, new Uint8Array([5, 1, 0]), connectRequest(target, ip));
}

const V1 = { TOR_PT_MANAGED_TRANSPORT_VER: "1" };
const V2 = { TOR_PT_MANAGED_TRANSPORT_VER: "2" };
const DEBUG = ["-logLevel", "debug"];

// --- The error paths ---------------------------------------------------------

/** A named error path: runs, returns everything that was printed or thrown. */
type Path = readonly [name: string, run: (state: string) => Promise<string>];

const proxyClient = (proxy: string, version = V1, options: RunOptions = {}) => (state: string) =>
  run(DEBUG, {
    ...version,
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_PROXY: proxy,
  }, options);

const PROXY_PATHS: Path[] = [
  ["TOR_PT_PROXY with a host name", proxyClient(`http://${PROXY_USER}@proxy.example:8080`)],
  ["TOR_PT_PROXY without a port", proxyClient(`socks5://${PROXY_USER}@127.0.0.1`)],
  ["TOR_PT_PROXY with port 99999", proxyClient(`socks5://${PROXY_USER}@127.0.0.1:99999`)],
  ["TOR_PT_PROXY socks4a with a password", proxyClient(`socks4a://${PROXY_USER}@127.0.0.1:1080`)],
  ["TOR_PT_PROXY with another scheme", proxyClient(`ftp://${PROXY_USER}@127.0.0.1:21`)],
  ["TOR_PT_PROXY with a bad escape", proxyClient(`http://alice:%zz${PROXY_MARK}@127.0.0.1:80`)],
  ["TOR_PT_PROXY with a path", proxyClient(`socks5://${PROXY_USER}@127.0.0.1:1080/x?y#z`)],
  [
    "TOR_PT_PROXY with a 300-byte password",
    proxyClient(`socks5://alice:${PROXY_MARK.repeat(22)}@127.0.0.1:1080`),
  ],
  ["TOR_PT_PROXY, bad IPv6, version 2", proxyClient(`http://${PROXY_USER}@[::1:8080`, V2)],
  ["TOR_PT_PROXY without a scheme", proxyClient(`${PROXY_USER}@127.0.0.1:8080`)],
  // The user and password alone (the @ip:port left out) looked like
  // host:port, and the message quoted them whole.
  ["TOR_PT_PROXY of a user and password only", proxyClient(`socks5://${PROXY_USER}`)],
  ["TOR_PT_PROXY of a user and password only, http", proxyClient(`http://${PROXY_USER}`)],
  ["TOR_PT_PROXY of a user and password only, no scheme", proxyClient(PROXY_USER)],
  [
    "a proxy URI given as a stray argument",
    (state) =>
      run(["-client", "-transports", "plain", "-state", state, `http://${PROXY_USER}@h:1`], {}),
  ],
  [
    "a proxy URI given as a stray argument without a scheme",
    (state) => run(["-client", "-transports", "plain", "-state", state, `${PROXY_USER}@h:1`], {}),
  ],
  [
    "a SOCKS5 proxy that is down, a client from 127.0.0.3",
    (state) =>
      proxyClient(`socks5://${PROXY_USER}@${CLOSED_HOST}:${closedPort()}`, V1, {
        ready: /CMETHODS DONE/,
        action: socksFrom("127.0.0.3", 9),
      })(state),
  ],
  [
    "microsocks refusing the password",
    async (state) => {
      const upstream = await startMicrosocks("alice", "other");
      try {
        return await proxyClient(`socks5://${PROXY_USER}@127.0.0.1:${upstream.port}`, V1, {
          ready: /CMETHODS DONE/,
          action: socksFrom("127.0.0.4", 9),
        })(state);
      } finally {
        await upstream.kill();
      }
    },
  ],
  [
    "an HTTP proxy answering 407",
    async (state) => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const serving = (async () => {
        for await (const conn of listener) {
          await conn.read(new Uint8Array(4096)).catch(() => null);
          await conn.write(enc.encode("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"))
            .catch(() => 0);
          conn.close();
        }
      })().catch(() => {});
      try {
        return await proxyClient(`http://${PROXY_USER}@127.0.0.1:${listener.addr.port}`, V1, {
          ready: /CMETHODS DONE/,
          action: socksFrom("127.0.0.5", 9),
        })(state);
      } finally {
        listener.close();
        await serving;
      }
    },
  ],
  [
    "the adapter given a bad proxy",
    async () => {
      try {
        await launchClient({
          path: MAIN,
          transports: ["plain"],
          proxy: `http://${PROXY_USER}@h:1`,
        });
        return "launched";
      } catch (error) {
        return `${error} ${(error as Error).stack}`;
      }
    },
  ],
  [
    "parseUpstreamProxy's error",
    () => {
      try {
        return Promise.resolve(JSON.stringify(parseUpstreamProxy(`socks5://${PROXY_USER}@1:0`)));
      } catch (error) {
        return Promise.resolve(`${error} ${(error as Error).stack}`);
      }
    },
  ],
];

const serverEnv = (state: string, extra: Record<string, string>) => ({
  ...V1,
  TOR_PT_SERVER_TRANSPORTS: "obfs4",
  TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
  TOR_PT_ORPORT: `${CLOSED_HOST}:${closedPort()}`,
  TOR_PT_STATE_LOCATION: state,
  ...extra,
});

const PK = hex(PRIVATE_KEY);
const SEED = hex(DRBG_SEED);
const ID = hex(NODE_ID);

/** Server paths that report SMETHOD-ERROR and then keep running. */
const SERVED = { ready: /SMETHODS DONE/ };

const KEY_PATHS: Path[] = [
  [
    "server options with a short drbg-seed",
    (state) =>
      run(
        DEBUG,
        serverEnv(state, {
          TOR_PT_SERVER_TRANSPORT_OPTIONS:
            `obfs4:node-id=${ID};obfs4:private-key=${PK};obfs4:drbg-seed=${SEED.slice(2)}`,
        }),
        SERVED,
      ),
  ],
  [
    "server options with a non-hex private-key",
    (state) =>
      run(
        DEBUG,
        serverEnv(state, {
          TOR_PT_SERVER_TRANSPORT_OPTIONS: `obfs4:node-id=${ID};obfs4:private-key=zz${
            PK.slice(2)
          };obfs4:drbg-seed=${SEED}`,
        }),
        SERVED,
      ),
  ],
  [
    "server options with a public-key that does not match",
    (state) =>
      run(
        DEBUG,
        serverEnv(state, {
          TOR_PT_SERVER_TRANSPORT_OPTIONS:
            `obfs4:node-id=${ID};obfs4:private-key=${PK};obfs4:drbg-seed=${SEED};obfs4:public-key=${SEED}${SEED}`,
        }),
        SERVED,
      ),
  ],
  [
    "server options with a private-key split by an unescaped ';'",
    (state) =>
      run(
        DEBUG,
        serverEnv(state, {
          TOR_PT_SERVER_TRANSPORT_OPTIONS: `obfs4:private-key=${PK.slice(0, 20)};${PK.slice(20)}`,
        }),
      ),
  ],
  [
    "server options with a pair without '='",
    (state) => run(DEBUG, serverEnv(state, { TOR_PT_SERVER_TRANSPORT_OPTIONS: `obfs4:${PK}` })),
  ],
  [
    "-options JSON that does not parse",
    (state) =>
      run(["-server", "-options", `{"obfs4":{"private-key":"${PK}" "drbg-seed":"${SEED}"}}`], {
        ...serverEnv(state, {}),
      }),
  ],
  [
    "-options JSON with a non-string value",
    (state) =>
      run(["-options", `{"obfs4":{"private-key":"${PK}","drbg-seed":["${SEED}"]}}`], {
        ...serverEnv(state, {}),
      }),
  ],
  [
    "a state file that is not JSON",
    async (state) => {
      await Deno.writeTextFile(
        `${state}/obfs4_state.json`,
        `{"node-id":"${ID}","private-key":"${PK}","drbg-seed":"${SEED}"`,
      );
      return await run(DEBUG, serverEnv(state, {}), SERVED);
    },
  ],
  [
    "a state file with a bad drbg-seed",
    async (state) => {
      await Deno.writeTextFile(
        `${state}/obfs4_state.json`,
        JSON.stringify({ "node-id": ID, "private-key": PK, "drbg-seed": `${SEED}00` }),
      );
      return await run(DEBUG, serverEnv(state, {}), SERVED);
    },
  ],
  [
    "parseTransportOptions' errors",
    () => {
      const errors = [`obfs4:private-key=${PK};${SEED}`, `obfs4:${PK}`, `{"a":"${PK}`].map((t) => {
        try {
          return JSON.stringify([...parseTransportOptions(t)]);
        } catch (error) {
          return String(error);
        }
      });
      return Promise.resolve(errors.join("\n"));
    },
  ],
];

const TURN_PATHS: Path[] = [
  [
    "-turnuser with an empty user name",
    (state) =>
      run(["-server", "-mode", "STUN", "-target", "turn", "-turnuser", `:${TURN_MARK}`], {
        ...serverEnv(state, {}),
      }),
  ],
  [
    "-turnuser without STUN mode",
    (state) => run(["-server", "-turnuser", `u:${TURN_MARK}`], { ...serverEnv(state, {}) }),
  ],
  [
    "-turnuser with -target not turn",
    (state) =>
      run(["-server", "-mode", "STUN", "-target", "127.0.0.1:1", "-turnuser", `u:${TURN_MARK}`], {
        ...serverEnv(state, {}),
      }),
  ],
  ["turn --user with an empty user name", () => run(["turn", "--user", `:${TURN_MARK}`], {})],
  [
    "turn with a stray USER:PASSWORD argument",
    () => run(["turn", "--listen", "127.0.0.1:0", `u:${TURN_MARK}`], {}),
  ],
  [
    "main.ts client given an ss:// link as a bridge line",
    () => run(["client", "--bridge", `ss://aes-256-gcm:${SS_MARK}@127.0.0.1:8388`], {}),
  ],
  [
    "main.ts client given a legacy all-base64 ss:// link after a flag",
    () =>
      run([
        "client",
        "--socks",
        "127.0.0.1:0",
        `ss://${btoa(`aes-256-gcm:${SS_MARK}@127.0.0.1:8388`)}`,
        `ss://${btoa(`aes-256-gcm:${SS_MARK}@127.0.0.1:8388`)}`,
      ], {}),
  ],
  [
    "a bridge line whose password holds a space",
    () =>
      run([
        "client",
        "--bridge",
        `shadowsocks 192.0.2.1:8388 method=aes-128-gcm password=x ${SS_MARK}`,
      ], {}),
  ],
  [
    "a bridge line with its password where the address goes",
    () => run(["client", "--bridge", `shadowsocks password=${SS_MARK} 192.0.2.1:8388`], {}),
  ],
  [
    "a stray password among the managed flags",
    (state) => run(["-client", "-transports", "shadowsocks", "-state", state, SS_MARK], {}),
  ],
  [
    "turn with a bad --listen",
    () => run(["turn", "--user", `u:${TURN_MARK}`, "--realm", "r", "--listen", "nowhere"], {}),
  ],
  [
    "turn that cannot listen",
    () =>
      run(["turn", "--user", `u:${TURN_MARK}`, "--realm", "r", "--listen", "192.0.2.1:3478"], {}),
  ],
];

/**
 * A plain server in front of a fake Extended ORPort answering `behaviour`,
 * with `cookie` as its cookie file; a client from `source` connects.
 */
function viaExtOrPort(
  cookie: Uint8Array,
  behaviour: FakeBehaviour,
  source: string,
): (state: string) => Promise<string> {
  return async (state) => {
    await Deno.writeFile(`${state}/cookie`, cookie);
    const fake = new FakeExtOrPort(COOKIE, () => behaviour);
    try {
      return await run(DEBUG, {
        ...serverEnv(state, {
          TOR_PT_SERVER_TRANSPORTS: "plain",
          TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
          TOR_PT_EXTENDED_SERVER_PORT: `127.0.0.1:${fake.listener.addr.port}`,
          TOR_PT_AUTH_COOKIE_FILE: `${state}/cookie`,
        }),
      }, {
        ready: /SMETHODS DONE/,
        action: (out) => fromClient(methodPort(out), source, enc.encode("hello")),
      });
    } finally {
      await fake[Symbol.asyncDispose]();
    }
  };
}

const COOKIE_FILE = new Uint8Array([...enc.encode("! Extended ORPort Auth Cookie !\n"), ...COOKIE]);

const COOKIE_AND_CLIENT_PATHS: Path[] = [
  [
    "an auth cookie file with a wrong header, a client from 127.0.0.3",
    viaExtOrPort(new Uint8Array([...HEADER_MARK, ...COOKIE]), "okay", "127.0.0.3"),
  ],
  [
    "an auth cookie file of 63 bytes",
    viaExtOrPort(new Uint8Array([...HEADER_MARK, ...COOKIE]).slice(1), "okay", "127.0.0.4"),
  ],
  ...(["wrong-server-hash", "deny", "garbage"] as const).map((behaviour, i): Path => [
    `an Extended ORPort that answers ${behaviour}, a client from ${CLIENTS[i + 2]}`,
    viaExtOrPort(COOKIE_FILE, behaviour, CLIENTS[i + 2]!),
  ]),
  [
    "an obfs4 server given garbage by a client from 127.0.0.3",
    (state) =>
      run(DEBUG, serverEnv(state, {}), {
        ready: /SMETHODS DONE/,
        action: (out) =>
          fromClient(methodPort(out), "127.0.0.3", crypto.getRandomValues(new Uint8Array(100))),
      }),
  ],
  [
    "a plain server whose ORPort is down, a client from 127.0.0.4",
    (state) =>
      run(
        DEBUG,
        serverEnv(state, {
          TOR_PT_SERVER_TRANSPORTS: "plain",
          TOR_PT_SERVER_BINDADDR: "plain-127.0.0.1:0",
        }),
        {
          ready: /SMETHODS DONE/,
          action: (out) => fromClient(methodPort(out), "127.0.0.4", enc.encode("hello")),
        },
      ),
  ],
  [
    "a free-mode server asked for a refused destination by 127.0.0.5",
    (state) =>
      run(["-server", "-transports", "plain", "-target", "socks", "-state", state, ...DEBUG], {}, {
        ready: /SMETHODS DONE/,
        action: (out) =>
          fromClient(
            methodPort(out),
            "127.0.0.5",
            new Uint8Array([5, 1, 0]),
            connectRequest(80, [10, 0, 0, 1]),
          ),
      }),
  ],
  [
    "a SOCKS client from 127.0.0.6 sending garbage",
    (state) =>
      run(DEBUG, { ...V1, TOR_PT_CLIENT_TRANSPORTS: "plain", TOR_PT_STATE_LOCATION: state }, {
        ready: /CMETHODS DONE/,
        action: (out) =>
          fromClient(methodPort(out), "127.0.0.6", crypto.getRandomValues(new Uint8Array(300))),
      }),
  ],
  [
    "a SOCKS client from 127.0.0.7 whose destination refuses",
    (state) =>
      run(DEBUG, { ...V1, TOR_PT_CLIENT_TRANSPORTS: "plain", TOR_PT_STATE_LOCATION: state }, {
        ready: /CMETHODS DONE/,
        action: socksFrom("127.0.0.7", closedPort(), [127, 0, 0, 2]),
      }),
  ],
  [
    "a SOCKS client from 127.0.0.8 with arguments obfs4 refuses",
    (state) =>
      run(DEBUG, { ...V1, TOR_PT_CLIENT_TRANSPORTS: "obfs4", TOR_PT_STATE_LOCATION: state }, {
        ready: /CMETHODS DONE/,
        action: async (out) => {
          const args = enc.encode(`cert=bad;iat-mode=0;private-key=${PK}`);
          await fromClient(
            methodPort(out),
            "127.0.0.8",
            new Uint8Array([5, 1, 2]),
            new Uint8Array([1, args.length, ...args, 1, 0]),
            connectRequest(9),
          );
        },
      }),
  ],
];

/** main.ts as a Shadowsocks server or client with `options` (JSON). */
const ssMain = (
  side: "-server" | "-client",
  options: Record<string, string>,
  more: string[] = [],
) => [side, "-transports", "shadowsocks", "-options", JSON.stringify(options), ...more, ...DEBUG];

const SHADOWSOCKS_PATHS: Path[] = [
  [
    "a shadowsocks server given garbage by a client from 127.0.0.5",
    (state) =>
      run(
        ssMain("-server", { method: "aes-256-gcm", password: SS_MARK }, ["-state", state]),
        {},
        {
          ready: /SMETHODS DONE/,
          action: (out) =>
            fromClient(methodPort(out), "127.0.0.5", crypto.getRandomValues(new Uint8Array(300))),
        },
      ),
  ],
  [
    "a shadowsocks server with a key, asked for a refused destination",
    (state) =>
      run(
        ssMain("-server", { method: "chacha20-ietf-poly1305", key: SS_KEY }, ["-state", state]),
        {},
        {
          ready: /SMETHODS DONE/,
          action: (out) => fromClient(methodPort(out), "127.0.0.6", enc.encode("x".repeat(100))),
        },
      ),
  ],
  [
    "a shadowsocks server with an unknown method",
    (state) =>
      run(ssMain("-server", { method: "aes-256-gmc", password: SS_MARK }, ["-state", state]), {}),
  ],
  [
    "a shadowsocks server whose method has the password joined to it",
    (state) =>
      run(
        ssMain("-server", { method: `aes-256-gcm;password=${SS_MARK}` }, ["-state", state]),
        {},
      ),
  ],
  [
    "a shadowsocks server with a key of the wrong length",
    (state) =>
      run(ssMain("-server", { method: "aes-128-gcm", key: SS_KEY }, ["-state", state]), {}),
  ],
  [
    "a shadowsocks -free client whose server is down, a client from 127.0.0.7",
    (state) =>
      run(
        ssMain("-client", { method: "aes-128-gcm", password: SS_MARK }, [
          ...["-free", "-target", `${CLOSED_HOST}:${closedPort()}`, "-state", state],
        ]),
        {},
        { ready: /CMETHODS DONE/, action: socksFrom("127.0.0.7", 80) },
      ),
  ],
];

/** What each path must print, so that a path that stopped failing is noticed. */
const EXPECTED: Record<string, RegExp> = {
  "TOR_PT_PROXY with a host name": /PROXY-ERROR .*must be an IP address/,
  "TOR_PT_PROXY without a port": /PROXY-ERROR .*missing or bad port/,
  "TOR_PT_PROXY with port 99999": /PROXY-ERROR Invalid port 99999 for proxy URI/,
  "TOR_PT_PROXY socks4a with a password": /PROXY-ERROR .*SOCKS4a has no password/,
  "TOR_PT_PROXY with another scheme": /PROXY-ERROR Unsupported proxy scheme/,
  "TOR_PT_PROXY with a bad escape": /PROXY-ERROR .*bad percent-encoding/,
  "TOR_PT_PROXY with a path": /PROXY-ERROR .*path, query or fragment/,
  "TOR_PT_PROXY with a 300-byte password": /PROXY-ERROR .*1-255 bytes/,
  "TOR_PT_PROXY, bad IPv6, version 2": /PROXY-ERROR .*expected ip:port/,
  "TOR_PT_PROXY of a user and password only": /PROXY-ERROR .*not shown.*must be an IP address/,
  "TOR_PT_PROXY of a user and password only, http":
    /PROXY-ERROR .*not shown.*must be an IP address/,
  "TOR_PT_PROXY of a user and password only, no scheme": /PROXY-ERROR .*not shown.*expected socks5/,
  "TOR_PT_PROXY without a scheme": /PROXY-ERROR .*expected socks5/,
  "a proxy URI given as a stray argument": /ENV-ERROR Unexpected argument/,
  "a proxy URI given as a stray argument without a scheme": /ENV-ERROR Unexpected argument/,
  "a SOCKS5 proxy that is down, a client from 127.0.0.3": /CONNECT=Failed .*refused/,
  "microsocks refusing the password": /CONNECT=Failed .*refused the credentials/,
  "an HTTP proxy answering 407": /CONNECT=Failed .*status 407/,
  "the adapter given a bad proxy": /must be an IP address/,
  "parseUpstreamProxy's error": /Invalid port 0 for proxy URI|must be an IP address/,
  "server options with a short drbg-seed": /SMETHOD-ERROR .*'drbg-seed' must be 24 bytes/,
  "server options with a non-hex private-key": /SMETHOD-ERROR .*'private-key' must be 32 bytes/,
  "server options with a public-key that does not match": /SMETHOD-ERROR .*does not match/,
  "server options with a private-key split by an unescaped ';'": /ENV-ERROR .*has no 'name:'/,
  "server options with a pair without '='": /ENV-ERROR .*has no '='/,
  "-options JSON that does not parse": /ENV-ERROR .*invalid JSON/,
  "-options JSON with a non-string value": /ENV-ERROR .*must be a string/,
  "a state file that is not JSON": /SMETHOD-ERROR .*invalid JSON/,
  "a state file with a bad drbg-seed": /SMETHOD-ERROR .*'drbg-seed'/,
  "parseTransportOptions' errors": /has no 'name:'[^]*has no '='[^]*invalid JSON/,
  "-turnuser with an empty user name": /ENV-ERROR Invalid -turnuser/,
  "-turnuser without STUN mode": /ENV-ERROR -turnuser needs/,
  "-turnuser with -target not turn": /ENV-ERROR -turnuser needs/,
  "turn --user with an empty user name": /Invalid --user: the user name before ':' is empty/,
  "turn with a stray USER:PASSWORD argument": /Unexpected argument 4/,
  "main.ts client given an ss:// link as a bridge line": /word 1 is not an address/,
  "main.ts client given a legacy all-base64 ss:// link after a flag":
    /Unexpected argument [0-9]+ \(an ss:\/\/ URI\)/,
  "a bridge line whose password holds a space": /word 5 is not key=value/,
  "a bridge line with its password where the address goes": /word 2 is not an address/,
  "a stray password among the managed flags": /ENV-ERROR Unexpected argument 6: expected a flag/,
  "turn with a bad --listen": /Cannot parse --listen/,
  "turn that cannot listen": /Cannot listen on/,
  "a shadowsocks server given garbage by a client from 127.0.0.5":
    /SMETHOD shadowsocks 127\.0\.0\.1:[0-9]+ ARGS:method=aes-256-gcm\n/,
  "a shadowsocks server with a key, asked for a refused destination":
    /SMETHOD shadowsocks 127\.0\.0\.1:[0-9]+ ARGS:method=chacha20-ietf-poly1305\n/,
  "a shadowsocks server with an unknown method":
    /SMETHOD-ERROR shadowsocks .*"aes-256-gmc" \(did you mean aes-256-gcm\?\)/,
  "a shadowsocks server whose method has the password joined to it":
    /SMETHOD-ERROR shadowsocks .*unsupported method \(not shown\)/,
  "a shadowsocks server with a key of the wrong length": /SMETHOD-ERROR shadowsocks .*key/,
  "a shadowsocks -free client whose server is down, a client from 127.0.0.7":
    /CONNECT=Failed .*refused/i,
};

Deno.test("secret scan: no marker secret or client address appears in the output of any error path it drives (at least 55)", async () => {
  const paths = [
    ...PROXY_PATHS,
    ...KEY_PATHS,
    ...TURN_PATHS,
    ...COOKIE_AND_CLIENT_PATHS,
    ...SHADOWSOCKS_PATHS,
  ];
  ok(paths.length >= 55, `only ${paths.length} paths`);
  console.log(`${paths.length} error paths`);
  const forms = markerForms();
  const leaks: string[] = [];
  for (const [name, runPath] of paths) {
    const state = await Deno.makeTempDir();
    try {
      const output = await runPath(state);
      // The last line of each path shows in the run what was exercised.
      console.log(`${name}:\n  ${output.trim().split("\n").at(-1)}`);
      const expected = EXPECTED[name] ?? /LOG SEVERITY=(warning|info) /;
      ok(expected.test(output), `${name}: expected ${expected} in\n${output}`);
      for (const form of forms) {
        if (output.includes(form)) leaks.push(`${name}: ${JSON.stringify(form)} in\n${output}`);
      }
    } finally {
      await Deno.remove(state, { recursive: true });
    }
  }
  ok(leaks.length === 0, leaks.join("\n\n"));
});
