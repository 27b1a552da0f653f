// Copyright the ptkit authors. MIT license.
// The spec's SSH key-based free transport against Debian's OpenSSH
// (openssh-server, openssh-client): keys, the key relay over signals,
// 16 MiB each way, restarts, refusals, and no helper left behind.

import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
} from "node:assert";
import { connect, type Socket } from "node:net";
import { createConnector } from "../client.ts";
import { type ConnectionLimits, proxy, type ProxyTarget } from "../server.ts";
import { tcpDialer } from "../net/net_conn.ts";
import { FileStore } from "../ipc/managed/_file_store.ts";
import type { SignalPipe } from "../transports/transport.ts";
import {
  parseSshClientConfig,
  parseSshKeyMessage,
  ssh,
  SSH_AUTHORIZED_KEYS,
  SSH_CLIENT_KEY,
  SSH_HOST_KEY,
  SSH_RELAY_PORT,
  sshKeyMessage,
  sshRelayHost,
} from "../transports/ssh/_ssh.ts";
import { generateOpenSshKey, publicKeyOfPrivate } from "../transports/ssh/_openssh_key.ts";
import { echoServer, hashOf, hashReadable, pseudoRandomChunks, writeAll } from "./_util.ts";
import {
  descendantPids,
  helperProcesses,
  requireProgram,
  run,
  stillRunning,
  waitFor,
} from "./ssh_util.ts";

Deno.test("ssh keys: ssh-keygen reads ptkit's private key, public key and fingerprint", async () => {
  await requireProgram("ssh-keygen", "openssh-client");
  const dir = await Deno.makeTempDir();
  try {
    for (let i = 0; i < 8; i++) {
      const key = generateOpenSshKey(`k${i}`);
      await Deno.writeTextFile(`${dir}/id`, key.privateKey, { mode: 0o600 });
      const pub = await run("ssh-keygen", ["-y", "-f", `${dir}/id`]);
      assertEquals(pub.trim(), key.publicKey);
      const fp = await run("ssh-keygen", ["-l", "-f", `${dir}/id`]);
      assertEquals(fp.split(" ")[1], key.fingerprint);
      assertEquals(key.publicKey.startsWith(publicKeyOfPrivate(key.privateKey)), true);
      await Deno.remove(`${dir}/id`);
    }
    // And ptkit reads ssh-keygen's keys.
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "x", "-f", `${dir}/gen`]);
    const pub = (await Deno.readTextFile(`${dir}/gen.pub`)).trim();
    assertEquals(publicKeyOfPrivate(await Deno.readTextFile(`${dir}/gen`)), pub.replace(/ x$/, ""));
    const fp = await run("ssh-keygen", ["-l", "-f", `${dir}/gen.pub`]);
    assertEquals(
      JSON.parse(sshKeyMessage(pub)).fingerprint,
      fp.split(" ")[1],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ssh client options: host is a name or an IP address; a user, a port or a URL in it is refused, naming host", () => {
  const base = { fp: `SHA256:${"A".repeat(43)}`, user: "nobody", relay: "40123" };
  for (
    const [host, expected] of [
      ["bridge.example.org", "bridge.example.org"],
      ["203.0.113.7", "203.0.113.7"],
      ["2001:db8::7", "2001:db8::7"],
      ["[2001:db8::7]", "2001:db8::7"],
    ] as const
  ) {
    assertEquals(parseSshClientConfig({ ...base, host }).host, expected);
  }
  // ssh would read these as user@host, a name with a port, a URI or an option.
  for (
    const host of [
      "alice@203.0.113.7",
      "203.0.113.7:22",
      "bridge.example.org:22",
      "ssh://203.0.113.7",
      "-oProxyCommand=x",
      "[bridge.example.org]",
      "a b",
      "",
    ]
  ) {
    let error: unknown;
    try {
      parseSshClientConfig({ ...base, host });
    } catch (caught) {
      error = caught;
    }
    assert(error instanceof TypeError, `host ${JSON.stringify(host)} was taken`);
    assert(/host/.test(error.message), error.message);
  }
});

Deno.test("ssh key messages: malformed, truncated and mismatched input is refused", () => {
  const key = generateOpenSshKey();
  for (
    const bad of [
      "",
      "ssh-rsa AAAAB3NzaC1yc2E",
      "ssh-ed25519 !!!",
      "ssh-ed25519 " + key.publicKey.split(" ")[1]!.slice(0, 40),
      '{"sshKey": 5}',
      '{"sshKey": "' + key.publicKey + '", "fingerprint": "SHA256:' + "A".repeat(43) + '"}',
      "{",
      "x".repeat(5000),
    ]
  ) {
    let threw = false;
    try {
      parseSshKeyMessage(bad);
    } catch (error) {
      threw = error instanceof SyntaxError;
    }
    assert(threw, `accepted ${JSON.stringify(bad.slice(0, 40))}`);
  }
});

