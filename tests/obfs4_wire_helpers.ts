// Copyright the ptkit authors. MIT license.

// Test-only helpers that speak obfs4 on a raw TCP connection (a client that
// can send anything), and a relay that timestamps what a server writes.

import { writeFull } from "../net/conn_io.ts";
import { concat } from "../transports/_bytes.ts";
import type { TransportOptions } from "../transports/transport.ts";
import { ClientHandshake } from "../transports/obfs4/_handshake.ts";
import { parseClientConfig } from "../transports/obfs4/_config.ts";
import { FrameDecoder, FrameEncoder } from "../transports/obfs4/_framing.ts";
import { HashDrbg } from "../transports/obfs4/_hash_drbg.ts";
import { loadWasmCrypto } from "../transports/crypto_backend.ts";

/** A raw client connection after a real handshake, with its frame keys. */
export interface RawSession {
  readonly conn: Deno.TcpConn;
  /** Seals frames as the client. */
  readonly encoder: FrameEncoder;
  /** The client-to-server length masks, from the first frame's on. */
  readonly masks: HashDrbg;
}

/**
 * Complete a real handshake with the obfs4 server at `port` (ptkit's or
 * obfs4proxy's) on a raw TCP connection, and read the PRNG-seed frame the server
 * sends after it; `cert` holds its bridge arguments.
 */
export async function rawSession(port: number, cert: TransportOptions): Promise<RawSession> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const crypto = await loadWasmCrypto();
  const hs = new ClientHandshake(crypto, parseClientConfig(cert).identity);
  await writeFull(conn, hs.message);
  const buf = new Uint8Array(16384);
  /** `bytes` and the next bytes the server sends. */
  const more = async (bytes: Uint8Array, during: string) => {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`server closed ${during}`);
    return concat(bytes, buf.subarray(0, n));
  };
  let received = await more(new Uint8Array(0), "during the handshake");
  let result;
  while ((result = hs.parse(received)) === undefined) {
    received = await more(received, "during the handshake");
  }
  // Both servers send a PRNG-seed frame right after their handshake: it is
  // read here, wherever TCP split it, so that callers see only what the
  // server sends in answer to them.
  const fromServer = new FrameDecoder(result.keys.slice(72, 144), crypto);
  let rest = received.subarray(result.consumed);
  while (fromServer.decode(rest, 0) === undefined) {
    rest = await more(rest, "before its first frame");
  }
  const keys = result.keys.subarray(0, 72);
  return {
    conn,
    encoder: new FrameEncoder(keys, crypto),
    masks: new HashDrbg(keys.slice(48, 72)),
  };
}

/** An obfs4 payload packet (type 0) carrying `data`, unpadded. */
export function packet(data: Uint8Array): Uint8Array {
  const p = new Uint8Array(3 + data.length);
  p[1] = data.length >> 8;
  p[2] = data.length & 0xff;
  p.set(data, 3);
  return p;
}

/** Read until the peer closes (or resets); returns how many bytes came. */
export async function readUntilClosed(conn: Deno.Conn): Promise<number> {
  const buf = new Uint8Array(65536);
  let received = 0;
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return received;
    received += n;
  }
}
