// Copyright the ptkit authors. MIT license.
// TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6 on the client side: tor sets them for
// client PTs as for servers (pt-spec's common variables, arti's CommonKey),
// so a client's connections to its bridges and to its upstream proxy leave
// from them. A source address the machine does not have makes the dial fail
// (nothing leaves from the default address instead).

import { deepStrictEqual, match, notStrictEqual, rejects } from "node:assert";
import { PtProcess, readN } from "./ipc_util.ts";
import { outboundDialer } from "../ipc/managed/_outbound_dialer.ts";

/** A non-loopback IPv4 address of this machine (the destination that gets bound). */
function localAddress(): string {
  const found = Deno.networkInterfaces().find((i) =>
    i.family === "IPv4" && !i.address.startsWith("127.")
  );
  if (found === undefined) throw new Error("This test needs a non-loopback IPv4 address");
  return found.address;
}

/** Accepts and counts connections, echoing their bytes; records each peer. */
class Counting {
  readonly listener: Deno.TcpListener;
  readonly peers: string[] = [];
  #loop: Promise<void>;
  constructor(hostname: string) {
    const listener = Deno.listen({ hostname, port: 0 });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.peers.push(conn.remoteAddr.hostname);
        (async () => {
          try {
            const buffer = new Uint8Array(1024);
            for (;;) {
              const n = await conn.read(buffer);
              if (n === null) break;
              await conn.write(buffer.subarray(0, n));
            }
          } catch {
            // Closed.
          } finally {
            conn.close();
          }
        })();
      }
    })();
  }
  async close(): Promise<void> {
    this.listener.close();
    await this.#loop;
  }
}

async function socksConnect(ptPort: number, host: string, port: number): Promise<number> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: ptPort });
  await conn.write(new Uint8Array([5, 1, 0]));
  deepStrictEqual(await readN(conn, 2), new Uint8Array([5, 0]));
  const ip = host.split(".").map(Number);
  await conn.write(new Uint8Array([5, 1, 0, 1, ...ip, port >> 8, port & 255]));
  const code = (await readN(conn, 10))[1]!;
  if (code === 0) {
    await conn.write(new TextEncoder().encode("ping"));
    deepStrictEqual(new TextDecoder().decode(await readN(conn, 4)), "ping");
  }
  return code;
}

async function client(env: Record<string, string>): Promise<{ pt: PtProcess; port: number }> {
  const state = await Deno.makeTempDir({ prefix: "ptkit_outbound_" });
  const pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    ...env,
  });
  return { pt, port: (await pt.cmethod("plain")).port };
}

// 203.0.113.77 (TEST-NET-3) is never an address of this machine.
const ABSENT = "203.0.113.77";

Deno.test("a client PT dials its bridges from TOR_PT_OUTBOUND_BIND_ADDRESS_V4", async () => {
  const address = localAddress();
  const bridge = new Counting(address);
  try {
    {
      const { pt, port } = await client({ TOR_PT_OUTBOUND_BIND_ADDRESS_V4: address });
      await using _ = pt;
      deepStrictEqual(await socksConnect(port, address, bridge.listener.addr.port), 0);
      deepStrictEqual(bridge.peers, [address]);
    }
    {
      const { pt, port } = await client({ TOR_PT_OUTBOUND_BIND_ADDRESS_V4: ABSENT });
      await using _ = pt;
      notStrictEqual(await socksConnect(port, address, bridge.listener.addr.port), 0);
      deepStrictEqual(bridge.peers.length, 1, "the dial left from the default address");
      await pt.closeStdin();
      const { lines } = await pt.exit();
      const failed = lines.filter((line) => line.includes("CONNECT=Failed")).join("\n");
      match(failed, /Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS_V4 /);
    }
  } finally {
    await bridge.close();
  }
});

Deno.test("a client PT dials a non-loopback upstream proxy from its outbound bind address", async () => {
  const address = localAddress();
  const proxy = new Counting(address);
  try {
    const { pt, port } = await client({
      TOR_PT_OUTBOUND_BIND_ADDRESS_V4: ABSENT,
      TOR_PT_PROXY: `http://${address}:${proxy.listener.addr.port}`,
    });
    await using _ = pt;
    await pt.waitFor(/^PROXY DONE$/);
    notStrictEqual(await socksConnect(port, "198.51.100.1", 443), 0);
    deepStrictEqual(proxy.peers.length, 0, "the proxy was dialed from the default address");
  } finally {
    await proxy.close();
  }
});

Deno.test("a client PT refuses a malformed TOR_PT_OUTBOUND_BIND_ADDRESS_V4 with ENV-ERROR", async () => {
  const state = await Deno.makeTempDir({ prefix: "ptkit_outbound_" });
  await using pt = new PtProcess([], {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "plain",
    TOR_PT_STATE_LOCATION: state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
    TOR_PT_OUTBOUND_BIND_ADDRESS_V4: "::1",
  });
  const { code, lines } = await pt.exit();
  deepStrictEqual(code, 64);
  // Under version 1 the reason also comes as a LOG line first: tor shows
  // an ENV-ERROR's text only when it comes before VERSION.
  deepStrictEqual(lines.filter((line) => !line.startsWith("STATUS ")), [
    "VERSION 1",
    'LOG SEVERITY=error MESSAGE="Cannot parse TOR_PT_OUTBOUND_BIND_ADDRESS_V4 \\"::1\\": not an IPv4 address"',
    'ENV-ERROR Cannot parse TOR_PT_OUTBOUND_BIND_ADDRESS_V4 "::1": not an IPv4 address',
  ]);
});

Deno.test("a bridge given by host name is resolved, then dialed from the bind address of its family", async () => {
  const address = localAddress();
  const bridge = new Counting(address);
  const local = new Counting("127.0.0.1");
  // A name for this machine's address (none resolves to it here).
  const names: Record<string, string[]> = {
    "bridge.example": [address],
    "local.example": ["127.0.0.1"],
  };
  const resolve = (name: string) => Promise.resolve(names[name] ?? []);
  const ping = async (conn: { write(p: Uint8Array): Promise<number>; close(): void }) => {
    await conn.write(new TextEncoder().encode("ping"));
    deepStrictEqual(new TextDecoder().decode(await readN(conn as Deno.Conn, 4)), "ping");
    conn.close();
  };
  try {
    const port = bridge.listener.addr.port;
    await ping(
      await outboundDialer({ v4: address }, undefined, resolve)({
        hostname: "bridge.example",
        port,
      }),
    );
    deepStrictEqual(bridge.peers, [address]);
    // From an address the machine lacks, the dial fails: nothing leaves from the default one.
    await rejects(
      outboundDialer({ v4: ABSENT }, undefined, resolve)({ hostname: "bridge.example", port }),
      /Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS_V4 /,
    );
    deepStrictEqual(bridge.peers.length, 1);
    // A name for a loopback address is dialed unbound, as 127.0.0.1 is.
    await ping(
      await outboundDialer({ v4: ABSENT }, undefined, resolve)({
        hostname: "local.example",
        port: local.listener.addr.port,
      }),
    );
    deepStrictEqual(local.peers, ["127.0.0.1"]);
  } finally {
    await bridge.close();
    await local.close();
  }
});
