// Copyright the ptkit authors. MIT license.

import { redactAddresses } from "./_redact_addresses.ts";
import type {
  HelperContext,
  HelperLogLine,
  HelperProcess,
  HostPort,
} from "../transports/transport.ts";

/** Where a supervised helper's log lines go. */
export type HelperLog = (severity: HelperLogLine["severity"], message: string) => void;

/** Options for {@linkcode HelperSupervisor.start}. */
export interface HelperSupervisorOptions {
  /** The helper's private directory; made (mode 0700) when missing. */
  readonly directory: string;
  /** Where the helper must listen. */
  readonly listen: HostPort;
  /** Servers: the runtime's relay the helper forwards to. */
  readonly relay?: HostPort;
  /** Servers: accept at the relay's port on these loopback addresses too (see the helper context). */
  readonly relayHosts?: (hostnames: readonly string[]) => void;
  /**
   * Servers: told the source port of the runtime's connection whose client
   * authenticated, when the helper's output says so (`describeOutput`'s
   * `handshaken`). Defaults to none.
   */
  readonly onHandshaken?: (port: number) => void;
  /** Told each output line (addresses redacted) and each restart. Defaults to none. */
  readonly onLog?: HelperLog;
  /**
   * When this process runs as root, run the helper as `nobody` and give it
   * its directory and files. Defaults to true (sshd, which started by root
   * would let any user log in). A client's `ssh` passes false: its files
   * hold the client's private key, and `nobody` is shared by other
   * daemons, any of which could read them; it runs as this process's user.
   */
  readonly asNobody?: boolean;
  /**
   * Failed runs in a row (each ended within a minute of its start) after
   * which the helper is not started again, and `onGiveUp` is told. Each
   * such run doubles the wait before the next start, from the helper's
   * `restartDelay` up to a minute; a run that lasted a minute starts the
   * count again. Defaults to `Infinity` (restarted for as long as it runs).
   */
  readonly maxFailures?: number;
  /** Told once the helper is given up (see `maxFailures`). Defaults to none. */
  readonly onGiveUp?: () => void;
}

/**
 * Output lines of a helper logged in each {@linkcode OUTPUT_INTERVAL_MS}; the
 * rest are counted and reported as one line. Anyone who reaches sshd makes it
 * print a few lines per connection, with text of their choosing (a user name,
 * a banner): they must not flood the parent's log.
 */
const OUTPUT_LINES_PER_INTERVAL = 20;
const OUTPUT_INTERVAL_MS = 10_000;
const SEVERITY_RANK: Readonly<Record<HelperLogLine["severity"], number>> = {
  error: 0,
  warning: 1,
  notice: 2,
  info: 3,
  debug: 4,
};

/** A run at least this long (ms) is a success: the failure count starts again. */
const STABLE_RUN_MS = 60_000;
/** The longest wait (ms) between starts of a failing helper, unless its restartDelay is longer. */
const MAX_BACKOFF_MS = 60_000;

// The helper runs under this shell, which `setsid` makes the leader of a
// new session and process group. It ends the helper and every descendant
// (sshd's per-connection processes start sessions of their own, so the
// group alone would miss them) when its stdin closes (the runtime closed
// it, or died: the pipe closes with the process, however it ends) or on
// SIGTERM/SIGINT/SIGHUP; the helper is stopped first so that it forks no
// more. /proc is read with the shell and awk alone. The watchdog is ended
// with SIGKILL: a SIGTERM that reaches it while it is being forked (the
// helper exited at once) is lost, and it then held the output pipes open,
// so the helper was never seen to exit (no restart, close() never done).
// A signal handled between a job's fork and the assignment of its pid
// finds the pid in $! (the watchdog once outlived a close() that came
// right after the start that way, and close() waited for ever). A helper
// that exits on its own leaves processes of its own that init adopted
// (sshd's sessions when its listener was killed): found by the output
// pipes they hold (they keep them open, so the runtime never saw the helper
// end and never started it again, and nothing would stop them later), and
// killed with it.
const WRAPPER = `
descendants() {
  for s in /proc/[0-9]*/stat; do
    { read -r l < "$s"; } 2>/dev/null && echo "\${s#/proc/} \${l##*) }"
  done | awk -v root="$1" '{ sub("/stat", "", $1); parent[$1] = $3 }
    END { n = 1; q[1] = root; for (i = 1; i <= n; i++) for (p in parent)
      if (parent[p] == q[i]) { q[++n] = p; print p } }'
}
leftovers() {
  for f in 1 2; do
    l=$(readlink "/proc/$$/fd/$f" 2>/dev/null) || continue
    case "$l" in pipe:*) ;; *) continue ;; esac
    i=\${l#pipe:?}
    find /proc/[0-9]*/fd/$f -maxdepth 0 -lname "pipe:?\${i%?}?" 2>/dev/null
  done | awk -F/ -v me="$$" -v w="$w" '$3 != me && $3 != w && !seen[$3]++ { print $3 }'
}
stop() {
  trap '' TERM INT HUP
  # A signal that came as the helper or the watchdog was being started: it
  # is the last job, forked but not yet named.
  [ -n "$c" ] || c=$!
  [ -n "$w" ] || w=$!
  kill -STOP "$c" 2>/dev/null
  kill -KILL "$c" $(descendants "$c") $(leftovers) 2>/dev/null
  kill -KILL "$w" 2>/dev/null
  if [ -n "$PTKIT_HELPER_CLEANUP" ]; then rm -rf -- "$PTKIT_HELPER_CLEANUP"; fi
  exit 143
}
c=
w=
trap stop TERM INT HUP
exec 3<&0
"$@" </dev/null 3<&- &
c=$!
{ while read -r _ <&3; do :; done; kill -TERM $$; } 0<&3 &
w=$!
exec 3<&-
wait "$c"
s=$?
kill -KILL $(leftovers) 2>/dev/null
kill -KILL "$w" 2>/dev/null
exit "$s"
`;

