// Copyright the ptkit authors. MIT license.
// Helpers for the ssh transport's tests.

/** Fail naming the Debian package when a program is missing. */
export async function requireProgram(program: string, pkg: string): Promise<void> {
  for (
    const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
  ) {
    try {
      await Deno.stat(`${dir}/${program}`);
      return;
    } catch {
      // Not there.
    }
  }
  throw new Error(`${program} is not installed: install the Debian package ${pkg}`);
}

/** Run a program, return its stdout; throw with its stderr when it fails. */
export async function run(program: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${program} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Poll `check` until it returns a value (not undefined/false) or time runs out. */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeout: number,
): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * The processes (per /proc) whose environment holds `HOME=` a path under
 * `root`: every helper ptkit starts (ssh, sshd and sshd's per-connection
 * processes, which rename themselves) has its directory as `HOME`.
 */
export async function helperProcesses(root: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const environ = await Deno.readTextFile(`/proc/${entry.name}/environ`);
      if (!environ.split("\0").some((v) => v.startsWith(`HOME=${root}`))) continue;
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      // A zombie is gone already (its parent has yet to reap it).
      if (/\) Z /.test(stat)) continue;
      const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
      found.push(`${entry.name} ${cmdline.replaceAll("\0", " ").trim()}`);
    } catch {
      // Gone meanwhile, or not readable.
    }
  }
  return found;
}

/** The pids of every process descending from `pid` (per /proc), zombies left out. */
export async function descendantPids(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z") continue;
      parents.set(Number(entry.name), Number(fields[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

/** The pids among `pids` that still run (not gone, not zombies), with their command lines. */
export async function stillRunning(pids: readonly number[]): Promise<string[]> {
  const running: string[] = [];
  for (const pid of pids) {
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      if (/\) Z /.test(stat)) continue;
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
      running.push(`${pid} ${cmdline.replaceAll("\0", " ").trim().slice(0, 120)}`);
    } catch {
      // Gone.
    }
  }
  return running;
}
