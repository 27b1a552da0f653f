// Copyright the ptkit authors. MIT license.
// Internal: the per-user state directory of the runs that choose their own
// (the friendly commands, the SIP003 plugin).

/**
 * `$XDG_STATE_HOME/ptkit/<role>`, else `$HOME/.local/state/ptkit/<role>`,
 * else `.ptkit-state/ptkit/<role>` in the working directory.
 *
 * @param role The run (`server`, `client`, `start`, `sip003-server`, ...).
 * @param getEnv Reads `XDG_STATE_HOME` and `HOME`.
 * @returns The directory (not created).
 */
export function perUserStateDir(
  role: string,
  getEnv: (name: string) => string | undefined,
): string {
  const xdg = getEnv("XDG_STATE_HOME");
  const home = getEnv("HOME");
  const base = xdg ? xdg : home ? `${home}/.local/state` : `${Deno.cwd()}/.ptkit-state`;
  return `${base}/ptkit/${role}`;
}
