// Copyright the ptkit authors. MIT license.
// Real TURN peers for tests: Debian coturn's turnserver, turnutils_peer and
// turnutils_uclient, on loopback, with temporary files.

import { ok, strictEqual } from "node:assert";
import { UdpSocket } from "../udp/mod.ts";
import { StunAttr } from "../udp/stun/_constants.ts";
import { getAttribute, type StunMessage } from "../udp/stun/_message.ts";
import { MAIN, requireBinary } from "./ipc_util.ts";
import { errorCode, Queue, StunTestClient } from "./turn_test_client.ts";

/** A free UDP port on 127.0.0.1 (free when this returns). */
export async function freeUdpPort(): Promise<number> {
  const socket = await UdpSocket.open();
  const port = socket.addr.port;
  await socket.close();
  return port;
}

/** Send `request` until `port` answers (a hang guard, not a timing check). */
export async function waitForUdp(port: number, request: Uint8Array, what: string): Promise<void> {
  await using probe = await UdpSocket.open({ connect: { hostname: "127.0.0.1", port } });
  let answered = false;
  probe.onmessage = () => answered = true;
  for (let i = 0; i < 300 && !answered; i++) {
    probe.send(request);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  ok(answered, `${what} did not answer on 127.0.0.1:${port}`);
}

/** A STUN Binding request. */
export function bindingRequest(): Uint8Array {
  const message = new Uint8Array(20);
  const view = new DataView(message.buffer);
  view.setUint16(0, 0x0001);
  view.setUint32(4, 0x2112a442);
  crypto.getRandomValues(message.subarray(8));
  return message;
}

/** A running process that `close()` stops. */
export interface Peer extends AsyncDisposable {
  readonly port: number;
  close(): Promise<void>;
}

function stopper(child: Deno.ChildProcess, cleanup = async () => {}) {
  return async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    await cleanup();
  };
}

/** Debian's coturn on 127.0.0.1 with user u:p, realm pt.test, loopback peers allowed. */
export async function startCoturn(): Promise<Peer> {
  const binary = requireBinary("turnserver", "coturn");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_turn_" });
  const port = await freeUdpPort();
  const relayBase = 40_000 + Math.floor(Math.random() * 200) * 100;
  await Deno.writeTextFile(
    `${dir}/turnserver.conf`,
    [
      "listening-ip=127.0.0.1",
      `listening-port=${port}`,
      "relay-ip=127.0.0.1",
      `min-port=${relayBase}`,
      `max-port=${relayBase + 99}`,
      "lt-cred-mech",
      "user=u:p",
      "realm=pt.test",
      "allow-loopback-peers",
      "no-cli",
      "no-tls",
      "no-dtls",
      "no-tcp",
      "no-tcp-relay",
      "no-multicast-peers",
      `userdb=${dir}/turndb`,
      `pidfile=${dir}/turnserver.pid`,
      `log-file=${dir}/turnserver.log`,
      "simple-log",
      "no-stdout-log",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(binary, {
    args: ["-c", `${dir}/turnserver.conf`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const close = stopper(child, () => Deno.remove(dir, { recursive: true }));
  try {
    await waitForUdp(port, bindingRequest(), "turnserver");
  } catch (error) {
    await close();
    throw error;
  }
  return { port, close, [Symbol.asyncDispose]: close };
}

/** coturn's echo peer, turnutils_peer, on 127.0.0.1. */
export async function startTurnPeer(): Promise<Peer> {
  const binary = requireBinary("turnutils_peer", "coturn");
  const port = await freeUdpPort();
  const child = new Deno.Command(binary, {
    args: ["-L", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const close = stopper(child);
  try {
    await waitForUdp(port, new Uint8Array([1]), "turnutils_peer");
  } catch (error) {
    await close();
    throw error;
  }
  return { port, close, [Symbol.asyncDispose]: close };
}

/**
 * Run turnutils_uclient with `args` against 127.0.0.1:`port`; assert exit 0
 * and `Total lost packets 0`. Returns its output.
 */
export async function uclientLosesNothing(args: string[], port: number): Promise<string> {
  const binary = requireBinary("turnutils_uclient", "coturn");
  const result = await new Deno.Command(binary, {
    args: [...args, "-p", String(port), "127.0.0.1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
  const lost = output.match(/Total lost packets (\d+)/);
  ok(lost, `turnutils_uclient printed no result (exit ${result.code}):\n${output.slice(-2000)}`);
  strictEqual(result.code, 0, output.slice(-2000));
  strictEqual(Number(lost[1]), 0, output.slice(-2000));
  return output;
}

/**
 * Start `main.ts turn` (exec'd by path) with `args`; resolves once it prints
 * that it listens, with the process and the port it names.
 */
export async function startTurnCli(
  args: string[],
): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(MAIN, {
    args: ["turn", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let match: RegExpExecArray | null;
  while ((match = /turn: listening on \[?[0-9a-f.:]+\]?:(\d+)/.exec(text)) === null) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`TURN server exited before listening: ${text}`);
    }
    text += value;
  }
  reader.cancel().catch(() => {});
  return { child, port: Number(match[1]) };
}

/**
 * A STUN test client on its own UDP socket toward 127.0.0.1:`port`, bound
 * to `hostname` if given (a loopback address of its own: a 5-tuple no
 * earlier allocation used, see {@linkcode freshLoopback}).
 */
export async function udpStunClient(
  port: number,
  hostname?: string,
): Promise<{ client: StunTestClient; [Symbol.asyncDispose](): Promise<void> }> {
  const socket = await UdpSocket.open({
    ...(hostname === undefined ? {} : { hostname }),
    connect: { hostname: "127.0.0.1", port },
  });
  const inbox = new Queue<Uint8Array>();
  socket.onmessage = (data: Uint8Array) => inbox.push(data.slice());
  return {
    client: new StunTestClient({ inbox, send: (bytes) => socket.send(bytes) }),
    [Symbol.asyncDispose]: () => socket.close(),
  };
}

/**
 * An answer as one comparable line: its error code (0 for success), its
 * UNKNOWN-ATTRIBUTES, and which of REALM, NONCE and MESSAGE-INTEGRITY it holds.
 */
export function describeAnswer(m: StunMessage): string {
  const unknown = getAttribute(m, StunAttr.UnknownAttributes);
  return [
    String(errorCode(m)),
    unknown ? `unknown=${[...unknown].map((b) => b.toString(16).padStart(2, "0")).join("")}` : "",
    getAttribute(m, StunAttr.Realm) ? "realm" : "",
    getAttribute(m, StunAttr.Nonce) ? "nonce" : "",
    getAttribute(m, StunAttr.MessageIntegrity) ? "integrity" : "",
  ].filter((s) => s !== "").join(" ");
}

let loopbacks = 0;

/**
 * A loopback address (127.1.x.y) no earlier call in this process gave: a
 * socket bound to it starts a 5-tuple no allocation ever had. A TURN server
 * answers an Allocate from a 5-tuple it still holds an allocation for with
 * 437 (Allocation Mismatch); on 127.0.0.1 the kernel may give a new socket
 * an ephemeral port used moments before in the same test, and coturn once
 * answered 437 where the test expected 401 (the CI of stop 45).
 */
export function freshLoopback(): string {
  const n = loopbacks++;
  return `127.1.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
}
