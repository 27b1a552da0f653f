// Copyright the ptkit authors. MIT license.
// A fake Extended ORPort (tor's side of ext-orport-spec) for tests: checks
// the PT's SAFE_COOKIE hash, records its commands, and answers as told.

import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { readExactly } from "../net/mod.ts";

/** How the fake behaves for one connection. */
export type FakeBehaviour =
  | "okay"
  | "deny"
  | "stall"
  | "garbage"
  | "close-after-types"
  | "close-after-hash"
  | "wrong-server-hash"
  /** Checks the PT's hash, answers status 0 whatever it was, then records what the PT still sends. */
  | "refuse-status"
  /** Offers only an auth type other than SAFE_COOKIE, then records what the PT still sends. */
  | "no-safe-cookie";

/** What the fake saw on one connection. */
export interface FakeSession {
  clientNonce?: Uint8Array;
  clientHashOk?: boolean;
  serverHash?: Uint8Array;
  clientHash?: Uint8Array;
  commands: { cmd: number; body: string }[];
  /**
   * Application bytes after OKAY; for "refuse-status", every byte after the
   * status; for "no-safe-cookie", every byte after the auth types.
   */
  data: Uint8Array;
  /** Set once the PT closed the connection ("refuse-status", "no-safe-cookie"). */
  closedByPt?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A cookie file for `cookie` (64 bytes: header + cookie). */
export async function writeCookieFile(path: string, cookie: Uint8Array): Promise<void> {
  await Deno.writeFile(
    path,
    new Uint8Array([...enc.encode("! Extended ORPort Auth Cookie !\n"), ...cookie]),
  );
}

/** Listens on loopback and serves each connection with `behaviour()`. */
export class FakeExtOrPort implements AsyncDisposable {
  readonly listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly sessions: FakeSession[] = [];
  #tasks = new Set<Promise<void>>();
  #conns = new Set<Deno.Conn>();
  #loop: Promise<void>;

  constructor(
    readonly cookie: Uint8Array,
    readonly behaviour: () => FakeBehaviour,
    readonly serverNonce: () => Uint8Array = () => crypto.getRandomValues(new Uint8Array(32)),
    hostname = "127.0.0.1",
  ) {
    const listener = Deno.listen({ hostname, port: 0 });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.#conns.add(conn);
        const task = this.#serve(conn).catch(() => {}).finally(() => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Closed.
          }
        });
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const behaviour = this.behaviour();
    const session: FakeSession = { commands: [], data: new Uint8Array(0) };
    this.sessions.push(session);
    if (behaviour === "garbage") {
      await conn.write(crypto.getRandomValues(new Uint8Array(200)).map((b) => b | 0x02));
      await readExactly(conn, 1 << 20).catch(() => {});
      return;
    }
    if (behaviour === "stall") {
      await readExactly(conn, 1 << 20).catch(() => {});
      return;
    }
    if (behaviour === "no-safe-cookie") {
      await conn.write(new Uint8Array([2, 0]));
      await this.#recordUntilClosed(conn, session);
      return;
    }
    await conn.write(new Uint8Array([1, 0]));
    if (behaviour === "close-after-types") return;
    const choice = await readExactly(conn, 33);
    if (choice[0] !== 1) throw new Error("bad auth type");
    const clientNonce = choice.slice(1);
    session.clientNonce = clientNonce;
    const serverNonce = this.serverNonce();
    const serverHash = hmac(
      sha256,
      this.cookie,
      new Uint8Array([
        ...enc.encode("ExtORPort authentication server-to-client hash"),
        ...clientNonce,
        ...serverNonce,
      ]),
    );
    if (behaviour === "wrong-server-hash") serverHash[0]! ^= 1;
    session.serverHash = serverHash;
    await conn.write(new Uint8Array([...serverHash, ...serverNonce]));
    if (behaviour === "close-after-hash") return;
    const clientHash = await readExactly(conn, 32);
    session.clientHash = clientHash;
    const expected = hmac(
      sha256,
      this.cookie,
      new Uint8Array([
        ...enc.encode("ExtORPort authentication client-to-server hash"),
        ...clientNonce,
        ...serverNonce,
      ]),
    );
    session.clientHashOk = clientHash.every((b, i) => b === expected[i]);
    if (behaviour === "refuse-status") {
      await conn.write(new Uint8Array([0]));
      await this.#recordUntilClosed(conn, session);
      return;
    }
    await conn.write(new Uint8Array([session.clientHashOk ? 1 : 0]));
    if (!session.clientHashOk) return;
    for (;;) {
      const head = await readExactly(conn, 4);
      const cmd = (head[0]! << 8) | head[1]!;
      const body = await readExactly(conn, (head[2]! << 8) | head[3]!);
      session.commands.push({ cmd, body: dec.decode(body) });
      if (cmd === 0) break;
    }
    if (behaviour === "deny") {
      await conn.write(new Uint8Array([0x10, 0x01, 0, 0]));
      await readExactly(conn, 1 << 20).catch(() => {});
      return;
    }
    // An unknown command first (to be ignored), then OKAY; then echo.
    await conn.write(new Uint8Array([0x10, 0x02, 0, 1, 7, 0x10, 0x00, 0, 0]));
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      session.data = new Uint8Array([...session.data, ...buffer.subarray(0, n)]);
      await conn.write(buffer.subarray(0, n));
    }
  }

  /** Record what the PT sends until it closes the connection. */
  async #recordUntilClosed(conn: Deno.Conn, session: FakeSession): Promise<void> {
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      session.data = new Uint8Array([...session.data, ...buffer.subarray(0, n)]);
    }
    session.closedByPt = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Closed.
      }
    }
    await this.#loop;
    await Promise.allSettled([...this.#tasks]);
  }
}
