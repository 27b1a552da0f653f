// Copyright the ptkit authors. MIT license.
// Internal: a listen that fails names the address it was to listen on (the
// operator's own, never a client's: it may be printed).

import { checkDialHostname, formatHostPort, type HostPort } from "./address.ts";

/** The address a failed listen names, kept by `describe()` (which hides other addresses). */
export const LISTEN_ADDRESS: unique symbol = Symbol("ptkit.listenAddress");

/** What a failed listen's message says after the cause's (the fix), kept by `describe()` too. */
export const LISTEN_HINT: unique symbol = Symbol("ptkit.listenHint");

/**
 * Said after a refused listen on a port below 1024: binding one takes a
 * capability that tor's user (Debian's debian-tor) lacks, and `setcap` on
 * `deno`'s usual path (npm's global install, a link in /usr/local/bin)
 * fails with "Invalid file": it must name the executable itself.
 */
const LOW_PORT_HINT =
  "; a port below 1024 needs the capability to bind it (CAP_NET_BIND_SERVICE: setcap cap_net_bind_service=+ep on the deno executable itself, not a link to it: readlink -f $(command -v deno)), or take a port from 1024";

/**
 * Run `listen`; a failure is rethrown as an error of the same class (so
 * `instanceof Deno.errors.AddrInUse` still holds) whose message names the
 * address: `Cannot listen on 127.0.0.1:443: Address already in use (os
 * error 98)`, with the original's `code` and the original as its `cause`.
 *
 * @param at Where it listens (a missing hostname is Deno's 0.0.0.0).
 * @param listen Opens the listener.
 * @returns What `listen` returned.
 * @throws {TypeError} When `at.hostname` is given and is not a string
 * (before `listen` runs).
 */
export function listenOn<T>(
  at: { readonly hostname?: string | undefined; readonly port: number },
  listen: () => T,
): T {
  if (at.hostname !== undefined) checkListenHostname(at.hostname);
  try {
    return listen();
  } catch (error) {
    throw listenError(error, { hostname: at.hostname ?? "0.0.0.0", port: at.port });
  }
}

/** `error` as a failure to listen on `at` (see {@linkcode listenOn}). */
function listenError(error: unknown, at: HostPort): unknown {
  if (!(error instanceof Error) || LISTEN_ADDRESS in error) return error;
  let address: string;
  try {
    address = formatHostPort(at);
  } catch {
    // A port no listener takes: Deno's own error says so.
    return error;
  }
  // Binding a low port is refused for want of a capability (as tor's user):
  // said with the fix, not as a bare 'Permission denied'.
  const hint = error instanceof Deno.errors.PermissionDenied && at.port > 0 && at.port < 1024
    ? LOW_PORT_HINT
    : "";
  const message = `Cannot listen on ${address}: ${error.message}${hint}`;
  let wrapped: Error;
  try {
    // Deno refuses a malformed host name with a URIError: bad input, a TypeError here.
    const Class = error instanceof URIError
      ? TypeError
      : error.constructor as new (message: string, options: ErrorOptions) => Error;
    wrapped = new Class(message, { cause: error });
    if (wrapped.message !== message) throw wrapped;
  } catch {
    wrapped = new Error(message, { cause: error });
  }
  Object.defineProperty(wrapped, LISTEN_ADDRESS, { value: address });
  Object.defineProperty(wrapped, LISTEN_HINT, { value: hint });
  // The code (EMFILE, EADDRINUSE...) goes along: out of descriptors, a UDP
  // socket is retried as a dial is (retryWhileExhausted reads the code).
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && !("code" in wrapped)) {
    Object.defineProperty(wrapped, "code", { value: code, enumerable: true });
  }
  return wrapped;
}

/**
 * Check the hostname a listener is to bind: a number or an array failed
 * with JavaScript's 'hostname.includes is not a function' while the failure
 * was being named.
 *
 * @param hostname What the caller gave.
 * @returns `hostname`, typed.
 * @throws {TypeError} When it is not a string, or neither an IP address
 * nor a host name (`localhost:80`, a port in the name: Deno's own
 * 'invalid char found in FQDN' came after it in brackets, as if IPv6), as
 * a dial's hostname is checked.
 */
export function checkListenHostname(hostname: unknown): string {
  if (typeof hostname !== "string") {
    const shown = typeof hostname === "number" || typeof hostname === "boolean" ||
        hostname === null
      ? `${String(hostname)} `
      : "";
    const type = hostname === null
      ? "null"
      : Array.isArray(hostname)
      ? "an array"
      : typeof hostname;
    throw new TypeError(`Cannot listen: invalid hostname ${shown}(${type}): must be a string`);
  }
  try {
    checkDialHostname(hostname, "listen");
  } catch {
    throw new TypeError(
      `Cannot listen on ${
        JSON.stringify(hostname)
      }: invalid hostname: neither an IP address nor a host name`,
    );
  }
  return hostname;
}
