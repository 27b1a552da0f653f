// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * The transport contract: what a pluggable transport author implements.
 *
 * A transport turns one byte stream into another. For every connection each
 * side (client and server) yields a {@linkcode TransportPair}: an `encode`
 * stream that turns application bytes into wire bytes and a `decode` stream
 * that turns wire bytes back into application bytes. Everything else
 * (sockets, SOCKS, Tor's IPC) is the runtime's job.
 *
 * How the connection is made, helper processes and the design for
 * transports that own their connection are in the module documentation of
 * the `@ptkit/ptkit/transports` entry point (`mod.ts`).
 *
 * @module
 */

import type { CryptoBackend } from "./crypto_backend.ts";

/**
 * An opaque key-value map of strings: a client or server configuration, or
 * per-connection settings (PT 2.0 draft 1's "opaque" arguments).
 */
export type TransportOptions = Readonly<Record<string, string>>;

/**
 * A host and a port, as `Deno.connect` takes them; also where a connection of
 * a *free* transport goes (PT 2.0 draft 1's TCP destination endpoint), a host name
 * there being sent unresolved.
 */
export interface HostPort {
  /** An IP literal (IPv6 without brackets) or a host name. */
  readonly hostname: string;
  /** The port, 0-65535. */
  readonly port: number;
}

/**
 * The pair of streams one side of one connection uses.
 *
 * `encode` takes the application's bytes and emits wire bytes; `decode` takes
 * wire bytes and emits the application's bytes. The two may share
 * per-connection state (a handshake is the first bytes `encode` emits and the
 * peer's `decode` consumes), may hold output back to coalesce small writes,
 * and must honour backpressure. Closing `encode`'s writable side means the
 * application has finished writing (half-close); a stream that errors ends
 * the connection with that error.
 */
export interface TransportPair {
  /** Application bytes in, wire bytes out. */
  readonly encode: TransformStream<Uint8Array, Uint8Array>;
  /** Wire bytes in, application bytes out. */
  readonly decode: TransformStream<Uint8Array, Uint8Array>;
  /**
   * Resolves once the transport's handshake has completed (on a server: the
   * client proved it knows the bridge's secret), rejects when it failed.
   * A server runtime waits for it before it connects the target, so probes
   * never reach the service behind. Omit it when there is no handshake.
   * It need not watch for the peer closing: once the peer's bytes have
   * ended and `decode` has taken that end (its `flush` done) with `ready`
   * still pending, the runtime fails the handshake at once ("the peer
   * closed the connection before the handshake finished"), as when a
   * transport rejects `ready` itself, rather than at its deadline.
   */
  readonly ready?: Promise<void>;
  /**
   * Server side of a free transport: the destination the client's stream
   * names, resolved when it has arrived and been authenticated (no later
   * than `ready`). The runtime connects it (after its destination policy
   * allowed it) instead of a fixed target. Absent for bound transports.
   * The runtime checks it as a client's `destination` is checked (an IP
   * address or a host name of ASCII letters, digits, `.`, `_` and `-`, a
   * port 0-65535): anything else fails the connection with a `TypeError` or
   * `RangeError` naming the transport, never the name.
   */
  readonly destination?: Promise<HostPort>;
  /**
   * Server pairs only: the client's address as a front server reported it
   * (WebTunnel's last `X-Forwarded-For` value), for the Extended ORPort's
   * `USERADDR`. Resolves no later than `ready` (to `undefined` when no
   * address was reported); the runtime uses it only when `hostname` is an
   * IP literal, and the socket's peer otherwise. Never logged.
   */
  readonly clientAddress?: Promise<HostPort | undefined>;
  /**
   * Server pairs only: `true` when a connection that never completes the
   * handshake is held, read and dropped, for as long as its peer keeps it
   * open, as the reference server does (shadowsocks-libev never closes a
   * connection that failed to authenticate). The runtime then sets no
   * handshake deadline of its own unless given one explicitly: a deadline
   * would close probes at a moment the reference never does.
   */
  readonly holdsProbes?: boolean;
}

/**
 * Long-term storage a transport may ask for (PT 2.0 draft 1's `local` argument):
 * small named values such as keys or state files. Keys are file-name-like
 * strings (`obfs4_state.json`).
 */
export interface LocalStore {
  /** Read a value, or `undefined` when nothing is stored under `key`. */
  get(key: string): Promise<string | undefined>;
  /** Store `value` under `key`, replacing what was there. */
  set(key: string, value: string): Promise<void>;
  /**
   * Where `key` is kept, for messages about it (a state file's path, as
   * obfs4proxy names `/var/lib/tor/pt_state/obfs4_state.json`). Absent: the
   * key alone names it.
   */
  describe?(key: string): string;
}

/**
 * An unreliable out-of-band message pipe to the other side (PT 2.0 draft 1's
 * `signals` argument): messages the transport writes go to the peer's
 * operator, messages from the peer arrive on `readable`. Delivery may take
 * manual action and may never happen.
 */
export interface SignalPipe {
  /** Messages from the other side. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Messages to the other side. */
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * An option a transport ignored because it does not know its key: bridge
 * lines carry keys for other implementations and newer versions, so unknown
 * keys are reported, never refused. The value is deliberately absent (it may
 * be a secret).
 */
export interface IgnoredOption {
  /** The transport that ignored the option. */
  readonly transport: string;
  /** The unknown key. */
  readonly key: string;
  /** A known key it is probably a typo of (`iat-mode` for `iatMode`). */
  readonly suggestion?: string;
  /**
   * Why a key the transport knows is not honoured (WebTunnel's `utls`: Deno
   * cannot shape its TLS ClientHello). Absent: the key is unknown.
   */
  readonly reason?: string;
}

/** The option keys each side of a transport understands (internal shorthand). */
export type TransportOptionKeys = NonNullable<Transport["optionKeys"]>;

/** The advanced factory arguments a transport may use. */
export interface TransportEnvironment {
  /**
   * Loads the cryptographic primitives the runtime chose for this process
   * (native libsodium where it may load, WebAssembly elsewhere); absent:
   * the transport uses `loadWasmCrypto` from `@ptkit/ptkit/transports`.
   * Transports call it when they first need crypto, not when configured,
   * so that nothing heavy loads before the runtime has started.
   */
  readonly crypto?: () => Promise<CryptoBackend>;
  /** Long-term local storage; absent when the application provides none. */
  readonly local?: LocalStore;
  /** Out-of-band message pipe; absent when the application provides none. */
  readonly signals?: SignalPipe;
  /**
   * Shares a server's replay filter (obfs4's handshake MACs, Shadowsocks'
   * salts) with the other listeners and processes serving the same
   * transport (the managed proxy's `-workers`): the server calls `recorded`
   * with each value its filter records, and `subscribe` with a function that
   * adds a value another one recorded (the function it returns stops
   * that). Without it a replay reaching another process would be answered.
   * Absent: the filter is the listener's own.
   */
  readonly replays?: {
    readonly recorded: (value: Uint8Array) => void;
    readonly subscribe: (add: (value: Uint8Array) => void) => () => void;
  };
  /**
   * Told about every option the transport ignored because its key is unknown
   * (the managed proxy logs each key once, at `notice`). Absent: ignored
   * options go unreported.
   */
  readonly onIgnoredOption?: (ignored: IgnoredOption) => void;
  /**
   * Told, in a sentence for the operator's log, what the transport did
   * that the operator should know of (a state file it changed, say: obfs4
   * saving an `iat-mode` option into `obfs4_state.json`). The managed proxy
   * logs it at `notice`; it never holds a secret. Absent: not reported.
   */
  readonly onNotice?: (message: string) => void;
}

/** The client side of a transport, configured and ready to make pairs. */
export interface ClientTransport {
  /**
   * Make the pair for one new connection.
   *
   * @param settings The per-connection settings (empty when there are none).
   * @param destination Where the connection goes, for a free transport
   * (required then); bound transports ignore it.
   * @returns The encode/decode pair for that connection: an object with two
   * `TransformStream`s, `encode` and `decode`, made when called (not a
   * promise).
   * @throws {TypeError} When a free transport gets no destination, or (a
   * side `defineTransport` made) when the definition's `pair()`
   * returned no `{ encode, decode }`.
   */
  pair(settings: TransportOptions, destination?: HostPort): TransportPair;
  /**
   * How to make the network connection to `destination`, when it is not
   * plain TCP to it: the connection plan, which the runtime performs.
   * Called once per connection, before `pair`. Omit it for the default.
   *
   * A plan's fields, each optional (omitted: the default):
   * - `hostname`, `port`: dial these instead of the destination's;
   * - `tls`: wrap the connection in TLS before the pair's first byte, with
   *   `serverNames` (at least one) sent as SNI and checked against the
   *   certificate, tried in order (after a failed TLS handshake the runtime
   *   dials again with the next), `caCerts` (extra trusted CA certificates,
   *   PEM, besides the runtime's roots: Deno's, `DENO_CERT`, the
   *   connector's `caCerts`) and `alpnProtocols` to offer;
   * - `keepAlive`: TCP keepalive of the connection in seconds, as the
   *   reference client has it (obfs4proxy and lyrebird, Go clients: 15): the
   *   idle time before the first probe and between probes, an integer from 1
   *   to 32767. A censor watching an idle connection sees these packets. The
   *   runtime sets it when it may use FFI on Linux; absent, none.
   *
   * @param destination Where the application asked to go (the SOCKS
   * destination: for a bridge line, its address).
   * @param settings The per-connection settings.
   * @returns The plan the runtime performs.
   */
  connection?(destination: HostPort, settings: TransportOptions): {
    readonly hostname?: string;
    readonly port?: number;
    readonly keepAlive?: number;
    readonly tls?: {
      readonly serverNames: readonly string[];
      readonly caCerts?: readonly string[];
      readonly alpnProtocols?: readonly string[];
    };
  };
  /**
   * A helper process that serves a SOCKS5 proxy every connection to
   * `server` goes through (the spec's `ssh -D`; see "Helper processes"
   * above). The runtime starts one per server at the first connection and
   * keeps it running (restarted after `restartDelay` when it exits) until
   * the connector is closed; until its proxy answers, connections fail.
   * Omit it to dial directly.
   *
   * The context's fields: `directory` (the helper's private directory,
   * mode 0700), `listen` (where the helper must listen: here a loopback
   * port), `relay` (servers only: the runtime's loopback relay),
   * `relayHosts(hostnames)` (servers only: accept at the relay's port on
   * these other loopback IPv4 addresses too, one per client the helper can
   * tell apart, as sshd's per-key `permitopen` does; the per-source limits
   * then count each address as a client of its own, since every tunnel
   * reaches the relay from 127.0.0.1; calls add to the addresses already
   * given), `user` (the user the helper runs as), `writeFile(name,
   * content)` (replace one of its files now, mode 0600) and, when the
   * runtime can run programs, `probe(command, args)` (run a program looked
   * up as `command` below, with `args`, and resolve to what it printed on
   * stdout and stderr within 5 s: the helper's version, say, to choose
   * options it knows). The helper's fields: `command` (a
   * program the runtime looks up on `PATH` and in the `sbin` directories),
   * `args` (`{dir}` is replaced by the directory), `files` (name to content,
   * written before each start; defaults to none), `restartDelay`
   * (milliseconds; defaults to 10000) and `describeOutput` (turns one output
   * line into a log line with a `LOG` severity, or `undefined` to drop it;
   * defaults to every line at `info`; a server's helper also says, as
   * `handshaken`, the source port of the runtime's connection whose client
   * just authenticated: the runtime listens on the bind address and relays
   * each connection to the helper on loopback, counting unfinished ones per
   * source).
   *
   * @param server The server (the SOCKS destination or bridge address).
   * @param context Where the proxy must listen, the helper's directory.
   * @returns The helper to run.
   */
  socksHelper?(server: HostPort, context: {
    readonly directory: string;
    readonly listen: HostPort;
    readonly relay?: HostPort;
    readonly relayHosts?: (hostnames: readonly string[]) => void;
    readonly user: string;
    writeFile(name: string, content: string): Promise<void>;
    readonly probe?: (command: string, args: readonly string[]) => Promise<string>;
  }): {
    readonly command: string;
    readonly args: readonly string[];
    readonly files?: Readonly<Record<string, string>>;
    readonly restartDelay?: number;
    readonly describeOutput?: (line: string) => {
      readonly severity: "error" | "warning" | "notice" | "info" | "debug";
      readonly message: string;
      readonly handshaken?: number;
    } | undefined;
  };
  /**
   * Release what the side holds beyond its connections (a timer making the
   * next connection's keys). The runtime calls it once, when the connector
   * that made the side closes; connections already made keep working.
   * Absent: nothing to release.
   */
  close?(): void;
}

/**
 * A client connection's plan (see {@linkcode ClientTransport.connection}).
 * Internal: not re-exported, so the public API names no extra type.
 */
export type ConnectionPlan = ReturnType<NonNullable<ClientTransport["connection"]>>;

/**
 * A helper process a transport declares (see "Helper processes" above).
 * Internal, as {@linkcode ConnectionPlan}.
 */
export type HelperProcess = ReturnType<NonNullable<ClientTransport["socksHelper"]>>;

/** What the runtime tells a transport when it builds a helper. Internal. */
export type HelperContext = Parameters<NonNullable<ClientTransport["socksHelper"]>>[1];

/** One line of a helper's output, as the runtime should log it. Internal. */
export type HelperLogLine = NonNullable<ReturnType<NonNullable<HelperProcess["describeOutput"]>>>;

/** The server side of a transport, configured and ready to make pairs. */
export interface ServerTransport {
  /**
   * The arguments a client needs to reach this server (the `ARGS:` of an
   * `SMETHOD` line, or the client configuration of a bridge line).
   */
  readonly clientOptions: TransportOptions;
  /**
   * The address a bridge line for this server carries, when that is not
   * where it listens (WebTunnel reports a placeholder: its clients dial the
   * URL's host). Absent: the listen address.
   */
  readonly bridgeAddress?: HostPort;
  /**
   * TCP keepalive of accepted connections, as the reference server has it:
   * seconds a connection may be idle before the kernel sends a keepalive
   * probe, and between probes (obfs4proxy and lyrebird, Go servers: 15).
   * A prober holding an idle connection sees these packets, so a server
   * without them is told apart. The runtime sets it on the listening socket
   * (accepted sockets inherit it) when it may use FFI on Linux. An integer
   * from 1 to 32767 (Linux's limit; the kernel refuses other values, and
   * accepted sockets then have no keepalive). Absent: no keepalive.
   */
  readonly keepAlive?: number;
  /**
   * A helper process that serves the connections the runtime accepts on
   * the bind address (relayed to it on loopback) and forwards to the
   * runtime's loopback relay (the spec's own
   * `sshd`; see "Helper processes" above): `relayPort` is the relay port to
   * listen on when it is free (kept from an earlier run, so that clients'
   * arguments stay valid; absent or 0: any), and `process(context)` builds
   * the helper once the runtime knows its addresses (the context and the
   * helper as for {@linkcode ClientTransport.socksHelper}, with `relay`).
   * Absent: the runtime listens on the bind address itself.
   */
  readonly helper?: {
    readonly relayPort?: number;
    process(
      context: Parameters<NonNullable<ClientTransport["socksHelper"]>>[1],
    ):
      | ReturnType<NonNullable<ClientTransport["socksHelper"]>>
      | Promise<ReturnType<NonNullable<ClientTransport["socksHelper"]>>>;
  };
  /**
   * Make the pair for one accepted connection.
   *
   * @returns The encode/decode pair for that connection: an object with two
   * `TransformStream`s, `encode` and `decode`, made when called (not a
   * promise).
   * @throws {TypeError} (A side `defineTransport` made) when the
   * definition's `pair()` returned no `{ encode, decode }`.
   */
  pair(): TransportPair;
  /**
   * Release what the side holds beyond its connections (its replay
   * filter's subscription to `env.replays`; obfs4's key pair worker, a
   * thread that keeps the process running until this is called). The
   * runtime calls it once, when the listener that made the side closes;
   * connections already made keep working. Absent: nothing to release.
   */
  close?(): void;
}

/** A matching client and server configuration (spec "generate configuration"). */
export interface GeneratedConfig {
  /** What the client side takes. */
  readonly client: TransportOptions;
  /** What the server side takes. */
  readonly server: TransportOptions;
}

/**
 * A pluggable transport: a name, a client side and a server side.
 *
 * Both factories validate their configuration up front and throw a
 * `TypeError` or `RangeError` naming the bad value (a missing required key,
 * a malformed value); a returned side is ready to make pairs for any number
 * of connections. Keys a side does not know are ignored and reported to
 * `env.onIgnoredOption`, never refused: bridge lines carry keys for other
 * implementations and newer versions.
 *
 * @example Implementing a transport that XORs every byte
 * ```ts
 * import { defineTransport, mapChunks } from "@ptkit/ptkit/transports";
 * import type { Transport } from "@ptkit/ptkit/transports";
 * import { deepStrictEqual } from "node:assert";
 *
 * const xor = (chunk: Uint8Array) => chunk.map((b) => b ^ 0x5a);
 * const transport: Transport = defineTransport({
 *   name: "xor",
 *   parseConfig: () => undefined,
 *   pair: () => ({ encode: mapChunks(xor), decode: mapChunks(xor) }),
 * });
 * const { encode } = (await transport.client({})).pair({});
 * encode.writable.getWriter().write(new Uint8Array([0x5a]));
 * const { value } = await encode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([0]));
 * ```
 */
export interface Transport {
  /** The transport's name: a C identifier (spec 3.1). */
  readonly name: string;
  /**
   * The option keys each side understands, when the transport declares them.
   * A transport that declares them ignores other keys and reports each to
   * `env.onIgnoredOption` itself (`defineTransport` does both); the runtime
   * and `layerTransports` do not filter keys on a transport's behalf.
   * Absent when it does not say.
   */
  readonly optionKeys?: {
    /** Keys of the client configuration and of per-connection settings. */
    readonly client: readonly string[];
    /** Keys of the server configuration. */
    readonly server: readonly string[];
  };
  /**
   * True for a *free* transport (PT 2.0 draft 1's "Bound vs. Free"): each client
   * connection carries its own destination (`pair(settings, destination)`)
   * and the server connects whatever its pairs' `destination` names, so it
   * needs no fixed target. Absent or false: a bound transport.
   */
  readonly free?: boolean;
  /**
   * Configure the client side.
   *
   * @param config The client configuration (bridge line arguments).
   * @param env Long-term storage and out-of-band signals, when given.
   * @returns The configured client side.
   */
  client(
    config: TransportOptions,
    env?: TransportEnvironment,
  ): ClientTransport | Promise<ClientTransport>;
  /**
   * Configure the server side.
   *
   * @param config The server configuration (server transport options).
   * @param env Long-term storage and out-of-band signals, when given.
   * @returns The configured server side.
   */
  server(
    config: TransportOptions,
    env?: TransportEnvironment,
  ): ServerTransport | Promise<ServerTransport>;
  /**
   * Generate a matching client and server configuration, when the transport
   * needs one (keys, shared secrets).
   */
  generateConfig?(env?: TransportEnvironment): GeneratedConfig | Promise<GeneratedConfig>;
}
