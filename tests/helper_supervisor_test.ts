// Copyright the ptkit authors. MIT license.
// The helper supervisor (net/_helper_process.ts) with real processes under
// its setsid wrapper (util-linux): a helper that exits is seen to exit (its
// wrapper's watchdog does not outlive it holding the output pipes), and a
// close() that lands while a restart is starting the helper stops that
// helper too.

import { deepStrictEqual as assertEquals } from "node:assert";
import { HelperSupervisor } from "../net/_helper_process.ts";
import { redactAddresses } from "../net/_redact_addresses.ts";
import { describe } from "../ipc/managed/_log.ts";
import { helperProcesses, requireProgram, waitFor } from "./ssh_util.ts";

/**
 * A test with real helper processes under a fresh directory (root-run
 * helpers run as nobody, who must reach it); whatever is left running is
 * killed and the directory removed afterwards.
 */
function supervisorTest(name: string, fn: (root: string) => Promise<void>): void {
  Deno.test({
    name: `helper supervisor: ${name}`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await requireProgram("setsid", "util-linux");
      const root = await Deno.makeTempDir({ prefix: "ptkit-supervisor-test-" });
      await Deno.chmod(root, 0o711);
      try {
        await fn(root);
      } finally {
        for (const line of await helperProcesses(root)) {
          Deno.kill(Number(line.split(" ")[0]), "SIGKILL");
        }
        await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    },
  });
}

/** Start a helper under `root`, with the logs and the give-up collected. */
function failing(
  root: string,
  command: string,
  restartDelay: number,
  files?: Record<string, string>,
) {
  const logs: string[] = [];
  const gaveUp = Promise.withResolvers<void>();
  const started = HelperSupervisor.start(
    () => ({ command, args: [], restartDelay, ...(files === undefined ? {} : { files }) }),
    {
      directory: `${root}/helper`,
      listen: { hostname: "127.0.0.1", port: 9 },
      maxFailures: 3,
      onGiveUp: () => gaveUp.resolve(),
      onLog: (severity, message) => logs.push(`${severity} ${message}`),
    },
  );
  return { logs, gaveUp: gaveUp.promise, started };
}

supervisorTest(
  "close() while a restart starts the helper leaves no helper running",
  async (root) => {
    let starts = 0;
    let closing: Promise<void> | undefined;
    const supervisor: HelperSupervisor = await HelperSupervisor.start(() => ({
      // The first run exits at once (as a refused ssh does); the restart lives.
      command: "sh",
      args: ["-c", "if [ -e started ]; then exec sleep 600; fi; : > started"],
      restartDelay: 1,
      // Read as each start writes the helper's files: the restart's is
      // where close() lands, before the helper is spawned.
      get files() {
        starts++;
        if (starts === 2) closing = supervisor.close();
        return {};
      },
    }), { directory: `${root}/helper`, listen: { hostname: "127.0.0.1", port: 9 } });
    await waitFor(() => closing !== undefined, 20_000);
    await closing;
    assertEquals(await helperProcesses(root), []);
  },
);

supervisorTest("every helper that exits at once is seen to exit, and closes", async (root) => {
  const supervisors: HelperSupervisor[] = [];
  // Many at once: the wrapper's watchdog, signalled as it was being
  // forked, lost the signal now and then and kept the output pipes
  // open, so neither a restart nor close() ever came.
  for (let i = 0; i < 64; i++) {
    supervisors.push(
      await HelperSupervisor.start(
        () => ({ command: "true", args: [], restartDelay: 600_000 }),
        { directory: `${root}/helper-${i}`, listen: { hostname: "127.0.0.1", port: 9 } },
      ),
    );
  }
  let exited = 0;
  for (const supervisor of supervisors) supervisor.exited.then(() => exited++);
  await waitFor(() => exited === supervisors.length, 30_000)
    .catch(() => assertEquals(exited, supervisors.length, "helpers never seen to exit"));
  await Promise.all(supervisors.map((supervisor) => supervisor.close()));
  assertEquals(await helperProcesses(root), []);
});

supervisorTest("close() right after the start closes, however soon it comes", async (root) => {
  // A close() just after the start signalled the wrapper as it forked its
  // watchdog (sshd started for limits then refused): the watchdog lived on
  // with the output pipes, and close() waited for ever (a CI run hung).
  const closes: Promise<void>[] = [];
  for (let i = 0; i < 64; i++) {
    const supervisor = await HelperSupervisor.start(
      () => ({ command: "sleep", args: ["600"], restartDelay: 600_000 }),
      { directory: `${root}/helper-${i}`, listen: { hostname: "127.0.0.1", port: 9 } },
    );
    // Spread over the wrapper's first moments, some at once.
    if (i % 4 !== 0) await new Promise((resolve) => setTimeout(resolve, i % 4));
    closes.push(supervisor.close());
  }
  let closed = 0;
  for (const close of closes) close.then(() => closed++);
  await waitFor(() => closed === closes.length, 30_000)
    .catch(() => assertEquals(closed, closes.length, "close() never done"));
  assertEquals(await helperProcesses(root), []);
});

