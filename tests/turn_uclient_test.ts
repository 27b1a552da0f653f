// Copyright the ptkit authors. MIT license.
// Acceptance: coturn's turnutils_uclient (Debian package "coturn") against our standalone server.

import { freeUdpPort, startTurnCli, waitForUdp } from "./turn_util.ts";
import { requireBinary } from "./ipc_util.ts";
import { ok, strictEqual } from "node:assert";

async function startServer(
  port: number,
  user = "u:p",
  extra: string[] = [],
): Promise<Deno.ChildProcess> {
  // Exactly the spelling, exec'd by path: main.ts turn --listen ...
  const { child, port: listening } = await startTurnCli([
    ...["--listen", `127.0.0.1:${port}`, "--user", user, "--realm", "pt.test"],
    "--allow-loopback-peers",
    ...extra,
  ]);
  strictEqual(listening, port);
  return child;
}

/** The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets). */
function rcvbufErrors(): number {
  const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) =>
    l.startsWith("Udp:")
  );
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf("RcvbufErrors")]);
}

async function uclient(args: string[]): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command("turnutils_uclient", {
    args,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

Deno.test("turn CLI passes every turnutils_uclient run of turn.md with 0 lost packets", async () => {
  requireBinary("turnutils_uclient", "coturn");
  requireBinary("turnutils_peer", "coturn");
  const port = await freeUdpPort();
  const peerPort = await freeUdpPort();
  const server = await startServer(port);
  const peer = new Deno.Command("turnutils_peer", {
    args: ["-L", "127.0.0.1", "-p", String(peerPort)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const common = ["-n", "1000", "-m", "10", "-l", "170", "-u", "u", "-w", "p", "-p", String(port)];
  const runs: [string, string[]][] = [
    ["peerless channels", ["-y", "-c", ...common]],
    ["Send/Data indications", ["-y", "-c", "-s", ...common]],
    ["padded ChannelData", ["-y", "-c", "-D", ...common]],
    ["echo peer", ["-c", "-e", "127.0.0.1", "-r", String(peerPort), ...common]],
    // Extra: RTP/RTCP pairs (EVEN-PORT with R, RESERVATION-TOKEN), DONT-FRAGMENT, IPv4 family.
    [
      "RTP/RTCP pairs, DONT-FRAGMENT, explicit IPv4",
      [
        "-y",
        "-g",
        "-X",
        "-n",
        "200",
        "-m",
        "4",
        "-l",
        "170",
        "-u",
        "u",
        "-w",
        "p",
        "-p",
        String(
          port,
        ),
      ],
    ],
  ];
  try {
    // The runs are light (20 ms between packets); run them side by side to save wall time.
    const kernelDropsBefore = rcvbufErrors();
    const results = await Promise.all(runs.map(([, args]) => uclient([...args, "127.0.0.1"])));
    // Where a loss came from: a full receive buffer (the server's or a
    // client's) shows here; a drop in ptkit does not.
    const kernelDrops = `kernel RcvbufErrors during the runs: ${
      rcvbufErrors() - kernelDropsBefore
    }`;
    results.forEach(({ code, output }, i) => {
      const [name, args] = runs[i]!;
      const summary = output.match(/Total lost packets \d+ \([^)]*\)/)?.[0] ??
        output.slice(-800);
      strictEqual(code, 0, `${name}: uclient ${args.join(" ")} exited ${code}: ${summary}`);
      ok(/Total lost packets 0 \(/.test(output), `${name}: ${summary}; ${kernelDrops}`);
    });
  } finally {
    peer.kill("SIGTERM");
    await peer.status;
    server.kill("SIGTERM");
    const status = await server.status;
    strictEqual(status.code, 0, "the TURN server exits 0 on SIGTERM");
  }
});

Deno.test("turn CLI --user splits at the first colon: a password may hold ':' and '@'", async () => {
  requireBinary("turnutils_uclient", "coturn");
  const port = await freeUdpPort();
  const server = await startServer(port, "alice:p@ss:w0rd");
  try {
    const common = ["-y", "-c", "-n", "20", "-m", "1", "-l", "100", "-p", String(port)];
    const good = await uclient([...common, "-u", "alice", "-w", "p@ss:w0rd", "127.0.0.1"]);
    strictEqual(good.code, 0, good.output.slice(-800));
    ok(/Total lost packets 0 \(/.test(good.output), good.output.slice(-800));
    // The old split (at the last ':') would have made the user "alice:p@ss".
    const wrong = await uclient([...common, "-u", "alice:p@ss", "-w", "w0rd", "127.0.0.1"]);
    ok(wrong.code !== 0 || !/Total lost packets 0 \(/.test(wrong.output), wrong.output.slice(-800));
  } finally {
    server.kill("SIGTERM");
    strictEqual((await server.status).code, 0);
  }
});

Deno.test("turn CLI on an IPv6-only address serves turnutils_uclient's RTP/RTCP pairs to an IPv6 peer: the RESERVATION-TOKEN Allocate, which names no family, gets the reserved IPv6 port, as from coturn", async () => {
  requireBinary("turnutils_uclient", "coturn");
  requireBinary("turnutils_peer", "coturn");
  const peerPort = await freeUdpPort();
  const peer = new Deno.Command("turnutils_peer", {
    args: ["-L", "127.0.0.1", "-L", "::1", "-p", String(peerPort)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const { child: server, port } = await startTurnCli([
    ...["--listen", "[::1]:0", "--user", "u:p", "--realm", "pt.test", "--allow-loopback-peers"],
  ]);
  try {
    await waitForUdp(peerPort, new Uint8Array([1]), "turnutils_peer");
    // Without -c, each client allocates an RTP/RTCP pair: an Allocate with
    // REQUESTED-ADDRESS-FAMILY IPv6 and EVEN-PORT R, then one with the
    // RESERVATION-TOKEN alone (RFC 8656 forbids a family beside a token).
    const args = ["-e", "::1", "-r", String(peerPort), "-n", "50", "-m", "2", "-l", "170"];
    const { code, output } = await uclient([
      ...args,
      "-u",
      "u",
      "-w",
      "p",
      "-p",
      String(port),
      "::1",
    ]);
    const summary = output.match(/Total lost packets \d+ \([^)]*\)|error \d+[^\n]*/)?.[0] ??
      output.slice(-800);
    strictEqual(code, 0, `uclient ${args.join(" ")} exited ${code}: ${summary}`);
    ok(/Total lost packets 0 \(/.test(output), summary);
  } finally {
    peer.kill("SIGTERM");
    await peer.status;
    server.kill("SIGTERM");
    strictEqual((await server.status).code, 0);
  }
});

Deno.test("turn CLI --user takes coturn's key form (USER:0x<hex>, as turnadmin -k prints it and turnserver.conf's user= lines hold it), on the command line and in an @FILE", async () => {
  requireBinary("turnutils_uclient", "coturn");
  const turnadmin = requireBinary("turnadmin", "coturn");
  // The key of ninefingers:north.gov:youhavetoberealistic, coturn's own example.
  const made = await new Deno.Command(turnadmin, {
    args: ["-k", "-u", "ninefingers", "-r", "north.gov", "-p", "youhavetoberealistic"],
    stdin: "null",
    stderr: "null",
  }).output();
  const key = /0x[0-9a-f]{32}/.exec(new TextDecoder().decode(made.stdout))?.[0];
  strictEqual(key, "0xbc807ee29df3c9ffa736523fb2c4e8ee");
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/users`, `# as turnserver.conf has it\nninefingers:${key}\n`);
  try {
    for (const user of [`ninefingers:${key}`, `@${dir}/users`]) {
      const port = await freeUdpPort();
      const { child } = await startTurnCli([
        ...["--listen", `127.0.0.1:${port}`, "--user", user, "--realm", "north.gov"],
        "--allow-loopback-peers",
      ]);
      try {
        const common = ["-y", "-c", "-n", "20", "-m", "1", "-l", "100", "-p", String(port)];
        const good = await uclient([
          ...common,
          ...["-u", "ninefingers", "-w", "youhavetoberealistic", "127.0.0.1"],
        ]);
        strictEqual(good.code, 0, `${user}: ${good.output.slice(-800)}`);
        ok(/Total lost packets 0 \(/.test(good.output), good.output.slice(-800));
        // The key itself is no password: a client sending it is refused.
        const wrong = await uclient([...common, "-u", "ninefingers", "-w", key!, "127.0.0.1"]);
        ok(wrong.code !== 0 || !/Total lost packets 0 \(/.test(wrong.output), wrong.output);
      } finally {
        child.kill("SIGTERM");
        strictEqual((await child.status).code, 0);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("turn CLI --source-quota: coturn's turnutils_uclient, all of whose clients come from one address, gets 486 Allocation Quota Reached past it, and runs through under a quota that holds them", async () => {
  requireBinary("turnutils_uclient", "coturn");
  for (const [quota, refused] of [["3", true], ["20", false]] as const) {
    const port = await freeUdpPort();
    const server = await startServer(port, "u:p", ["--source-quota", quota]);
    try {
      // Four clients talking to each other (-y): four allocations, and its
      // load-balancing probe's.
      const { code, output } = await uclient([
        ...["-y", "-c", "-n", "10", "-m", "4", "-l", "100", "-u", "u", "-w", "p"],
        ...["-p", String(port), "127.0.0.1"],
      ]);
      strictEqual(output.includes("error 486 (Allocation Quota Reached)"), refused, output);
      strictEqual(code === 0, !refused, `exit ${code}: ${output}`);
    } finally {
      server.kill("SIGTERM");
      strictEqual((await server.status).code, 0);
    }
  }
});
