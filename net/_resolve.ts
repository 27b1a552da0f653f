// Copyright the ptkit authors. MIT license.
// Internal: looking host names up without a thread of Deno's blocking pool.
// Not part of the public API.

/** Longest a lookup with the system's name servers takes, in ms. */
export const LOOKUP_TIMEOUT_MS = 10_000;

/** Options for {@linkcode systemResolve}. */
export interface SystemResolveOptions {
  /** The name server to ask instead of those of `/etc/resolv.conf`. */
  readonly nameServer?: { readonly ipAddr: string; readonly port: number };
  /** Aborting it gives the lookup up. */
  readonly signal?: AbortSignal;
}

/**
 * Look a name up with the name servers of `/etc/resolv.conf`, through
 * Deno's own asynchronous resolver (`Deno.resolveDns`): its IPv4 addresses,
 * then its IPv6 ones, within {@linkcode LOOKUP_TIMEOUT_MS}. Not getaddrinfo
 * (`node:dns` `lookup`): that holds one of the 32 threads of Deno's
 * blocking pool, which every file operation shares, until the name servers
 * answer or time out, and nothing gives it up sooner; 32 names whose name
 * servers never answer stopped every file read of the process for 10 s.
 *
 * @param hostname The name.
 * @param options Another name server; a signal.
 * @returns The addresses (IP literals, IPv6 without brackets).
 * @throws {Error} When the name has no address, or the name servers did
 * not answer in time.
 */
export async function systemResolve(
  hostname: string,
  options: SystemResolveOptions = {},
): Promise<string[]> {
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new Error(`No answer from the name servers in ${LOOKUP_TIMEOUT_MS} ms`)),
    LOOKUP_TIMEOUT_MS,
  );
  const signal = options.signal === undefined
    ? deadline.signal
    : AbortSignal.any([deadline.signal, options.signal]);
  const query = {
    signal,
    ...(options.nameServer === undefined ? {} : { nameServer: options.nameServer }),
  };
  try {
    const [v4, v6] = await Promise.allSettled([
      Deno.resolveDns(hostname, "A", query),
      Deno.resolveDns(hostname, "AAAA", query),
    ]);
    const found = [
      ...(v4.status === "fulfilled" ? v4.value : []),
      ...(v6.status === "fulfilled" ? v6.value : []),
    ];
    if (found.length > 0) return found;
    if (signal.aborted) throw signal.reason;
    const reason = v4.status === "rejected"
      ? v4.reason
      : v6.status === "rejected"
      ? v6.reason
      : undefined;
    // The resolver's own text quotes its query ("no records found for Query
    // { name: ... }"): the name has no address, said plainly.
    if (reason === undefined || reason instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound("The name has no address", { cause: reason });
    }
    throw reason;
  } finally {
    clearTimeout(timer);
  }
}
