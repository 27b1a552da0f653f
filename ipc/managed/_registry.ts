// Copyright the ptkit authors. MIT license.

import type { Transport } from "../../transports/transport.ts";
import { plain } from "../../transports/plain.ts";
import { obfs4 } from "../../transports/obfs4/mod.ts";
import { webtunnel } from "../../transports/webtunnel/mod.ts";
import { shadowsocks } from "../../transports/shadowsocks/mod.ts";

/**
 * The transports the `main.ts` executable offers, by name. To offer another
 * one, import it and add one entry.
 *
 * @example Looking a transport up by name
 * ```ts
 * import { registry } from "./_registry.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * deepStrictEqual(registry.get("plain")?.name, "plain");
 * deepStrictEqual(registry.get("bogus"), undefined);
 * ```
 */
export const registry: ReadonlyMap<string, Transport> = new Map<string, Transport>(
  [
    plain,
    obfs4,
    webtunnel,
    shadowsocks,
  ].map((transport) => [transport.name, transport]),
);
