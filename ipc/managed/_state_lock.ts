// Copyright the ptkit authors. MIT license.
// Internal: one process at a time reads or creates the state of a state
// directory while it starts.

/** How long a start waits for the lock before it says so (it waits on). */
const WAIT_NOTICE_MS = 2000;

/**
 * Take an exclusive lock (`flock`) on the state directory itself, waiting
 * for a process that holds it: PTs started at once on a new directory (a
 * client and a server PT of one tor share `pt_state`; an operator's second
 * start) would each find no `obfs4_state.json`, make their own keys and
 * rename them over the others', so that one PT announced a cert no file
 * kept. The lock is advisory and no file is created for it; it goes with
 * the process, so a process killed while starting leaves none behind.
 *
 * A directory that cannot be opened or locked (no read permission, a file
 * system without `flock`) is used without the lock, as before.
 *
 * @param dir The state directory, which exists.
 * @param onWait Told once, when the lock was not had within 2 s.
 * @returns Releases the lock (call it once the side has started).
 */
export async function lockStateDir(
  dir: string,
  onWait: () => void,
): Promise<() => void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(dir, { read: true });
  } catch {
    return () => {};
  }
  // Not setTimeout: Deno's global setTimeout loads its Node-compatible
  // timers at its first use (5-7 ms measured), which a PT need not spend
  // before CMETHODS DONE / SMETHODS DONE. This timer does not keep the
  // process alive; the lock being waited for does.
  const notice = AbortSignal.timeout(WAIT_NOTICE_MS);
  notice.addEventListener("abort", onWait, { once: true });
  try {
    await file.lock(true);
  } catch {
    file.close();
    return () => {};
  } finally {
    notice.removeEventListener("abort", onWait);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    // Closing the only descriptor of the open file releases its lock.
    file.close();
  };
}
