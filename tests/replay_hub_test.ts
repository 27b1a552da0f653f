// Copyright the ptkit authors. MIT license.
// The servers' replay filters shared by every listener and `-workers`
// process of a transport (ipc/managed/_replay_hub.ts): the lines between
// parent and children, malformed ones ignored, nothing sent back where it
// came from; and a Shadowsocks first flight accepted by one server is
// refused by another that shares its filter.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { ReplayHub } from "../ipc/managed/_replay_hub.ts";
import { ReplayFilter } from "../transports/_replay_filter.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";

Deno.test("ReplayHub: a child's value goes to its parent, which adds it, passes it to the other children and remembers it", () => {
  const childLines: string[] = [];
  const child = new ReplayHub({ send: (line) => childLines.push(line) });
  const seenByChild: number[][] = [];
  child.env("obfs4").subscribe((value) => seenByChild.push([...value]));
  child.env("obfs4").recorded(new Uint8Array([1, 2, 3]));
  deepStrictEqual(childLines, ["PTKIT-REPLAY obfs4 AQID\n"]);
  deepStrictEqual(seenByChild, [[1, 2, 3]]);

  const sent: [string, number | undefined][] = [];
  const parent = new ReplayHub({
    send: (line, from) => sent.push([line, from]),
    remember: ReplayFilter,
  });
  const seenByParent: number[][] = [];
  parent.env("obfs4").subscribe((value) => seenByParent.push([...value]));
  strictEqual(parent.handleLine(childLines[0]!.trimEnd(), 2), true);
  deepStrictEqual(seenByParent, [[1, 2, 3]]);
  deepStrictEqual(sent, [["PTKIT-REPLAY obfs4 AQID\n", 2]]);
  // The parent's own values go to every child.
  parent.env("shadowsocks").recorded(new Uint8Array([9]));
  deepStrictEqual(sent.at(-1), ["PTKIT-REPLAY shadowsocks CQ==\n", undefined]);
  // A child started now gets both.
  deepStrictEqual(parent.snapshot(), "PTKIT-REPLAY obfs4 AQID\nPTKIT-REPLAY shadowsocks CQ==\n");

  // A line from the parent reaches the child's filters and is not sent back.
  strictEqual(child.handleLine("PTKIT-REPLAY obfs4 CQ=="), true);
  deepStrictEqual(seenByChild.at(-1), [9]);
  deepStrictEqual(childLines.length, 1);
});

Deno.test("ReplayHub: malformed replay lines are dropped, other lines are not its own", () => {
  const sent: string[] = [];
  const hub = new ReplayHub({ send: (line) => sent.push(line), remember: ReplayFilter });
  const seen: Uint8Array[] = [];
  hub.env("obfs4").subscribe((value) => seen.push(value));
  for (
    const line of [
      "PTKIT-REPLAY obfs4",
      "PTKIT-REPLAY obfs4 !!!!",
      "PTKIT-REPLAY obf s4 AQID",
      "PTKIT-REPLAY 4bfs AQID",
      `PTKIT-REPLAY obfs4 ${"A".repeat(200)}`,
      "PTKIT-REPLAY obfs4 A===",
    ]
  ) {
    strictEqual(hub.handleLine(line, 2), true, line);
  }
  deepStrictEqual([seen.length, sent.length, hub.snapshot()], [0, 0, ""]);
  strictEqual(hub.handleLine("CMESSAGE obfs4 AQID"), false);
  strictEqual(hub.handleLine("PTKIT-METRICS {}"), false);
});

Deno.test("shadowsocks: a first flight one server accepted is refused by another sharing its replay filter", async () => {
  const hub = new ReplayHub();
  const options = { method: "aes-256-gcm", password: "replay-test" };
  const env = { replays: hub.env("shadowsocks") };
  const [a, b, alone] = [
    await shadowsocks.server(options, env),
    await shadowsocks.server(options, env),
    await shadowsocks.server(options),
  ];
  // A client's first flight: salt, request, data.
  const client = (await shadowsocks.client(options)).pair({}, {
    hostname: "example.com",
    port: 443,
  });
  const writer = client.encode.writable.getWriter();
  writer.write(new TextEncoder().encode("hello"));
  const { value: flight } = await client.encode.readable.getReader().read();
  ok(flight !== undefined && flight.length > 32);
  // A refused flight is read on in silence: its destination never settles,
  // so 300 ms without one counts as refused. One expected to be accepted is
  // given 10 s (a hang guard): its decryption took up to 80 ms with the
  // machine loaded, too close to 300 ms to fail only when it is refused.
  const accepts = async (side: typeof a, expected: boolean) => {
    const pair = side.pair();
    pair.decode.writable.getWriter().write(flight.slice()).catch(() => {});
    pair.decode.readable.getReader().read().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      pair.destination!.then(() => true, () => false),
      new Promise<boolean>((resolve) =>
        timer = setTimeout(() => resolve(false), expected ? 10_000 : 300)
      ),
    ]);
    clearTimeout(timer);
    for (const stream of [pair.encode, pair.decode]) {
      stream.writable.abort().catch(() => {});
      stream.readable.cancel().catch(() => {});
    }
    return result;
  };
  deepStrictEqual(
    [
      await accepts(a, true),
      await accepts(b, false),
      await accepts(a, false),
      await accepts(alone, true),
    ],
    [true, false, false, true],
  );
});

Deno.test("ReplayHub: a child's filters get its parent's snapshot when they subscribe, before the child listens", () => {
  const parent = new ReplayHub({ remember: ReplayFilter });
  parent.env("obfs4").recorded(new Uint8Array([7, 7]));
  parent.env("shadowsocks").recorded(new Uint8Array([8]));
  const child = new ReplayHub({ remember: ReplayFilter, initial: parent.snapshot() });
  const obfs4: number[][] = [];
  const shadowsocks: number[][] = [];
  child.env("obfs4").subscribe((value) => obfs4.push([...value]));
  child.env("shadowsocks").subscribe((value) => shadowsocks.push([...value]));
  deepStrictEqual([obfs4, shadowsocks], [[[7, 7]], [[8]]]);
});

Deno.test("a closed listener's replay filter stops taking shared values (obfs4, shadowsocks; also when listening fails)", async () => {
  const { listen } = await import("../server.ts");
  const { obfs4 } = await import("../transports/obfs4/mod.ts");
  const { MemoryStore } = await import("../transports/memory_store.ts");
  const hub = new ReplayHub();
  for (
    const [transport, options] of [
      [shadowsocks, { method: "chacha20-ietf-poly1305", password: "correct-horse-battery" }],
      [obfs4, {}],
    ] as const
  ) {
    const shared = hub.env(transport.name);
    let subscribed = 0;
    const replays = {
      recorded: shared.recorded,
      subscribe: (add: (value: Uint8Array) => void) => {
        subscribed++;
        const stop = shared.subscribe(add);
        return () => {
          subscribed--;
          stop();
        };
      },
    };
    const env = { replays, local: new MemoryStore() };
    for (let i = 0; i < 5; i++) {
      const listener = await listen(transport, options, { hostname: "127.0.0.1", port: 0, env });
      strictEqual(subscribed, 1, transport.name);
      listener.close();
      strictEqual(subscribed, 0, transport.name);
    }
    // A listen that fails (the port is taken) releases its side too.
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await listen(transport, options, { hostname: "127.0.0.1", port: taken.addr.port, env }).then(
      () => ok(false, "listened on a taken port"),
      () => {},
    );
    strictEqual(subscribed, 0, `${transport.name}, failed listen`);
  }
});
