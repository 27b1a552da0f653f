// Copyright the ptkit authors. MIT license.

// Out-of-band messages (`signals`) as CMESSAGE / SMESSAGE lines and `local`
// in the state directory, end to end with real PT processes and the
// `keyed` test transport (tests/keyed_transport.ts).

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert";
import {
  formatMessageLine,
  MAX_MESSAGE_BYTES,
  parseMessageLine,
} from "../ipc/lines/_message_line.ts";
import { parsePtLine } from "../ipc/mod.ts";
import { PtClient } from "../ipc/adapter/pt_client.ts";
import { PtServer } from "../ipc/adapter/pt_server.ts";
import type { PtMessageEvent } from "../ipc/adapter/pt_events.ts";
import { startInWorker } from "../ipc/adapter/in_worker.ts";
import { countingEcho, ECHO_MAIN, PtProcess, readAll } from "./ipc_util.ts";
import { guarded } from "./_util.ts";
import { waitFor } from "./udp_test_utils.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Send `text` through a transparent-TCP listener; returns what came back. */
async function exchange(at: { hostname: string; port: number }, text: string): Promise<string> {
  const conn = await Deno.connect(at);
  try {
    await conn.write(encoder.encode(text)).catch(() => {});
    await conn.closeWrite().catch(() => {});
    return decoder.decode(await readAll(conn));
  } finally {
    conn.close();
  }
}

