// Copyright the ptkit authors. MIT license.

import { formatHostPort, parseHostPort } from "../../net/address.ts";
import { cliError } from "./_names.ts";
import { parseCliFlags, type Spec } from "./_cli_flags.ts";
import { LISTEN_ADDRESS } from "../../net/_listen.ts";
import { parseUserinfo } from "../../net/_userinfo.ts";
import { isIpLiteral } from "../../net/_ip_address.ts";
import { serveTurnUdp } from "../../udp/turn/_udp_server.ts";
import { releaseEarlySignals } from "../managed/_early_signals.ts";
import { readValueFile, UsageError, valueLines } from "./_value_file.ts";
import { realmProblem, usernameProblem } from "../../udp/turn/_credential_limits.ts";

const USAGE =
  "Usage: main.ts turn --listen HOST:PORT --user USER:PASSWORD [--user ...] --realm REALM [--allow-loopback-peers] [--source-quota N] [--request-burst-per-source N] [--requests-per-second-per-source N] [--max-request-sources N]";

/**
 * The most sources `--max-request-sources` may track: each takes some 100
 * bytes, so at most about 100 MB.
 */
const MAX_REQUEST_SOURCES = 1_048_576;

/** The limit flags: the server option each sets, and what it takes. */
const LIMIT_FLAGS = {
  "source-quota": { option: "sourceQuota", decimal: false, zeroIsNone: true },
  "request-burst-per-source": {
    option: "requestBurstPerSource",
    decimal: false,
    zeroIsNone: true,
  },
  "requests-per-second-per-source": {
    option: "requestsPerSecondPerSource",
    decimal: true,
    zeroIsNone: true,
  },
  "max-request-sources": { option: "maxRequestSources", decimal: false, zeroIsNone: false },
} as const;

/**
 * The value of a limit flag: a whole number (a decimal one where `decimal`),
 * 0 as no limit (`Infinity`) where `zeroIsNone`; or why not, naming the flag.
 */
function limitValue(
  flag: keyof typeof LIMIT_FLAGS,
  value: string,
): number | { problem: string } {
  const { decimal, zeroIsNone } = LIMIT_FLAGS[flag];
  const n = Number(value);
  const form = decimal ? /^[0-9]+(\.[0-9]+)?$/ : /^[0-9]+$/;
  const most = flag === "max-request-sources" ? MAX_REQUEST_SOURCES : Number.MAX_SAFE_INTEGER;
  if (!form.test(value) || n > most || (n === 0 && !zeroIsNone)) {
    const what = decimal ? "a number" : "a whole number";
    const range = zeroIsNone ? `${what} (0: no limit)` : `${what} from 1 to ${most}`;
    return { problem: `Invalid --${flag} ${JSON.stringify(value)}: expected ${range}` };
  }
  return n === 0 ? Infinity : n;
}

/** coturn's long-term key in place of a password: `0x` and 32 hex digits (MD5). */
const COTURN_KEY = /^0x[0-9a-fA-F]{32}$/;

const HELP = `Usage: main.ts turn --listen HOST:PORT --user USER:PASSWORD [--user ...] --realm REALM
                    [--allow-loopback-peers] [--source-quota N]
                    [--request-burst-per-source N]
                    [--requests-per-second-per-source N] [--max-request-sources N]

A TURN server (RFC 8656) over UDP, with long-term credentials, until SIGINT or
SIGTERM. Loopback, private, link-local and multicast peers are refused (403).

  --listen HOST:PORT        address to listen on (IPv6 in brackets)
  --user USER:PASSWORD      a user; the user name ends at the first ':' (repeatable;
                            @FILE: the users from FILE, one USER:PASSWORD a line,
                            keeping passwords off the command line; a PASSWORD
                            of 0x and 32 hex digits is coturn's key, as
                            turnadmin -k prints it for this realm)
  --realm REALM             the realm
  --allow-loopback-peers    also relay to loopback peers
  --source-quota N          allocations one source (an IPv4 address, an IPv6
                            /64) holds at once, its port reservations counted;
                            more get 486 (default 500; 0: no limit)
  --request-burst-per-source N
                            requests a source whose client holds no allocation
                            may make at once (default 500; 0: no limit)
  --requests-per-second-per-source N
                            and a second after that burst (default 100; a
                            decimal number; 0: no limit); the rest are dropped
  --max-request-sources N   sources whose request rate is tracked (default
                            16384, at most ${MAX_REQUEST_SOURCES}); past it, the half
                            that asked least recently start again
  --help                    print this help

Example:
  main.ts turn --listen 127.0.0.1:3478 --user u:p --realm example.org
`;

