// Copyright the ptkit authors. MIT license.

// Reach a PT's CMETHOD port as tor does: SOCKS5 CONNECT (RFC 1928) with the
// bridge arguments as RFC 1929 user name and password, through ptkit's own
// SOCKS5 client.

import { socks5Connect as connectOver } from "../ipc/socks/_client.ts";

/** Open a TCP connection to `target` through the SOCKS5 proxy at `proxy`. */
export async function socks5Connect(
  proxy: { hostname: string; port: number },
  target: { hostname: string; port: number },
  auth?: { username: string; password: string },
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect(proxy);
  try {
    await connectOver(conn, target, auth ?? {});
    return conn;
  } catch (error) {
    conn.close();
    throw error;
  }
}
