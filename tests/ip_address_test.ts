// Copyright the ptkit authors. MIT license.
// The one IP module and the one destination policy: a table of addresses
// with their IANA class, run through classifyIp and through both users of
// the policy: free mode's SOCKS5 target (a refused
// destination gets reply 02 and is never dialed) and the TURN server's peers
// (CreatePermission: 403 or success), with and without their allow-lists.

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert";
import { DestinationPolicy } from "../net/mod.ts";
import { classifyIp, formatIp, type IpAddressClass, parseIp } from "../net/_ip_address.ts";
import { connectSocksDestination } from "../ipc/socks/_target.ts";
import { encodeXorAddress } from "../udp/stun/_attributes.ts";
import type { StunAddress } from "../udp/stun/_message.ts";
import { StunAttr, StunMethod } from "../udp/stun/_constants.ts";
import {
  type TurnClient,
  type TurnRelayFactory,
  type TurnRelayRequest,
  type TurnRelaySocket,
  TurnServer,
} from "../udp/turn/_turn_server.ts";
import { errorCode, Queue, StunTestClient } from "./turn_test_client.ts";

/** Address, class. */
const TABLE: readonly (readonly [string, IpAddressClass])[] = [
  // IPv4, public.
  ["8.8.8.8", "public"],
  ["1.1.1.1", "public"],
  ["93.184.216.34", "public"],
  ["172.32.0.1", "public"],
  ["100.128.0.1", "public"],
  ["169.253.255.255", "public"],
  ["198.17.255.255", "public"],
  ["198.20.0.1", "public"],
  ["192.0.0.9", "public"],
  ["192.0.0.10", "public"],
  ["223.255.255.255", "public"],
  // IPv4, special purpose.
  ["0.0.0.0", "unspecified"],
  ["0.1.2.3", "unspecified"],
  ["0.255.255.255", "unspecified"],
  ["127.0.0.1", "loopback"],
  ["127.255.255.254", "loopback"],
  ["10.0.0.1", "private"],
  ["10.255.255.255", "private"],
  ["172.16.0.1", "private"],
  ["172.31.255.255", "private"],
  ["192.168.0.1", "private"],
  ["192.168.255.255", "private"],
  ["100.64.0.1", "shared"],
  ["100.127.255.254", "shared"],
  ["169.254.0.1", "link-local"],
  ["169.254.169.254", "link-local"],
  ["224.0.0.1", "multicast"],
  ["239.255.255.250", "multicast"],
  ["255.255.255.255", "broadcast"],
  ["192.0.2.1", "documentation"],
  ["198.51.100.7", "documentation"],
  ["203.0.113.255", "documentation"],
  ["198.18.0.1", "benchmarking"],
  ["198.19.255.255", "benchmarking"],
  ["240.0.0.1", "reserved"],
  ["255.255.255.254", "reserved"],
  ["192.0.0.8", "reserved"],
  ["192.0.0.170", "reserved"],
  ["192.88.99.1", "reserved"],
  // IPv6, public.
  ["2606:4700:4700::1111", "public"],
  ["2001:4860:4860::8888", "public"],
  ["2001::1", "public"],
  ["2001:1::1", "public"],
  ["2001:20::1", "public"],
  ["2620:4f:8000::1", "public"],
  // IPv6, special purpose.
  ["::", "unspecified"],
  ["::1", "loopback"],
  ["fe80::1", "link-local"],
  ["febf:ffff::1", "link-local"],
  ["fec0::1", "site-local"],
  ["feff::1", "site-local"],
  ["fc00::1", "unique-local"],
  ["fd12:3456::1", "unique-local"],
  ["ff02::1", "multicast"],
  ["ff05::2", "multicast"],
  ["ff0e::1", "multicast"],
  ["2001:db8::1", "documentation"],
  ["3fff::1", "documentation"],
  ["2001:2::1", "benchmarking"],
  ["100::1", "reserved"],
  ["2001:10::1", "reserved"],
  ["5f00::1", "reserved"],
  ["64:ff9b:1::a00:1", "reserved"],
  ["4000::1", "reserved"],
  ["1::1", "reserved"],
  ["::ffff:0:102:304", "reserved"],
  // IPv6 forms that embed an IPv4 address: judged by it.
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:7f00:1", "loopback"],
  ["::ffff:10.1.2.3", "private"],
  ["::ffff:8.8.8.8", "public"],
  ["::ffff:0.0.0.0", "unspecified"],
  ["::ffff:169.254.169.254", "link-local"],
  ["::ffff:100.64.0.1", "shared"],
  ["::127.0.0.1", "loopback"],
  ["::10.0.0.1", "private"],
  ["::8.8.8.8", "public"],
  ["::2", "unspecified"],
  ["64:ff9b::7f00:1", "loopback"],
  ["64:ff9b::a00:1", "private"],
  ["64:ff9b::808:808", "public"],
  ["64:ff9b::192.168.1.1", "private"],
  ["64:ff9b::100.64.0.1", "shared"],
  ["2002:7f00:1::1", "loopback"],
  ["2002:c0a8:101::1", "private"],
  ["2002:808:808::1", "public"],
];

