// Copyright the ptkit authors. MIT license.
// IPC section of `deno task bench`: start-up of main.ts to `CMETHODS DONE`
// (median of 10, against `deno run` of an empty program), and the SOCKS5
// front end with `plain` (connect latency, throughput) against a raw two-hop
// pipeTo chain whose first hop is also a separate process.

import { proxy } from "../server.ts";
import { plain } from "../transports/plain.ts";
import { socks5Connect } from "../tests/obfs4_socks5.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const HOP = new URL("./pipe_hop.ts", import.meta.url).pathname;
const EMPTY = new URL("./empty.ts", import.meta.url).pathname;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Spawn, read stdout until a line matching `until`, return ms and the child. */
export async function spawnUntil(
  program: string,
  args: string[],
  env: Record<string, string>,
  until: RegExp,
): Promise<{ ms: number; child: Deno.ChildProcess; lines: string[] }> {
  const start = performance.now();
  const child = new Deno.Command(program, {
    args,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines: string[] = [];
  let buffer = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (!lines.some((l) => until.test(l))) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${program} exited before printing ${until}`);
    buffer += value;
    const parts = buffer.split("\n");
    buffer = parts.pop()!;
    lines.push(...parts);
  }
  const ms = performance.now() - start;
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { ms, child, lines };
}

export async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  await child.status;
  await child.stdin.close().catch(() => {});
}

const PT_ENV = {
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  HOME: Deno.env.get("HOME") ?? "/root",
  TOR_PT_MANAGED_TRANSPORT_VER: "1",
  TOR_PT_CLIENT_TRANSPORTS: "plain",
  TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
};

/** Connect through a SOCKS5 server to 127.0.0.1:port; returns the open conn. */
function socksConnect(socksPort: number, port: number): Promise<Deno.Conn> {
  return socks5Connect({ hostname: "127.0.0.1", port: socksPort }, { hostname: "127.0.0.1", port });
}

/**
 * Run the IPC section. `upload` sends the bench's amount through a conn and
 * returns MB/s; `secondHopPort` is an in-process pipeTo hop to the sink, so
 * the raw chain (hop process, then that hop) has as many hops as the PT path
 * (main.ts, then `proxy`).
 */
export async function ipcBench(
  upload: (conn: Deno.Conn) => Promise<number>,
  sinkPort: number,
  secondHopPort: number,
  row: (name: string, value: number, unit: string, base: number) => void,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ptkit-bench-" });
  try {
    await Deno.writeTextFile(EMPTY, "");
    const empty: number[] = [];
    const startup: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await new Deno.Command(Deno.execPath(), { args: ["run", EMPTY], stdout: "null" }).output();
      empty.push(performance.now() - t0);
      const pt = await spawnUntil(
        MAIN,
        [],
        { ...PT_ENV, TOR_PT_STATE_LOCATION: dir },
        /^CMETHODS DONE/,
      );
      startup.push(pt.ms);
      await stop(pt.child);
    }
    console.log("Start-up, exec to CMETHODS DONE, median of 10 (goal < 100 ms):");
    row("deno run of an empty program", median(empty), "ms", median(empty));
    row("main.ts, plain", median(startup), "ms", median(empty));

    await using manager = await proxy(plain, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: { hostname: "127.0.0.1", port: sinkPort },
    });
    const pt = await spawnUntil(
      MAIN,
      [],
      { ...PT_ENV, TOR_PT_STATE_LOCATION: dir },
      /^CMETHODS DONE/,
    );
    const socksPort = Number(pt.lines.find((l) => l.startsWith("CMETHOD plain"))!.split(":").pop());
    const hop = await spawnUntil(
      Deno.execPath(),
      ["run", "--allow-net=127.0.0.1", HOP, String(secondHopPort)],
      {},
      /^\d+$/,
    );
    const hopPort = Number(hop.lines[0]);
    try {
      const latencies: number[] = [];
      const rawLatencies: number[] = [];
      for (let i = 0; i < 50; i++) {
        let t0 = performance.now();
        const conn = await socksConnect(socksPort, manager.addr.port);
        latencies.push(performance.now() - t0);
        conn.close();
        t0 = performance.now();
        const raw = await Deno.connect({ hostname: "127.0.0.1", port: hopPort });
        rawLatencies.push(performance.now() - t0);
        raw.close();
      }
      console.log("SOCKS5 connect latency, median of 50 (ratio to a raw TCP connect to the hop):");
      row("raw connect to a pipeTo hop", median(rawLatencies), "ms", median(rawLatencies));
      row("main.ts SOCKS5 CONNECT through plain", median(latencies), "ms", median(rawLatencies));

      let best = 0;
      let bestRaw = 0;
      for (let i = 0; i < 3; i++) {
        bestRaw = Math.max(
          bestRaw,
          await upload(await Deno.connect({ hostname: "127.0.0.1", port: hopPort })),
        );
        best = Math.max(best, await upload(await socksConnect(socksPort, manager.addr.port)));
      }
      console.log("Throughput, first hop in its own process (goal >= 0.8):");
      row("raw two-hop chain (pipeTo process + pipeTo hop)", bestRaw, "MB/s", bestRaw);
      row("main.ts SOCKS5 + plain, then proxy(plain)", best, "MB/s", bestRaw);
    } finally {
      await stop(pt.child);
      await stop(hop.child);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(EMPTY).catch(() => {});
  }
}
