// Copyright the ptkit authors. MIT license.
// CPU seconds of processes, from Linux's /proc, for the benches' accounting
// of where a run's time went. Not part of the public API.

/** Fields of /proc/<pid>/stat after the command name. */
function statFields(pid: number | "self"): string[] {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/**
 * CPU seconds (user + system) a process has used so far; with `children`,
 * those of its children it has waited for instead (curl run by this process).
 * `NaN` where /proc cannot be read.
 */
export function cpuSeconds(pid: number | "self", children = false): number {
  try {
    const fields = statFields(pid);
    const [user, system] = children ? [fields[13], fields[14]] : [fields[11], fields[12]];
    return (Number(user) + Number(system)) / 100; // USER_HZ = 100
  } catch {
    return NaN;
  }
}

/** The process ids of a process's children (nginx's workers), `[]` where unknown. */
export function childPids(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter((word) => word !== "").map(Number);
  } catch {
    return [];
  }
}
