// Copyright the ptkit authors. MIT license.
// Helpers for the hardening tests: connection floods from Node.js (it can
// reset a socket; Deno cannot set SO_LINGER), file descriptor limits, and
// the servers' "good connection" checks.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { UdpSocket } from "../udp/mod.ts";
import { socks5Connect } from "../ipc/socks/_client.ts";
import { readExactly } from "../net/mod.ts";
import { MAIN, PtProcess, requireBinary } from "./ipc_util.ts";
import { bindingRequest } from "./turn_util.ts";

const FLOOD = new URL("./conn_flood.mjs", import.meta.url).pathname;

/** What `conn_flood.mjs` reports. */
export interface FloodSummary {
  connected: number;
  failed: number;
  closed: number;
  open: number;
  ms: number;
}

/** Node.js, or fail naming the Debian package. */
export function node(): string {
  return requireBinary("node", "nodejs");
}

/** `prlimit`, or fail naming the Debian package. */
export function prlimit(): string {
  return requireBinary("prlimit", "util-linux");
}

function lastJson(stdout: Uint8Array): FloodSummary {
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  return JSON.parse(lines.at(-1)!.replace(/^ready /, ""));
}

/**
 * Open `count` connections to `port` and reset each (SO_LINGER {on, 0}) as
 * soon as it is connected. With `sync`, the calling process is blocked
 * meanwhile, so that a listener in this process cannot accept any of them
 * before they are reset.
 */
export async function resetConnections(
  port: number,
  count: number,
  options: { sync?: boolean; hostname?: string } = {},
): Promise<FloodSummary> {
  const command = new Deno.Command(node(), {
    args: [FLOOD, "reset", options.hostname ?? "127.0.0.1", String(port), String(count)],
    stdout: "piped",
    stderr: "inherit",
  });
  const output = options.sync ? command.outputSync() : await command.output();
  ok(output.success, "conn_flood.mjs reset failed");
  return lastJson(output.stdout);
}

/**
 * Reset connections to `port` as fast as this machine manages, for `ms`.
 * The flood runs at the lowest priority (`nice -n 19`): an attacker on the
 * internet does not take the bridge's CPU, so here it gets what the bridge
 * leaves, which on 2 cores is still thousands of connections a second.
 */