Deno.test("ssh: a damaged stored key (client sshKey, server sshHostKey) fails naming its file, and is left as it is", async () => {
  const root = await Deno.makeTempDir({ prefix: "ptkit-ssh-damaged-" });
  try {
    const store = new FileStore(root);
    const key = generateOpenSshKey();
    // Cut short, as a full disk or a bad copy leaves it.
    const damaged = key.privateKey.slice(0, 200);
    const options = { fp: key.fingerprint, user: "nobody", relay: "40123" };
    for (
      const [name, start] of [
        [SSH_CLIENT_KEY, () => ssh.client(options, { local: store })],
        [SSH_HOST_KEY, () => ssh.server({}, { local: store })],
      ] as const
    ) {
      await store.set(name, damaged);
      const error = await Promise.resolve().then(start).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      assert(error instanceof SyntaxError, String(error));
      // The operator opens that file: its path is said, and what to do.
      assert(error.message.includes(`${root}/${name}`), error.message);
      assert(/not replaced/.test(error.message), error.message);
      assertEquals(await store.get(name), damaged);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("ssh server: a damaged stored relay port (sshRelayPort) fails naming its file, and is left as it is", async () => {
  const root = await Deno.makeTempDir({ prefix: "ptkit-ssh-damaged-port-" });
  try {
    const store = new FileStore(root);
    // Emptied by a full disk, cut short, edited by hand: each replaced by a
    // new port would refuse every client configured with relay=.
    for (const damaged of ["", "401x", "70000", "0", "-1", "4.5"]) {
      await store.set(SSH_RELAY_PORT, damaged);
      const error = await Promise.resolve().then(() => ssh.server({}, { local: store })).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      assert(error instanceof SyntaxError, `${JSON.stringify(damaged)}: ${error}`);
      assert(error.message.includes(`${root}/${SSH_RELAY_PORT}`), error.message);
      assert(/not replaced/.test(error.message), error.message);
      assertEquals(await store.get(SSH_RELAY_PORT), damaged);
      // Nothing else is written by a start it refuses (no new host key).
      assertEquals(await store.get(SSH_HOST_KEY), undefined);
    }
    // A port as ptkit writes it, or with the newline an editor adds, is taken.
    for (const kept of ["40123", "40123\n"]) {
      await store.set(SSH_RELAY_PORT, kept);
      await ssh.server({}, { local: store });
      assertEquals(await store.get(SSH_RELAY_PORT), kept);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** Free mode's target: each connection's own destination. */
const toDestination: ProxyTarget = async (conn) => {
  const destination = await conn.destination;
  if (destination === undefined) throw new Error("no destination");
  return await tcpDialer(destination);
};

/** A pipe the test plays the operator on: messages are collected / fed. */
function operatorPipe(): { pipe: SignalPipe; sent: string[]; feed: (text: string) => void } {
  const sent: string[] = [];
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const readable = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  return {
    pipe: {
      readable,
      writable: new WritableStream({
        write: (chunk) => void sent.push(new TextDecoder().decode(chunk)),
      }),
    },
    sent,
    feed: (text) => controller.enqueue(new TextEncoder().encode(text)),
  };
}

/** What {@linkcode withSshBench} gives a test. */
interface SshBench {
  readonly root: string;
  readonly echo: ReturnType<typeof echoServer>;
  /** The helpers' log lines, `severity message`. */
  readonly logs: string[];
  readonly onHelperLog: (severity: string, message: string) => void;
  readonly serverStore: FileStore;
  readonly clientStore: FileStore;
}

/**
 * Run `test` with a directory holding a server's and a client's stores, an
 * echo target and the helpers' log (printed when it fails); all removed after.
 */
async function withSshBench(prefix: string, test: (bench: SshBench) => Promise<void>) {
  await requireProgram("sshd", "openssh-server");
  await requireProgram("ssh", "openssh-client");
  const root = await Deno.makeTempDir({ prefix });
  // Run as root, ptkit runs helpers as nobody, who must reach their files.
  await Deno.chmod(root, 0o711);
  await Deno.mkdir(`${root}/server`, { recursive: true });
  await Deno.mkdir(`${root}/client`, { recursive: true });
  const logs: string[] = [];
  const echo = echoServer();
  try {
    await test({
      root,
      echo,
      logs,
      onHelperLog: (severity, message) => logs.push(`${severity} ${message}`),
      serverStore: new FileStore(`${root}/server`),
      clientStore: new FileStore(`${root}/client`),
    });
  } catch (error) {
    console.error(logs.join("\n"));
    throw error;
  } finally {
    await echo.close();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/**
 * An ssh server on loopback for `bench` (relaying to the destination each
 * connection names), client keys given through the returned operator pipe.
 */
async function sshServer(bench: SshBench, limits?: ConnectionLimits) {
  const operator = operatorPipe();
  const server = await proxy(ssh, {}, {
    hostname: "127.0.0.1",
    port: 0,
    target: toDestination,
    env: { local: bench.serverStore, signals: operator.pipe },
    helperDirectory: `${bench.root}/server-helper`,
    ...(limits === undefined ? {} : { limits }),
    onHelperLog: bench.onHelperLog,
  });
  return { server, operator };
}

/** A client of `server` on the bench's client store, announcing its key on its own pipe. */
async function sshClient(bench: SshBench, server: { clientOptions: Record<string, string> }) {
  const clientOperator = operatorPipe();
  const connector = await createConnector(ssh, server.clientOptions, {
    env: { local: bench.clientStore, signals: clientOperator.pipe },
    helperDirectory: `${bench.root}/client-helper`,
    onHelperLog: bench.onHelperLog,
  });
  return { connector, clientOperator };
}

Deno.test({
  name:
    "ssh end to end: key relayed on signals, 16 MiB each way, restart keeps keys, no helper left",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-test-", async (bench) => {
      const { root, echo, logs, onHelperLog, serverStore, clientStore } = bench;
      const serverOperator = operatorPipe();
      const startServer = (signals?: SignalPipe) =>
        proxy(ssh, {}, {
          hostname: "127.0.0.1",
          port: 0,
          target: toDestination,
          env: { local: serverStore, ...(signals === undefined ? {} : { signals }) },
          helperDirectory: `${root}/server-helper`,
          onHelperLog,
        });
      let server = await startServer(serverOperator.pipe);
      const clientOperator = operatorPipe();
      let connector = await createConnector(ssh, server.clientOptions, {
        env: { local: clientStore, signals: clientOperator.pipe },
        helperDirectory: `${root}/client-helper`,
        onHelperLog,
      });
      // A new client key: stored and announced.
      assertEquals(clientOperator.sent.length, 1);
      assert((await clientStore.get(SSH_CLIENT_KEY))?.includes("OPENSSH PRIVATE KEY"));
      const echoAt = { hostname: "127.0.0.1", port: echo.port };
      const destination = { hostname: "127.0.0.1", port: server.addr.port, destination: echoAt };
      // Not accepted yet: the connection fails, ssh is retried.
      await assertRejects(() => connector.dial(destination));
      await waitFor(() => logs.some((l) => /Permission denied/.test(l)), 20_000);
      // The operator relays the key; within a retry (10 s) the tunnel is up.
      serverOperator.feed(clientOperator.sent[0]!);
      const conn = await waitFor(() => connector.dial(destination).catch(() => undefined), 30_000);
      const size = Number(Deno.env.get("SSH_TEST_SIZE") ?? 16 * 1024 * 1024);
      const [, back] = await Promise.all([
        writeAll(conn.writable, pseudoRandomChunks(size, 5)),
        hashReadable(conn.readable),
      ]);
      assertEquals(back.bytes, size);
      assertEquals(back.digest(), hashOf(pseudoRandomChunks(size, 5)));
      conn.close();
      assert(logs.every((l) => !/127\.0\.0\.1|port \d/.test(l)), "a log line shows an address");

      // Restart both on the same state: no relaying again.
      await connector.close();
      await server.close();
      assertEquals(await helperProcesses(root), []);
      server = await startServer();
      const args = server.clientOptions;
      connector = await createConnector(ssh, args, {
        env: { local: clientStore, signals: operatorPipe().pipe },
        helperDirectory: `${root}/client-helper`,
        onHelperLog,
      });
      const again = await waitFor(
        () =>
          connector.dial({ hostname: "127.0.0.1", port: server.addr.port, destination: echoAt })
            .catch(() => undefined),
        30_000,
      );
      const [, hash] = await Promise.all([
        writeAll(again.writable, pseudoRandomChunks(65536, 9)),
        hashReadable(again.readable),
      ]);
      assertEquals(hash.digest(), hashOf(pseudoRandomChunks(65536, 9)));
      again.close();

      // The client key cannot get a shell or run a command.
      const key = await clientStore.get(SSH_CLIENT_KEY);
      await Deno.writeTextFile(`${root}/id`, key!, { mode: 0o600 });
      const attempt = new Deno.Command("ssh", {
        args: [
          "-F",
          "none",
          "-i",
          `${root}/id`,
          "-o",
          "BatchMode=yes",
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          `UserKnownHostsFile=/dev/null`,
          "-o",
          "IdentitiesOnly=yes",
          "-p",
          String(server.addr.port),
          "-l",
          args.user!,
          "127.0.0.1",
          "echo",
          "ptkit-shell-ran",
        ],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
      });
      const result = await attempt.output();
      const output = new TextDecoder().decode(result.stdout) +
        new TextDecoder().decode(result.stderr);
      assert(result.code !== 0, "ssh ran a command");
      assert(!output.includes("ptkit-shell-ran"), "ssh ran a command");

      await connector.close();
      await server.close();
      assertEquals(await helperProcesses(root), []);
    });
  },
});

Deno.test({
  name: "ssh refusals: a wrong host key fingerprint never connects, and is logged",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await requireProgram("sshd", "openssh-server");
    const root = await Deno.makeTempDir({ prefix: "ptkit-ssh-test-" });
    // Run as root, ptkit runs helpers as nobody, who must reach their files.
    await Deno.chmod(root, 0o711);
    const echo = echoServer();
    const logs: string[] = [];
    try {
      const serverStore = new FileStore(`${root}/server`);
      await Deno.mkdir(`${root}/server`);
      await Deno.mkdir(`${root}/client`);
      const clientStore = new FileStore(`${root}/client`);
      const client = operatorPipe();
      const server = await proxy(ssh, {}, {
        hostname: "127.0.0.1",
        port: 0,
        target: toDestination,
        env: { local: serverStore },
        helperDirectory: `${root}/server-helper`,
      });
      const wrong = { ...server.clientOptions, fp: generateOpenSshKey().fingerprint };
      const connector = await createConnector(ssh, wrong, {
        env: { local: clientStore, signals: client.pipe },
        helperDirectory: `${root}/client-helper`,
        onHelperLog: (severity, message) => logs.push(`${severity} ${message}`),
      });
      const at = {
        hostname: "127.0.0.1",
        port: server.addr.port,
        destination: { hostname: "127.0.0.1", port: echo.port },
      };
      // The host key is checked before the client's key: no relaying needed.
      await assertRejects(() => connector.dial(at));
      await waitFor(() => logs.some((l) => /Host key verification failed/.test(l)), 20_000);
      await assertRejects(() => connector.dial(at));
      assertEquals(echo.accepted(), 0);
      await connector.close();
      await server.close();
      assertEquals(await helperProcesses(root), []);
    } finally {
      await echo.close();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "ssh refusals: a host key that is not the pinned one (fp= alone, or with hostkey=) is said as such in one line, without ssh's known_hosts advice (a file ptkit rewrites)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-test-", async (bench) => {
      const { server } = await sshServer(bench);
      // Another server's key, as a man in the middle (or a server whose
      // state was lost) would offer: pinned by fingerprint alone, and by
      // the key itself (ssh then knows a key for the host, and says it changed).
      const other = generateOpenSshKey();
      const pins = [
        { ...server.clientOptions, fp: other.fingerprint },
        { ...server.clientOptions, fp: other.fingerprint, hostkey: other.publicKey },
      ];
      try {
        for (const [i, pin] of pins.entries()) {
          const logs: string[] = [];
          const connector = await createConnector(ssh, pin, {
            env: { local: bench.clientStore, signals: operatorPipe().pipe },
            helperDirectory: `${bench.root}/client-helper-${i}`,
            onHelperLog: (severity, message) => logs.push(`${severity} ${message}`),
          });
          try {
            const at = {
              hostname: "127.0.0.1",
              port: server.addr.port,
              destination: { hostname: "127.0.0.1", port: bench.echo.port },
            };
            await assertRejects(() => connector.dial(at));
            await waitFor(() => logs.some((l) => /Host key verification failed/.test(l)), 20_000);
            const said = logs.join("\n");
            assert(
              logs.some((l) =>
                /^warning ssh: the server's host key is not the pinned one \(fp=\)/.test(l)
              ),
              said,
            );
            // Advice that does not apply (ptkit rewrites that file at each
            // start), and a line that reads as if no key were pinned.
            assert(!/known_hosts|ssh-keygen|No ED25519 host key is known|@@@/.test(said), said);
            assertEquals(bench.echo.accepted(), 0);
          } finally {
            await connector.close();
          }
        }
      } finally {
        await server.close();
      }
      assertEquals(await helperProcesses(bench.root), []);
    });
  },
});

Deno.test({
  name:
    "ssh client: why ssh cannot reach its server (connection refused) is a warning, as the SOCKS failure says",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-test-", async (bench) => {
      // A port nobody listens on: the server is gone.
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = closed.addr.port;
      closed.close();
      const connector = await createConnector(ssh, {
        fp: generateOpenSshKey().fingerprint,
        user: "nobody",
        relay: "40123",
      }, {
        env: { local: bench.clientStore, signals: operatorPipe().pipe },
        helperDirectory: `${bench.root}/client-helper`,
        onHelperLog: bench.onHelperLog,
      });
      try {
        const at = {
          hostname: "127.0.0.1",
          port,
          destination: { hostname: "192.0.2.1", port: 80 },
        };
        const failure = await connector.dial(at).then(() => undefined, (error) => error as Error);
        assert(failure?.message.includes("its own warnings say why"), failure?.message);
        await waitFor(() => bench.logs.some((l) => /Connection refused/.test(l)), 20_000);
        const said = bench.logs.filter((l) => /Connection refused/.test(l));
        assert(said.every((l) => l.startsWith("warning ")), said.join("\n"));
        assert(said.every((l) => !l.includes(String(port))), said.join("\n"));
        // ssh's own 'ssh: connect to host ...' is not prefixed 'ssh: ' again.
        assert(said.every((l) => !l.includes("ssh: ssh:")), said.join("\n"));
      } finally {
        await connector.close();
      }
      assertEquals(await helperProcesses(bench.root), []);
    });
  },
});

Deno.test({
  name:
    "ssh client: a forward the server refuses (a wrong relay=) is said at warning, and the failed dial says the helper did not open it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-test-", async (bench) => {
      const { server } = await sshServer(bench);
      // The client's key, authorized on the server already.
      const key = generateOpenSshKey("client");
      await bench.clientStore.set(SSH_CLIENT_KEY, key.privateKey);
      await bench.serverStore.set(SSH_AUTHORIZED_KEYS, `${key.publicKey}\n`);
      const relay = Number(server.clientOptions.relay);
      const connector = await createConnector(ssh, {
        ...server.clientOptions,
        relay: String(relay === 65535 ? relay - 1 : relay + 1),
      }, {
        env: { local: bench.clientStore, signals: operatorPipe().pipe },
        helperDirectory: `${bench.root}/client-helper`,
        onHelperLog: bench.onHelperLog,
      });
      try {
        const at = {
          hostname: "127.0.0.1",
          port: server.addr.port,
          destination: { hostname: "127.0.0.1", port: bench.echo.port },
        };
        // The first dial starts ssh; later ones reach its SOCKS5 proxy.
        const failure = await waitFor(
          () =>
            connector.dial(at).then(
              (conn) => {
                conn.close();
                return new Error("the dial went through");
              },
              (error: Error) => error.message.includes("not up") ? undefined : error,
            ),
          20_000,
        );
        assert(/helper's SOCKS5 proxy did not open/.test(failure.message), failure.message);
        await waitFor(() => bench.logs.some((l) => /open failed/.test(l)), 10_000);
        const said = bench.logs.filter((l) => /open failed/.test(l));
        assert(said.every((l) => l.startsWith("warning ")), said.join("\n"));
        assertEquals(bench.echo.accepted(), 0);
      } finally {
        await connector.close();
        await server.close();
      }
      assertEquals(await helperProcesses(bench.root), []);
    });
  },
});

Deno.test({
  name: "ssh server on [::] takes IPv4 clients too (sshd's own sockets are IPv6-only)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await requireProgram("sshd", "openssh-server");
    const root = await Deno.makeTempDir({ prefix: "ptkit-ssh-dual-" });
    await Deno.chmod(root, 0o711);
    await Deno.mkdir(`${root}/server`);
    try {
      await using server = await proxy(ssh, {}, {
        hostname: "::",
        port: 0,
        target: toDestination,
        env: { local: new FileStore(`${root}/server`) },
        helperDirectory: `${root}/server-helper`,
      });
      for (const hostname of ["127.0.0.1", "::1"]) {
        const banner = await waitFor(async () => {
          try {
            using conn = await Deno.connect({ hostname, port: server.addr.port });
            const buffer = new Uint8Array(64);
            const n = await conn.read(buffer);
            return n === null ? undefined : new TextDecoder().decode(buffer.subarray(0, n));
          } catch {
            return undefined;
          }
        }, 15_000);
        assert(banner.startsWith("SSH-2.0-"), `${hostname}: ${banner}`);
      }
    } finally {
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "ssh server takes a client key an operator appends to its state by hand (the CMESSAGE line as printed), and skips a bad line with a notice",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-hand-", async (bench) => {
      const { root, echo, onHelperLog, serverStore } = bench;
      const notices: string[] = [];
      // Under tor: nothing relays the client's CMESSAGE to the server PT.
      const server = await proxy(ssh, {}, {
        hostname: "127.0.0.1",
        port: 0,
        target: toDestination,
        env: { local: serverStore, onNotice: (message) => notices.push(message) },
        helperDirectory: `${root}/server-helper`,
        onHelperLog,
      });
      const { connector, clientOperator } = await sshClient(bench, server);
      const destination = {
        hostname: "127.0.0.1",
        port: server.addr.port,
        destination: { hostname: "127.0.0.1", port: echo.port },
      };
      await assertRejects(() => connector.dial(destination));
      // The operator's hand: the line from the client's tor log, as it is,
      // after a line that is no key.
      const line = `CMESSAGE ssh ${btoa(clientOperator.sent[0]!)}`;
      await serverStore.set("sshAuthorizedKeys", `not a key\n${line}\n`);
      const conn = await waitFor(() => connector.dial(destination).catch(() => undefined), 40_000);
      const [, back] = await Promise.all([
        writeAll(conn.writable, pseudoRandomChunks(4096, 3)),
        hashReadable(conn.readable),
      ]);
      assertEquals(back.digest(), hashOf(pseudoRandomChunks(4096, 3)));
      conn.close();
      assertEquals(notices.filter((n) => /line 1 of the stored client keys/.test(n)).length, 1);
      assert(notices.every((n) => !n.includes("not a key")), "a notice quotes the line");
      // What the operator wrote stays as written.
      assertEquals(await serverStore.get("sshAuthorizedKeys"), `not a key\n${line}\n`);
      await connector.close();
      await server.close();
      assertEquals(await helperProcesses(root), []);
    });
  },
});

