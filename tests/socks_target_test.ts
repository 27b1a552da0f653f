// Copyright the ptkit authors. MIT license.

// The free mode's SOCKS destination with names (literals are checked
// against the whole IP table in ip_address_test.ts): every address a name
// resolves to is judged (a name that resolves to loopback is refused like
// the literal), and only the allowed ones are dialed.

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { DestinationPolicy } from "../net/destination_policy.ts";
import { connectDestination, connectSocksDestination } from "../ipc/socks/_target.ts";
import { systemResolve } from "../net/_resolve.ts";
import { SocksReplyError } from "../ipc/socks/_reply.ts";

/** A SOCKS5 CONNECT to `host` port 80 (an IPv4 literal or a name) through connectSocksDestination. */
async function connect(
  host: string,
  options: { policy?: DestinationPolicy; resolve?: (name: string) => Promise<string[]> },
): Promise<{ reply: number; dialed: string[] }> {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const dialed: string[] = [];
  const served = connectSocksDestination({
    readable: toServer.readable,
    writable: toClient.writable,
    close() {},
  }, {
    ...options,
    dialer: (address) => {
      dialed.push(address.hostname);
      return Promise.reject(new Deno.errors.ConnectionRefused("refused in the test"));
    },
  });
  served.catch(() => {});
  const writer = toServer.writable.getWriter();
  const reader = toClient.readable.getReader();
  await writer.write(new Uint8Array([5, 1, 0]));
  deepStrictEqual((await reader.read()).value, new Uint8Array([5, 0]));
  const v4 = /^\d+\.\d+\.\d+\.\d+$/.test(host);
  const address = v4
    ? [1, ...host.split(".").map(Number)]
    : [3, host.length, ...new TextEncoder().encode(host)];
  await writer.write(new Uint8Array([5, 1, 0, ...address, 0, 80]));
  const reply = (await reader.read()).value![1]!;
  await rejects(served, SocksReplyError);
  return { reply, dialed };
}

Deno.test("connectSocksDestination checks every address a name resolves to and dials only the allowed ones", async () => {
  const names: Record<string, string[]> = {
    "rebind.test": ["127.0.0.1"],
    "mixed.test": ["10.0.0.1", "8.8.8.8", "::1", "2606:4700:4700::1111"],
  };
  const resolve = (name: string) => Promise.resolve(names[name] ?? []);
  const rebind = await connect("rebind.test", { resolve });
  strictEqual(rebind.reply, 0x02);
  deepStrictEqual(rebind.dialed, []);
  const mixed = await connect("mixed.test", { resolve });
  deepStrictEqual(mixed.dialed, ["8.8.8.8", "2606:4700:4700::1111"]);
  // Allowed by the policy, loopback is dialed.
  const allowed = await connect("rebind.test", {
    resolve,
    policy: DestinationPolicy.parse("loopback"),
  });
  deepStrictEqual(allowed.dialed, ["127.0.0.1"]);
});

Deno.test("connectDestination bounds the name lookups a source has under way (a resolver that never answers takes no more)", async () => {
  // Each lookup of the system resolver holds a thread of Deno's blocking
  // pool (512, shared with file reads) until the name servers answer or
  // time out: one client naming 100 hosts whose name servers never answer
  // ran 100 lookups at once, and a few hundred left nothing for anyone else.
  const pending: (() => void)[] = [];
  const calls: string[] = [];
  const resolve = (name: string) => {
    calls.push(name);
    return new Promise<string[]>((done) => pending.push(() => done([])));
  };
  const attacker = Array.from(
    { length: 100 },
    (_, i) =>
      connectDestination({ hostname: `n${i}.slow.test`, port: 80 }, {
        resolve,
        source: "198.51.100.7",
      }).catch((error) => error),
  );
  await new Promise((done) => setTimeout(done, 0));
  strictEqual(calls.length, 8, "lookups under way for one source");
  // Another client's lookup runs at once.
  const other = connectDestination({ hostname: "other.test", port: 80 }, {
    resolve,
    source: "203.0.113.9",
  }).catch((error) => error);
  await new Promise((done) => setTimeout(done, 0));
  strictEqual(calls.length, 9);
  strictEqual(calls[8], "other.test");
  // The attacker's lookups beyond 8 running and 64 waiting fail at once;
  // the others run in their turn, and every client gets its answer.
  while (pending.length > 0) {
    pending.splice(0).forEach((answer) => answer());
    await new Promise((done) => setTimeout(done, 0));
  }
  const results = await Promise.all([...attacker, other]);
  strictEqual(calls.length, 8 + 64 + 1);
  for (const result of results) {
    ok(result instanceof SocksReplyError);
    strictEqual(result.code, 0x04);
  }
});

