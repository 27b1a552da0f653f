// Copyright the ptkit authors. MIT license.

// The standalone TURN server's peer policy from the command line: loopback
// peers are refused unless --allow-loopback-peers is given; private ones
// always.

import dgram from "node:dgram";
import { ok, strictEqual } from "node:assert";
import type { StunAddress } from "../udp/stun/_message.ts";
import { StunMethod } from "../udp/stun/_constants.ts";
import { freshLoopback, startTurnCli, udpStunClient } from "./turn_util.ts";
import { MAIN } from "./ipc_util.ts";
import { guarded } from "./_util.ts";
import { errorCode, Queue, StunTestClient } from "./turn_test_client.ts";

/** The answer to a CreatePermission for each peer, from a fresh allocation. */
async function permissionCodes(port: number, peers: StunAddress[]): Promise<number[]> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    const inbox = new Queue<Uint8Array>();
    socket.on("message", (msg: Uint8Array) => inbox.push(new Uint8Array(msg)));
    const c = new StunTestClient({ inbox, send: (b) => socket.send(b, port, "127.0.0.1") });
    strictEqual(errorCode(await c.allocate()), 0);
    const codes: number[] = [];
    for (const peer of peers) {
      codes.push(errorCode(await c.withPeer(StunMethod.CreatePermission, peer)));
    }
    return codes;
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

const PEERS: StunAddress[] = [
  { family: 4, address: "127.0.0.1", port: 9 },
  { family: 4, address: "10.0.0.1", port: 9 },
  { family: 4, address: "8.8.8.8", port: 9 },
];

