// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: which of a connection plan's TLS server names completed its
// handshake, told back to the transport that made the plan (WebTunnel starts
// its next connections with that name, as lyrebird rerolls after a failure).

type Listener = (serverName: string) => void;

const listeners = new WeakMap<object, Listener>();

/**
 * Ask to be told which server name of `tls` (a connection plan's `tls`
 * object) completed its TLS handshake, when one does.
 *
 * @param tls The plan's `tls` object, as returned to the runtime.
 * @param listener Called once with the name.
 */
export function onTlsServerName(tls: object, listener: Listener): void {
  listeners.set(tls, listener);
}

/**
 * Tell the plan's maker which of its server names completed the handshake
 * (the runtime's TLS dial calls it).
 *
 * @param tls The plan's `tls` object.
 * @param serverName The name sent as SNI and checked against the certificate.
 */
export function reportTlsServerName(tls: object, serverName: string): void {
  const listener = listeners.get(tls);
  listeners.delete(tls);
  listener?.(serverName);
}
