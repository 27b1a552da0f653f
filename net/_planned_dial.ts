// Copyright the ptkit authors. MIT license.

import type { ConnectionPlan, HostPort } from "../transports/transport.ts";
import { checkPort } from "./address.ts";
import { type Dialer, isNetConn, type NetConn } from "./net_conn.ts";
import { describe } from "./_chunk_io.ts";
import { closeQuietly } from "./_accept_loop.ts";
import { reportTlsServerName } from "../transports/_tls_outcome.ts";
import { setConnectionKeepAlive } from "./_libc.ts";

/**
 * Open the network connection a transport's {@linkcode ConnectionPlan} asks
 * for: TCP through `dialer` to the plan's host and port (else the
 * destination's), with the plan's TCP keepalive set on a Deno TCP
 * connection (through libc, when FFI may be used), then, when the plan says
 * so, TLS with `Deno.startTls`
 * (SNI and certificate check against each of the plan's server names in
 * turn, dialing again after a failed TLS handshake; trusted roots are Deno's,
 * `DENO_CERT`'s and the plan's `caCerts`). Without a plan it is `dialer`
 * itself.
 *
 * @param dialer Opens TCP connections (directly, or through an upstream proxy).
 * @param destination Where the application asked to go.
 * @param plan The transport's plan, if any.
 * @param settings The connection's settings, passed on to `dialer`.
 * @param extraCaCerts Trusted besides the plan's `caCerts` (the connector's).
 * @param signal Aborting it gives the dial up: the dialer is given it, and a
 * TLS handshake under way is ended by closing its socket.
 * @returns The open connection. Over TLS, a peer that closes without
 * `close_notify` (nginx ending an upgraded connection) reads as the end of
 * the stream: what the tunnel carries has its own integrity.
 * @throws {TypeError} When the plan is malformed, or TLS is asked for over a
 * connection that is not a Deno TCP connection.
 * @throws {Error} When every attempt failed (the last TLS error is the cause).
 *
 * @example Dialing another port than the destination's
 * ```ts
 * import { dialPlanned } from "./_planned_dial.ts";
 * import { tcpDialer } from "./net_conn.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await dialPlanned(tcpDialer, { hostname: "192.0.2.1", port: 443 }, {
 *   hostname: "127.0.0.1",
 *   port: listener.addr.port,
 * });
 * (await listener.accept()).close();
 * deepStrictEqual((conn.remoteAddr as Deno.NetAddr).port, listener.addr.port);
 * conn.close();
 * ```
 */