const SEARCH_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * Runs one transport helper process (see `HelperProcess` in
 * `@ptkit/ptkit/transports`) and keeps it running: writes its files into
 * its private directory, starts it in its own session under a small shell
 * that kills it and all its descendants when this process closes its stdin
 * or dies (the pipe closes however it ends), restarts it after its
 * `restartDelay` when it exits, and logs its output with addresses redacted.
 * When this process runs as root, the helper runs as `nobody` (sshd refuses
 * no one and drops nothing for a helper started by root otherwise), and
 * the directory is given to that user, unless `asNobody` is false.
 */
export class HelperSupervisor {
  #spec: HelperProcess;
  #directory: string;
  #onLog: HelperLog;
  #owner: { uid: number; gid: number } | undefined;
  #command: string;
  #child: Deno.ChildProcess | undefined;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #closed = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> = Promise.resolve();
  #exited: { promise: Promise<void>; resolve: () => void };
  #temporary = false;
  /** Files the transport wrote since (`HelperContext.writeFile`): a start writes these. */
  #written = new Map<string, string>();
  #maxFailures = Infinity;
  #onGiveUp: () => void = () => {};
  #onHandshaken: (port: number) => void = () => {};
  #startedAt = 0;
  /** The run's last output line, as logged: an exit names it when it was logged below notice. */
  #lastOutput: { severity: HelperLogLine["severity"]; message: string } | undefined;
  /** Output lines logged in this interval, and those held back (the most severe's severity). */
  #outputLogged = 0;
  #outputHeld = 0;
  #outputHeldSeverity: HelperLogLine["severity"] = "debug";
  #outputTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    spec: HelperProcess,
    directory: string,
    onLog: HelperLog,
    owner: { uid: number; gid: number } | undefined,
    command: string,
  ) {
    this.#spec = spec;
    this.#directory = directory;
    this.#onLog = onLog;
    this.#owner = owner;
    this.#command = command;
    this.#exited = Promise.withResolvers<void>();
  }

  /**
   * Build the helper with `build` (given its context) and start it.
   *
   * @param build The transport's helper builder.
   * @param options Directory, addresses and where logs go.
   * @returns The running supervisor.
   * @throws {Deno.errors.NotFound} When the helper's program is not installed.
   */
  static async start(
    build: (context: HelperContext) => HelperProcess | Promise<HelperProcess>,
    options: HelperSupervisorOptions,
  ): Promise<HelperSupervisor> {
    const user = await helperUser(options.asNobody ?? true);
    // A helper that runs as another user must reach its directory: when a
    // parent is closed to others (a 0700 state directory), its files go to
    // a fresh directory under the system's temporary directory instead.
    const temporary = user.owner !== undefined && !await searchable(options.directory);
    const directory = temporary ? await reachableTempDir() : options.directory;
    try {
      return await HelperSupervisor.#start(build, options, user, directory, temporary);
    } catch (error) {
      // A directory made here holds the helper's keys: none is left behind
      // by a start that failed (no watchdog runs to remove it).
      if (temporary) await Deno.remove(directory, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  static async #start(
    build: (context: HelperContext) => HelperProcess | Promise<HelperProcess>,
    options: HelperSupervisorOptions,
    user: Awaited<ReturnType<typeof helperUser>>,
    directory: string,
    temporary: boolean,
  ): Promise<HelperSupervisor> {
    // Parents made here stay searchable (not readable) by the helper's user.
    const parent = directory.slice(0, directory.lastIndexOf("/"));
    if (parent !== "") await Deno.mkdir(parent, { recursive: true, mode: 0o711 });
    await Deno.mkdir(directory, { recursive: true, mode: 0o700 });
    await Deno.chmod(directory, 0o700);
    if (user.owner !== undefined) await Deno.chown(directory, user.owner.uid, user.owner.gid);
    // What the transport writes while the helper runs (a key added) is
    // what a restart writes too, not the file as it was at the first start.
    const written = new Map<string, string>();
    const writeFile = async (name: string, content: string) => {
      await writeHelperFile(directory, name, content, user.owner);
      written.set(name, content);
    };
    const context: HelperContext = {
      directory,
      listen: options.listen,
      ...(options.relay === undefined ? {} : { relay: options.relay }),
      ...(options.relayHosts === undefined ? {} : { relayHosts: options.relayHosts }),
      user: user.name,
      writeFile,
      probe: probeProgram,
    };
    const spec = await build(context);
    const command = await findProgram(spec.command);
    const supervisor = new HelperSupervisor(
      spec,
      directory,
      options.onLog ?? (() => {}),
      user.owner,
      command,
    );
    supervisor.#temporary = temporary;
    supervisor.#written = written;
    const maxFailures = options.maxFailures ?? Infinity;
    if (!(maxFailures >= 1)) {
      throw new RangeError(`Invalid maxFailures ${maxFailures}: must be at least 1`);
    }
    supervisor.#maxFailures = maxFailures;
    if (options.onGiveUp !== undefined) supervisor.#onGiveUp = options.onGiveUp;
    if (options.onHandshaken !== undefined) supervisor.#onHandshaken = options.onHandshaken;
    await supervisor.#startOnce();
    supervisor.#loop = supervisor.#run();
    return supervisor;
  }

  /** Resolves when the helper first exits (a test's hook; restarts go on). */
  get exited(): Promise<void> {
    return this.#exited.promise;
  }

  /** The running helper's process id (the wrapper's), if one runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Start the helper; false when the supervisor was closed meanwhile. */
  async #startOnce(): Promise<boolean> {
    for (const [name, content] of Object.entries(this.#spec.files ?? {})) {
      const latest = this.#written.get(name) ?? content;
      await writeHelperFile(this.#directory, name, latest, this.#owner);
    }
    if (this.#closed) return false;
    const args = this.#spec.args.map((arg) => arg.replaceAll("{dir}", this.#directory));
    // `sh` (the one program main.ts may run besides deno) puts the wrapper
    // in a session of its own with util-linux's setsid.
    this.#child = new Deno.Command("sh", {
      args: [
        "-c",
        'w=$1; shift; exec setsid /bin/sh -c "$w" "$@"',
        "sh",
        WRAPPER,
        "ptkit-helper",
        this.#command,
        ...args,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: {
        PATH: SEARCH_PATH.join(":"),
        HOME: this.#directory,
        LC_ALL: "C",
        // A directory under /tmp holds the helper's keys: when the PT goes
        // (even by SIGKILL), the watchdog removes it.
        ...(this.#temporary ? { PTKIT_HELPER_CLEANUP: this.#directory } : {}),
      },
      cwd: this.#directory,
      ...(this.#owner === undefined ? {} : { uid: this.#owner.uid, gid: this.#owner.gid }),
    }).spawn();
    // Nothing is ever written: the pipe only tells the wrapper we are alive.
    this.#stdin = this.#child.stdin.getWriter();
    this.#lastOutput = undefined;
    this.#startedAt = performance.now();
    return true;
  }

  async #run(): Promise<void> {
    const restartDelay = this.#spec.restartDelay ?? 10_000;
    let failures = 0;
    for (;;) {
      const child = this.#child!;
      // A close() that ran while this child was being started saw only the
      // one before it: this one is stopped here, and waited for.
      if (this.#closed) {
        kill(child);
        this.#stdin?.close().catch(() => {});
      }
      const [status] = await Promise.all([
        child.status,
        this.#pump(child.stdout),
        this.#pump(child.stderr),
      ]);
      this.#exited.resolve();
      if (this.#closed) return;
      // Why it stopped is most often its last line (sshd's configuration
      // errors and other fatal ones carry no 'fatal' mark, so they are
      // logged at info): said with the exit, which is logged at notice.
      const last = this.#lastOutput;
      const how = `${status.signal ?? `code ${status.code}`})${
        last !== undefined && SEVERITY_RANK[last.severity] > SEVERITY_RANK.notice
          ? ` after saying ${JSON.stringify(last.message)}`
          : ""
      }`;
      failures = performance.now() - this.#startedAt >= STABLE_RUN_MS ? 0 : failures + 1;
      if (failures >= this.#maxFailures) {
        this.#onLog(
          "notice",
          `${this.#spec.command} exited (${how}, failing ${failures} times in a row: not started again`,
        );
        this.#child = undefined;
        this.#onGiveUp();
        return;
      }
      // A helper that keeps failing is started less and less often.
      const backoff = (n: number) =>
        n <= 1 ? restartDelay : Math.max(
          restartDelay,
          Math.min(restartDelay * 2 ** (n - 1), MAX_BACKOFF_MS),
        );
      let delay = backoff(failures);
      this.#onLog(
        "notice",
        `${this.#spec.command} exited (${how}; starting it again in ${Math.round(delay / 1000)} s`,
      );
      // A start that fails (its files cannot be written, say) counts as a
      // failed run: tried again later, or given up, never left for dead.
      for (;;) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
        if (this.#closed) return;
        try {
          if (!await this.#startOnce()) return;
          break;
        } catch (error) {
          this.#child = undefined;
          failures++;
          const why = (error as Error).message;
          if (failures >= this.#maxFailures) {
            this.#onLog(
              "notice",
              `Cannot start ${this.#spec.command}: ${why}; failing ${failures} times in a row: not started again`,
            );
            this.#onGiveUp();
            return;
          }
          delay = backoff(failures);
          this.#onLog(
            "warning",
            `Cannot start ${this.#spec.command}: ${why}; trying again in ${
              Math.round(delay / 1000)
            } s`,
          );
        }
      }
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const describe = this.#spec.describeOutput ??
      ((line: string): HelperLogLine => ({ severity: "info", message: line }));
    let rest = "";
    const emit = (line: string) => {
      const described = describe(line);
      if (described?.handshaken !== undefined) this.#onHandshaken(described.handshaken);
      if (described !== undefined) {
        const message = redactAddresses(described.message).slice(0, 400);
        this.#lastOutput = { severity: described.severity, message };
        this.#logOutput(described.severity, message);
      }
    };
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop()!.slice(-4096);
      for (const line of lines) emit(line.replace(/\r$/, ""));
    }
    if (rest !== "") emit(rest);
  }

  /**
   * Log one line of the helper's output, unless {@linkcode OUTPUT_LINES_PER_INTERVAL}
   * were logged in this interval: then it is counted, and the count is
   * logged when the interval ends.
   */
  #logOutput(severity: HelperLogLine["severity"], message: string): void {
    if (this.#outputTimer === undefined) {
      this.#outputTimer = setTimeout(() => this.#endOutputInterval(), OUTPUT_INTERVAL_MS);
      Deno.unrefTimer(this.#outputTimer);
    }
    if (this.#outputLogged < OUTPUT_LINES_PER_INTERVAL) {
      this.#outputLogged++;
      this.#onLog(severity, message);
      return;
    }
    this.#outputHeld++;
    if (SEVERITY_RANK[severity] < SEVERITY_RANK[this.#outputHeldSeverity]) {
      this.#outputHeldSeverity = severity;
    }
  }

  /** Log how many output lines were held back, and start counting again. */
  #endOutputInterval(): void {
    clearTimeout(this.#outputTimer);
    this.#outputTimer = undefined;
    this.#outputLogged = 0;
    if (this.#outputHeld === 0) return;
    const held = this.#outputHeld;
    const severity = this.#outputHeldSeverity;
    this.#outputHeld = 0;
    this.#outputHeldSeverity = "debug";
    this.#onLog(
      severity,
      `${this.#spec.command}: ${held} more output line${held === 1 ? "" : "s"} not logged ` +
        `(at most ${OUTPUT_LINES_PER_INTERVAL} every ${OUTPUT_INTERVAL_MS / 1000} s)`,
    );
  }

  /**
   * A connection wants the helper while it waits to be started again: it
   * starts now when its last start was at least its `restartDelay` ago (a
   * key an operator just accepted must not wait out a backoff of a minute).
   */
  nudge(): void {
    if (this.#closed || this.#wake === undefined) return;
    const restartDelay = this.#spec.restartDelay ?? 10_000;
    if (performance.now() - this.#startedAt >= restartDelay) this.#wake();
  }

  /**
   * Stop the helper and everything it started, and stop restarting it.
   * Resolves once the wrapper has exited.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#wake?.();
      const child = this.#child;
      if (child !== undefined) kill(child);
      // The wrapper's watchdog stops everything when this pipe closes too.
      this.#stdin?.close().catch(() => {});
    }
    await this.#loop;
    this.#endOutputInterval();
    // A directory made for this run only (keys in it) goes with it.
    if (this.#temporary) await Deno.remove(this.#directory, { recursive: true }).catch(() => {});
  }

  /** Same as {@linkcode HelperSupervisor.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Ask a helper's wrapper to stop it and everything it started. */
function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already gone.
  }
}

async function writeHelperFile(
  directory: string,
  name: string,
  content: string,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name)) {
    throw new TypeError(`Invalid helper file name ${JSON.stringify(name)}`);
  }
  const path = `${directory}/${name}`;
  const temporary = `${path}.tmp`;
  await Deno.remove(temporary).catch(() => {});
  await Deno.writeTextFile(temporary, content, { mode: 0o600, createNew: true });
  await Deno.chmod(temporary, 0o600);
  if (owner !== undefined) await Deno.chown(temporary, owner.uid, owner.gid);
  await Deno.rename(temporary, path);
}

/**
 * Whether others may reach `path`: every existing parent is searchable by
 * others (parents still missing are made so).
 */
/**
 * A fresh directory under the system's temporary directory (TMPDIR) when
 * every parent of it is searchable by others, else under /tmp: a TMPDIR
 * closed to others (`$HOME/tmp` under a 0700 home) would keep a helper
 * that runs as another user out of its own directory.
 */
async function reachableTempDir(): Promise<string> {
  const made = await Deno.makeTempDir({ prefix: "ptkit-helper-" });
  if (await searchable(made)) return made;
  await Deno.remove(made, { recursive: true });
  return await Deno.makeTempDir({ dir: "/tmp", prefix: "ptkit-helper-" });
}

async function searchable(path: string): Promise<boolean> {
  const parts = path.split("/").filter((part) => part !== "");
  for (let i = 0; i < parts.length; i++) {
    const dir = "/" + parts.slice(0, i).join("/");
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(dir);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return true;
      return false;
    }
    if (((info.mode ?? 0) & 0o001) === 0) return false;
  }
  return true;
}

