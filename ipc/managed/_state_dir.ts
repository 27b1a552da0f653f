// Copyright the ptkit authors. MIT license.
// Internal: the per-user state directory of the runs that choose their own
// (the friendly commands, the SIP003 plugin).

/**
 * `$XDG_STATE_HOME/ptkit/<role>`, else `$HOME/.local/state/ptkit/<role>`,
 * else `.ptkit-state/ptkit/<role>` in the working directory. A relative
 * `XDG_STATE_HOME` or `HOME` is ignored, as the XDG Base Directory
 * specification says (it would move with the working directory), and so is
 * a `HOME` that is not a directory: a service user's `/nonexistent`
 * (Debian's convention) is not created, even by root.
 *
 * @param role The run (`server`, `client`, `start`, `sip003-server`, ...).
 * @param getEnv Reads `XDG_STATE_HOME` and `HOME`.
 * @param isDirectory Whether a path is an existing directory (the file
 * system by default).
 * @returns The directory (not created).
 */
export function perUserStateDir(
  role: string,
  getEnv: (name: string) => string | undefined,
  isDirectory: (path: string) => boolean = existingDirectory,
): string {
  const absolute = (value: string | undefined) => value?.startsWith("/") ? value : undefined;
  const xdg = absolute(getEnv("XDG_STATE_HOME"));
  const given = absolute(getEnv("HOME"));
  const home = given !== undefined && isDirectory(given) ? given : undefined;
  const base = xdg
    ? xdg
    : home
    ? inDirectory(home, ".local/state")
    : inDirectory(Deno.cwd(), ".ptkit-state");
  return inDirectory(base, `ptkit/${role}`);
}

/**
 * `name` in `directory`, without a doubled slash when the directory is `/`
 * or ends in one (`//.ptkit-state` would be printed as the state's path).
 *
 * @param directory An absolute directory.
 * @param name A relative path.
 * @returns The joined path.
 */
export function inDirectory(directory: string, name: string): string {
  return `${directory.replace(/\/+$/, "")}/${name}`;
}

function existingDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
