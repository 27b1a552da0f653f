// Copyright the ptkit authors. MIT license.
// Internal: how a `-workers` child is started (its program, flags and
// arguments) and whether it can be; apart from the worker pool, so that a
// start decides its worker count without loading the pool (it starts after
// *METHODS DONE).

import type { ClientConfig, ServerConfig } from "./config.ts";
import { WORKER_ARG } from "./_flags.ts";

/**
 * The Deno flags of a worker child: main.ts's shebang without
 * `--allow-run` (a child starts nothing). tests/workers_test.ts checks that
 * the shebang grants each of them (`--unstable-net` through the
 * `deno.json` beside main.ts, `"unstable": ["net"]`, which keeps the
 * shebang within Linux's 256 bytes; a child of a program of the library
 * user's own gets the flag).
 */
export const WORKER_DENO_FLAGS: readonly string[] = [
  "--quiet",
  "--no-prompt",
  "--unstable-net",
  "--allow-ffi",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env=TOR_PT_*,SS_*,HOME,XDG_STATE_HOME",
  "--allow-sys=uid",
  "--v8-flags=--max-semi-space-size=4,--expose-gc",
];

/**
 * Why worker children cannot be started here (no permission to run the
 * program they need, or theirs could not be kept within this process's),
 * or undefined when they can.
 *
 * @returns The reason, with the fix, as a sentence fragment.
 */
export function workersUnavailable(config: ClientConfig | ServerConfig): string | undefined {
  // Sharing a port (SO_REUSEPORT) is unstable in Deno, and listening with it
  // without the flag ends the process (no error to catch). The flag also
  // brings Deno.listenDatagram: its absence says the flag is missing.
  if (typeof (Deno as { listenDatagram?: unknown }).listenDatagram !== "function") {
    return `sharing a port needs Deno's --unstable-net flag (main.ts's shebang gives it; a program of your own: run it with --unstable-net, or put "unstable": ["net"] in its deno.json)`;
  }
  const program = workerProgram();
  let state: Deno.PermissionState = "denied";
  try {
    state = Deno.permissions.querySync({ name: "run", command: program }).state;
  } catch {
    // Counted as denied.
  }
  if (state === "granted") {
    return workerArgs(workerPaths(config)) === undefined ? PARTLY_DENIED : undefined;
  }
  return Deno.build.standalone
    ? `worker processes need permission to run ${program} (compile with --allow-run)`
    : `worker processes need permission to run "deno" (grant --allow-run=deno, as main.ts's shebang does)`;
}

/** Why a child cannot be started with its share of a permission. */
export const PARTLY_DENIED =
  "a child could not be given just the part this process holds of a permission it needs (a --deny-* flag on net or ffi, or a state directory or cookie path holding a comma, which Deno's flags cannot say)";

/** The program a child runs: the same Deno, or the compiled executable itself. */
/** The program a worker child runs. */
export function workerProgram(): string {
  if (Deno.build.standalone) return Deno.execPath();
  // main.ts's shebang grants `--allow-run=deno`, the name PATH resolves;
  // a parent allowed to run its own executable by path uses that.
  try {
    const exec = Deno.execPath();
    if (Deno.permissions.querySync({ name: "run", command: exec }).state === "granted") {
      return exec;
    }
  } catch {
    // No permission to read the executable's path.
  }
  return "deno";
}

/**
 * The files a child reads and writes: the state directory and, for an
 * Extended ORPort target, tor's auth cookie (read again per connection).
 */
/** The paths a worker child reads and writes. */
export function workerPaths(config: ClientConfig | ServerConfig): WorkerPaths {
  const stateDir = config.stateDir ?? Deno.cwd();
  const cookie = config.kind === "server" && config.target.kind === "extorport"
    ? [config.target.cookieFile]
    : [];
  return { read: [stateDir, ...cookie], write: [stateDir] };
}

/** What {@linkcode workerPaths} gives. */
interface WorkerPaths {
  readonly read: readonly string[];
  readonly write: readonly string[];
}

/**
 * The child's arguments: the main module again, as a worker; `undefined`
 * when the child's permissions cannot be made no wider than the parent's.
 */
/** A worker child's arguments, or undefined when its permissions cannot be given. */
export function workerArgs(paths: WorkerPaths): string[] | undefined {
  if (Deno.build.standalone) return [WORKER_ARG];
  const flags = workerDenoFlags(paths);
  return flags === undefined ? undefined : ["run", ...flags, Deno.mainModule, WORKER_ARG];
}

/**
 * A child's Deno flags, never wider than what the parent holds:
 * {@linkcode WORKER_DENO_FLAGS}, where the parent holds a permission whole
 * (`-A`, `--allow-env`) passing it on whole (a program of its own around
 * `runManagedProxy`, whose transport reads its own variables, gets in its
 * children what it has). Where it holds only part of one (a `--deny-*`
 * flag, a narrower list, or Deno's own denial of writes to the programs
 * `--allow-run` names, as under main.ts's shebang): read and write are
 * granted for the paths a child uses (the state directory, tor's cookie)
 * that the parent may use, the list's variables and `sys` kinds for those
 * the parent has, and `undefined` when `net` or `ffi` is partly denied
 * (Deno does not say which part). A child never starts processes: `run`
 * is not passed on.
 */
function workerDenoFlags(paths: WorkerPaths): string[] | undefined {
  const query = (descriptor: Deno.PermissionDescriptor): Deno.PermissionStatus | undefined => {
    try {
      return Deno.permissions.querySync(descriptor);
    } catch {
      return undefined; // Unknown to this Deno: not held.
    }
  };
  const whole = (status: Deno.PermissionStatus | undefined) =>
    status?.state === "granted" && status.partial !== true;
  const flags: string[] = [];
  for (const flag of WORKER_DENO_FLAGS) {
    const match = /^--allow-(env|net|read|write|ffi|sys)(?:=(.*))?$/.exec(flag);
    if (match === null) {
      flags.push(flag);
      continue;
    }
    const name = match[1] as "env" | "net" | "read" | "write" | "ffi" | "sys";
    const status = query({ name });
    if (whole(status)) {
      flags.push(`--allow-${name}`);
    } else if (name === "read" || name === "write") {
      // Deno splits a flag's list at commas: a path holding one would grant
      // its pieces, which the parent was never asked about.
      if (paths[name].some((path) => path.includes(","))) return undefined;
      const held = paths[name].filter((path) => whole(query({ name, path })));
      if (held.length > 0) flags.push(`--allow-${name}=${held.join(",")}`);
    } else if (name === "env" || name === "sys") {
      const items = (match[2] ?? "").split(",").filter((item) =>
        whole(query(name === "env" ? { name, variable: item } : { name, kind: item as "uid" }))
      );
      if (items.length > 0) flags.push(`--allow-${name}=${items.join(",")}`);
    } else if (status?.partial === true) {
      return undefined;
    }
  }
  // Not in the list (a program of its own may need it): passed on when whole.
  if (whole(query({ name: "import" }))) flags.push("--allow-import");
  return flags;
}
