// Copyright the ptkit authors. MIT license.
// main.ts with `-transports ssh` on both sides, over Debian's OpenSSH
// (openssh-server, openssh-client): the client's key arrives as a CMESSAGE
// line and is relayed to the server PT as the operator would; until then
// SOCKS fails and ssh is retried; then curl fetches through the client's
// SOCKS port and 16 MiB go each way; both restart on their state without
// relaying again; a wrong fingerprint, a loopback destination without
// `-allow loopback`, a shell, a command and a forward past the relay are
// refused; SIGTERM, stdin close and SIGKILL of either PT leave no ssh or
// sshd behind (checked in /proc); no LOG line shows an address or a key.

import { deepStrictEqual, ok } from "node:assert";
import { CountingHttpServer, curl, TextProcess } from "./cli_util.ts";
import { MAIN, PtProcess } from "./ipc_util.ts";
import { socks5Connect } from "./obfs4_socks5.ts";
import { connHash, connWriteAll, echoServer, hashOf, pseudoRandomChunks } from "./_util.ts";
import {
  descendantPids,
  helperProcesses,
  requireProgram,
  stillRunning,
  waitFor,
} from "./ssh_util.ts";

const SIZE = 16 * 1024 * 1024;

/** Start main.ts with `args` and a state directory. */
function startMain(args: string[], state: string, env: Record<string, string> = {}): PtProcess {
  // As tor runs it: the end of stdin means exit.
  return new PtProcess(
    [...args, "-state", state, "-logLevel", "debug", "-exit-on-stdin-close"],
    env,
  );
}

/** Read the PT's stdout until a line matches `pattern`, or fail after `timeout` ms. */
async function waitForLine(pt: PtProcess, pattern: RegExp, timeout = 30_000): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      pt.waitFor(pattern),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`No line ${pattern} in ${timeout} ms`)), timeout);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The SMETHOD of ssh: its port and ARGS as a client's options. */
async function smethod(pt: PtProcess): Promise<{ port: number; options: Record<string, string> }> {
  const line = await waitForLine(pt, /^SMETHOD(-ERROR)? ssh /);
  ok(line.startsWith("SMETHOD ssh 127.0.0.1:"), line);
  const [, , address, args] = line.split(" ");
  ok(args?.startsWith("ARGS:"), line);
  // fp is base64 (no `,` `=` `\`), relay a number, user a login name.
  const options = Object.fromEntries(args!.slice(5).split(",").map((kv) => kv.split("=")));
  deepStrictEqual(Object.keys(options).sort(), ["fp", "relay", "user"], line);
  ok(/^SHA256:[A-Za-z0-9+/]{43}$/.test(options.fp!), line);
  return { port: Number(address!.split(":")[1]), options };
}

/** A client PT in front of the server at `port` with `options`. */
function startClient(port: number, options: Record<string, string>, state: string): PtProcess {
  return startMain([
    ...["-client", "-transports", "ssh", "-free", "-target", `127.0.0.1:${port}`],
    ...["-options", JSON.stringify(options)],
  ], state);
}

/** curl through a SOCKS port. */
function curlThrough(socks: { hostname: string; port: number }, url: string) {
  return curl(["--socks5-hostname", `${socks.hostname}:${socks.port}`, url]);
}

/** Fetch `url` through the SOCKS port until it answers (ssh retries every 10 s). */
function fetchThrough(socks: { hostname: string; port: number }, url: string): Promise<string> {
  return waitFor(async () => {
    const result = await curlThrough(socks, url);
    return result.code === 0 ? result.out : undefined;
  }, 60_000);
}

/** No LOG line shows an IP address, a port or a key fingerprint. */
function assertLogsClean(...pts: PtProcess[]): void {
  for (const pt of pts) {
    for (const line of pt.lines.filter((l) => l.startsWith("LOG "))) {
      ok(!/\b\d{1,3}(\.\d{1,3}){3}\b|port \d|SHA256:/.test(line), `leaks: ${line}`);
    }
  }
}

/**
 * Stop a PT with `how`, wait for it, and check (in /proc) that every
 * process it had started (its helpers, their children) is gone, and that
 * no helper of its state directory runs.
 */