export async function floodResets(port: number, ms: number): Promise<FloodSummary> {
  const output = await new Deno.Command("nice", {
    args: ["-n", "19", node(), FLOOD, "flood", "127.0.0.1", String(port), String(ms), "200"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  ok(output.success, "conn_flood.mjs flood failed");
  return lastJson(output.stdout);
}

/** Connections held open by a Node.js process until `close()`. */
export interface Holder extends AsyncDisposable {
  /** Counts once every connection is connected or failed. */
  readonly ready: Promise<FloodSummary>;
  /** Counts now (after `ready`). */
  status(): Promise<FloodSummary>;
  /** Close every connection; resolves with the final counts. */
  close(): Promise<FloodSummary>;
}

/**
 * Open `count` idle connections to `port` from `localAddress` and hold them,
 * in a process whose file descriptor limit allows it.
 */
export function holdConnections(port: number, count: number, localAddress = "127.0.0.1"): Holder {
  const child = new Deno.Command(prlimit(), {
    args: [`--nofile=${count + 1024}`, node(), FLOOD, "hold", "127.0.0.1", String(port)]
      .concat([String(count), localAddress]),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const newline = buffer.indexOf("\n");
      if (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`conn_flood.mjs hold ended early: ${buffer}`);
      buffer += value;
    }
  };
  const ready = nextLine().then((line) => {
    ok(line.startsWith("ready "), line);
    return JSON.parse(line.slice(6)) as FloodSummary;
  });
  const stdin = child.stdin.getWriter();
  const status = async () => {
    await ready;
    await stdin.write(new TextEncoder().encode("\n"));
    const line = await nextLine();
    ok(line.startsWith("status "), line);
    return JSON.parse(line.slice(7)) as FloodSummary;
  };
  let closing: Promise<FloodSummary> | undefined;
  const close = () => {
    closing ??= (async () => {
      await ready.catch(() => {});
      await stdin.close().catch(() => {});
      const summary = JSON.parse(await nextLine()) as FloodSummary;
      await child.status;
      lines.releaseLock();
      await child.stdout.cancel().catch(() => {});
      return summary;
    })();
    return closing;
  };
  return { ready, status, close, [Symbol.asyncDispose]: async () => void await close() };
}

export { readExactly };

/** A UDP echo server. */
export async function udpEcho(): Promise<UdpSocket> {
  const socket = await UdpSocket.open();
  socket.onmessage = (data, from) => void socket.send(data, from);
  return socket;
}

/**
 * A good client's exchange with a server on `port`, by kind: each opens a
 * connection, checks what comes back and closes it.
 */
export const goodClient = {
  /** Bytes to an echo behind the server (transparent-TCP, `plain`). */
  async echo(port: number): Promise<void> {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const bytes = crypto.getRandomValues(new Uint8Array(64));
    await conn.write(bytes);
    deepStrictEqual(await readExactly(conn, bytes.length), bytes);
  },
  /** SOCKS5 CONNECT to `target` (an echo), then bytes. */
  async socks(port: number, target: number): Promise<void> {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await socks5Connect(conn, { hostname: "127.0.0.1", port: target });
    const bytes = crypto.getRandomValues(new Uint8Array(64));
    await conn.write(bytes);
    deepStrictEqual(await readExactly(conn, bytes.length), bytes);
  },
  /** A length-framed datagram to a UDP echo (transparent-UDP server, `plain`). */
  async datagram(port: number): Promise<void> {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new Uint8Array([0, 3, 7, 8, 9]));
    deepStrictEqual(await readExactly(conn, 5), new Uint8Array([0, 3, 7, 8, 9]));
  },
  /** A STUN Binding request to a UDP echo (STUN server, `plain`). */
  async stunEcho(port: number): Promise<void> {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const request = bindingRequest();
    await conn.write(request);
    deepStrictEqual(await readExactly(conn, request.length), request);
  },
  /** A STUN Binding request to the embedded TURN server: a success response. */
  async turn(port: number): Promise<void> {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const request = bindingRequest();
    await conn.write(request);
    const reply = await readExactly(conn, 20);
    deepStrictEqual([reply[0], reply[1]], [0x01, 0x01]);
    deepStrictEqual(reply.subarray(8, 20), request.subarray(8, 20));
  },
};

/** Stop a PT with SIGTERM: it must exit 0, without a Deno panic. Returns its lines. */
export async function stopPt(pt: PtProcess): Promise<string[]> {
  await pt.closeStdin();
  try {
    pt.child.kill("SIGTERM");
  } catch {
    // It exited: the assertions below say how.
  }
  const { code, stderr, lines } = await pt.exit();
  ok(!stderr.includes("panicked"), stderr);
  strictEqual(code, 0, stderr);
  return lines;
}

/**
 * Run main.ts with `args` (in a fresh state directory, `-logLevel info`,
 * through `prlimit` when `nofile` is given), find the port of the line
 * matching `pattern`, run `body`, then stop it with {@linkcode stopPt}.
 */
export async function withPt(
  args: string[],
  pattern: RegExp,
  body: (pt: PtProcess, port: number) => Promise<void>,
  options: { nofile?: string } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_hardening_" });
  const all = [...args, "-state", dir, "-logLevel", "info"];
  const pt = options.nofile === undefined
    ? new PtProcess(all, {})
    : new PtProcess([`--nofile=${options.nofile}`, MAIN, ...all], {}, { program: prlimit() });
  try {
    const line = await pt.waitFor(pattern);
    await pt.waitFor(/^(CMETHODS|SMETHODS) DONE$/);
    await body(pt, Number(line.split(" ").find((w) => /:[0-9]+$/.test(w))!.split(":").pop()));
  } finally {
    await stopPt(pt);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Stop a process (SIGSTOP) while `work` runs, then let it go on (SIGCONT). */
export async function whileStopped<T>(pid: number, work: () => Promise<T>): Promise<T> {
  Deno.kill(pid, "SIGSTOP");
  try {
    return await work();
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
}

/** Resolve within `ms` or reject naming `what`; returns the time taken in ms. */
export async function within<T>(ms: number, what: string, work: () => Promise<T>): Promise<number> {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const task = work();
  task.catch(() => {}); // Reported by the race below.
  try {
    await Promise.race([
      task,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - start;
}

/**
 * How many established TCP connections a server on `port` has from
 * `remote` (an IPv4 address), counted by the kernel (/proc/net/tcp):
 * accepted, or waiting to be.
 */
export async function serverConnections(port: number, remote: string): Promise<number> {
  const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, "0");
  const remoteHex = remote.split(".").map(Number).reverse().map((b) => hex(b, 2)).join("");
  const local = `:${hex(port, 4)}`;
  let count = 0;
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const [, localAddress, remoteAddress, state] = line.trim().split(/\s+/);
    if (state === "01" && localAddress?.endsWith(local) && remoteAddress?.startsWith(remoteHex)) {
      count++;
    }
  }
  return count;
}