const SPECS: Record<string, Spec> = {
  listen: { value: "HOST:PORT", help: "address to listen on" },
  user: { value: "USER:PASSWORD", help: "a user (repeatable; @FILE: one a line)" },
  realm: { value: "REALM", help: "the realm" },
  "allow-loopback-peers": { help: "also relay to loopback peers" },
  "source-quota": { value: "N", help: "allocations one source holds at once" },
  "request-burst-per-source": { value: "N", help: "requests a source may make at once" },
  "requests-per-second-per-source": {
    value: "N",
    help: "requests a source may make a second after its burst",
  },
  "max-request-sources": { value: "N", help: "sources whose request rate is tracked" },
  help: { help: "print this help" },
};

/**
 * The `turn` command: a standalone TURN server on UDP until SIGINT or SIGTERM.
 *
 * `turn --listen 127.0.0.1:3478 --user u:p --realm r [--allow-loopback-peers]
 * [--source-quota N] [--request-burst-per-source N]
 * [--requests-per-second-per-source N] [--max-request-sources N]`
 * (a leading "turn" argument is skipped). Prints `turn: listening on HOST:PORT` to stderr.
 *
 * @param args Command-line arguments after the program name.
 * @returns The exit code: 0 after a signal or `--help`, 64 on bad arguments
 * (`ptkit: error: ...` and the usage on stderr), 1 when it cannot listen.
 */