Deno.test({
  name:
    "ssh: state directories whose path holds a space or a percent sign (macOS's 'Application Support', a user's choice) work on both sides",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // ssh and sshd split option values at spaces (IdentityFile,
    // UserKnownHostsFile, AuthorizedKeysFile) and expand % tokens in them.
    await withSshBench("ptkit-ssh pt state %d-", async (bench) => {
      const { root, echo } = bench;
      const { server, operator } = await sshServer(bench);
      const { connector, clientOperator } = await sshClient(bench, server);
      operator.feed(clientOperator.sent[0]!);
      try {
        const conn = await waitFor(
          () =>
            connector.dial({
              hostname: "127.0.0.1",
              port: server.addr.port,
              destination: { hostname: "127.0.0.1", port: echo.port },
            }).catch(() => undefined),
          40_000,
        );
        const echoed = await echoes(conn);
        conn.close();
        assert(echoed, "the tunnel does not echo");
      } finally {
        await connector.close();
        await server.close();
      }
      assertEquals(await helperProcesses(root), []);
    });
  },
});

Deno.test({
  name:
    "ssh server: a kept relay port another program took is said (every client's relay= is then wrong), never silently replaced",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-relay-", async (bench) => {
      const { root, serverStore, onHelperLog } = bench;
      // The port of an earlier run, taken meanwhile.
      using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const kept = taken.addr.port;
      await serverStore.set(SSH_RELAY_PORT, String(kept));
      const notices: string[] = [];
      const server = await proxy(ssh, {}, {
        hostname: "127.0.0.1",
        port: 0,
        target: toDestination,
        env: { local: serverStore, onNotice: (message) => notices.push(message) },
        helperDirectory: `${root}/server-helper`,
        onHelperLog,
      });
      try {
        const now = server.clientOptions.relay!;
        assert(now !== String(kept), "the taken port is still given");
        assertEquals(await serverStore.get(SSH_RELAY_PORT), now);
        const said = notices.filter((n) => n.includes(`relay=${now}`));
        assertEquals(said.length, 1, notices.join("\n"));
        assert(said[0]!.includes(`relay=${kept}`), said[0]);
      } finally {
        await server.close();
      }
      assertEquals(await helperProcesses(root), []);
    });
  },
});

