// Copyright the ptkit authors. MIT license.
// Shadowsocks test and bench helpers: shadowsocks-libev processes, a ptkit
// Shadowsocks server that connects each stream's destination, and a target
// that exchanges a known amount of data each way.

import { createHash } from "node:crypto";
import { lookup } from "node:dns/promises";
import { proxy } from "../server.ts";
import type { ServerManager } from "../net/server_manager.ts";
import { tcpDialer } from "../net/net_conn.ts";
import { createShadowsocks, type ShadowsocksOptions } from "../transports/shadowsocks/mod.ts";
import { libcryptoAead } from "../net/_aead.ts";
import type { TransportConn } from "../net/transport_conn.ts";
import { DestinationPolicy } from "../net/destination_policy.ts";
import { pseudoRandomChunks } from "./_util.ts";
import { requireBinary, waitListening } from "./ipc_util.ts";
import { connStreams, freePort } from "./obfs4_live_helpers.ts";

/** The methods both ptkit and shadowsocks-libev 3.3.5 speak. */
export const METHODS = [
  "chacha20-ietf-poly1305",
  "aes-128-gcm",
  "aes-192-gcm",
  "aes-256-gcm",
  "xchacha20-ietf-poly1305",
] as const;

/** A running shadowsocks-libev program. */
export interface SsProcess extends AsyncDisposable {
  /** Its listening port on 127.0.0.1. */
  readonly port: number;
  /** Its last output (for failure messages). */
  output(): string;
}

/**
 * Collect a child's stdout and stderr as one text (its last `limit`
 * characters); `done` resolves once both have ended.
 */
export function collectOutput(
  child: Deno.ChildProcess,
  limit = Infinity,
): { text: () => string; done: Promise<unknown> } {
  let text = "";
  const collect = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (t) => void (text = (text + t).slice(-limit)) }),
    ).catch(() => {});
  return { text: () => text, done: Promise.all([collect(child.stdout), collect(child.stderr)]) };
}

/**
 * Start `ss-local` (SOCKS5 on `port`) or `ss-server` (on `port`) from
 * shadowsocks-libev, with a password (`-k`) or a base64 key (`--key`); fail
 * naming the package when it is missing.
 */
export async function startSsLibev(
  program: "ss-local" | "ss-server",
  options: { method: string; server?: number } & ({ password: string } | { key: string }),
): Promise<SsProcess> {
  const binary = requireBinary(program, "shadowsocks-libev");
  const port = freePort();
  const args = program === "ss-server"
    ? ["-s", "127.0.0.1", "-p", String(port)]
    : ["-s", "127.0.0.1", "-p", String(options.server), "-b", "127.0.0.1", "-l", String(port)];
  const child = new Deno.Command(binary, {
    args: [
      ...args,
      ...("key" in options ? ["--key", options.key] : ["-k", options.password]),
      ...["-m", options.method, "-t", "60"],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const { text: output, done } = collectOutput(child, 4096);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    await done;
  };
  try {
    await waitListening(port);
  } catch (error) {
    await stop();
    throw new Error(`${program} did not start: ${(error as Error).message}; output: ${output()}`);
  }
  return { port, output, [Symbol.asyncDispose]: stop };
}

/**
 * A ptkit Shadowsocks server on 127.0.0.1 that connects each stream's
 * destination when `policy` allows it (the test's loopback targets need
 * `loopback`).
 */
export function ptkitServer(
  config: Record<string, string>,
  options: ShadowsocksOptions & { policy?: DestinationPolicy; onError?: (e: unknown) => void } = {},
): Promise<ServerManager> {
  const policy = options.policy ?? DestinationPolicy.parse("loopback");
  requireLibcrypto();
  // proxy() gives the transport the runtime's crypto: OpenSSL's AEADs.
  return proxy(createShadowsocks(options), config, {
    hostname: "127.0.0.1",
    port: 0,
    target: async (conn: TransportConn) => {
      const { hostname, port } = await conn.destination!;
      const found = await lookup(hostname, { all: true, verbatim: true });
      const allowed = found.filter((a) => policy.refusal(a.address, port) === undefined);
      if (allowed.length === 0) throw new Error("Destination refused");
      return await tcpDialer({ hostname: allowed[0]!.address, port });
    },
    ...(options.onError === undefined ? {} : { onError: options.onError }),
  });
}

/** OpenSSL's AEADs through FFI must load here: else fail naming the package. */
export function requireLibcrypto(): void {
  if (libcryptoAead() === undefined) {
    throw new Error("libcrypto.so.3 cannot be loaded: install the Debian package 'openssl'");
  }
}

/** SHA-256 of the `size` bytes {@linkcode exchange} sends with `seed`. */
export function expectedHash(size: number, seed: number): string {
  const hash = createHash("sha256");
  for (const chunk of pseudoRandomChunks(size, seed)) hash.update(chunk);
  return hash.digest("hex");
}

/** What one side of {@linkcode exchange} received. */
export interface Received {
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Send `size` pseudo-random bytes (seeded) while reading `size` bytes back;
 * no half-close (ss-libev closes both ways at the first end of stream).
 */
export async function exchange(
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  size: number,
  seed: number,
  onProgress?: (bytes: number) => void,
): Promise<Received> {
  const writer = conn.writable.getWriter();
  const writing = (async () => {
    for (const chunk of pseudoRandomChunks(size, seed)) await writer.write(chunk);
  })();
  const hash = createHash("sha256");
  let bytes = 0;
  const reader = conn.readable.getReader();
  while (bytes < size) {
    const { value, done } = await reader.read();
    if (done) break;
    hash.update(value);
    bytes += value.length;
    onProgress?.(bytes);
  }
  await writing;
  reader.releaseLock();
  writer.releaseLock();
  return { bytes, sha256: hash.digest("hex") };
}

/**
 * A target on 127.0.0.1 that, for each connection, sends `size` bytes
 * (seed 2) and reads `size` bytes, then closes; `received` lists what each
 * connection got.
 */
export function exchangeTarget(size: number): {
  port: number;
  received: Promise<Received>[];
  close(): Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Promise<Received>[] = [];
  const loop = (async () => {
    for await (const conn of listener) {
      const result = exchange(connStreams(conn), size, 2).finally(() => {
        try {
          conn.close();
        } catch {
          // Closed.
        }
      });
      result.catch(() => {});
      received.push(result);
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    received,
    close: async () => {
      listener.close();
      await loop;
      await Promise.allSettled(received);
    },
  };
}