supervisorTest("a helper that keeps failing is started less often, then given up", async (root) => {
  const { logs, gaveUp, started } = failing(root, "false", 1_000);
  const supervisor = await started;
  await gaveUp;
  assertEquals(logs, [
    "notice false exited (code 1); starting it again in 1 s",
    "notice false exited (code 1); starting it again in 2 s",
    "notice false exited (code 1), failing 3 times in a row: not started again",
  ]);
  assertEquals(supervisor.pid, undefined);
  await supervisor.close();
  assertEquals(await helperProcesses(root), []);
});

supervisorTest(
  "a restart that cannot write the helper's files counts as a failure: tried again, then given up",
  async (root) => {
    const { logs, gaveUp, started } = failing(root, "true", 1, { key: "k" });
    const supervisor = await started;
    // The helper's directory goes: each restart fails to write its file.
    await Deno.remove(`${root}/helper`, { recursive: true });
    await gaveUp;
    // (Before, a failed restart was the end: never tried again, never given up.)
    assertEquals(
      /Cannot start true: .*not started again$/.test(logs.at(-1)!),
      true,
      logs.join("\n"),
    );
    await supervisor.close();
    assertEquals(await helperProcesses(root), []);
  },
);

supervisorTest(
  "nudge() starts a helper that waits out its backoff, once its restartDelay has passed",
  async (root) => {
    let starts = 0;
    let waits = 0;
    const supervisor = await HelperSupervisor.start(() => ({
      // Fails at once (as ssh does until the server accepts its key).
      command: "sh",
      args: ["-c", "exit 1"],
      restartDelay: 100,
      get files() {
        starts++;
        return {};
      },
    }), {
      directory: `${root}/helper`,
      listen: { hostname: "127.0.0.1", port: 9 },
      onLog: (_, message) => {
        if (/starting it again in/.test(message)) waits++;
      },
    });
    try {
      // Failures double the wait: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 s, then 12.8 s:
      // the eighth run's exit seen, the supervisor waits 12.8 s.
      await waitFor(() => waits >= 8, 60_000);
      // Past its restartDelay since that run started.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const before = starts;
      supervisor.nudge();
      // Started again well before the 12.8 s it was waiting out.
      await waitFor(() => starts > before, 8_000);
    } finally {
      await supervisor.close();
    }
  },
);

supervisorTest(
  "a helper's output is logged at most 20 lines every 10 s, the rest as one line with the count",
  async (root) => {
    // Anyone who reaches sshd makes it print lines of their choosing (a user
    // name, a banner), a few per connection: 1,000 of them were 1,000 LOG
    // lines, every one passed on to the parent.
    const logs: string[] = [];
    const supervisor = await HelperSupervisor.start(() => ({
      command: "sh",
      args: ["-c", 'i=0; while [ $i -lt 1000 ]; do echo "Invalid user u$i"; i=$((i+1)); done'],
      restartDelay: 600_000,
    }), {
      directory: `${root}/helper`,
      listen: { hostname: "127.0.0.1", port: 9 },
      onLog: (severity, message) => logs.push(`${severity} ${message}`),
    });
    // Seen to exit once its output is read to the end.
    await supervisor.exited;
    await supervisor.close();
    const output = logs.filter((line) => !/exited \(code 0\)/.test(line));
    assertEquals(output.length, 21, output.slice(0, 3).join("\n"));
    assertEquals(output.slice(0, 2), ["info Invalid user u0", "info Invalid user u1"]);
    assertEquals(
      output.at(-1),
      "info sh: 980 more output lines not logged (at most 20 every 10 s)",
    );
  },
);