/** The pid of the sshd listener whose configuration is under `directory`, if one runs. */
async function sshdListener(directory: string): Promise<number | undefined> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(`${directory}/sshd_config`) && cmdline.includes("[listener]")) {
        return Number(entry.name);
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

Deno.test({
  name:
    "ssh server: an sshd listener killed while a tunnel is open (the OOM killer, an admin) is started again at once; the sessions it leaves are ended, none left behind",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-listener-", async (bench) => {
      const { root, echo, onHelperLog, clientStore, serverStore } = bench;
      // The client's key is authorized before the server starts.
      const key = generateOpenSshKey();
      await clientStore.set(SSH_CLIENT_KEY, key.privateKey);
      await serverStore.set(SSH_AUTHORIZED_KEYS, `${key.publicKey}\n`);
      const { server } = await sshServer(bench);
      const connector = await createConnector(ssh, server.clientOptions, {
        env: { local: clientStore, signals: operatorPipe().pipe },
        helperDirectory: `${root}/client-helper`,
        onHelperLog,
      });
      const destination = {
        hostname: "127.0.0.1",
        port: server.addr.port,
        destination: { hostname: "127.0.0.1", port: echo.port },
      };
      let sessions: number[] = [];
      try {
        const held = await waitFor(
          () => connector.dial(destination).catch(() => undefined),
          40_000,
        );
        assert(await echoes(held), "the tunnel does not echo");
        const listener = await sshdListener(`${root}/server-helper`);
        assert(listener !== undefined, "no sshd listener found");
        // The per-connection processes (they start sessions of their own).
        sessions = await descendantPids(listener);
        assert(sessions.length > 0, "no sshd session process found");
        Deno.kill(listener, "SIGKILL");
        // A new listener, while the held tunnel's client is still there;
        // the sessions the dead one left are ended (nothing else tracks them).
        const again = await waitFor(async () => {
          const pid = await sshdListener(`${root}/server-helper`);
          return pid !== undefined && pid !== listener ? pid : undefined;
        }, 20_000);
        assert(again !== listener);
        await waitFor(async () => (await stillRunning(sessions)).length === 0, 10_000);
        held.close();
        // Clients get through again (their ssh reconnects).
        const conn = await waitFor(
          () => connector.dial(destination).catch(() => undefined),
          40_000,
        );
        const echoed = await echoes(conn);
        conn.close();
        assert(echoed, "no tunnel after the restart");
      } finally {
        await connector.close();
        await server.close();
      }
      assertEquals(await helperProcesses(root), []);
      assertEquals(await stillRunning(sessions), []);
    });
  },
});

