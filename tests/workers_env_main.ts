// Copyright the ptkit authors. MIT license.
// A PT program of its own (as a library user writes one): main.ts's
// transports plus `envtag`, whose server reads a variable of its own
// (PTKIT_TEST_TAG) when configured. Run with `deno run -A`, its `-workers`
// children must get that permission too (tests/workers_test.ts).

import { builtinTransports, runManagedProxy } from "../ipc/mod.ts";
import { defineTransport } from "../transports/mod.ts";

const envtag = defineTransport<string>({
  name: "envtag",
  parseConfig: () => Deno.env.get("PTKIT_TEST_TAG") ?? "",
  pair: () => ({ encode: new TransformStream(), decode: new TransformStream() }),
});

Deno.exit(
  await runManagedProxy({
    args: Deno.args,
    registry: new Map([...builtinTransports, ["envtag", envtag]]),
  }),
);
