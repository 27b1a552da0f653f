// Copyright the ptkit authors. MIT license.

// Test-only SOCKS5 CONNECT client (RFC 1928) with username/password
// authentication (RFC 1929), enough to reach a PT's CMETHOD port.

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error(`SOCKS5 proxy closed after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Open a TCP connection to `target` through the SOCKS5 proxy at `proxy`. */
export async function socks5Connect(
  proxy: { hostname: string; port: number },
  target: { hostname: string; port: number },
  auth?: { username: string; password: string },
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect(proxy);
  try {
    await writeAll(conn, new Uint8Array(auth ? [5, 1, 2] : [5, 1, 0]));
    const choice = await readExactly(conn, 2);
    if (choice[0] !== 5 || choice[1] !== (auth ? 2 : 0)) {
      throw new Error(`SOCKS5 proxy refused the method: ${choice[1]}`);
    }
    if (auth) {
      const user = new TextEncoder().encode(auth.username);
      const pass = new TextEncoder().encode(auth.password);
      if (user.length > 255 || pass.length > 255) throw new RangeError("SOCKS5 auth too long");
      await writeAll(conn, new Uint8Array([1, user.length, ...user, pass.length, ...pass]));
      const status = await readExactly(conn, 2);
      if (status[1] !== 0) throw new Error(`SOCKS5 authentication failed: ${status[1]}`);
    }
    const ip = target.hostname.split(".").map(Number);
    if (ip.length !== 4 || ip.some((n) => !(n >= 0 && n <= 255))) {
      throw new TypeError(`SOCKS5 test client takes IPv4 targets only: ${target.hostname}`);
    }
    await writeAll(
      conn,
      new Uint8Array([5, 1, 0, 1, ...ip, target.port >> 8, target.port & 0xff]),
    );
    const reply = await readExactly(conn, 4);
    if (reply[1] !== 0) throw new Error(`SOCKS5 CONNECT failed with reply ${reply[1]}`);
    const rest = reply[3] === 1
      ? 6
      : reply[3] === 4
      ? 18
      : 1 + (await readExactly(conn, 1))[0]! + 2;
    await readExactly(conn, rest);
    return conn;
  } catch (error) {
    conn.close();
    throw error;
  }
}