Deno.test({
  name:
    "ssh server: a client key relayed after the start still logs in once sshd was started again (its authorized_keys is not the one of the first start)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-rekey-", async (bench) => {
      const { root, echo } = bench;
      const { server, operator } = await sshServer(bench);
      const { connector, clientOperator } = await sshClient(bench, server);
      operator.feed(clientOperator.sent[0]!);
      const destination = {
        hostname: "127.0.0.1",
        port: server.addr.port,
        destination: { hostname: "127.0.0.1", port: echo.port },
      };
      try {
        const first = await waitFor(
          () => connector.dial(destination).catch(() => undefined),
          40_000,
        );
        const echoed = await echoes(first);
        first.close();
        assert(echoed, "the tunnel does not echo");
        const listener = await sshdListener(`${root}/server-helper`);
        assert(listener !== undefined, "no sshd listener found");
        const before = bench.logs.length;
        Deno.kill(listener, "SIGKILL");
        await waitFor(async () => {
          const pid = await sshdListener(`${root}/server-helper`);
          return pid !== undefined && pid !== listener;
        }, 20_000);
        const conn = await waitFor(
          () => connector.dial(destination).catch(() => undefined),
          40_000,
        );
        const again = await echoes(conn);
        conn.close();
        assert(again, "no tunnel after the restart");
        assert(
          !bench.logs.slice(before).some((l) => /Permission denied \(publickey\)/.test(l)),
          "the restarted sshd refused the key",
        );
      } finally {
        await connector.close();
        await server.close();
      }
      assertEquals(await helperProcesses(root), []);
    });
  },
});

/** Whether `conn` echoes three bytes (false when it closes first, or after 5 s). */
async function echoes(
  conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
): Promise<boolean> {
  const echoed = (async () => {
    const writer = conn.writable.getWriter();
    writer.write(new Uint8Array([7, 8, 9])).catch(() => {});
    writer.releaseLock();
    const reader = conn.readable.getReader();
    let got = 0;
    try {
      while (got < 3) {
        const { value, done } = await reader.read();
        if (done) break;
        got += value.length;
      }
    } catch {
      // Reset: not echoed.
    } finally {
      reader.releaseLock();
    }
    return got >= 3;
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 5_000));
  try {
    return await Promise.race([echoed, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name:
    "ssh server: each client key is its own source in the per-source limits, and a key cannot open another key's relay address",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-sources-", async (bench) => {
      const { root, echo, onHelperLog, clientStore } = bench;
      const { server, operator: serverOperator } = await sshServer(bench, {
        maxConnectionsPerSource: 3,
      });
      await Deno.mkdir(`${root}/client2`);
      const connectors = [];
      for (const [i, local] of [clientStore, new FileStore(`${root}/client2`)].entries()) {
        const operator = operatorPipe();
        connectors.push(
          await createConnector(ssh, server.clientOptions, {
            env: { local, signals: operator.pipe },
            helperDirectory: `${root}/client-helper-${i}`,
            onHelperLog,
          }),
        );
        serverOperator.feed(operator.sent[0]!);
      }
      const [a, b] = connectors as [typeof connectors[0], typeof connectors[0]];
      const destination = {
        hostname: "127.0.0.1",
        port: server.addr.port,
        destination: { hostname: "127.0.0.1", port: echo.port },
      };
      // Client A takes its whole share: three connections, held open.
      // Closed on failure too: the echo target waits for its connections.
      const held: { close(): void }[] = [];
      try {
        const first = await waitFor(() => a.dial(destination).catch(() => undefined), 40_000);
        held.push(first);
        assert(await echoes(first), "A's first connection does not echo");
        for (let i = 0; i < 2; i++) {
          const conn = await a.dial(destination);
          assert(await echoes(conn), `A's connection ${i + 2} does not echo`);
          held.push(conn);
        }
        const fourth = await a.dial(destination);
        const refused = !(await echoes(fourth));
        fourth.close();
        assert(refused, "A's fourth connection went past its share");
        // Client B is another source: its connections go through.
        const other = await waitFor(() => b.dial(destination).catch(() => undefined), 40_000);
        const accepted = await echoes(other);
        other.close();
        assert(accepted, "B was refused: it shares A's source");

        // A's key cannot open B's relay address; 127.0.0.1, where clients of
        // earlier versions go (all of them one source), it can.
        const keyA = await clientStore.get(SSH_CLIENT_KEY);
        await Deno.writeTextFile(`${root}/id`, keyA!, { mode: 0o600 });
        const relay = server.clientOptions.relay!;
        const keyB = publicKeyOfPrivate(
          (await new FileStore(`${root}/client2`).get(SSH_CLIENT_KEY))!,
        );
        for (const [host, allowed] of [[sshRelayHost(keyB), false], ["127.0.0.1", true]] as const) {
          const attempt = await new Deno.Command("ssh", {
            args: [
              ...["-F", "none", "-i", `${root}/id`, "-o", "BatchMode=yes"],
              ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
              ...["-o", "IdentitiesOnly=yes", "-p", String(server.addr.port)],
              ...["-l", server.clientOptions.user!, "-W", `${host}:${relay}`, "127.0.0.1"],
            ],
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          }).output();
          const said = new TextDecoder().decode(attempt.stderr);
          const refused = /administratively prohibited|open failed/.test(said);
          assertEquals(refused, !allowed, `A's key and ${host}: ${said}`);
        }
      } finally {
        for (const conn of held) conn.close();
        for (const connector of connectors) await connector.close();
        await server.close();
      }
      assertEquals(await helperProcesses(root), []);
    });
  },
});