/** `main.ts turn --listen 127.0.0.1:0 --realm r ARGS` to its exit: code and stderr (for usage errors). */
async function turnCliRun(args: string[]): Promise<{ code: number; stderr: string }> {
  const { code, stderr } = await new Deno.Command(MAIN, {
    args: ["turn", "--listen", "127.0.0.1:0", "--realm", "r", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

for (
  const [flags, expected] of [[[], [403, 403, 0]], [["--allow-loopback-peers"], [
    0,
    403,
    0,
  ]]] as const
) {
  Deno.test(`turn CLI ${flags.join(" ") || "without flags"}: CreatePermission to loopback, private and public peers answers ${expected.join(", ")}`, async () => {
    const { child, port } = await startTurnCli([
      ...["--listen", "127.0.0.1:0", "--user", "u:p", "--realm", "pt.test"],
      ...flags,
    ]);
    try {
      const codes = await permissionCodes(port, PEERS);
      ok(codes.length === 3);
      strictEqual(codes.join(","), expected.join(","));
    } finally {
      child.kill("SIGTERM");
      strictEqual((await child.status).code, 0);
    }
  });
}

// The flag forms the other commands (server, client, start) take: -flag,
// --flag=value, and a "did you mean" for a near miss.
Deno.test("turn CLI takes -flag and --flag=value as the other commands do", async () => {
  const { child } = await startTurnCli(["-listen", "127.0.0.1:0", "--user=u:p:q", "-realm=r"]);
  child.kill("SIGTERM");
  strictEqual((await child.status).code, 0);
});

Deno.test("turn CLI names a near miss of a flag, never a value", async () => {
  const run = async (args: string[]) => {
    const { code, stderr } = await new Deno.Command(MAIN, {
      args: ["turn", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    return { code, stderr: new TextDecoder().decode(stderr) };
  };
  const typo = await run(["--lisen", "127.0.0.1:0", "--user", "u:p", "--realm", "r"]);
  strictEqual(typo.code, 64);
  ok(
    typo.stderr.startsWith("ptkit: error: Unknown flag --lisen (did you mean --listen?)\n"),
    typo.stderr,
  );
  const secret = await run(["--listen", "127.0.0.1:0", "--usr=u:S3CRET", "--realm", "r"]);
  strictEqual(secret.code, 64);
  ok(
    secret.stderr.startsWith("ptkit: error: Unknown flag --usr (did you mean --user?)\n"),
    secret.stderr,
  );
  ok(!secret.stderr.includes("S3CRET"), secret.stderr);
  // coturn's -L is named as typed, not as "--l".
  const coturn = await run(["-L", "127.0.0.1", "--user", "u:p", "--realm", "r"]);
  strictEqual(coturn.code, 64);
  ok(coturn.stderr.startsWith("ptkit: error: Unknown flag -L\n"), coturn.stderr);
  const flagValue = await run(["--allow-loopback-peers=yes", "--listen", "127.0.0.1:0"]);
  strictEqual(flagValue.code, 64);
  ok(flagValue.stderr.includes("Flag --allow-loopback-peers takes no value"), flagValue.stderr);
});

// One parser for every command's flags (ipc/cli/_cli_flags.ts): turn takes
// the managed proxy's spelling as the others do, and a stray argument gets
// the same hint, never its value.
Deno.test("turn CLI parses its flags as the other commands do: --camelCase, and a stray argument's hint", async () => {
  const run = async (args: string[]) => {
    const { code, stderr } = await new Deno.Command(MAIN, {
      args: ["turn", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    return { code, stderr: new TextDecoder().decode(stderr) };
  };
  const camel = await run(["--allowLoopbackPeers=yes", "--listen", "127.0.0.1:0"]);
  strictEqual(camel.code, 64);
  ok(
    camel.stderr.startsWith("ptkit: error: Flag --allow-loopback-peers takes no value\n"),
    camel.stderr,
  );
  const stray = await run(["password=S3CRET", "--listen", "127.0.0.1:0"]);
  strictEqual(stray.code, 64);
  ok(
    stray.stderr.startsWith(
      "ptkit: error: Unexpected argument 2 (password=...): expected a flag (-name or --name)\n",
    ),
    stray.stderr,
  );
  ok(!stray.stderr.includes("S3CRET"), stray.stderr);
});

Deno.test("turn CLI refuses a host name in --listen as a usage error (64), not a failure to listen (1)", async () => {
  const { code, stderr } = await new Deno.Command(MAIN, {
    args: ["turn", "--listen", "localhost:0", "--user", "u:p", "--realm", "r"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stderr);
  strictEqual(code, 64, text);
  ok(
    text.startsWith(
      'ptkit: error: Invalid --listen "localhost:0": the host must be an IP address\n',
    ),
    text,
  );
  // An IPv6 literal in brackets is an IP address.
  const { child, port } = await startTurnCli([
    ...["--listen", "[::1]:0", "--user", "u:p", "--realm", "r"],
  ]);
  ok(port > 0);
  child.kill("SIGTERM");
  strictEqual((await child.status).code, 0);
});

// A password on the command line shows in the process list: `--user @FILE`
// takes the users from a file, one USER:PASSWORD a line (comments and
// blank lines skipped), as coturn's userdb keeps them off it.
Deno.test("turn CLI --user @FILE reads the users from a file, one a line; a bad line or file is named, never its content", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const users = `${dir}/users`;
    await Deno.writeTextFile(users, "# TURN users\n\nalice:S3CRET:1\n  bob:hunter2  \n");
    const { child, port } = await startTurnCli(
      ["--listen", "127.0.0.1:0", "--user", `@${users}`, "--realm", "pt.test"],
    );
    try {
      // One socket each: a second Allocate from one 5-tuple is 437.
      const allocateAs = async (username: string, password: string) => {
        const socket = dgram.createSocket("udp4");
        await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
        try {
          const inbox = new Queue<Uint8Array>();
          socket.on("message", (msg: Uint8Array) => inbox.push(new Uint8Array(msg)));
          const send = (b: Uint8Array) => socket.send(b, port, "127.0.0.1");
          return errorCode(
            await new StunTestClient({ inbox, send }, username, password).allocate(),
          );
        } finally {
          await new Promise<void>((resolve) => socket.close(() => resolve()));
        }
      };
      strictEqual(await allocateAs("alice", "S3CRET:1"), 0);
      strictEqual(await allocateAs("bob", "hunter2"), 0);
      strictEqual(await allocateAs("bob", "wrong"), 401);
    } finally {
      child.kill("SIGTERM");
      strictEqual((await child.status).code, 0);
    }
    const run = turnCliRun;
    await Deno.writeTextFile(users, "carol:S3CRET\nS3CRET-no-colon\n");
    const bad = await run(["--user", `@${users}`]);
    strictEqual(bad.code, 64);
    ok(
      bad.stderr.startsWith(
        `ptkit: error: Line 2 of ${users} (besides comments) is not USER:PASSWORD: it has no ':' ` +
          "between the user and the password\n",
      ),
      bad.stderr,
    );
    ok(!bad.stderr.includes("S3CRET"), bad.stderr);
    await Deno.writeTextFile(users, "# nobody yet\n");
    const empty = await run(["--user", `@${users}`]);
    strictEqual(empty.code, 64);
    ok(empty.stderr.startsWith(`ptkit: error: The file ${users} holds no USER:PASSWORD line\n`));
    const missing = await run(["--user", `@${dir}/nope`]);
    strictEqual(missing.code, 64);
    ok(
      missing.stderr.startsWith(`ptkit: error: Cannot read --user from ${dir}/nope: `),
      missing.stderr,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("turn CLI refuses a realm or user name no TURN client can send back (RFC 8489: REALM under 128 characters, USERNAME under 509 bytes) as a usage error naming the flag, never the value", async () => {
  const run = async (user: string, realm: string) => {
    const child = new Deno.Command(MAIN, {
      args: ["turn", "--listen", "127.0.0.1:0", "--user", `${user}:S3CRET`, "--realm", realm],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      const { code, stderr } = await guarded(child.output(), "main.ts turn to refuse its flags");
      return { code, text: new TextDecoder().decode(stderr) };
    } catch (error) {
      child.kill("SIGKILL");
      await child.status;
      throw error;
    }
  };
  // coturn's turnutils_uclient cuts a longer realm to 127 characters and
  // then gets 437 for ever; a longer user name fails every Allocate.
  const realm = await run("u", "é".repeat(128));
  strictEqual(realm.code, 64, realm.text);
  ok(realm.text.startsWith("ptkit: error: Invalid --realm: 128 characters"), realm.text);
  ok(!realm.text.includes("éé"), realm.text);
  const user = await run("ü".repeat(255), "r"); // 510 bytes
  strictEqual(user.code, 64, user.text);
  ok(user.text.startsWith("ptkit: error: Invalid --user: a user name of 510 bytes"), user.text);
  ok(!user.text.includes("üü") && !user.text.includes("S3CRET"), user.text);
  // The longest of each starts.
  const { child, port } = await startTurnCli([
    ...["--listen", "127.0.0.1:0", "--user", `${"u".repeat(508)}:p`, "--realm", "é".repeat(127)],
  ]);
  ok(port > 0);
  child.kill("SIGTERM");
  strictEqual((await child.status).code, 0);
});

Deno.test("main.ts turn names every missing flag at once, in the usage's order, exit 64", async () => {
  for (
    const [args, missing] of [
      [[], "--listen HOST:PORT, --user USER:PASSWORD and --realm REALM"],
      [["--listen", "127.0.0.1:0"], "--user USER:PASSWORD and --realm REALM"],
      [["--realm", "r"], "--listen HOST:PORT and --user USER:PASSWORD"],
    ] as const
  ) {
    const output = await new Deno.Command(MAIN, { args: ["turn", ...args], stdin: "null" })
      .output();
    const err = new TextDecoder().decode(output.stderr);
    strictEqual(output.code, 64, err);
    strictEqual(err.split("\n")[0], `ptkit: error: Missing ${missing}`);
  }
});

Deno.test("turn CLI says which --user is wrong (its position among several) and what is wrong, never the user or the password; coturn's 0x key form must have 32 hex digits, as coturn asks", async () => {
  // Was '--user must be USER:PASSWORD' for each of these, which --user not
  // said; 'alice:0xabc' (a key cut short) and 'alice:' were taken.
  const key = `0x${"ab".repeat(16)}`;
  const cases: [string[], string][] = [
    [["--user", "alice"], "Invalid --user: it has no ':' between the user and the password"],
    [
      ["--user", "bob:S3CRET", "--user", ":S3CRET"],
      "Invalid --user 2 of 2: the user name before ':' is empty",
    ],
    [["--user", "alice:"], "Invalid --user: the password after ':' is empty"],
    [
      ["--user", "bob:S3CRET", "--user", "alice:0xabc", "--user", "carol:S3CRET"],
      "Invalid --user 2 of 3: a password that starts with 0x is a coturn key (turnadmin -k's " +
      "output): expected 0x and 32 hex digits, got 0x and 3 characters",
    ],
    [
      ["--user", `alice:${key.slice(0, -1)}z`],
      "Invalid --user: a password that starts with 0x is a coturn key (turnadmin -k's output): " +
      "expected 0x and 32 hex digits, got 0x and 32 characters (not all hex digits)",
    ],
  ];
  for (const [users, message] of cases) {
    const { code, stderr } = await turnCliRun(users);
    strictEqual(code, 64, stderr);
    strictEqual(stderr.split("\n")[0], `ptkit: error: ${message}`);
    ok(!stderr.includes("S3CRET") && !stderr.includes("alice") && !stderr.includes("abab"), stderr);
  }
  // A whole key is taken (the 'turn CLI takes coturn's key form' tests use it).
  const { child } = await startTurnCli(
    ["--listen", "127.0.0.1:0", "--user", `alice:${key}`, "--realm", "r"],
  );
  child.kill("SIGTERM");
  strictEqual((await child.status).code, 0);
});

Deno.test("turn CLI refuses a user given twice with different passwords (one would silently stop working), naming where and never the name or passwords; the same user and password twice is taken", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = turnCliRun;
    const flags = await run(["--user", "dave:0LDPASS", "--user", "dave:N3WPASS"]);
    strictEqual(flags.code, 64);
    ok(
      flags.stderr.startsWith(
        "ptkit: error: Invalid --user 2 of 2: a user name is given twice with different passwords\n",
      ),
      flags.stderr,
    );
    const users = `${dir}/users`;
    await Deno.writeTextFile(users, "# users\ndave:N3WPASS\nerin:x\n");
    const mixed = await run(["--user", "dave:0LDPASS", "--user", `@${users}`]);
    strictEqual(mixed.code, 64);
    ok(
      mixed.stderr.startsWith(
        `ptkit: error: Line 1 of ${users} (besides comments) gives a user name given before with a different password\n`,
      ),
      mixed.stderr,
    );
    for (const text of [flags.stderr, mixed.stderr]) {
      ok(!/dave|0LDPASS|N3WPASS/.test(text), text);
    }
    // The same user and password twice is no conflict.
    const { child } = await startTurnCli(
      ["--listen", "127.0.0.1:0", "--user", "dave:N3WPASS", "--user", `@${users}`, "--realm", "r"],
    );
    child.kill("SIGTERM");
    strictEqual((await child.status).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("turn CLI --source-quota caps the allocations one address holds: the next gets 486, another address is served", async () => {
  const { child, port } = await startTurnCli([
    ...["--listen", "127.0.0.1:0", "--user", "u:p", "--realm", "pt.test", "--source-quota", "2"],
  ]);
  try {
    const source = freshLoopback();
    // Three sockets (three 5-tuples) of one address: two allocations, then 486.
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      await using c = await udpStunClient(port, source);
      codes.push(errorCode(await c.client.allocate()));
      // The allocation stays when the socket closes (nothing tells the server).
    }
    strictEqual(codes.join(","), "0,0,486");
    await using other = await udpStunClient(port, freshLoopback());
    strictEqual(errorCode(await other.client.allocate()), 0);
  } finally {
    child.kill("SIGTERM");
    strictEqual((await child.status).code, 0);
  }
});

Deno.test("turn CLI --request-burst-per-source and --requests-per-second-per-source limit the requests of an address without an allocation", async () => {
  const { child, port } = await startTurnCli([
    ...["--listen", "127.0.0.1:0", "--user", "u:p", "--realm", "pt.test"],
    ...["--request-burst-per-source", "3", "--requests-per-second-per-source", "0.001"],
  ]);
  try {
    await using limited = await udpStunClient(port, freshLoopback());
    for (let i = 0; i < 3; i++) {
      strictEqual(
        errorCode(await limited.client.request(StunMethod.Binding, [], { auth: false })),
        0,
      );
    }
    // The fourth is dropped: another address's two round trips come back,
    // and nothing more reaches this one.
    limited.client.wire.send(limited.client.build(StunMethod.Binding, [], { auth: false }));
    await using other = await udpStunClient(port, freshLoopback());
    for (let i = 0; i < 2; i++) {
      strictEqual(
        errorCode(await other.client.request(StunMethod.Binding, [], { auth: false })),
        0,
      );
    }
    strictEqual(limited.client.wire.inbox.size, 0);
  } finally {
    child.kill("SIGTERM");
    strictEqual((await child.status).code, 0);
  }
});

Deno.test("turn CLI refuses a bad limit as a usage error naming the flag and what it takes; --help lists the limits", async () => {
  for (
    const [flag, value, expected] of [
      ["--source-quota", "-1", "a whole number (0: no limit)"],
      ["--source-quota", "ten", "a whole number (0: no limit)"],
      ["--source-quota", "1.5", "a whole number (0: no limit)"],
      ["--request-burst-per-source", "", "a whole number (0: no limit)"],
      ["--requests-per-second-per-source", "1e3", "a number (0: no limit)"],
      ["--max-request-sources", "0", "a whole number from 1 to 1048576"],
      ["--max-request-sources", "2000000", "a whole number from 1 to 1048576"],
    ]
  ) {
    const { code, stderr } = await turnCliRun(["--user", "u:p", `${flag}=${value}`]);
    strictEqual(code, 64, `${flag}=${value}`);
    ok(
      stderr.startsWith(
        `ptkit: error: Invalid ${flag} ${JSON.stringify(value)}: expected ${expected}\n`,
      ),
      stderr,
    );
  }
  const help = await new Deno.Command(MAIN, { args: ["turn", "--help"], stdin: "null" }).output();
  strictEqual(help.code, 0);
  const text = new TextDecoder().decode(help.stdout);
  for (
    const flag of [
      "--source-quota N",
      "--request-burst-per-source N",
      "--requests-per-second-per-source N",
      "--max-request-sources N",
    ]
  ) {
    ok(text.includes(flag), flag);
  }
});