async function findProgram(command: string): Promise<string> {
  if (command.startsWith("/")) return command;
  if (!/^[A-Za-z0-9_.+-]+$/.test(command)) {
    throw new TypeError(`Invalid helper command ${JSON.stringify(command)}`);
  }
  let path: string[] = [];
  try {
    path = (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir.startsWith("/"));
  } catch {
    // PATH may not be read (main.ts grants only its own variables).
  }
  for (const dir of [...path, ...SEARCH_PATH]) {
    try {
      const info = await Deno.stat(`${dir}/${command}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${command}`;
    } catch {
      // Not there.
    }
  }
  throw new Deno.errors.NotFound(
    `Cannot find the helper program ${JSON.stringify(command)} (Debian: ${
      command === "sshd" ? "openssh-server" : command === "ssh" ? "openssh-client" : command
    })`,
  );
}

/** How long (ms) a probe of a helper program may take. */
const PROBE_TIMEOUT_MS = 5_000;

/**
 * Run a helper program with `args` (through `sh`, the one program the
 * runtime may run besides deno) and return what it printed, stdout then
 * stderr: its version, for one (`sshd -V`). Nothing is read from it.
 */
async function probeProgram(command: string, args: readonly string[]): Promise<string> {
  const program = await findProgram(command);
  const { stdout, stderr } = await new Deno.Command("sh", {
    args: ["-c", 'exec "$0" "$@"', program, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: { PATH: SEARCH_PATH.join(":"), LC_ALL: "C" },
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  }).output();
  const decoder = new TextDecoder();
  return decoder.decode(stdout) + decoder.decode(stderr);
}

async function helperUser(asNobody: boolean): Promise<
  { name: string; owner: { uid: number; gid: number } | undefined }
> {
  const uid = Deno.uid();
  let passwd = "";
  try {
    passwd = await Deno.readTextFile("/etc/passwd");
  } catch {
    // No passwd: names from the environment.
  }
  const entries = passwd.split("\n").map((line) => line.split(":"));
  if (uid === 0 && asNobody) {
    const nobody = entries.find((fields) => fields[0] === "nobody");
    const owner = { uid: Number(nobody?.[2] ?? 65534), gid: Number(nobody?.[3] ?? 65534) };
    return { name: "nobody", owner };
  }
  const own = entries.find((fields) => fields[2] === String(uid));
  return { name: own?.[0] ?? Deno.env.get("USER") ?? "nobody", owner: undefined };
}
