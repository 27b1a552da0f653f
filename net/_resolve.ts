// Copyright the ptkit authors. MIT license.
// Internal: looking host names up without a thread of Deno's blocking pool.
// Not part of the public API.

import { acceptErrorKind, retryWhileExhausted } from "./_accept_loop.ts";

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
 * then its IPv6 ones, within {@linkcode LOOKUP_TIMEOUT_MS}. A process out
 * of descriptors for a moment (its resolver opens a file and sockets)
 * tries again for up to 3 s, as a dial does. Not getaddrinfo
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
    return await retryWhileExhausted(async () => {
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
      const reasons = [v4, v6].flatMap((r) =>
        r.status === "rejected" ? [exhaustion(r.reason)] : []
      );
      // Out of descriptors, either query says nothing of the name.
      const reason = reasons.find((r) => acceptErrorKind(r) === "exhausted") ?? reasons[0];
      // The resolver's own text quotes its query ("no records found for Query
      // { name: ... }"): the name has no address, said plainly.
      if (reason === undefined || reason instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound("The name has no address", { cause: reason });
      }
      throw reason;
    }, signal);
  } finally {
    clearTimeout(timer);
  }
}

/** The codes of the exhaustion errors Deno's resolver gives only as text. */
const EXHAUSTION_CODES: Readonly<Record<string, string>> = {
  "12": "ENOMEM",
  "23": "ENFILE",
  "24": "EMFILE",
  "105": "ENOBUFS",
};

/**
 * `Deno.resolveDns` fails for want of descriptors with a plain `Error`
 * ("proto error: io error: Too many open files (os error 24)"): given the
 * code a dial's error carries, so that it is known as exhaustion.
 */
function exhaustion(error: unknown): unknown {
  if (!(error instanceof Error) || "code" in error) return error;
  const code = EXHAUSTION_CODES[/\(os error (\d+)\)/.exec(error.message)?.[1] ?? ""];
  if (code !== undefined) Object.assign(error, { code });
  return error;
}