/** The policy scope of each class; absent: never allowed, whatever the allow-list. */
const SCOPE: Partial<Record<IpAddressClass, string>> = {
  loopback: "loopback",
  private: "private",
  shared: "private",
  "unique-local": "private",
  "site-local": "private",
  "link-local": "link-local",
  multicast: "multicast",
};

/** What a strict policy says about an address of class `kind`. */
function strictRefusal(kind: IpAddressClass): string | undefined {
  return kind === "public" ? undefined : SCOPE[kind] ?? kind;
}

Deno.test("classifyIp gives each address of the table its IANA class", () => {
  ok(TABLE.length >= 60, `${TABLE.length} addresses`);
  for (const [address, kind] of TABLE) {
    strictEqual(classifyIp(address), kind, address);
    strictEqual(classifyIp(parseIp(address)), kind, address);
  }
});

Deno.test("parseIp and formatIp round-trip, refusing what is not a literal", () => {
  for (const [address] of TABLE) {
    const bytes = parseIp(address);
    deepStrictEqual(parseIp(formatIp(bytes)), bytes, address);
  }
  strictEqual(formatIp(parseIp("2001:0DB8:0:0:1:0:0:1")), "2001:db8::1:0:0:1");
  strictEqual(formatIp(parseIp("1:0:0:2:0:0:0:3")), "1:0:0:2::3");
  strictEqual(formatIp(parseIp("1:2:3:4:5:6:7:0")), "1:2:3:4:5:6:7:0");
  strictEqual(formatIp(parseIp("::ffff:1.2.3.4")), "::ffff:1.2.3.4");
  strictEqual(formatIp(parseIp("::1.2.3.4")), "::102:304");
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.04",
      " 1.2.3.4",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      ":::",
      "1:2:3:4:5:6:7::8",
      "12345::",
      "fe80::1%eth0",
      "[::1]",
      "::ffff:1.2.3",
      "::1.2.3.4:5",
      "localhost",
    ]
  ) {
    throws(() => parseIp(bad), SyntaxError, bad);
  }
});

Deno.test("DestinationPolicy maps every class onto the allow-list scopes", () => {
  const strict = new DestinationPolicy();
  const loose = DestinationPolicy.parse("loopback,private,link-local,multicast");
  for (const [address, kind] of TABLE) {
    strictEqual(strict.refusal(address, 80), strictRefusal(kind), address);
    strictEqual(
      loose.refusal(address, 80),
      kind === "public" || SCOPE[kind] !== undefined ? undefined : kind,
      address,
    );
  }
});

// ------------------------------------------------------------ free mode

