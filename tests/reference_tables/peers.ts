// Copyright the ptkit authors. MIT license.
// Clients for the SOCKS front end at two levels: socksHandshake on an
// in-memory connection (answering as SocksServer does), and main.ts with the
// `echo` test transport over TCP, whose first bytes tell what arguments
// reached the transport.

import { socksHandshake, type SocksRequest } from "../../ipc/socks/_server_handshake.ts";
import { ECHO_MAIN, PtProcess, readN } from "../ipc_util.ts";
import { tcpServer } from "../_util.ts";
import { ERROR } from "./case.ts";
import { MemoryPipe } from "./memory_pipe.ts";

export const hex = (bytes: Uint8Array) =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
export const unhex = (text: string) =>
  new Uint8Array((text.match(/../g) ?? []).map((h) => parseInt(h, 16)));
export const latin1 = (text: string) => new Uint8Array([...text].map((c) => c.charCodeAt(0)));
export const fromLatin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);

/** One end of a SOCKS connection as the client sees it, at one level. */
export interface Peer {
  send(bytes: Uint8Array): Promise<void>;
  /** Up to `n` bytes; fewer when the server closed. */
  recv(n: number): Promise<Uint8Array>;
  /** Stop sending (hang up). */
  end(): Promise<void>;
  /** Whether the server closes the connection by itself (rather than wait for more). */
  closes(): Promise<boolean>;
  /** The CONNECT that finishes a handshake, to a destination the level can reach. */
  readonly connect: Uint8Array;
  /** After a CONNECT: let the server answer it. */
  answer(): Promise<void>;
  /** After a successful CONNECT: the transport arguments it carried. */
  args(): Promise<Record<string, string>>;
  /** After a request: the destination the server took, if it took one. */
  request(): Promise<{ hostname: string; port: number } | undefined>;
  [Symbol.asyncDispose](): Promise<void>;
}

export const connectTo = (port: number) =>
  new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]);

export const authWith = (args: string) => {
  const bytes = new TextEncoder().encode(args);
  const user = bytes.subarray(0, 255);
  const pass = bytes.length > 255 ? bytes.subarray(255) : new Uint8Array([0]);
  return new Uint8Array([1, user.length, ...user, pass.length, ...pass]);
};

/** The unit level: socksHandshake on an in-memory connection, answering as SocksServer does. */
export function unitPeer(): Promise<Peer> {
  const pipe = new MemoryPipe();
  let request: SocksRequest | undefined;
  const settled = socksHandshake(pipe.server).then((r) => {
    request = r;
    return "resolved" as const;
  }, () => {
    pipe.server.close();
    return "rejected" as const;
  });
  const state = () => Promise.race([settled, pipe.serverBlocked().then(() => "waiting" as const)]);
  return Promise.resolve({
    send: (bytes) => {
      try {
        pipe.send(bytes);
      } catch {
        // The server closed; what it wrote says so.
      }
      return Promise.resolve();
    },
    recv: (n) => pipe.recv(n),
    end: () => Promise.resolve(pipe.end()),
    closes: async () => (await state()) === "rejected",
    connect: connectTo(9),
    answer: async () => {
      if ((await state()) === "resolved") await request!.reply(0);
    },
    args: () => Promise.resolve({ ...request!.settings }),
    request: async () =>
      (await state()) === "resolved"
        ? { hostname: request!.hostname, port: request!.port }
        : undefined,
    [Symbol.asyncDispose]: () => Promise.resolve(pipe.server.close()),
  });
}

/** ptkit's main.ts with the `echo` test transport, and a sink to connect to. */
export async function echoSocks(state: string) {
  const sink = tcpServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    while (await conn.read(buffer) !== null) {
      // Discard.
    }
  });
  const pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "echo",
    TOR_PT_STATE_LOCATION: `${state}/echo`,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  }, { program: ECHO_MAIN });
  const { port } = await pt.cmethod("echo");
  const peer = async (): Promise<Peer> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const recv = (n: number) => readN(conn, n).catch(() => new Uint8Array());
    return {
      send: async (bytes) => {
        await conn.write(bytes).catch(() => {});
      },
      recv,
      end: () => conn.closeWrite().catch(() => {}),
      closes: async () => (await recv(1)).length === 0,
      connect: connectTo(sink.port),
      answer: () => Promise.resolve(),
      args: async () => {
        let line = "";
        for (let b = await recv(1); b.length === 1 && b[0] !== 0x0a; b = await recv(1)) {
          line += String.fromCharCode(b[0]!);
        }
        return JSON.parse(new TextDecoder().decode(latin1(line))).config;
      },
      request: () => Promise.resolve(undefined),
      [Symbol.asyncDispose]: () => Promise.resolve(conn.close()),
    };
  };
  return {
    /** The PT process (its stdout lines, via waitFor). */
    pt,
    port,
    /** Where a CONNECT can go. */
    sinkPort: sink.port,
    peer,
    /** The arguments a CONNECT with RFC 1929 `args` delivers to the transport, or ERROR. */
    async args(args: string): Promise<Record<string, string> | typeof ERROR> {
      await using p = await peer();
      await p.send(unhex(args === "" ? "050100" : "050102"));
      await p.recv(2);
      if (args !== "") {
        await p.send(authWith(args));
        if (hex(await p.recv(2)) !== "0100") return ERROR;
      }
      await p.send(p.connect);
      const reply = await p.recv(10);
      return reply[1] === 0 ? await p.args() : ERROR;
    },
    async [Symbol.asyncDispose]() {
      await pt[Symbol.asyncDispose]();
      await sink.close();
    },
  };
}