/** A store in memory whose reads of the stored client keys can be made to fail once. */
function flakyStore() {
  const values = new Map<string, string>();
  const store = {
    failNextKeysRead: false,
    values,
    get: (key: string) => {
      if (key === "sshAuthorizedKeys" && store.failNextKeysRead) {
        store.failNextKeysRead = false;
        return Promise.reject(
          new Error("Cannot read state file: it was replaced while being opened"),
        );
      }
      return Promise.resolve(values.get(key));
    },
    set: (key: string, value: string) => {
      values.set(key, value);
      return Promise.resolve();
    },
  };
  return store;
}

/** Start an ssh server side's helper (its stored keys are then read again every 3 s). */
async function startHelper(side: Awaited<ReturnType<typeof ssh.server>>, dir: string) {
  await side.helper!.process({
    directory: dir,
    listen: { hostname: "127.0.0.1", port: 1 },
    relay: { hostname: "127.0.0.1", port: 5 },
    user: "nobody",
    writeFile: () => Promise.resolve(),
  });
}

Deno.test({
  name:
    "ssh server: limits out of range are refused as such (RangeError), and the sshd started meanwhile is stopped",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-limits-", async (bench) => {
      await assertRejects(
        () =>
          proxy(ssh, {}, {
            hostname: "127.0.0.1",
            port: 0,
            target: toDestination,
            env: { local: bench.serverStore },
            helperDirectory: `${bench.root}/server-helper`,
            limits: { maxConnections: 0 },
          }),
        (error: unknown) => error instanceof RangeError && /maxConnections/.test(error.message),
      );
      assertEquals(await helperProcesses(bench.root), []);
    });
  },
});

Deno.test({
  name:
    "ssh server: the temporary directory made for sshd when no helperDirectory is given (host key, configuration) is removed when the listener closes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-tmpdir-", async (bench) => {
      // Temporary directories of this test only: TMPDIR is read at each one made.
      const tmp = `${bench.root}/tmp`;
      await Deno.mkdir(tmp, { mode: 0o711 });
      await Deno.chmod(tmp, 0o711);
      const before = Deno.env.get("TMPDIR");
      Deno.env.set("TMPDIR", tmp);
      try {
        const server = await proxy(ssh, {}, {
          hostname: "127.0.0.1",
          port: 0,
          target: toDestination,
          env: { local: bench.serverStore },
        });
        const made = [];
        for await (const entry of Deno.readDir(tmp)) made.push(entry.name);
        assert(made.some((name) => name.startsWith("ptkit-helper-")), made.join(" "));
        await server.close();
      } finally {
        if (before === undefined) Deno.env.delete("TMPDIR");
        else Deno.env.set("TMPDIR", before);
      }
      const left = [];
      for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
      assertEquals(left, []);
      assertEquals(await helperProcesses(bench.root), []);
    });
  },
});

Deno.test("ssh: listen and createConnector resolve when nothing reads their signals yet (the messages wait in the pipe), as an application wiring both sides in one process does", async () => {
  await withSshBench("ptkit-ssh-unread-", async (bench) => {
    // Both awaited the write of their message: the server's proxy() never
    // resolved until something read its signals, so the client that would
    // read it could not be made after it.
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    const toServer = new TransformStream<Uint8Array, Uint8Array>();
    await using server = await proxy(ssh, {}, {
      hostname: "127.0.0.1",
      port: 0,
      target: toDestination,
      env: {
        local: bench.serverStore,
        signals: { readable: toServer.readable, writable: toClient.writable },
      },
      helperDirectory: `${bench.root}/server-helper`,
      onHelperLog: bench.onHelperLog,
    });
    await using connector = await createConnector(ssh, server.clientOptions, {
      env: {
        local: bench.clientStore,
        signals: { readable: toClient.readable, writable: toServer.writable },
      },
      helperDirectory: `${bench.root}/client-helper`,
      onHelperLog: bench.onHelperLog,
    });
    assertEquals(connector.name, "ssh");
    // The messages were queued, not lost: the server's host key message
    // reached the client's pipe, and the client's key reaches the server,
    // which authorizes it.
    const announced = await toClient.readable.getReader().read();
    const hostKey = JSON.parse(new TextDecoder().decode(announced.value));
    assertEquals(hostKey.fingerprint, server.clientOptions.fp);
    const clientKey = publicKeyOfPrivate((await bench.clientStore.get(SSH_CLIENT_KEY))!);
    await waitFor(
      async () => ((await bench.serverStore.get(SSH_AUTHORIZED_KEYS)) ?? "").includes(clientKey),
      10_000,
    );
  });
});