Deno.test("helper output: bracketed addresses lose their port too (sshd writes [192.0.2.7]:59604)", () => {
  assertEquals(
    redactAddresses(
      "drop connection #4 from [192.0.2.7]:59604 on [192.0.2.8]:2222 past MaxStartups",
    ),
    "drop connection #4 from [address] on [address] past MaxStartups",
  );
  assertEquals(
    redactAddresses("drop connection #4 from [2001:db8::7]:59604 on [::1]:2222 past MaxStartups"),
    "drop connection #4 from [address] on [address] past MaxStartups",
  );
  assertEquals(
    redactAddresses("Connection closed by 192.0.2.7 port 59604 [preauth]"),
    "Connection closed by [address] port [port] [preauth]",
  );
  assertEquals(
    redactAddresses("Accepted publickey for ptkit from fe80::1%eth0 port 51234 ssh2"),
    "Accepted publickey for ptkit from [address] port [port] ssh2",
  );
  // LOG lines and helper output share the rule: an error's text loses the same.
  assertEquals(
    describe(new Error("Connection closed by 192.0.2.7 port 59604 [preauth]")),
    "Connection closed by [address] port [port] [preauth]",
  );
  // Not addresses: left as they are.
  assertEquals(redactAddresses("Server listening on [address]"), "Server listening on [address]");
  assertEquals(redactAddresses("kex [preauth]"), "kex [preauth]");
});

supervisorTest(
  "stopping a helper while processes come and go logs nothing of the wrapper's own (a process gone between its listing of /proc and its read)",
  async (root) => {
    // Short-lived processes, as on a busy host: some are gone by the time
    // the wrapper reads their /proc entry.
    const churn = new Deno.Command("sh", {
      args: ["-c", "while :; do /bin/true & /bin/true & wait; done"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const logs: string[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        const supervisor = await HelperSupervisor.start(
          () => ({ command: "sleep", args: ["600"] }),
          {
            directory: `${root}/helper-${i}`,
            listen: { hostname: "127.0.0.1", port: 9 },
            onLog: (severity, message) => logs.push(`${severity} ${message}`),
          },
        );
        await supervisor.close();
      }
    } finally {
      churn.kill("SIGKILL");
      await churn.status;
    }
    assertEquals(logs.filter((line) => /\/proc\//.test(line)), []);
    assertEquals(await helperProcesses(root), []);
  },
);

supervisorTest(
  "a helper that exits says why at notice: its last line, when that was logged below notice (sshd's configuration errors carry no 'fatal' mark)",
  async (root) => {
    const logs: string[] = [];
    const supervisor = await HelperSupervisor.start(
      () => ({
        command: "sh",
        // As sshd with a bad configuration: a line of its own, then exit 255.
        args: ["-c", "echo 'sshd_config line 2: keyword HostKey extra arguments' >&2; exit 255"],
        restartDelay: 600_000,
      }),
      {
        directory: `${root}/helper`,
        listen: { hostname: "127.0.0.1", port: 9 },
        onLog: (severity, message) => logs.push(`${severity} ${message}`),
      },
    );
    try {
      await waitFor(() => logs.some((line) => /exited/.test(line)), 20_000);
    } finally {
      await supervisor.close();
    }
    assertEquals(
      logs.filter((line) => /exited/.test(line)),
      [
        'notice sh exited (code 255) after saying "sshd_config line 2: keyword HostKey extra arguments"; starting it again in 600 s',
      ],
    );
  },
);

Deno.test("HelperSupervisor run as root for nobody, in a directory closed to others: a start that fails leaves no temporary directory (with the helper's keys) behind", async () => {
  if (Deno.uid() !== 0) {
    throw new Error("this test needs root (as CI runs): the helper runs as nobody");
  }
  // TMPDIR, searchable by others; the directory asked for is closed to
  // them, so the helper's files go to a fresh directory under TMPDIR.
  const tmp = await Deno.makeTempDir({ dir: "/tmp", prefix: "ptkit-supervisor-tmpdir-" });
  await Deno.chmod(tmp, 0o1777);
  const closed = await Deno.makeTempDir({ prefix: "ptkit-supervisor-closed-" });
  await Deno.chmod(closed, 0o700);
  const before = Deno.env.get("TMPDIR");
  Deno.env.set("TMPDIR", tmp);
  try {
    const files = { ssh_host_ed25519_key: "a key" };
    for (
      const build of [
        // The transport's builder fails, or the helper's program is missing.
        (): never => {
          throw new Error("the builder failed");
        },
        () => ({ command: "ptkit-no-such-helper-program", args: [], files }),
      ]
    ) {
      let failed = false;
      await HelperSupervisor.start(build, {
        directory: `${closed}/helper`,
        listen: { hostname: "127.0.0.1", port: 9 },
      }).then((supervisor) => supervisor.close(), () => failed = true);
      assertEquals(failed, true);
      const left = [];
      for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
      assertEquals(left, [], `left in TMPDIR: ${left}`);
    }
  } finally {
    if (before === undefined) Deno.env.delete("TMPDIR");
    else Deno.env.set("TMPDIR", before);
    await Deno.remove(tmp, { recursive: true });
    await Deno.remove(closed, { recursive: true });
  }
});
