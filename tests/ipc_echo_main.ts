#!/usr/bin/env -S deno run --quiet --no-prompt --allow-net --allow-read --allow-write --allow-env=TOR_PT_*
// Copyright the ptkit authors. MIT license.
// main.ts with one extra test transport, `echo`: its client side first
// sends the application {config, instance} as JSON plus a newline (instance
// counts configurations made, showing connector caching), then
// passes bytes unchanged. Lets tests see what arguments reached a transport.
// Also `keyed` (tests/keyed_transport.ts), which uses local and signals.

import { builtinTransports as registry } from "../ipc/managed/_registry.ts";
import { runManagedProxy } from "../ipc/managed/managed_proxy.ts";
import { defineTransport } from "../transports/define_transport.ts";
import type { TransportOptions } from "../transports/transport.ts";
import { keyed } from "./keyed_transport.ts";

let instances = 0;
const echo = defineTransport<{ config: TransportOptions; instance: number }>({
  name: "echo",
  parseConfig: (config) => {
    if (config.fail !== undefined) throw new TypeError("Cannot configure transport 'echo': fail");
    return { config, instance: ++instances };
  },
  pair: (config) => ({
    encode: new TransformStream(),
    decode: new TransformStream({
      start: (controller) => {
        controller.enqueue(new TextEncoder().encode(JSON.stringify(config) + "\n"));
      },
    }),
  }),
});

Deno.exit(
  await runManagedProxy({
    args: Deno.args,
    registry: new Map([...registry, ["echo", echo], ["keyed", keyed]]),
  }),
);