export async function dialPlanned(
  dialer: Dialer,
  destination: HostPort,
  plan?: ConnectionPlan,
  settings?: Readonly<Record<string, string>>,
  extraCaCerts: readonly string[] = [],
  signal?: AbortSignal,
): Promise<NetConn> {
  const target = planTarget(destination, plan);
  const keepAlive = planKeepAlive(plan);
  const dial = async () => {
    let conn: unknown;
    try {
      conn = await (signal !== undefined
        ? dialer(target, settings ?? {}, { signal })
        : settings === undefined
        ? dialer(target)
        : dialer(target, settings));
    } catch (error) {
      // A name the transport's configuration gave (WebTunnel's URL host or
      // addr=), not a client's address: a failed lookup names it.
      if (plan?.hostname !== undefined && isLookupFailure(error)) {
        throw new Error(
          `Cannot resolve ${JSON.stringify(target.hostname)}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      // The same for a refused or unreachable server: under tor the bridge
      // address beside the error is only the bridge line's (WebTunnel's
      // placeholder [2001:db8:...]:443), and a bare 'Connection refused'
      // read as that address's.
      if (plan?.hostname !== undefined) throw namedDialError(error, target);
      throw error;
    }
    // A dialer that forgot its return, or gave a connection's streams,
    // failed in TransportConn with JavaScript's own error, or at the first
    // read.
    if (!isNetConn(conn)) {
      closeQuietly(conn as { close(): void });
      throw new TypeError(
        `Cannot dial: the dialer returned ${
          describe(conn)
        }, not a connection (read, write, closeWrite, close)`,
      );
    }
    if (keepAlive !== undefined && isTcpConn(conn)) {
      const { localAddr, remoteAddr } = conn as Deno.TcpConn;
      setConnectionKeepAlive(localAddr, remoteAddr, keepAlive);
    }
    return conn;
  };
  const tls = plan?.tls;
  if (tls === undefined) return await dial();
  const names = checkNames(tls.serverNames);
  const caCerts = [...checkStrings(tls.caCerts ?? [], "caCerts"), ...extraCaCerts];
  const alpnProtocols = checkStrings(tls.alpnProtocols ?? [], "alpnProtocols");
  let lastError: unknown;
  for (const name of names) {
    signal?.throwIfAborted();
    const tcp = await dial();
    // A dialer that does not heed the signal may return after it aborted.
    if (signal?.aborted) {
      closeQuietly(tcp);
      throw signal.reason;
    }
    // As for plain TCP (see TransportConn): writes go out when made.
    if ("setNoDelay" in tcp && typeof tcp.setNoDelay === "function") tcp.setNoDelay(true);
    let conn: Deno.TlsConn | undefined;
    // An abort ends the handshake under way by closing its socket.
    const onAbort = () => closeQuietly(conn ?? tcp);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      conn = await Deno.startTls(tcp as Deno.TcpConn, {
        hostname: name,
        ...(caCerts.length === 0 ? {} : { caCerts: [...caCerts] }),
        ...(alpnProtocols.length === 0 ? {} : { alpnProtocols: [...alpnProtocols] }),
      });
      await conn.handshake();
      signal?.throwIfAborted();
      // The plan's maker starts its next connections with this name.
      reportTlsServerName(tls, name);
      return new TlsNetConn(conn);
    } catch (error) {
      if (signal?.aborted) {
        closeQuietly(conn ?? tcp);
        throw signal.reason;
      }
      lastError = error;
      try {
        (conn ?? tcp).close();
      } catch {
        // Already closed.
      }
      if (conn === undefined && !isTcpConn(tcp)) {
        throw new TypeError(
          "Cannot start TLS: the dialer returned a connection that is not a Deno TCP connection",
          { cause: error },
        );
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
  // The names are the bridge's (not printed); what failed, and the usual fix.
  const raw = lastError instanceof Error ? lastError.message : String(lastError);
  const reason = withoutCertificateNames(raw);
  const hint = /UnknownIssuer/.test(reason)
    ? " (the certificate's issuer is not trusted here: for a private CA, give its certificate in DENO_CERT=FILE.pem)"
    : "";
  throw new Error(
    `TLS handshake failed for ${
      names.length === 1
        ? "the bridge's server name"
        : `each of the bridge's ${names.length} server names`
    }: ${reason}${hint}`,
    // The raw error names them: kept only when it does not (a cause is
    // printed with its error).
    reason === raw ? { cause: lastError } : {},
  );
}

/**
 * rustls's reason for a certificate that does not hold the server name,
 * without the names: it quotes the name asked for and lists the
 * certificate's (`certificate not valid for name "x"; certificate is only
 * valid for DnsName("y"), IpAddress(192.0.2.1)`), the bridge's names both.
 */
function withoutCertificateNames(reason: string): string {
  return reason
    .replace(/(certificate not valid for name) "[^"]*"/, "$1 asked (not shown)")
    .replace(/(certificate is only valid for) [^;]*/, "$1 others (not shown)");
}

/** Whether a dial failed because the host name did not resolve. */
/**
 * A network error of dialing the host a transport's plan chose, as an error
 * of the same Deno class (so the SOCKS reply and the outcome metrics read
 * it alike) whose message names that host; other errors (an upstream
 * proxy's, which name their own side) as they are.
 */
function namedDialError(error: unknown, target: HostPort): unknown {
  if (!(error instanceof Error)) return error;
  const Class = error.constructor as new (message: string, options: ErrorOptions) => Error;
  if (!(Object.values(Deno.errors) as unknown[]).includes(Class)) return error;
  const host = target.hostname.includes(":") ? `[${target.hostname}]` : target.hostname;
  const named = new Class(
    `Cannot connect to ${host}:${target.port} (the server the transport's options name, not the bridge address): ${error.message}`,
    { cause: error },
  );
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && !("code" in named)) {
    Object.defineProperty(named, "code", { value: code, enumerable: true });
  }
  return named;
}

function isLookupFailure(error: unknown): boolean {
  return error instanceof Error &&
    /failed to lookup address|Name or service not known|nodename nor servname|os error -[25]\b/
      .test(error.message);
}

function planTarget(destination: HostPort, plan?: ConnectionPlan): HostPort {
  if (plan === undefined) return destination;
  if (typeof plan !== "object" || plan === null) {
    throw new TypeError(`Invalid connection plan: expected an object, got ${typeof plan}`);
  }
  const hostname = plan.hostname ?? destination.hostname;
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(`Invalid connection plan: invalid hostname ${JSON.stringify(hostname)}`);
  }
  const port = checkPort(plan.port ?? destination.port, "connection plan", 1);
  return { hostname, port };
}

/** The plan's TCP keepalive in seconds (an integer from 1 to 32767), if any. */
function planKeepAlive(plan?: ConnectionPlan): number | undefined {
  const keepAlive: unknown = plan?.keepAlive;
  if (keepAlive === undefined) return undefined;
  if (
    typeof keepAlive !== "number" || !Number.isInteger(keepAlive) || keepAlive < 1 ||
    keepAlive > 32767
  ) {
    throw new TypeError(
      `Invalid connection plan: keepAlive must be an integer number of seconds in 1-32767, got ${
        typeof keepAlive === "number" ? keepAlive : typeof keepAlive
      }`,
    );
  }
  return keepAlive;
}

function checkNames(names: unknown): readonly string[] {
  const checked = checkStrings(names, "serverNames");
  if (checked.length === 0 || checked.some((name) => name === "")) {
    throw new TypeError("Invalid connection plan: serverNames must hold non-empty names");
  }
  return checked;
}

function checkStrings(values: unknown, what: string): readonly string[] {
  if (!Array.isArray(values) || values.some((value) => typeof value !== "string")) {
    throw new TypeError(`Invalid connection plan: ${what} must be an array of strings`);
  }
  return values as readonly string[];
}

function isTcpConn(conn: NetConn): boolean {
  return conn.remoteAddr.transport === "tcp" && "setNoDelay" in conn;
}

/** A TLS connection as a {@linkcode NetConn}. */
class TlsNetConn implements NetConn {
  #conn: Deno.TlsConn;

  constructor(conn: Deno.TlsConn) {
    this.#conn = conn;
  }

  async read(p: Uint8Array): Promise<number | null> {
    try {
      return await this.#conn.read(p);
    } catch (error) {
      if (error instanceof Deno.errors.UnexpectedEof) return null;
      throw error;
    }
  }

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    this.#conn.close();
  }

  get localAddr(): Deno.Addr {
    return this.#conn.localAddr;
  }

  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }
}
