// Copyright the ptkit authors. MIT license.

import type { Transport } from "../../transports/transport.ts";
import { plain } from "../../transports/plain.ts";
import { obfs4 } from "../../transports/obfs4/mod.ts";
import { webtunnel } from "../../transports/webtunnel/mod.ts";
import { shadowsocks } from "../../transports/shadowsocks/mod.ts";
import { ssh } from "../../transports/ssh/mod.ts";

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
    ssh,
  ].map((transport) => [transport.name, transport]),
);

/**
 * The transports that run helper processes (`ssh`): their server's helper
 * listens itself (its own sshd), so one process serves them whatever
 * `-workers` says (workers would each start one on the same port); their
 * client's helper connects by itself, so it cannot honour an upstream
 * proxy (`-proxy`, `TOR_PT_PROXY`) and is refused with one.
 */
export const HELPER_TRANSPORTS: ReadonlySet<string> = new Set(["ssh"]);