Deno.test("systemResolve holds no thread of Deno's blocking pool: file reads go on while 64 lookups wait for a silent name server", async () => {
  // getaddrinfo (node:dns lookup) held one of the pool's 32 threads per
  // lookup until the name servers timed out: 32 names under a domain whose
  // name servers never answer stopped every file read for 10 s.
  const silent = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  let queries = 0;
  const drained = (async () => {
    try {
      for await (const _ of silent) queries++;
    } catch {
      // Closed.
    }
  })();
  const stop = new AbortController();
  const nameServer = { ipAddr: "127.0.0.1", port: (silent.addr as Deno.NetAddr).port };
  let settled = 0;
  const lookups = Array.from(
    { length: 64 },
    (_, i) =>
      systemResolve(`n${i}.slow.test`, { nameServer, signal: stop.signal })
        .catch((error) => error)
        .finally(() => settled++),
  );
  try {
    while (queries < 64) await new Promise((done) => setTimeout(done, 10));
    ok((await Deno.readTextFile(import.meta.filename!)).length > 0);
    strictEqual(settled, 0, "a lookup ended before the file was read");
  } finally {
    stop.abort(new Error("test over"));
    await Promise.all(lookups);
    silent.close();
    await drained;
  }
});

Deno.test("connectDestination dials at most 4 of a name's addresses, and gives the dial up when its signal aborts", async () => {
  // A name's owner chooses how many addresses it has, and a dial of a
  // silent one takes two minutes (SYN retries): 200 addresses held the
  // connection, and after it closed a socket, for 200 times that.
  const many = Array.from({ length: 200 }, (_, i) => `8.8.${i >> 8}.${i & 255}`);
  const dialed: string[] = [];
  const refused = await connectDestination({ hostname: "many.test", port: 80 }, {
    resolve: () => Promise.resolve(many),
    dialer: (address) => {
      dialed.push(address.hostname);
      return Promise.reject(new Deno.errors.ConnectionRefused("refused in the test"));
    },
  }).catch((error) => error);
  ok(refused instanceof SocksReplyError);
  deepStrictEqual(dialed, many.slice(0, 4));
  // The families take turns: a host without IPv4 still reaches IPv6.
  dialed.length = 0;
  await connectDestination({ hostname: "mixed.test", port: 80 }, {
    resolve: () => Promise.resolve([...many.slice(0, 5), "2001:4860::1", "2001:4860::2"]),
    dialer: (address) => {
      dialed.push(address.hostname);
      return Promise.reject(new Deno.errors.ConnectionRefused("refused in the test"));
    },
  }).catch(() => {});
  deepStrictEqual(dialed, ["8.8.0.0", "2001:4860::1", "8.8.0.1", "2001:4860::2"]);
  // A dial under way ends when the caller gives the destination up.
  const giveUp = new AbortController();
  let dialSignal: AbortSignal | undefined;
  const pending = connectDestination({ hostname: "8.8.8.8", port: 80 }, {
    signal: giveUp.signal,
    dialer: (_address, _settings, options) => {
      dialSignal = options?.signal;
      return new Promise((_resolve, reject) => {
        options?.signal?.addEventListener("abort", () => reject(options.signal!.reason));
      });
    },
  });
  while (dialSignal === undefined) await new Promise((done) => setTimeout(done, 0));
  giveUp.abort(new Error("connection closed"));
  await rejects(pending, /connection closed/);
  strictEqual(dialSignal.aborted, true);
});

Deno.test("connectDestination with a signal aborted before the lookup rejects with its reason, and leaves no unhandled rejection behind", async () => {
  // The connection closed before its destination was connected: the lookup
  // queue refuses the aborted signal at once, and that refusal must be
  // handled (unhandled, it ends the server process).
  const reason = new Error("Connection closed before its destination");
  let resolved = 0;
  await rejects(
    connectDestination({ hostname: "closed.test", port: 80 }, {
      signal: AbortSignal.abort(reason),
      resolve: () => {
        resolved++;
        return Promise.resolve(["192.0.2.1"]);
      },
      dialer: () => Promise.reject(new Error("never dialed")),
    }),
    (error) => error === reason,
  );
  strictEqual(resolved, 0);
  // An unhandled rejection is reported once the event loop turns.
  await new Promise((resolve) => setTimeout(resolve, 50));
});

Deno.test("SocksReplyError keeps the destination (under tor, the bridge) out of what console.log prints, and gives it to code that asks", () => {
  // Found as a library user (h42lib) logging a SocksServer error with
  // console.log(error): Deno prints an error's own enumerable properties,
  // and 'destination: { hostname: "198.51.100.7", port: 443 }' came with it.
  const error = new SocksReplyError(0x12, "Cannot parse the connection's arguments", {
    destination: { hostname: "198.51.100.7", port: 443 },
  });
  ok(!Deno.inspect(error).includes("198.51.100.7"), Deno.inspect(error));
  ok(Deno.inspect(error).includes("code: 18"), Deno.inspect(error));
  deepStrictEqual(error.destination, { hostname: "198.51.100.7", port: 443 });
  strictEqual(new SocksReplyError(1, "x").destination, undefined);
});