Deno.test("ssh server: sshd 9.8 and later is told not to penalize sources (every connection comes from the runtime's front on 127.0.0.1); older sshd is not given the keyword", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit-ssh-penalties-" });
  const side = await ssh.server({}, { local: flakyStore() });
  try {
    const configFor = async (version: string) => {
      const probed: string[][] = [];
      const helper = await side.helper!.process({
        directory: dir,
        listen: { hostname: "127.0.0.1", port: 1 },
        relay: { hostname: "127.0.0.1", port: 5 },
        user: "nobody",
        writeFile: () => Promise.resolve(),
        probe: (command, args) => {
          probed.push([command, ...args]);
          return Promise.resolve(version);
        },
      });
      assertEquals(probed, [["sshd", "-V"]]);
      return helper.files!["sshd_config"]!.split("\n");
    };
    for (
      const version of ["OpenSSH_9.8p1, OpenSSL 3.3.1", "OpenSSH_10.0p2 Debian-7, OpenSSL 3.5.1"]
    ) {
      assert((await configFor(version)).includes("PerSourcePenalties no"), version);
    }
    for (
      const version of ["OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19", "OpenSSH_8.4p1", ""]
    ) {
      assert(!(await configFor(version)).some((line) => /PerSourcePenalties/i.test(line)), version);
    }
  } finally {
    side.close!();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ssh server: stored client keys it cannot read (another user's file) are said once, and it starts anyway", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ptkit-ssh-keys-" });
  try {
    // The operator, as root, wrote the file for a PT that runs as nobody:
    // a state file another user owns is refused.
    await Deno.writeTextFile(`${dir}/sshAuthorizedKeys`, `${generateOpenSshKey("a").publicKey}\n`);
    await Deno.chown(`${dir}/sshAuthorizedKeys`, 65534, 65534);
    const notices: string[] = [];
    const side = await ssh.server({}, {
      local: new FileStore(dir),
      onNotice: (message) => notices.push(message),
    });
    try {
      await startHelper(side, dir);
      // Two reloads later, still one notice (it was one every 3 s).
      await new Promise((resolve) => setTimeout(resolve, 7_000));
    } finally {
      side.close!();
    }
    assertEquals(notices.length, 1, notices.join("\n"));
    assert(/write it as the PT's own user/.test(notices[0]!), notices[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ssh server: a client key that cannot be stored is said, and later messages are still taken", async () => {
  const store = flakyStore();
  const incoming = new TransformStream<Uint8Array, Uint8Array>();
  const writer = incoming.writable.getWriter();
  const notices: string[] = [];
  const side = await ssh.server({}, {
    local: store,
    signals: { readable: incoming.readable, writable: new WritableStream<Uint8Array>() },
    onNotice: (message) => notices.push(message),
  });
  try {
    const a = generateOpenSshKey("a").publicKey;
    const b = generateOpenSshKey("b").publicKey;
    store.failNextKeysRead = true;
    const send = (key: string) => writer.write(new TextEncoder().encode(sshKeyMessage(key)));
    await send(a);
    await waitFor(() => notices.length > 0, 5_000);
    assert(/could not be stored/.test(notices[0]!), notices[0]);
    // The reader goes on, and the key that failed can be sent again.
    await send(b);
    await send(a);
    await waitFor(
      () => (store.values.get("sshAuthorizedKeys") ?? "").split("\n").length === 3,
      5_000,
    );
  } finally {
    side.close!();
    await writer.close();
  }
});

Deno.test({
  name:
    "ssh server: a key the operator deletes from the stored client keys is refused from the next login, as one added is taken",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-revoke-", async (bench) => {
      const { server } = await sshServer(bench);
      try {
        const kept = generateOpenSshKey("kept");
        const revoked = generateOpenSshKey("revoked");
        await Deno.writeTextFile(`${bench.root}/id`, revoked.privateKey, { mode: 0o600 });
        /** Whether sshd refuses the key at login (ssh says Permission denied). */
        const refused = async () => {
          const result = await new Deno.Command("ssh", {
            args: [
              ...["-F", "none", "-i", `${bench.root}/id`, "-o", "BatchMode=yes"],
              ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
              ...["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "-p"],
              ...[String(server.addr.port), "-l", server.clientOptions.user!, "127.0.0.1"],
              "true",
            ],
            stdin: "null",
            stdout: "null",
            stderr: "piped",
          }).output();
          return /Permission denied/.test(new TextDecoder().decode(result.stderr));
        };
        assert(await refused(), "a key never given was let in");
        await bench.serverStore.set(
          SSH_AUTHORIZED_KEYS,
          `${kept.publicKey}\n${revoked.publicKey}\n`,
        );
        await waitFor(async () => !(await refused()), 15_000);
        // The operator deletes the line (the file is read again every 3 s).
        await bench.serverStore.set(SSH_AUTHORIZED_KEYS, `${kept.publicKey}\n`);
        await waitFor(() => refused(), 15_000);
      } finally {
        await server.close();
      }
      assertEquals(await helperProcesses(bench.root), []);
    });
  },
});

Deno.test("ssh server: a stored line that is no key is skipped by number, never quoted", async () => {
  const store = flakyStore();
  // An operator used to sshd's authorized_keys writes an option with a
  // client's address; another pastes a token.
  store.values.set(
    "sshAuthorizedKeys",
    `from="203.0.113.77" ${generateOpenSshKey("a").publicKey}\nhunter2-token rest\n`,
  );
  const notices: string[] = [];
  const side = await ssh.server({}, { local: store, onNotice: (message) => notices.push(message) });
  side.close!();
  assertEquals(notices.length, 2, notices.join("\n"));
  assert(notices[0]!.includes("line 1 ") && notices[1]!.includes("line 2 "), notices.join("\n"));
  assert(
    notices.every((n) => !n.includes("203.0.113.77") && !n.includes("hunter2")),
    notices.join("\n"),
  );
});

/**
 * Open a TCP connection to `port` from `source` (a loopback address) and
 * resolve whether the server's SSH banner arrived within `ms`; the socket
 * stays open (idle) until `sockets` are destroyed.
 */
function bannerFrom(
  source: string,
  port: number,
  sockets: Socket[],
  ms = 5_000,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress: source });
    sockets.push(socket);
    let text = "";
    const timer = setTimeout(() => resolve(false), ms);
    socket.on("data", (chunk: Uint8Array) => {
      text += new TextDecoder().decode(chunk);
      if (text.includes("SSH-2.0-")) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(text.includes("SSH-2.0-"));
    });
  });
}