/** Ask free mode's SOCKS5 target for `address`: whether it was dialed, and the reply code. */
async function socksTarget(
  address: string,
  policy: DestinationPolicy | undefined,
): Promise<{ dialed: boolean; reply: number }> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  let dialed = false;
  const served = connectSocksDestination({
    readable: toServer.readable,
    writable: toClient.writable,
    close() {},
  }, {
    ...(policy === undefined ? {} : { policy }),
    dialer: (target) => {
      dialed = true;
      strictEqual(target.hostname, formatIp(parseIp(address)));
      return Promise.reject(new Deno.errors.ConnectionRefused("refused"));
    },
  });
  const writer = toServer.writable.getWriter();
  const reader = toClient.readable.getReader();
  await writer.write(new Uint8Array([5, 1, 0]));
  await reader.read();
  const ip = parseIp(address);
  await writer.write(new Uint8Array([5, 1, 0, ip.length === 4 ? 1 : 4, ...ip, 0, 80]));
  const { value } = await reader.read();
  await served.catch(() => {});
  return { dialed, reply: value![1]! };
}

Deno.test("free mode's SOCKS5 target refuses what the policy refuses, without dialing", async () => {
  for (const [address, kind] of TABLE) {
    const allowed = kind === "public";
    deepStrictEqual(
      await socksTarget(address, undefined),
      allowed ? { dialed: true, reply: 0x05 } : { dialed: false, reply: 0x02 },
      address,
    );
    const allowedLoose = allowed || SCOPE[kind] !== undefined;
    deepStrictEqual(
      await socksTarget(address, DestinationPolicy.parse("loopback,private,link-local,multicast")),
      allowedLoose ? { dialed: true, reply: 0x05 } : { dialed: false, reply: 0x02 },
      address,
    );
  }
});

// ------------------------------------------------------------ TURN

/** Relays of both families that never send anything. */
class NullRelay implements TurnRelayFactory {
  readonly families: readonly (4 | 6)[] = [4, 6];
  #port = 40000;
  open(request: TurnRelayRequest): Promise<TurnRelaySocket[]> {
    const socket: TurnRelaySocket = {
      address: {
        family: request.family,
        address: request.family === 4 ? "192.0.2.200" : "2001:db8::200",
        port: this.#port++,
      },
      send: () => true,
      close: () => {},
      onPacket: undefined,
    };
    return Promise.resolve([socket]);
  }
}

/** CreatePermission for every address of the table: the error codes (0: allowed). */
async function turnPermissions(
  options: { allowLoopbackPeers?: boolean; allowPrivatePeers?: boolean },
): Promise<Map<string, number>> {
  const server = new TurnServer({
    realm: "r",
    users: { u: "p" },
    relay: new NullRelay(),
    ...options,
  });
  const clients = new Map<4 | 6, StunTestClient>();
  for (const family of [4, 6] as const) {
    const inbox = new Queue<Uint8Array>();
    const client: TurnClient = {
      key: `c${family}`,
      address: { family: 4, address: "127.0.0.1", port: 50000 + family },
      send: (p) => inbox.push(p.slice()),
    };
    const c = new StunTestClient({ inbox, send: (bytes) => server.handle(client, bytes) });
    const allocated = await c.allocate(
      family === 6
        ? [{ type: StunAttr.RequestedAddressFamily, value: new Uint8Array([2, 0, 0, 0]) }]
        : [],
    );
    strictEqual(errorCode(allocated), 0);
    clients.set(family, c);
  }
  const codes = new Map<string, number>();
  for (const [address] of TABLE) {
    const family = parseIp(address).length === 4 ? 4 : 6;
    const peer: StunAddress = { family, address, port: 5 };
    const c = clients.get(family)!;
    const transactionId = crypto.getRandomValues(new Uint8Array(12));
    c.wire.send(c.build(StunMethod.CreatePermission, [{
      type: StunAttr.XorPeerAddress,
      value: encodeXorAddress(peer, transactionId),
    }], { transactionId }));
    codes.set(address, errorCode(await c.response(transactionId)));
  }
  server.close();
  return codes;
}

