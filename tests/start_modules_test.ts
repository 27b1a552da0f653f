// Copyright the ptkit authors. MIT license.
// A fast start (issue 12): what main.ts loads before CMETHODS DONE /
// SMETHODS DONE, read from Deno's own module loader log (DENO_LOG=debug
// names every module it compiles) on the same pipe as the protocol lines.

import { deepStrictEqual, ok } from "node:assert";
import { childEnv, MAIN } from "./ipc_util.ts";
import { parseManagedConfig, type PtLine, runServer } from "../ipc/mod.ts";

/**
 * The modules main.ts compiled before its `*METHODS DONE` line, in order,
 * and the lines it printed until then.
 */
async function loadedBeforeDone(
  env: Record<string, string>,
  done: string,
): Promise<{ modules: string[]; lines: string[] }> {
  // stderr on stdout's pipe: the loader's lines and the protocol's stay in
  // the order the process wrote them.
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$0" 2>&1', MAIN],
    env: childEnv({ ...env, DENO_LOG: "debug", TOR_PT_EXIT_ON_STDIN_CLOSE: "1" }),
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const modules: string[] = [];
  const lines: string[] = [];
  let text = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (!lines.includes(done)) {
      const { value, done: ended } = await reader.read();
      if (ended) throw new Error(`main.ts ended before ${done}: ${lines.join(" | ")}`);
      text += value;
      const parts = text.split("\n");
      text = parts.pop()!;
      // One read can carry lines from after the DONE line too (a loaded
      // machine reads the pipe late): what follows it is not counted.
      for (const line of parts) {
        const module = / for ES module: (\S+?),? /.exec(line)?.[1];
        if (module !== undefined) modules.push(module);
        else if (!line.startsWith("DEBUG ") && /^[A-Z]/.test(line)) lines.push(line);
        if (line === done) break;
      }
    }
  } finally {
    await child.stdin.close();
    await reader.cancel();
    await child.status;
  }
  return { modules, lines };
}

const state = await Deno.makeTempDir({ prefix: "ptkit-start-modules-" });
const v1 = { TOR_PT_MANAGED_TRANSPORT_VER: "1", TOR_PT_STATE_LOCATION: state };
/** Each side: its environment and the line that ends its start. */
const SIDES = [
  ["server", {
    ...v1,
    TOR_PT_SERVER_TRANSPORTS: "obfs4",
    TOR_PT_SERVER_BINDADDR: "obfs4-127.0.0.1:0",
    TOR_PT_ORPORT: "127.0.0.1:9",
  }, "SMETHODS DONE"],
  ["client", { ...v1, TOR_PT_CLIENT_TRANSPORTS: "obfs4" }, "CMETHODS DONE"],
] as const;

for (
  const [side, env, done] of SIDES
) {
  Deno.test(`main.ts ${side} loads none of Deno's lazily loaded modules before ${done} (node:timers, loaded with the listener, cost a server 10-20 ms of its start; atob's module 3 ms)`, async () => {
    const { modules, lines } = await loadedBeforeDone(env, done);
    // The loader's log was read: main.ts itself is in it.
    ok(modules.some((m) => m.endsWith("/main.ts")), `no module in the loader's log: ${lines}`);
    deepStrictEqual(
      // The runtime's modules that load at first use: the Node compatibility
      // layer (node:timers, a global setTimeout or setImmediate), atob and
      // btoa's (ext:deno_web/05_base64.js), the Web Streams (Deno.stdin.readable).
      modules.filter((m) => m.startsWith("node:") || m.startsWith("ext:")),
      [],
    );
  });
}

/**
 * Modules that serve connections, loaded after `*METHODS DONE`: the
 * listeners are bound before it, and the kernel's backlog holds connections
 * until they accept. libc's FFI calls (the listen backlog, keepalive and
 * SO_REUSEPORT for -workers) cost 5-10 ms to bind.
 */
const PER_CONNECTION = [
  "server.ts",
  "client.ts",
  "net/relay.ts",
  "net/transport_listener.ts",
  "net/server_manager.ts",
  "net/_accept_loop.ts",
  "net/transport_conn.ts",
  "net/_libc.ts",
  "ipc/managed/_server_serving.ts",
  "ipc/managed/_client_serving.ts",
].map((path) => new URL(`../${path}`, import.meta.url).href);

for (
  const [side, env, done] of SIDES
) {
  Deno.test(`main.ts ${side} loads no module that serves connections before ${done} (proxy() and its accept loop, relays, libc's FFI calls: 20 modules and 10-30 ms of a server's start)`, async () => {
    const { modules, lines } = await loadedBeforeDone(env, done);
    ok(modules.some((m) => m.endsWith("/main.ts")), `no module in the loader's log: ${lines}`);
    // The side's own lines came before: it was started.
    ok(
      lines.some((line) => line.startsWith(side === "server" ? "SMETHOD " : "CMETHOD ")),
      `${lines}`,
    );
    deepStrictEqual(modules.filter((m) => PER_CONNECTION.includes(m)), []);
  });
}

for (const stop of ["close", "drain"] as const) {
  Deno.test(`runServer stopped (${stop}) right after SMETHODS DONE, before or while it starts serving, closes its listener`, async () => {
    const config = parseManagedConfig([
      ...["-server", "-transports", "plain", "-orport", "127.0.0.1:9", "-state", state],
    ]);
    if (config.kind !== "server") throw new Error("not a server");
    const lines: PtLine[] = [];
    const running = await runServer(config, { emit: (line) => lines.push(line) });
    const smethod = lines.find((line) => line.type === "SMETHOD");
    ok(smethod?.type === "SMETHOD", JSON.stringify(lines));
    await running[stop]();
    // Its port is free again (AddrInUse while the listener stays open).
    Deno.listen({ hostname: "127.0.0.1", port: smethod.address.port }).close();
  });
}

Deno.test({
  name: "start modules: cleanup of temporary state",
  fn: async () => {
    await Deno.remove(state, { recursive: true });
  },
});
