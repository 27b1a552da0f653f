// Copyright the ptkit authors. MIT license.
// Out of file descriptors is not the end (issue 11, acceptance 3): each
// server mode, run with a limit of 128 descriptors, takes 300 connections
// (accept fails with EMFILE, the UDP modes cannot open their sockets), keeps
// running without a panic, and serves a good connection once they are gone.
// The client's SOCKS front end, too.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { UdpSocket } from "../udp/mod.ts";
import { socks5Connect } from "../ipc/socks_client.ts";
import { echoServer } from "./_util.ts";
import { MAIN, PtProcess } from "./ipc_util.ts";
import { bindingRequest } from "./turn_util.ts";
import { holdConnections, prlimit, resetConnections, within } from "./hardening_util.ts";

const encoder = new TextEncoder();

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    const got = await conn.read(out.subarray(offset));
    if (got === null) throw new Error(`Connection ended after ${offset} of ${n} bytes`);
    offset += got;
  }
  return out;
}

/**
 * Run main.ts with at most 128 file descriptors, hold 300 connections to it
 * and reset 300 more, let them go, then check `good` and a clean exit.
 */
async function atFdLimit(
  args: string[],
  pattern: RegExp,
  good: (port: number) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ptkit_fd_limit_" });
  const pt = new PtProcess(
    ["--nofile=128:128", MAIN, ...args, "-state", dir, "-logLevel", "info"],
    {},
    { program: prlimit() },
  );
  try {
    const line = await pt.waitFor(pattern);
    await pt.waitFor(/^(CMETHODS|SMETHODS) DONE$/);
    const port = Number(line.split(" ").find((w) => /:[0-9]+$/.test(w))!.split(":").pop());
    {
      await using holder = holdConnections(port, 300);
      const held = await holder.ready;
      strictEqual(held.connected + held.failed, 300);
      await resetConnections(port, 300);
      await within(30_000, "the LOG line of EMFILE", () => pt.waitFor(/os error 24/));
    }
    await within(30_000, "a good connection after the flood", () => good(port));
    await within(30_000, "another good connection", () => good(port));
  } finally {
    await pt.closeStdin();
    try {
      pt.child.kill("SIGTERM");
    } catch {
      // Exited: the assertions below say why.
    }
    const { code, stderr } = await pt.exit();
    ok(!stderr.includes("panicked"), stderr);
    strictEqual(code, 0, stderr);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("transparent-TCP server at 128 file descriptors survives 300 connections", async () => {
  const echo = echoServer();
  try {
    await atFdLimit(
      ["-server", "-transports", "plain", "-orport", `127.0.0.1:${echo.port}`],
      /^SMETHOD plain /,
      async (port) => {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(encoder.encode("good"));
        deepStrictEqual(await readExactly(conn, 4), encoder.encode("good"));
      },
    );
  } finally {
    await echo.close();
  }
});

Deno.test("free-mode (SOCKS target) server at 128 file descriptors survives 300 connections", async () => {
  const echo = echoServer();
  try {
    await atFdLimit(
      ["-server", "-transports", "plain", "-target", "socks", "-allow", "loopback"],
      /^SMETHOD plain /,
      async (port) => {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await socks5Connect(conn, { hostname: "127.0.0.1", port: echo.port });
        await conn.write(encoder.encode("good"));
        deepStrictEqual(await readExactly(conn, 4), encoder.encode("good"));
      },
    );
  } finally {
    await echo.close();
  }
});

Deno.test("transparent-UDP server at 128 file descriptors survives 300 connections", async () => {
  await using echo = await UdpSocket.open();
  echo.onmessage = (data, from) => void echo.send(data, from).catch(() => {});
  await atFdLimit(
    ["-server", "-transports", "plain", "-mode", "transparent-UDP"]
      .concat(["-target", `127.0.0.1:${echo.addr.port}`]),
    /^SMETHOD plain /,
    async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new Uint8Array([0, 2, 4, 2]));
      deepStrictEqual(await readExactly(conn, 4), new Uint8Array([0, 2, 4, 2]));
    },
  );
});

Deno.test("STUN server (embedded TURN) at 128 file descriptors survives 300 connections", async () => {
  await atFdLimit(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", "turn"],
    /^SMETHOD plain /,
    async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const request = bindingRequest();
      await conn.write(request);
      const reply = await readExactly(conn, 20);
      deepStrictEqual([reply[0], reply[1]], [0x01, 0x01]);
    },
  );
});

Deno.test("STUN server toward a UDP target at 128 file descriptors survives 300 connections", async () => {
  await using echo = await UdpSocket.open();
  echo.onmessage = (data, from) => void echo.send(data, from).catch(() => {});
  await atFdLimit(
    ["-server", "-transports", "plain", "-mode", "STUN", "-target", `127.0.0.1:${echo.addr.port}`],
    /^SMETHOD plain /,
    async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const request = bindingRequest();
      await conn.write(request);
      deepStrictEqual(await readExactly(conn, 20), request);
    },
  );
});

Deno.test("SOCKS client at 128 file descriptors survives 300 connections", async () => {
  const echo = echoServer();
  try {
    await atFdLimit(["-client", "-transports", "plain"], /^CMETHOD plain /, async (port) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await socks5Connect(conn, { hostname: "127.0.0.1", port: echo.port });
      await conn.write(encoder.encode("good"));
      deepStrictEqual(await readExactly(conn, 4), encoder.encode("good"));
    });
  } finally {
    await echo.close();
  }
});