Deno.test({
  name:
    "ssh server: idle unauthenticated connections from 64 sources lock no new client out, and an authenticated tunnel is not counted with them",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-startups-", async (bench) => {
      const { root, echo } = bench;
      const { server, operator: serverOperator } = await sshServer(bench);
      const { connector, clientOperator } = await sshClient(bench, server);
      const sockets: Socket[] = [];
      try {
        serverOperator.feed(clientOperator.sent[0]!);
        const destination = {
          hostname: "127.0.0.1",
          port: server.addr.port,
          destination: { hostname: "127.0.0.1", port: echo.port },
        };
        // An authenticated tunnel from 127.0.0.1 first.
        const tunnel = await waitFor(
          () => connector.dial(destination).catch(() => undefined),
          40_000,
        );
        // Four idle connections from the tunnel's own source: only the
        // tunnel beyond them would be a fifth unfinished one, and lose its
        // place after the 2 s grace.
        const own = await Promise.all(
          Array.from({ length: 4 }, () => bannerFrom("127.0.0.1", server.addr.port, sockets)),
        );
        assertEquals(own, [true, true, true, true]);
        // 64 sources, 4 idle connections each: sshd's whole ceiling (256).
        const idle: Promise<boolean>[] = [];
        for (let i = 0; i < 64; i++) {
          for (let j = 0; j < 4; j++) {
            idle.push(bannerFrom(`127.0.1.${i + 1}`, server.addr.port, sockets, 10_000));
          }
        }
        await Promise.all(idle);
        await new Promise((resolve) => setTimeout(resolve, 2_500));
        // Ten clients from fresh sources each get the banner.
        const fresh = await Promise.all(
          Array.from(
            { length: 10 },
            (_, i) => bannerFrom(`127.0.2.${i + 1}`, server.addr.port, sockets),
          ),
        );
        assertEquals(fresh.filter(Boolean).length, 10, `fresh clients served: ${fresh}`);
        assert(await echoes(tunnel), "the authenticated tunnel was closed");
        tunnel.close();
      } finally {
        for (const socket of sockets) socket.destroy();
        await connector.close();
        await server.close();
      }
      assertEquals(await helperProcesses(root), []);
    });
  },
});

Deno.test({
  name:
    "ssh server: a probe sshd resets (an HTTP request: sshd answers 'Invalid SSH identification string' and closes with the request's later lines unread) is reset by the front too, not ended with a FIN that OpenSSH never sends there",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-reset-", async (bench) => {
      const { server } = await sshServer(bench);
      try {
        const probe = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
        await probe.write(
          new TextEncoder().encode("GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
        );
        let text = "";
        let end = "open";
        const buffer = new Uint8Array(4096);
        const deadline = setTimeout(() => probe.close(), 20_000);
        try {
          for (;;) {
            const n = await probe.read(buffer);
            if (n === null) {
              end = "FIN";
              break;
            }
            text += new TextDecoder().decode(buffer.subarray(0, n));
          }
        } catch (error) {
          end = error instanceof Deno.errors.ConnectionReset ? "RST" : String(error);
        } finally {
          clearTimeout(deadline);
        }
        try {
          probe.close();
        } catch {
          // Closed by the deadline.
        }
        assert(text.includes("Invalid SSH identification string"), `got: ${JSON.stringify(text)}`);
        assertEquals(end, "RST");
      } finally {
        await server.close();
      }
    });
  },
});

/**
 * The name-lists of the KEXINIT an SSH client sends to a listener that
 * gives it a banner (ssh sends it without waiting for the server's).
 */
async function clientKexInit(listener: Deno.TcpListener): Promise<string[]> {
  const conn = await listener.accept();
  try {
    await conn.write(new TextEncoder().encode("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"));
    let bytes = new Uint8Array(0);
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("The client closed before its KEXINIT");
      const joined = new Uint8Array(bytes.length + n);
      joined.set(bytes);
      joined.set(buffer.subarray(0, n), bytes.length);
      bytes = joined;
      const lineEnd = bytes.findIndex((b, i) => b === 0x0a && bytes[i - 1] === 0x0d);
      if (lineEnd < 0 || bytes.length < lineEnd + 5) continue;
      const view = new DataView(bytes.buffer, lineEnd + 1);
      const length = view.getUint32(0);
      if (bytes.length < lineEnd + 5 + length) continue;
      // packet_length, padding_length, SSH_MSG_KEXINIT (20), cookie (16).
      let at = 4 + 1 + 1 + 16;
      const lists: string[] = [];
      for (let i = 0; i < 10; i++) {
        const size = view.getUint32(at);
        lists.push(
          new TextDecoder().decode(
            bytes.subarray(lineEnd + 1 + at + 4, lineEnd + 1 + at + 4 + size),
          ),
        );
        at += 4 + size;
      }
      return lists;
    }
  } finally {
    conn.close();
  }
}

Deno.test({
  name:
    "ssh client: its KEXINIT offers what a stock ssh client's does (no host key algorithm list cut to ssh-ed25519, a first flight 456 bytes shorter than OpenSSH's)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-kexinit-", async (bench) => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const connector = await createConnector(ssh, {
        fp: generateOpenSshKey().fingerprint,
        user: "nobody",
        relay: "40123",
      }, {
        env: { local: bench.clientStore, signals: operatorPipe().pipe },
        helperDirectory: `${bench.root}/client-helper`,
        onHelperLog: bench.onHelperLog,
      });
      try {
        const at = {
          hostname: "127.0.0.1",
          port: listener.addr.port,
          destination: { hostname: "192.0.2.1", port: 80 },
        };
        const dial = connector.dial(at).then((conn) => conn.close(), () => {});
        const ptkit = await clientKexInit(listener);
        const stock = new Deno.Command("ssh", {
          args: [
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-p",
            String(listener.addr.port),
            "nobody@127.0.0.1",
            "true",
          ],
          stdout: "null",
          stderr: "null",
        }).output();
        const reference = await clientKexInit(listener);
        await stock;
        await dial;
        assertEquals(ptkit.slice(0, 8), reference.slice(0, 8));
      } finally {
        await connector.close();
        listener.close();
      }
    });
  },
});

Deno.test({
  name:
    "ssh server: a client offering keys it does not know is disconnected after six, as a stock sshd does (MaxAuthTries' default), not after three",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withSshBench("ptkit-ssh-authtries-", async (bench) => {
      const { server } = await sshServer(bench);
      try {
        const identities: string[] = [];
        for (let i = 0; i < 8; i++) {
          const path = `${bench.root}/probe_key_${i}`;
          await Deno.writeTextFile(path, generateOpenSshKey().privateKey, { mode: 0o600 });
          identities.push("-i", path);
        }
        const { stderr } = await new Deno.Command("ssh", {
          args: [
            "-v",
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            ...identities,
            "-p",
            String(server.addr.port),
            `${server.clientOptions.user}@127.0.0.1`,
            "true",
          ],
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(stderr);
        assert(said.includes("Too many authentication failures"), said);
        assertEquals(said.split("\n").filter((l) => l.includes("Offering public key")).length, 6);
      } finally {
        await server.close();
      }
    });
  },
});