export async function runTurnCommand(args: string[]): Promise<number> {
  const rest = args[0] === "turn" ? args.slice(1) : args;
  if (rest.some((arg) => arg === "--help" || arg === "-help" || arg === "-h")) {
    // Written in one piece so nothing else can interleave.
    Deno.stdout.writeSync(new TextEncoder().encode(HELP));
    return 0;
  }
  const fail = (why: string): number => {
    Deno.stderr.writeSync(new TextEncoder().encode(`${cliError(why)}${USAGE}\n`));
    return 64;
  };
  // As the other commands (one parser): -flag or --flag, the value next
  // or after "=", a near miss named; only flag names are echoed (a stray
  // value may be a USER:PASSWORD).
  const all: Record<string, string[]> = {};
  const parsed = parseCliFlags(rest, SPECS, args.length - rest.length, undefined, all);
  if (typeof parsed === "string") return fail(parsed);
  const { listen, realm } = parsed;
  let allowLoopbackPeers = false;
  if (parsed["allow-loopback-peers"] !== undefined) allowLoopbackPeers = true;
  const limits: Record<string, number> = {};
  for (const flag of Object.keys(LIMIT_FLAGS) as (keyof typeof LIMIT_FLAGS)[]) {
    const value = parsed[flag];
    if (value === undefined) continue;
    const limit = limitValue(flag, value);
    if (typeof limit !== "number") return fail(limit.problem);
    limits[LIMIT_FLAGS[flag].option] = limit;
  }
  const users: Record<string, string> = {};
  const given = all.user ?? [];
  for (const [position, value] of given.entries()) {
    // Which --user (its position when there are several), never its value:
    // it holds a password.
    const which = given.length > 1 ? `--user ${position + 1} of ${given.length}` : "--user";
    // `@FILE`: users one a line, so that no password shows in the process
    // list (as coturn's userdb keeps them off it).
    let entries = [value];
    if (value.startsWith("@")) {
      try {
        entries = valueLines(readValueFile(value, "--user"));
      } catch (error) {
        if (error instanceof UsageError) return fail(error.message);
        throw error;
      }
      if (entries.length === 0) {
        return fail(`The file ${value.slice(1)} holds no USER:PASSWORD line`);
      }
    }
    for (const [index, entry] of entries.entries()) {
      const invalid = (why: string) =>
        fail(
          value.startsWith("@")
            ? `Line ${index + 1} of ${
              value.slice(1)
            } (besides comments) is not USER:PASSWORD: ${why}`
            : `Invalid ${which}: ${why}`,
        );
      // The user name ends at the first ":" (the password may hold more).
      const { username, password } = parseUserinfo(entry);
      // Never the line itself: it may hold a password.
      if (password === undefined) return invalid("it has no ':' between the user and the password");
      if (username === "") return invalid("the user name before ':' is empty");
      if (password === "") return invalid("the password after ':' is empty");
      const problem = usernameProblem(username);
      if (problem !== undefined) return invalid(problem);
      if (password.startsWith("0x") && !COTURN_KEY.test(password)) {
        // coturn refuses it too ('Wrong user account'): taken as a password,
        // a key cut short would fail every client's Allocate with 401.
        return invalid(
          `a password that starts with 0x is a coturn key (turnadmin -k's output): expected 0x ` +
            `and 32 hex digits, got 0x and ${password.length - 2} characters${
              /^0x[0-9a-fA-F]*$/.test(password) ? "" : " (not all hex digits)"
            }`,
        );
      }
      // A user given twice with another password: one of the two would
      // silently stop working (the same pair twice is no conflict).
      if (Object.hasOwn(users, username) && users[username] !== password) {
        return fail(
          value.startsWith("@")
            ? `Line ${index + 1} of ${
              value.slice(1)
            } (besides comments) gives a user name given before with a different password`
            : `Invalid ${which}: a user name is given twice with different passwords`,
        );
      }
      users[username] = password;
    }
  }
  // coturn's key form (turnserver.conf's `user=NAME:0x<hex>`, turnadmin -k's
  // output): the long-term key itself, never a password clients send.
  const keys: Record<string, Uint8Array> = {};
  for (const [username, password] of Object.entries(users)) {
    if (!COTURN_KEY.test(password)) continue;
    keys[username] = Uint8Array.from(
      password.slice(2).match(/../g)!,
      (byte) => parseInt(byte, 16),
    );
    delete users[username];
  }
  // Every flag missing at once, in the usage's order (not one run each);
  // a bad --user value is named first, as above.
  const missing = [
    listen === undefined ? "--listen HOST:PORT" : "",
    (all.user ?? []).length === 0 ? "--user USER:PASSWORD" : "",
    realm === undefined || realm === "" ? "--realm REALM" : "",
  ].filter((flag) => flag !== "");
  if (missing.length > 0) {
    return fail(
      `Missing ${missing.slice(0, -1).join(", ")}${missing.length > 1 ? " and " : ""}${
        missing.at(-1)
      }`,
    );
  }
  if (listen === undefined) return fail("Missing --listen HOST:PORT");
  if (realm === undefined || realm === "") return fail("Missing --realm REALM");
  const realmTrouble = realmProblem(realm);
  if (realmTrouble !== undefined) return fail(`Invalid --realm: ${realmTrouble}`);
  if (Object.keys(users).length + Object.keys(keys).length === 0) {
    return fail("Missing --user USER:PASSWORD");
  }
  let address;
  try {
    address = parseHostPort(listen, "--listen");
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  // The listening and relayed sockets bind an address: a name is a usage
  // error, not a failure to listen (exit 1).
  if (!isIpLiteral(address.hostname)) {
    return fail(`Invalid --listen ${JSON.stringify(listen)}: the host must be an IP address`);
  }
  let turn;
  try {
    turn = await serveTurnUdp({ ...address, realm, users, keys, allowLoopbackPeers, ...limits });
  } catch (error) {
    // The operator's own address, not a client's: it is named.
    Deno.stderr.writeSync(
      new TextEncoder().encode(
        cliError(
          error instanceof Error && LISTEN_ADDRESS in error
            ? error.message
            : `Cannot listen on ${formatHostPort(address)}: ${(error as Error).message}`,
        ),
      ),
    );
    return 1;
  }
  const host = turn.addr.hostname.includes(":") ? `[${turn.addr.hostname}]` : turn.addr.hostname;
  console.error(`turn: listening on ${host}:${turn.addr.port}`);
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const listeners = signals.map((signal) => [signal, () => resolve(signal)] as const);
  for (const [signal, listener] of listeners) Deno.addSignalListener(signal, listener);
  // From here on the signals are this command's (main.ts held them while it loaded).
  releaseEarlySignals();
  const signal = await promise;
  for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  console.error(`turn: shutting down (${signal})`);
  await turn.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await runTurnCommand(Deno.args));
}
