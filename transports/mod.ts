// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * Everything a transport author needs: the contract ({@linkcode Transport},
 * {@linkcode TransportPair}), helpers that make the common case a few lines
 * ({@linkcode defineTransport}, {@linkcode mapChunks}), layering
 * ({@linkcode layerTransports}), and storage for the `local` argument
 * ({@linkcode MemoryStore}), and the crypto primitives a runtime offers
 * ({@linkcode CryptoBackend}, {@linkcode loadWasmCrypto}). Nothing here uses
 * `Deno.*`: transports run in any
 * runtime with Web Streams.
 *
 * ## How the connection is made
 *
 * By default the runtime opens a plain TCP connection to the destination
 * (the SOCKS destination, or `dial()`'s address) and runs the pair over it.
 * A transport that needs more says so declaratively, and the runtime
 * (`@ptkit/ptkit/client`, `@ptkit/ptkit/server`, `@ptkit/ptkit/net`) performs
 * it; the transport itself still touches no socket and no `Deno.*`:
 *
 * - a client side may give a connection plan per connection
 *   ({@linkcode ClientTransport.connection}): dial another host than the
 *   destination (WebTunnel's `url=` host or `addr=`), and wrap the socket in
 *   TLS with server names to try in turn and extra trusted CA certificates;
 * - a server pair may report the client's address as a front server saw it
 *   ({@linkcode TransportPair.clientAddress}, from `X-Forwarded-For`): the
 *   runtime hands it to tor's Extended ORPort (`USERADDR`) instead of the
 *   socket's peer (the front server);
 * - a server side may give the address its bridge line carries
 *   ({@linkcode ServerTransport.bridgeAddress}) when that is not where it
 *   listens (WebTunnel's placeholder in 2001:db8::/32).
 *
 * A stream-pair transport that needs none of this (plain, obfs4) declares
 * nothing and changes nothing.
 *
 * ## Helper processes
 *
 * A transport built on another program (the spec's SSH example over
 * OpenSSH) declares that program: its arguments and the files it reads,
 * built from the configuration. The runtime writes the files into a
 * private directory, starts the program in its own session, restarts it
 * after `restartDelay` when it exits, turns its output into log lines (IP
 * addresses and ports redacted) and kills it and everything it started
 * when the side is closed, the runtime stops or dies. A client side gives
 * {@linkcode ClientTransport.socksHelper}: the helper serves a SOCKS5 proxy
 * on a loopback port the runtime chose, and the runtime dials each
 * connection through it (to the plan's host and port, names unresolved). A
 * server side gives {@linkcode ServerTransport.helper}: the runtime listens
 * on the bind address and relays each connection to the helper on a
 * loopback port, counting the connections whose client has not
 * authenticated (192 in all, 4 per source, the oldest of the source holding
 * the most closed to make room: sshd alone let idle connections from 64
 * addresses lock everyone out); the helper forwards to a loopback relay
 * where the runtime accepts connections and runs the pair as for any
 * transport (the Extended ORPort, free mode and its destination policy
 * included).
 *
 * ## Next: transports that own their connection
 *
 * Some transports cannot be a pair over one socket the runtime opens: meek
 * carries bytes in a series of HTTP requests (the spec's SSH example,
 * which dials through a local `ssh -D`, gets by with the helper processes
 * above). They get a third kind of
 * declaration, beside the pair and the plan: a client side's
 * `open(destination, settings, capabilities)` that returns the connection's
 * byte streams (`{ readable, writable, close }`) itself, and a server side's
 * `accept(request)` fed by the runtime's HTTP server. The runtime passes
 * capabilities rather than ambient access (`capabilities.dial(plan)` for TCP
 * and TLS as above, `capabilities.fetch` for HTTP, `capabilities.spawn` for a
 * helper process, each present only where the runtime grants it), so such a
 * transport still names no `Deno.*`, runs wherever the capabilities are
 * provided, and everything above it (SOCKS, relays, limits, the Extended
 * ORPort, layering an inner pair over the streams it returns) stays the
 * runtime's. A plan stays the way to ask for sockets; `open` is for
 * transports whose connection is not a socket.
 *
 * @example A complete transport in a few lines
 * ```ts
 * import { defineTransport, mapChunks } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const flip = (c: Uint8Array) => c.map((b) => b ^ 0xff);
 * const xor = defineTransport({
 *   name: "xor",
 *   parseConfig: () => undefined,
 *   pair: () => ({ encode: mapChunks(flip), decode: mapChunks(flip) }),
 * });
 * deepStrictEqual(xor.name, "xor");
 * ```
 *
 * @module
 */

export type {
  ClientTransport,
  GeneratedConfig,
  HostPort,
  IgnoredOption,
  LocalStore,
  ServerTransport,
  SignalPipe,
  Transport,
  TransportEnvironment,
  TransportOptions,
  TransportPair,
} from "./transport.ts";
export { defineTransport, type TransportDefinition } from "./define_transport.ts";
export { mapChunks } from "./map_chunks.ts";
export { layerTransports } from "./layer.ts";
export { MemoryStore } from "./memory_store.ts";
export {
  type Aead,
  type AeadAlgorithm,
  type CryptoBackend,
  loadWasmCrypto,
} from "./crypto_backend.ts";
export { plain } from "./plain.ts";
export { HandshakeError } from "./_handshake_error.ts";
