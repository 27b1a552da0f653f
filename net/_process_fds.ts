// Copyright the ptkit authors. MIT license.
// Internal: the process's open file descriptors and their limit, for the
// `process_open_fds` and `process_max_fds` gauges. Deno lets only a process
// run with --allow-all read /proc/self, so these come from libc through FFI
// (main.ts has --allow-ffi): getrlimit(RLIMIT_NOFILE), and the entries of
// /proc/self/fd counted with opendir/readdir.

/** `RLIMIT_NOFILE` on Linux. */
const RLIMIT_NOFILE = 7;

const symbols = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** `errno` when the process has no descriptor left. */
const EMFILE = 24;

/** Reads the descriptor count and limit of this process. */
export interface ProcessFds {
  /** Open file descriptors now. */
  open(): number;
  /** The soft limit on open file descriptors (`Infinity` when unlimited). */
  max(): number;
}

const FD_DIR = new TextEncoder().encode("/proc/self/fd\0");

/**
 * The process's descriptor readers, or `undefined` when FFI is not allowed
 * (no prompt is shown), this is not 64-bit Linux with glibc, or a first
 * read fails.
 *
 * @returns The readers, if they work here.
 */
export function processFds(): ProcessFds | undefined {
  if (cached !== null) return cached;
  cached = open();
  return cached;
}

let cached: ProcessFds | undefined | null = null;

function open(): ProcessFds | undefined {
  try {
    if (Deno.build.os !== "linux") return undefined;
    if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return undefined;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    const libc = Deno.dlopen("libc.so.6", symbols).symbols;
    const max = () => {
      const limit = new BigUint64Array(2); // struct rlimit { rlim_cur, rlim_max }
      if (libc.getrlimit(RLIMIT_NOFILE, limit) !== 0) throw new Error("getrlimit failed");
      // RLIM_INFINITY is all ones.
      return limit[0] === 0xffff_ffff_ffff_ffffn ? Infinity : Number(limit[0]);
    };
    const errno = () => {
      const pointer = libc.__errno_location();
      return pointer === null ? 0 : new Deno.UnsafePointerView(pointer).getInt32();
    };
    const fds: ProcessFds = {
      open: atMostOnePercent(() => {
        const dir = libc.opendir(FD_DIR);
        if (dir === null) {
          // The listing takes a descriptor: without one left, every one
          // the limit allows is open (the moment an operator most needs
          // the count, never to be left out).
          if (errno() === EMFILE) return max();
          throw new Error("Cannot open /proc/self/fd");
        }
        let entries = 0;
        try {
          while (libc.readdir(dir) !== null) entries++;
        } finally {
          libc.closedir(dir);
        }
        // Less ".", ".." and the descriptor of the listing itself.
        return entries - 3;
      }),
      max,
    };
    fds.open();
    fds.max();
    return fds;
  } catch {
    return undefined;
  }
}

/** A read that takes longer than this (in ms) is not repeated at once. */
const COSTLY_MS = 1;

/**
 * `read`, repeated only once it has not run for 100 times as long as it
 * took last (the value before is given meanwhile) when that was over
 * {@linkcode COSTLY_MS}: the listing of /proc/self/fd runs on the main
 * thread and takes about 1 ms per 1,200 descriptors (12.6 ms at 15,000), and
 * the metrics endpoint answers as fast as it is asked. A bridge with 15,000
 * descriptors served 291 scrapes in 6 s to one client asking four at a time,
 * and its event loop ran a third of its timers; a cheap count (a small
 * process, the tests) is read fresh every time.
 *
 * @param read The costly read.
 * @param now The clock, in ms.
 * @returns The throttled read.
 */
export function atMostOnePercent(
  read: () => number,
  now: () => number = () => performance.now(),
): () => number {
  let value = 0;
  let due = -Infinity;
  return () => {
    const start = now();
    if (start < due) return value;
    value = read();
    const took = now() - start;
    due = took > COSTLY_MS ? start + 100 * took : -Infinity;
    return value;
  };
}