async function stop(
  pt: PtProcess,
  how: "SIGTERM" | "SIGKILL" | "stdin",
  state: string,
  running = true,
) {
  const helpers = await descendantPids(pt.child.pid);
  if (running) ok(helpers.length > 0, "the PT runs no helper");
  if (how === "stdin") await pt.closeStdin();
  else pt.child.kill(how);
  await pt.exit();
  // The helper's watchdog sees the PT's pipe close; give it a moment.
  const left = async () => [...await stillRunning(helpers), ...await helperProcesses(state)];
  await waitFor(async () => (await left()).length === 0, 15_000)
    .catch(async () => deepStrictEqual(await left(), [], `${how} left helpers`));
}

/** State directories the helpers (run as `nobody` under root) can reach. */
async function testRoot(): Promise<{ root: string; server: string; client: string }> {
  const root = await Deno.makeTempDir({ prefix: "ptkit-ssh-main-" });
  await Deno.chmod(root, 0o711);
  await Deno.mkdir(`${root}/server`, { mode: 0o711 });
  await Deno.mkdir(`${root}/client`, { mode: 0o711 });
  return { root, server: `${root}/server`, client: `${root}/client` };
}

async function requireOpenSsh(): Promise<void> {
  await requireProgram("sshd", "openssh-server");
  await requireProgram("ssh", "openssh-client");
  await requireProgram("setsid", "util-linux");
}