/** Wait until a file exists (the PT wrote its state). */
async function waitForFile(path: string): Promise<string> {
  for (;;) {
    try {
      return await Deno.readTextFile(path);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function startServerPt(target: Deno.NetAddr, stateDir: string): PtProcess {
  return new PtProcess(
    [
      "-server",
      "-transports",
      "keyed",
      "-target",
      `127.0.0.1:${target.port}`,
      "-state",
      stateDir,
      "-exit-on-stdin-close",
    ],
    {},
    { program: ECHO_MAIN },
  );
}

function startClientPt(server: string, stateDir: string): PtProcess {
  return new PtProcess(
    [
      "-transports",
      "keyed",
      "-mode",
      "transparent-TCP",
      "-target",
      server,
      "-state",
      stateDir,
      "-exit-on-stdin-close",
    ],
    {},
    { program: ECHO_MAIN },
  );
}

Deno.test("formatMessageLine and parseMessageLine round-trip and refuse bad input", () => {
  const payload = crypto.getRandomValues(new Uint8Array(MAX_MESSAGE_BYTES));
  const line = formatMessageLine("CMESSAGE", "keyed", payload);
  ok(/^CMESSAGE keyed [A-Za-z0-9+/]+={0,2}\n$/.test(line));
  deepStrictEqual(parseMessageLine(line.slice(0, -1)), {
    kind: "CMESSAGE",
    transport: "keyed",
    payload,
  });
  deepStrictEqual(parseMessageLine("SMESSAGE a_1 AAE=\r").payload, new Uint8Array([0, 1]));
  throws(
    () => formatMessageLine("CMESSAGE", "keyed", new Uint8Array(MAX_MESSAGE_BYTES + 1)),
    RangeError,
  );
  throws(() => formatMessageLine("CMESSAGE", "keyed", new Uint8Array(0)), RangeError);
  throws(() => formatMessageLine("CMESSAGE", "not-a-name", new Uint8Array(1)), TypeError);
  throws(() => formatMessageLine("XMESSAGE" as "CMESSAGE", "keyed", new Uint8Array(1)), TypeError);
  const oversized = btoa("x".repeat(MAX_MESSAGE_BYTES + 1));
  for (
    const [bad, why] of [
      ["CMESSAGE keyed", /expected <transport> <base64>/],
      ["CMESSAGE keyed aGk= extra", /expected <transport> <base64>/],
      ["CMESSAGE  keyed aGk=", /expected <transport> <base64>/],
      ["CMESSAGE keyed ", /invalid base64/],
      ["CMESSAGE keyed aGk", /invalid base64/],
      ["CMESSAGE keyed aG=k", /invalid base64/],
      ["CMESSAGE keyed a\u00e9k=", /invalid base64/],
      ["CMESSAGE 1keyed aGk=", /invalid transport name/],
      [`CMESSAGE keyed ${oversized}`, /exceeds 16384/],
      [`CMESSAGE keyed ${"A".repeat(40000)}`, /characters exceed/],
      ["HELLO keyed aGk=", /expected CMESSAGE or SMESSAGE/],
    ] as const
  ) {
    throws(
      () => parseMessageLine(bad),
      (e: Error) => e instanceof SyntaxError && why.test(e.message),
    );
  }
});

Deno.test("parsePtLine decodes CMESSAGE and SMESSAGE lines", () => {
  deepStrictEqual(parsePtLine("CMESSAGE keyed aGk="), {
    type: "CMESSAGE",
    transport: "keyed",
    payload: encoder.encode("hi"),
  });
  deepStrictEqual(parsePtLine("SMESSAGE keyed AA==").type, "SMESSAGE");
  throws(() => parsePtLine("SMESSAGE keyed !!!!"), SyntaxError);
});

Deno.test("keyed transport sends its key id as CMESSAGE, works once relayed, and keeps state across restarts", async () => {
  const target = countingEcho();
  const serverState = await Deno.makeTempDir({ prefix: "ptkit_keyed_s_" });
  const clientState = await Deno.makeTempDir({ prefix: "ptkit_keyed_c_" });
  try {
    let cmessage: string;
    {
      await using server = startServerPt(target.addr, serverState);
      const smethod = (await server.waitFor(/^SMETHOD keyed /)).split(" ")[2]!;
      await using client = startClientPt(smethod, clientState);
      cmessage = await client.waitFor(/^CMESSAGE keyed /);
      const at = await client.cmethod("keyed", "transparent-TCP");
      ok(JSON.parse(await Deno.readTextFile(`${clientState}/keyed_client.json`)).key.length === 64);
      strictEqual(parseMessageLine(cmessage).payload.length, 16);

      // Before the operator relayed the key: the handshake fails, nothing is dialed.
      strictEqual(await exchange(at, "early"), "");
      strictEqual(target.accepted(), 0);

      // The application relays the client's CMESSAGE line to the server's stdin.
      await server.write(`${cmessage}\n`);
      deepStrictEqual(
        JSON.parse(await waitForFile(`${serverState}/keyed_server.json`)),
        [
          [...parseMessageLine(cmessage).payload].map((b) => b.toString(16).padStart(2, "0")).join(
            "",
          ),
        ],
      );
      strictEqual(await exchange(at, "hello through keyed"), "hello through keyed");
      strictEqual(target.accepted(), 1);

      await client.closeStdin();
      await server.closeStdin();
      strictEqual((await client.exit()).code, 0);
      strictEqual((await server.exit()).code, 0);
    }
    {
      // Restarted with the same state directories: no new key, no relaying.
      await using server = startServerPt(target.addr, serverState);
      const smethod = (await server.waitFor(/^SMETHOD keyed /)).split(" ")[2]!;
      await using client = startClientPt(smethod, clientState);
      const at = await client.cmethod("keyed", "transparent-TCP");
      ok(!client.lines.some((l) => l.startsWith("CMESSAGE")), `${client.lines}`);
      strictEqual(await exchange(at, "again"), "again");
      strictEqual(target.accepted(), 2);
    }
  } finally {
    await target.close();
    await Deno.remove(serverState, { recursive: true });
    await Deno.remove(clientState, { recursive: true });
  }
});

Deno.test("runManagedProxy logs and ignores malformed message lines on stdin and stays up", async () => {
  const target = countingEcho();
  const serverState = await Deno.makeTempDir({ prefix: "ptkit_keyed_s_" });
  const clientState = await Deno.makeTempDir({ prefix: "ptkit_keyed_c_" });
  try {
    await using server = startServerPt(target.addr, serverState);
    const smethod = (await server.waitFor(/^SMETHOD keyed /)).split(" ")[2]!;
    await server.waitFor(/^SMETHODS DONE$/);
    const cases: [string, RegExp][] = [
      ["CMESSAGE keyed %%%%", /Ignored a message line: .*invalid base64/],
      ["CMESSAGE nope aGk=", /Ignored CMESSAGE for unknown transport nope/],
      [`CMESSAGE keyed ${btoa("x".repeat(MAX_MESSAGE_BYTES + 1))}`, /exceeds 16384/],
      [`CMESSAGE keyed ${"A".repeat(100000)}`, /characters exceed/],
      ["SMESSAGE keyed aGk=", /Ignored SMESSAGE on the server side: expected CMESSAGE/],
      ["CMESSAGE keyed", /expected <transport> <base64>/],
    ];
    for (const [line, log] of cases) {
      await server.write(`${line}\n`);
      await guarded(
        server.waitFor(new RegExp(`^LOG SEVERITY=warning MESSAGE=".*${log.source}`)),
        `a warning matching ${log}`,
      );
    }
    await server.write("\xff\xfe unrelated input\n");

    // Still up and still relaying messages: a real key gets through.
    await using client = startClientPt(smethod, clientState);
    const cmessage = await client.waitFor(/^CMESSAGE keyed /);
    const at = await client.cmethod("keyed", "transparent-TCP");
    await client.write("SMESSAGE keyed ***\nCMESSAGE keyed aGk=\n");
    await client.waitFor(/^LOG SEVERITY=warning MESSAGE="Ignored a message line: .*invalid base64/);
    await client.waitFor(/^LOG SEVERITY=warning MESSAGE="Ignored CMESSAGE on the client side/);
    await server.write(`${cmessage}\n`);
    await waitForFile(`${serverState}/keyed_server.json`);
    strictEqual(await exchange(at, "still up"), "still up");
    await client.closeStdin();
    await server.closeStdin();
    strictEqual((await client.exit()).code, 0);
    const { code, stderr } = await server.exit();
    strictEqual(code, 0);
    ok(!/error/i.test(stderr), stderr);
  } finally {
    await target.close();
    await Deno.remove(serverState, { recursive: true });
    await Deno.remove(clientState, { recursive: true });
  }
});

Deno.test("ManagedPt message event and sendMessage relay keyed's key between PtClient and PtServer", async () => {
  const target = countingEcho();
  try {
    await using server = new PtServer({
      path: ECHO_MAIN,
      transports: ["keyed"],
      orport: { hostname: "127.0.0.1", port: target.addr.port },
      restart: false,
    });
    await server.start();
    await using client = new PtClient({ path: ECHO_MAIN, transports: ["keyed"], restart: false });
    const messages: PtMessageEvent[] = [];
    const first = new Promise<void>((resolve) =>
      client.addEventListener("message", (event) => {
        messages.push(event);
        resolve();
      })
    );
    await client.start();
    const address = server.transports.get("keyed")!.address;
    const send = async (text: string) => {
      const conn = await client.transports.get("keyed")!.dial(address);
      try {
        await conn.write(encoder.encode(text)).catch(() => {});
        await conn.closeWrite().catch(() => {});
        const chunks: number[] = [];
        const buffer = new Uint8Array(1024);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            chunks.push(...buffer.subarray(0, n));
          }
        } catch {
          // Reset counts as the end.
        }
        return decoder.decode(new Uint8Array(chunks));
      } finally {
        conn.close();
      }
    };
    // socks5 mode configures the transport at the first connection: it makes
    // the key and sends its id, but the server does not know it yet.
    strictEqual(await send("too early"), "");
    await first;
    strictEqual(target.accepted(), 0);
    deepStrictEqual(
      messages.map((m) => [m.kind, m.transport, m.payload.length]),
      [["CMESSAGE", "keyed", 16]],
    );
    // The application relays it (here only after that first attempt).
    await server.sendMessage(messages[0]!.transport, messages[0]!.payload);
    await waitForFile(`${server.stateDir}/keyed_server.json`);
    strictEqual(await send("via the adapter"), "via the adapter");
    strictEqual(target.accepted(), 1);

    await rejects(server.sendMessage("other", new Uint8Array(1)), TypeError);
    await rejects(server.sendMessage("keyed", new Uint8Array(MAX_MESSAGE_BYTES + 1)), RangeError);
    await server.close();
    await rejects(server.sendMessage("keyed", new Uint8Array(1)), /not running/);
  } finally {
    await target.close();
  }
});

Deno.test("InWorkerPt sendMessage reaches the front end, which logs an unknown transport", async () => {
  await using pt = await startInWorker({
    args: ["-transports", "plain", "-mode", "transparent-TCP", "-target", "127.0.0.1:9"],
    // deno test type-checks the Worker's modules when it first loads them
    // (13 s of CPU): with this file run alone on a loaded machine, that
    // outlasted the default 30 s. A hang guard, not a timing check.
    startTimeout: 180_000,
  });
  // Every log line, not only the first: another (the crypto backend's
  // choice, made after start) may come before the one this waits for.
  const logged: string[] = [];
  pt.addEventListener(
    "log",
    (event) => logged.push((event as unknown as { message: string }).message),
  );
  pt.sendMessage("nope", encoder.encode("hi"));
  const expected = "Ignored SMESSAGE for unknown transport nope";
  await waitFor(() => logged.includes(expected), `the log line '${expected}'`).catch((error) => {
    throw new Error(`${error.message}; logged: ${JSON.stringify(logged)}`);
  });
  throws(() => pt.sendMessage("nope", new Uint8Array(0)), RangeError);
});
