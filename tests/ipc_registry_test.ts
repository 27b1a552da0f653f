// Copyright the ptkit authors. MIT license.
// main.ts's registry loads each transport at its first use: its entries
// must say what the transports themselves say.

import { deepStrictEqual, rejects } from "node:assert";
import { builtinTransports as registry } from "../ipc/managed/_registry.ts";
import { plain } from "../transports/plain.ts";
import { obfs4 } from "../transports/obfs4/mod.ts";
import { webtunnel } from "../transports/webtunnel/mod.ts";
import { shadowsocks } from "../transports/shadowsocks/mod.ts";
import { ssh } from "../transports/ssh/mod.ts";
import { MemoryStore } from "../transports/memory_store.ts";

Deno.test("the registry's entries name the transports their modules export, free or not", () => {
  const loaded = [plain, obfs4, webtunnel, shadowsocks, ssh];
  deepStrictEqual(
    [...registry.values()].map((t) => [t.name, t.free === true]),
    loaded.map((t) => [t.name, t.free === true]),
  );
  deepStrictEqual([...registry.keys()], loaded.map((t) => t.name));
});

Deno.test("a registry entry configures its transport once loaded, errors included", async () => {
  const entry = registry.get("obfs4")!;
  const generated = await entry.generateConfig!();
  const server = await entry.server(generated.server, { local: new MemoryStore() });
  deepStrictEqual(typeof server.pair, "function");
  const client = await entry.client(generated.client);
  deepStrictEqual(typeof client.pair, "function");
  await rejects(async () => await registry.get("shadowsocks")!.server({}), TypeError);
});