Deno.test({
  name: "main.ts ssh: key relayed as CMESSAGE, curl and 16 MiB each way, restart, refusals, " +
    "no helper left after SIGTERM, stdin close or SIGKILL",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await requireOpenSsh();
    const { root, server: serverState, client: clientState } = await testRoot();
    await using http = new CountingHttpServer("hello through ssh\n");
    const echo = echoServer();
    const url = `http://127.0.0.1:${http.port}/`;
    let server = startMain(["-server", "-transports", "ssh", "-allow", "loopback"], serverState);
    let client: PtProcess | undefined;
    try {
      const first = await smethod(server);
      // The server's host key fingerprint (and what else a client needs) as SMESSAGE.
      const smessage = await waitForLine(server, /^SMESSAGE ssh /);
      const announced = JSON.parse(atob(smessage.split(" ")[2]!));
      deepStrictEqual(announced.fingerprint, first.options.fp);
      deepStrictEqual([String(announced.relay), announced.user], [
        first.options.relay,
        first.options.user,
      ]);
      ok(/^ssh-ed25519 [A-Za-z0-9+/]+$/.test(announced.hostKey), smessage);
      client = startClient(first.port, first.options, clientState);
      // The new key, for the operator: CMESSAGE ssh <escaped JSON>.
      const cmessage = await waitForLine(client, /^CMESSAGE ssh /);
      const key = JSON.parse(atob(cmessage.split(" ")[2]!));
      ok(/^ssh-ed25519 [A-Za-z0-9+/]+$/.test(key.sshKey), cmessage);
      ok(/^SHA256:[A-Za-z0-9+/]{43}$/.test(key.fingerprint), cmessage);
      const socks = await client.cmethod("ssh");
      // Not accepted yet: SOCKS fails, ssh says why and is retried.
      const refused = await curlThrough(socks, url);
      ok(refused.code !== 0, JSON.stringify(refused));
      await waitForLine(client, /^LOG SEVERITY=warning MESSAGE="ssh: ssh: .*Permission denied/);
      await waitForLine(client, /^LOG SEVERITY=notice MESSAGE="ssh: ssh exited .*again in 10 s"/);
      deepStrictEqual(http.connections, 0);

      // Its key went out once (checking the options at start announces nothing).
      deepStrictEqual(client.lines.filter((line) => line.startsWith("CMESSAGE ")), [cmessage]);

      // The operator's step: the client's CMESSAGE line, as it is, to the server PT,
      // which says it took it.
      await server.write(`${cmessage}\n`);
      await waitForLine(
        server,
        /^LOG SEVERITY=notice MESSAGE="Passed a CMESSAGE of \d+ bytes to ssh"$/,
      );
      deepStrictEqual(await fetchThrough(socks, url), "hello through ssh\n");

      // 16 MiB each way through the client's SOCKS port.
      const conn = await socks5Connect(socks, { hostname: "127.0.0.1", port: echo.port });
      const [, back] = await Promise.all([
        connWriteAll(conn, pseudoRandomChunks(SIZE, 15)),
        connHash(conn),
      ]);
      conn.close();
      deepStrictEqual(back.bytes, SIZE);
      deepStrictEqual(back.digest(), hashOf(pseudoRandomChunks(SIZE, 15)));

      // The client's key opens nothing but the relay: no shell, no command,
      // no forward elsewhere.
      const keyFile = `${root}/id`;
      await Deno.copyFile(`${clientState}/sshKey`, keyFile);
      await Deno.chmod(keyFile, 0o600);
      const sshAs = async (extra: string[]) => {
        const output = await new Deno.Command("ssh", {
          args: [
            ...["-F", "none", "-i", keyFile, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"],
            ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
            ...["-p", String(first.port), "-l", first.options.user!, ...extra],
          ],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        return {
          code: output.code,
          text: new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr),
        };
      };
      const command = await sshAs(["127.0.0.1", "echo", "ptkit-command-ran"]);
      ok(command.code !== 0 && !command.text.includes("ptkit-command-ran"), command.text);
      const shell = await sshAs(["-tt", "127.0.0.1"]);
      ok(shell.code !== 0, shell.text);
      const before = http.connections;
      const forward = await sshAs(["-W", `127.0.0.1:${http.port}`, "127.0.0.1"]);
      ok(forward.code !== 0, forward.text);
      deepStrictEqual(http.connections, before, "a forward past the relay reached the server");

      assertLogsClean(server, client);
      // SIGTERM both: nothing left.
      await stop(client, "SIGTERM", clientState);
      await stop(server, "SIGTERM", serverState);

      // Both again on the same state: no relaying.
      server = startMain(["-server", "-transports", "ssh", "-allow", "loopback"], serverState);
      const second = await smethod(server);
      deepStrictEqual(second.options, first.options, "the client's arguments stay valid");
      client = startClient(second.port, second.options, clientState);
      deepStrictEqual(
        await fetchThrough(await client.cmethod("ssh"), url),
        "hello through ssh\n",
      );
      assertLogsClean(server, client);
      // SIGKILL of the client PT, stdin close of the server PT.
      await stop(client, "SIGKILL", clientState);
      await stop(server, "stdin", serverState);

      // Once more: stdin close of the client PT, SIGKILL of the server PT.
      server = startMain(["-server", "-transports", "ssh", "-allow", "loopback"], serverState);
      const third = await smethod(server);
      client = startClient(third.port, third.options, clientState);
      await fetchThrough(await client.cmethod("ssh"), url);
      await stop(client, "stdin", clientState);
      await stop(server, "SIGKILL", serverState);
      client = undefined;
    } finally {
      await client?.[Symbol.asyncDispose]();
      await server[Symbol.asyncDispose]();
      await echo.close();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

/**
 * A refusal test: a server PT with `serverArgs`, a client PT whose key it
 * accepted (the CMESSAGE relayed) with the SMETHOD's options changed by
 * `change`, then `check`; both stopped, nothing left behind.
 */
function refusalTest(
  name: string,
  serverArgs: string[],
  change: (options: Record<string, string>) => Record<string, string>,
  check: (pts: {
    server: PtProcess;
    client: PtProcess;
    socks: { hostname: string; port: number };
    http: CountingHttpServer;
  }) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await requireOpenSsh();
      const { root, server: serverState, client: clientState } = await testRoot();
      await using http = new CountingHttpServer("must not be reached\n");
      const server = startMain(["-server", "-transports", "ssh", ...serverArgs], serverState);
      let client: PtProcess | undefined;
      try {
        const { port, options } = await smethod(server);
        client = startClient(port, change(options), clientState);
        await server.write(`${await waitForLine(client, /^CMESSAGE ssh /)}\n`);
        await check({ server, client, socks: await client.cmethod("ssh"), http });
        deepStrictEqual(http.connections, 0);
        await stop(client, "SIGTERM", clientState, false);
        await stop(server, "SIGTERM", serverState);
        client = undefined;
      } finally {
        await client?.[Symbol.asyncDispose]();
        await server[Symbol.asyncDispose]();
        await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    },
  });
}

refusalTest(
  "main.ts ssh: a wrong host key fingerprint is refused and logged",
  ["-allow", "loopback"],
  (options) => {
    const fp = options.fp!;
    return { ...options, fp: `SHA256:${fp[7] === "A" ? "B" : "A"}${fp.slice(8)}` };
  },
  async ({ client, socks, http }) => {
    // The server accepted the client's key: only the host key is wrong. The
    // first SOCKS request starts ssh, which refuses the host key.
    const result = await curlThrough(socks, `http://127.0.0.1:${http.port}/`);
    ok(result.code !== 0, JSON.stringify(result));
    await waitForLine(
      client,
      /^LOG SEVERITY=warning MESSAGE="ssh: ssh: .*Host key verification failed/,
    );
    const again = await curlThrough(socks, `http://127.0.0.1:${http.port}/`);
    ok(again.code !== 0, JSON.stringify(again));
  },
);

refusalTest(
  "main.ts ssh: a loopback destination is refused without -allow loopback",
  [],
  (options) => options,
  async ({ server, socks, http }) => {
    // Once the tunnel is up (ssh retries every 10 s), the server refuses
    // the destination past its relay and says so; names too.
    let done = false;
    const failures: string[] = [];
    const attempts = (async () => {
      for (let i = 0; !done; i++) {
        const host = i % 2 === 0 ? "127.0.0.1" : "localhost";
        const result = await curlThrough(socks, `http://${host}:${http.port}/`);
        if (result.code === 0 || result.out !== "") failures.push(JSON.stringify(result));
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    })();
    try {
      await waitForLine(
        server,
        /^LOG SEVERITY=info MESSAGE="ssh: connection failed: Destination refused: loopback"$/,
        60_000,
      );
    } finally {
      done = true;
      await attempts;
    }
    deepStrictEqual(failures, []);
  },
);

Deno.test("main.ts ssh: an upstream proxy is refused (ssh would connect past it)", async () => {
  const { root, client: clientState } = await testRoot();
  const client = startMain([
    ...["-client", "-transports", "ssh", "-proxy", "socks5://127.0.0.1:9"],
  ], clientState);
  try {
    await waitForLine(client, /^CMETHODS DONE$/);
    await client.closeStdin();
    const { lines, stderr } = await client.exit();
    // No SOCKS port for ssh; the error line (on stderr, as main.ts run by hand writes it).
    ok(!lines.some((line) => line.startsWith("CMETHOD ssh ")), lines.join("\n"));
    ok(
      `${lines.join("\n")}\n${stderr}`.includes(
        "CMETHOD-ERROR ssh Transport 'ssh' cannot go through an upstream proxy",
      ),
      stderr,
    );
  } finally {
    await client[Symbol.asyncDispose]();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("main.ts ssh: an outbound bind address is refused (ssh would connect from another)", async () => {
  const { root, client: clientState } = await testRoot();
  const client = startMain(["-client", "-transports", "ssh,plain"], clientState, {
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_OUTBOUND_BIND_ADDRESS_V4: "127.0.0.1",
  });
  try {
    await waitForLine(client, /^CMETHODS DONE$/);
    await client.closeStdin();
    const { lines, stderr } = await client.exit();
    ok(!lines.some((line) => line.startsWith("CMETHOD ssh ")), lines.join("\n"));
    ok(lines.some((line) => line.startsWith("CMETHOD plain ")), lines.join("\n"));
    ok(
      `${lines.join("\n")}\n${stderr}`.includes(
        "CMETHOD-ERROR ssh Transport 'ssh' cannot leave from TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6",
      ),
      stderr,
    );
  } finally {
    await client[Symbol.asyncDispose]();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("main.ts ssh: a bridge line without fp fails at start naming fp", async () => {
  const state = await Deno.makeTempDir();
  try {
    await using client = new TextProcess(MAIN, [
      ...["client", "--bridge", "ssh 192.0.2.1:2222 relay=4000 user=nobody"],
      ...["--socks", "127.0.0.1:0", "--state", state],
    ]);
    const status = await client.child.status;
    await client.done;
    ok(status.code !== 0, `exit code ${status.code}`);
    ok(/missing fp/.test(client.stderr), client.stderr);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts client with an ssh bridge line prints the key's CMESSAGE line once on stdout, for the server's operator", async () => {
  await requireOpenSsh();
  const state = await Deno.makeTempDir();
  try {
    const fp = `SHA256:${"A".repeat(43)}`;
    await using client = new TextProcess(MAIN, [
      ...["client", "--bridge", `ssh 127.0.0.1:9 fp=${fp} relay=4000 user=nobody`],
      ...["--socks", "127.0.0.1:0", "--state", state],
    ]);
    await client.waitFor(/SOCKS5 proxy: /);
    const lines = client.stdout.split("\n").filter((line) => line.startsWith("CMESSAGE "));
    deepStrictEqual(lines.length, 1, client.stdout);
    const key = JSON.parse(atob(lines[0]!.split(" ")[2]!));
    ok(/^ssh-ed25519 [A-Za-z0-9+/]+$/.test(key.sshKey), lines[0]);
    ok(
      client.stderr.includes(
        "[message] ssh has a message for the server: pass the next line, exactly, to the server's stdin (a pipe: a PT does not read a terminal), or append it to the file sshAuthorizedKeys in the server's state directory",
      ),
      client.stderr,
    );
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("main.ts ssh server killed by SIGKILL leaves no helper directory (with its host key) under the temporary directory (TMPDIR, /tmp by default)", async () => {
  await requireOpenSsh();
  // Run as root, the helper runs as nobody; a state directory closed to
  // others (0700) puts its files in a fresh directory under /tmp.
  ok(Deno.uid() === 0, "this test needs root (as CI runs): the helper must run as another user");
  // The system's temporary directory is the PT's TMPDIR: one of its own
  // under /tmp (searchable by the helper's user, whatever this process's
  // TMPDIR is), so that what another test or process makes under the
  // shared /tmp meanwhile is not counted.
  const tmp = await Deno.makeTempDir({ dir: "/tmp", prefix: "ptkit-ssh-tmpdir-" });
  await Deno.chmod(tmp, 0o1777);
  const helperDirs = async () => {
    const found = new Set<string>();
    for await (const entry of Deno.readDir(tmp)) {
      if (entry.name.startsWith("ptkit-helper-")) found.add(entry.name);
    }
    return found;
  };
  const state = await Deno.makeTempDir({ prefix: "ptkit-ssh-closed-" });
  await Deno.chmod(state, 0o700);
  const server = startMain(["-server", "-transports", "ssh", "-allow", "loopback"], state, {
    TMPDIR: tmp,
  });
  try {
    await smethod(server);
    const made = [...await helperDirs()];
    deepStrictEqual(made.length, 1, `helper directories made: ${made}`);
    await stop(server, "SIGKILL", state);
    await waitFor(async () => !(await helperDirs()).has(made[0]!), 15_000)
      .catch(() => ok(false, `${tmp}/${made[0]} is left behind`));
  } finally {
    await server[Symbol.asyncDispose]().catch(() => {});
    await Deno.remove(state, { recursive: true }).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
});

Deno.test("main.ts ssh server as root with a TMPDIR closed to others: the helper's files go where it can reach them, and none (no host key) is left in TMPDIR", async () => {
  await requireOpenSsh();
  ok(Deno.uid() === 0, "this test needs root (as CI runs): the helper must run as another user");
  // A TMPDIR whose parent is closed to others (TMPDIR=$HOME/tmp under a
  // 0700 home): the helper, run as nobody, cannot reach a directory made
  // there. Before, the server said 'SMETHOD-ERROR ssh Failed to spawn
  // '/usr/bin/sh': Permission denied (os error 13)' and left that
  // directory, with the host key, behind.
  const home = await Deno.makeTempDir({ dir: "/tmp", prefix: "ptkit-ssh-closed-home-" });
  await Deno.chmod(home, 0o700);
  const tmp = `${home}/tmp`;
  await Deno.mkdir(tmp, { mode: 0o1777 });
  await Deno.chmod(tmp, 0o1777);
  const state = await Deno.makeTempDir({ prefix: "ptkit-ssh-closed-" });
  await Deno.chmod(state, 0o700);
  const server = startMain(["-server", "-transports", "ssh", "-allow", "loopback"], state, {
    TMPDIR: tmp,
  });
  try {
    // With protocol version 2 an SMETHOD-ERROR goes to stderr.
    await waitForLine(server, /^SMETHODS DONE$/);
    if (!server.lines.some((line) => line.startsWith("SMETHOD ssh "))) {
      server.child.kill("SIGTERM");
      ok(false, `no SMETHOD ssh: ${(await server.exit()).stderr}`);
    }
    await stop(server, "SIGTERM", state);
    const left = [];
    for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
    deepStrictEqual(left, [], `left in TMPDIR: ${left}`);
  } finally {
    await server[Symbol.asyncDispose]().catch(() => {});
    await Deno.remove(state, { recursive: true }).catch(() => {});
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name:
    "main.ts ssh client as root: ssh and its copy of the client key stay the PT's user's (0600)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await requireOpenSsh();
    ok(Deno.uid() === 0, "this test needs root (as CI runs): ptkit drops helpers to nobody then");
    // A state directory closed to others, as tor makes it.
    const state = await Deno.makeTempDir({ prefix: "ptkit-ssh-keyfile-" });
    await Deno.chmod(state, 0o700);
    // A server that takes the connection and never answers: ssh waits.
    using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const options = { fp: `SHA256:${"A".repeat(43)}`, user: "nobody", relay: "4000" };
    const client = startClient(silent.addr.port, options, state);
    try {
      const socks = await client.cmethod("ssh");
      // The first request starts the helper (and fails: it is not up yet).
      await socks5Connect(socks, { hostname: "127.0.0.1", port: 9 }).then(
        (conn) => conn.close(),
        () => {},
      );
      const ssh = await waitFor(async () => {
        for (const pid of await descendantPids(client.child.pid)) {
          try {
            const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
            if (!cmdline.startsWith("/usr/bin/ssh\0") && !cmdline.startsWith("ssh\0")) continue;
            const environ = await Deno.readTextFile(`/proc/${pid}/environ`);
            const home = environ.split("\0").find((v) => v.startsWith("HOME="))!.slice(5);
            const status = await Deno.readTextFile(`/proc/${pid}/status`);
            return { home, uid: Number(/^Uid:\s+(\d+)/m.exec(status)![1]) };
          } catch {
            // Gone meanwhile.
          }
        }
        return undefined;
      }, 20_000);
      deepStrictEqual(ssh.uid, Deno.uid(), "ssh runs as another user");
      const key = await Deno.stat(`${ssh.home}/id_ed25519`);
      deepStrictEqual(
        { uid: key.uid, mode: (key.mode ?? 0) & 0o777 },
        { uid: Deno.uid(), mode: 0o600 },
        "the key's copy belongs to another user",
      );
      const directory = await Deno.stat(ssh.home);
      deepStrictEqual(
        { uid: directory.uid, others: (directory.mode ?? 0) & 0o077 },
        { uid: Deno.uid(), others: 0 },
      );
    } finally {
      await client[Symbol.asyncDispose]().catch(() => {});
      await Deno.remove(state, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "main.ts ssh client under tor: SOCKS requests for many servers run at most 8 ssh at once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await requireOpenSsh();
    const state = await Deno.makeTempDir({ prefix: "ptkit-ssh-many-" });
    await Deno.chmod(state, 0o700);
    // Servers that take the connection and never answer: each ssh waits (30 s).
    using silent = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    // As tor runs it: no target, each bridge's arguments in its SOCKS request.
    const client = startMain(["-client", "-transports", "ssh"], state);
    const sshProcesses = async () => {
      let count = 0;
      for (const pid of await descendantPids(client.child.pid)) {
        const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
        if (/^(\/usr\/bin\/)?ssh\0/.test(cmdline)) count++;
      }
      return count;
    };
    try {
      const socks = await client.cmethod("ssh");
      const auth = {
        username: `fp=SHA256:${"A".repeat(43)};user=nobody;relay=4000`,
        password: "\0",
      };
      const most: number[] = [];
      for (let i = 1; i <= 24; i++) {
        // Each request names another bridge: another ssh helper.
        const bridge = { hostname: `127.0.1.${i}`, port: silent.addr.port };
        await socks5Connect(socks, bridge, auth).then((conn) => conn.close(), () => {});
        most.push(await sshProcesses());
      }
      ok(most.every((count) => count <= 8), `ssh processes after each request: ${most}`);
      ok(most.at(-1)! > 0, "no ssh ran");
      const directories = [];
      for await (const entry of Deno.readDir(`${state}/ssh-helper`)) directories.push(entry.name);
      ok(directories.length <= 8, `helper directories: ${directories.length}`);
      await stop(client, "SIGTERM", state);
      assertLogsClean(client);
    } finally {
      await client[Symbol.asyncDispose]().catch(() => {});
      await Deno.remove(state, { recursive: true }).catch(() => {});
    }
  },
});
