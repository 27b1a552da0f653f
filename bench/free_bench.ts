// Copyright the ptkit authors. MIT license.
// Free mode against socks mode, through main.ts as a standalone client and
// server (two processes, `plain`), on the same run. Socks mode: the
// application's SOCKS5 CONNECT names the PT server, which relays to its
// fixed target (the sink). Free mode: the client sends every connection to
// the server (`-free -target`) and the application's destination (the sink)
// travels inside the transport to the server's embedded SOCKS5 target. The
// bytes take the same hops; the goal is free mode within 5% of socks mode.

import { socks5Connect } from "../tests/obfs4_socks5.ts";
import { spawnUntil, stop } from "./ipc_bench.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ENV = {
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  HOME: Deno.env.get("HOME") ?? "/root",
};

/** The port of the first `CMETHOD`/`SMETHOD` line of `plain`. */
function methodPort(lines: string[], keyword: "CMETHOD" | "SMETHOD"): number {
  const line = lines.find((l) => l.startsWith(`${keyword} plain `))!;
  return Number(line.split(" ")[keyword === "CMETHOD" ? 3 : 2]!.split(":").pop());
}

interface Pair {
  /** Open an application connection to the sink through the pair. */
  connect(): Promise<Deno.Conn>;
  close(): Promise<void>;
}

async function startPair(free: boolean, sinkPort: number, state: string): Promise<Pair> {
  const server = await spawnUntil(
    MAIN,
    free
      ? ["-server", "-transports", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", "socks"]
        .concat(["-allow", "loopback", "-state", state])
      : ["-server", "-transports", "plain", "-bindaddr", "plain-127.0.0.1:0"]
        .concat(["-target", `127.0.0.1:${sinkPort}`, "-state", state]),
    ENV,
    /^SMETHODS DONE/,
  );
  const serverPort = methodPort(server.lines, "SMETHOD");
  const client = await spawnUntil(
    MAIN,
    ["-client", "-transports", "plain", "-state", state].concat(
      free ? ["-free", "-target", `127.0.0.1:${serverPort}`] : [],
    ),
    ENV,
    /^CMETHODS DONE/,
  );
  const socksPort = methodPort(client.lines, "CMETHOD");
  const destination = { hostname: "127.0.0.1", port: free ? sinkPort : serverPort };
  return {
    connect: () => socks5Connect({ hostname: "127.0.0.1", port: socksPort }, destination),
    close: async () => {
      await stop(client.child);
      await stop(server.child);
    },
  };
}

/**
 * Run the section: best of `2 * rounds` uploads through each mode, the
 * two modes alternating so that both see the same machine load.
 */
export async function freeBench(
  upload: (conn: Deno.Conn) => Promise<number>,
  sinkPort: number,
  rounds: number,
  row: (name: string, value: number, unit: string, base: number) => void,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "ptkit-bench-free-" });
  const socks = await startPair(false, sinkPort, state);
  const free = await startPair(true, sinkPort, state);
  try {
    let bestSocks = 0;
    let bestFree = 0;
    // Twice the rounds of the other sections, in ABBA order: on a shared
    // machine a neighbour's burst then hurts both modes alike.
    for (let i = 0; i < 2 * rounds; i++) {
      const order = i % 2 === 0 ? [false, true] : [true, false];
      for (const isFree of order) {
        const rate = await upload(await (isFree ? free : socks).connect());
        if (isFree) bestFree = Math.max(bestFree, rate);
        else bestSocks = Math.max(bestSocks, rate);
      }
    }
    console.log(
      "Standalone client and server (main.ts, plain), free mode vs socks mode (goal >= 0.95):",
    );
    row("socks mode: SOCKS5 to the server, fixed target", bestSocks, "MB/s", bestSocks);
    row("free mode: destination inside, SOCKS5 target", bestFree, "MB/s", bestSocks);
  } finally {
    await socks.close();
    await free.close();
    await Deno.remove(state, { recursive: true });
  }
}