Deno.test("TURN refuses peers as the policy does (403), with and without its allow-list", async () => {
  const strict = await turnPermissions({});
  const loose = await turnPermissions({ allowLoopbackPeers: true, allowPrivatePeers: true });
  for (const [address, kind] of TABLE) {
    strictEqual(strict.get(address), kind === "public" ? 0 : 403, address);
    // TURN's allow-list: loopback, and private (link-local included); never multicast.
    const allowed = kind === "public" ||
      ["loopback", "private", "link-local"].includes(SCOPE[kind] ?? "");
    strictEqual(loose.get(address), allowed ? 0 : 403, address);
  }
});

Deno.test("DestinationPolicy refuses null options and a string where an array of scopes or destinations goes, saying what to write", () => {
  // allow: "loopback" was read letter by letter ('Invalid destination scope
  // "l"'), and null failed with 'Cannot read properties of null'.
  type Options = ConstructorParameters<typeof DestinationPolicy>[0];
  throws(
    () => new DestinationPolicy({ allow: "loopback" } as unknown as Options),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        'Cannot make a destination policy: allow must be an array, got string (write ["loopback"])',
  );
  throws(
    () => new DestinationPolicy({ allowDestinations: 5 } as unknown as Options),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot make a destination policy: allowDestinations must be an array, got number",
  );
  throws(
    () => new DestinationPolicy(null as unknown as Options),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot make a destination policy: options must be an object, got null",
  );
  strictEqual(
    new DestinationPolicy({ allow: new Set(["loopback"] as const) }).toString(),
    "loopback",
  );
});

Deno.test("DestinationPolicy refuses an allowed destination of the wrong shape (port 0, a port as text, a hostname not a string, null) with an error naming it", () => {
  // Port 0 (and a missing or textual port) was taken and matched nothing;
  // null failed with 'Cannot read properties of null'.
  type Options = ConstructorParameters<typeof DestinationPolicy>[0];
  const make = (entry: unknown) => () =>
    new DestinationPolicy({ allowDestinations: [entry] } as unknown as Options);
  throws(
    make({ hostname: "127.0.0.1", port: 0 }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === "Invalid port 0 for allowDestinations[0]: must be an integer in 1-65535",
  );
  throws(make({ hostname: "127.0.0.1", port: 70000 }), /Invalid port 70000 for allowDestinations/);
  throws(
    make({ hostname: "127.0.0.1", port: "80" }),
    (e: unknown) => e instanceof TypeError && /port for allowDestinations\[0\]/.test(e.message),
  );
  throws(make({ hostname: "127.0.0.1" }), TypeError);
  throws(
    make({ hostname: 5, port: 80 }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Invalid allowDestinations[0]: hostname must be a string, got number",
  );
  throws(
    make(null),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Invalid allowDestinations[0]: expected an object with hostname and port, got null",
  );
  // The second entry is named as such.
  throws(
    () =>
      new DestinationPolicy({
        allowDestinations: [{ hostname: "10.0.0.1", port: 80 }, { hostname: "10.0.0.2", port: 0 }],
      }),
    /allowDestinations\[1\]/,
  );
  // parse keeps its SyntaxError for an item that is no ip:port.
  throws(() => DestinationPolicy.parse("127.0.0.1:0"), SyntaxError);
  strictEqual(
    new DestinationPolicy({ allowDestinations: [{ hostname: "127.0.0.1", port: 1 }] })
      .refusal("127.0.0.1", 1),
    undefined,
  );
});

Deno.test("DestinationPolicy.parse refuses a list that is not a string with a TypeError naming its type, not JavaScript's own", () => {
  // parse(5) failed with 'text.split is not a function or its return value is not iterable'.
  for (const [bad, type] of [[5, "number"], [null, "null"], [["loopback"], "object"]] as const) {
    throws(
      () => DestinationPolicy.parse(bad as unknown as string),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message === `Cannot parse allowed destinations: the list must be a string, got ${type}`,
    );
  }
  strictEqual(DestinationPolicy.parse("loopback").toString(), "loopback");
});
