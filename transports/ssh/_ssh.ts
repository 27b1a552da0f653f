// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type {
  ClientTransport,
  HelperContext,
  HelperLogLine,
  HelperProcess,
  HostPort,
  ServerTransport,
  SignalPipe,
  Transport,
  TransportEnvironment,
  TransportOptions,
  TransportPair,
} from "../transport.ts";
import { dropUnknownOptions } from "../_option_keys.ts";
import { deferred } from "../_deferred.ts";
import { decodeAddress, encodeAddress } from "../shadowsocks/_address.ts";
import {
  generateOpenSshKey,
  openSshFingerprint,
  parseOpenSshPublicKey,
  publicKeyOfPrivate,
} from "./_openssh_key.ts";

/** The `local` key of the client's private key (the spec's `sshKey`). */
export const SSH_CLIENT_KEY = "sshKey";
/** The `local` key of the server's host key. */
export const SSH_HOST_KEY = "sshHostKey";
/** The `local` key of the server's authorized client keys (one line each). */
export const SSH_AUTHORIZED_KEYS = "sshAuthorizedKeys";
/** The `local` key of the server's relay port, kept across restarts. */
export const SSH_RELAY_PORT = "sshRelayPort";

/** How often a server reads its stored client keys again, in milliseconds. */
const KEYS_RELOAD_MS = 3_000;

const CLIENT_KEYS = ["fp", "user", "relay", "host", "port", "hostkey"] as const;
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
const USER = /^[a-z_][a-z0-9_.-]{0,31}$/i;

/**
 * The client configuration of the `ssh` transport, checked.
 */
export interface SshClientConfig {
  /** The server's host key fingerprint, `SHA256:` and 43 base64 characters. */
  readonly fingerprint: string;
  /** The user sshd runs as (the login name). */
  readonly user: string;
  /** The server's loopback relay port the tunnel ends at. */
  readonly relay: number;
  /** The server's host, when not the connection's destination. */
  readonly host?: string;
  /** The server's port, when not the connection's destination. */
  readonly port?: number;
  /** The server's host public key line, when known (must match the fingerprint). */
  readonly hostKey?: string;
}

/**
 * Check the `ssh` transport's client configuration: `fp` (the host key
 * fingerprint as `ssh-keygen -l` prints it), `user`, `relay` (as the
 * server's `SMETHOD` ARGS give them), optional `host` and `port` (the
 * spec's JSON names; else the connection's destination, a bridge line's
 * address) and `hostkey` (the host public key, `ssh-ed25519 AAAA...` or its
 * base64). The spec's JSON configuration maps onto the same keys.
 *
 * @param options The options (unknown keys already dropped).
 * @returns The checked configuration.
 * @throws {TypeError} When a key is missing or malformed.
 * @throws {RangeError} When a port is out of range.
 */
export function parseSshClientConfig(options: TransportOptions): SshClientConfig {
  const fingerprint = options.fp;
  if (fingerprint === undefined || !FINGERPRINT.test(fingerprint)) {
    throw new TypeError(
      fingerprint === undefined
        ? "Invalid ssh client configuration: missing fp (the host key fingerprint)"
        : "Invalid ssh client configuration: fp must be SHA256: and 43 base64 characters",
    );
  }
  const user = options.user;
  if (user === undefined || !USER.test(user)) {
    throw new TypeError(
      `Invalid ssh client configuration: ${
        user === undefined ? "missing user" : `invalid user ${JSON.stringify(user)}`
      }`,
    );
  }
  const relay = parsePort(options.relay, "relay");
  if (relay === undefined) {
    throw new TypeError(
      "Invalid ssh client configuration: missing relay (the server's relay port)",
    );
  }
  const host = options.host === undefined ? undefined : parseSshHost(options.host);
  const port = parsePort(options.port, "port");
  let hostKey: string | undefined;
  if (options.hostkey !== undefined) {
    try {
      hostKey = parseOpenSshPublicKey(options.hostkey).line;
    } catch (error) {
      throw new TypeError(`Invalid ssh client configuration: hostkey: ${(error as Error).message}`);
    }
    if (openSshFingerprint(hostKey) !== fingerprint) {
      throw new TypeError("Invalid ssh client configuration: hostkey does not match fp");
    }
  }
  return {
    fingerprint,
    user,
    relay,
    ...(host === undefined ? {} : { host }),
    ...(port === undefined ? {} : { port }),
    ...(hostKey === undefined ? {} : { hostKey }),
  };
}

/**
 * The `host` option: a name or an IP address (IPv6 with or without
 * brackets, given to ssh without). ssh would read `user@host`, `ssh://...`
 * or a leading `-` as something else, and `host:port` as a name.
 */
function parseSshHost(value: string): string {
  const inner = /^\[(.*)\]$/.exec(value)?.[1];
  const ipv6 = /^[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*$/;
  if (
    inner !== undefined
      ? ipv6.test(inner)
      : /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(value) || ipv6.test(value)
  ) {
    return inner ?? value;
  }
  throw new TypeError(
    `Invalid ssh client configuration: invalid host ${
      JSON.stringify(value)
    }: expected a name or an IP address (the port goes in port=)`,
  );
}

function parsePort(value: string | undefined, key: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]{1,5}$/.test(value)) {
    throw new TypeError(`Invalid ssh client configuration: ${key} must be a port number`);
  }
  const port = Number(value);
  if (port < 1 || port > 65535) {
    throw new RangeError(`Invalid ssh client configuration: ${key} ${port} is out of range`);
  }
  return port;
}

/**
 * The message the client side sends on `signals` after it made its key,
 * for the operator to pass to the server: JSON `{"sshKey": "<public key
 * line>", "fingerprint": "SHA256:..."}`. The server side takes it, or a
 * bare public key line.
 *
 * @param publicKey The client's public key line.
 * @returns The message text.
 * @throws {SyntaxError} When the key is not an OpenSSH Ed25519 public key.
 */
export function sshKeyMessage(publicKey: string): string {
  const { line } = parseOpenSshPublicKey(publicKey);
  return JSON.stringify({ sshKey: line, fingerprint: openSshFingerprint(line) });
}

/**
 * Read a client key out of a `signals` message ({@linkcode sshKeyMessage}'s
 * JSON, or a bare `ssh-ed25519 AAAA...` line).
 *
 * @param message The message text.
 * @returns The canonical public key line.
 * @throws {SyntaxError} When the message holds no Ed25519 public key, or
 * its fingerprint does not match the key.
 */
export function parseSshKeyMessage(message: string): string {
  const text = message.trim();
  if (!text.startsWith("{")) return parseOpenSshPublicKey(text).line;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SyntaxError("Cannot parse ssh key message: invalid JSON");
  }
  const key = (parsed as { sshKey?: unknown } | null)?.sshKey;
  if (typeof key !== "string") {
    throw new SyntaxError("Cannot parse ssh key message: missing sshKey");
  }
  const { line } = parseOpenSshPublicKey(key);
  const fingerprint = (parsed as { fingerprint?: unknown }).fingerprint;
  if (fingerprint !== undefined && fingerprint !== openSshFingerprint(line)) {
    throw new SyntaxError("Cannot parse ssh key message: the fingerprint does not match the key");
  }
  return line;
}

/** The lines of ssh's banner and advice about a changed host key (OpenSSH's sshconnect.c). */
const SSH_HOST_KEY_BANNER: readonly RegExp[] = [
  /^@+$/,
  /^@\s*WARNING: .*@$/,
  /^IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!$/,
  /^Someone could be eavesdropping on you right now/,
  /^It is also possible that a host key has just been changed\.$/,
  /^The fingerprint for the \S+ key sent by the remote host is$/,
  /^SHA256:[A-Za-z0-9+/]{43}\.$/,
  /^Please contact your system administrator\.$/,
  /^Add correct host key in /,
  /^Offending \S+ key in /,
  /^remove with:$/,
  /^ssh-keygen -f /,
];

/**
 * The `ssh` helper's output, judged: ssh runs with `LogLevel=INFO` and no
 * host key to learn, so every line it prints is why something failed (a
 * refused key, a wrong host key, a server it cannot reach or resolve, a
 * forward the server refused): a warning an operator must see at the
 * default level, as the failed SOCKS request's error points to it.
 */
function describeSshOutput(line: string): HelperLogLine | undefined {
  const text = line.trim();
  if (text === "") return undefined;
  // A host key that is not the pinned one. ssh says 'No ED25519 host key is
  // known' (fp= alone: it reads as if nothing were pinned) or prints its
  // REMOTE HOST IDENTIFICATION HAS CHANGED banner (with hostkey=), advising
  // to edit or clean a known_hosts file that ptkit rewrites at each start:
  // one line says what happened instead ('Host key verification failed'
  // follows, as ssh prints it).
  if (/and you have requested strict checking\.$/.test(text)) {
    return {
      severity: "warning",
      message:
        "ssh: the server's host key is not the pinned one (fp=): refused, as a man in the middle would be; if the server's key really changed (its state was lost), take fp= (and hostkey=) from its new SMETHOD ARGS",
    };
  }
  if (SSH_HOST_KEY_BANNER.some((pattern) => pattern.test(text))) return undefined;
  // ssh names itself on some lines ('ssh: connect to host ...'): once is enough.
  return { severity: "warning", message: text.startsWith("ssh: ") ? text : `ssh: ${text}` };
}

function describeSshdOutput(line: string): HelperLogLine | undefined {
  const text = line.trim();
  if (text === "") return undefined;
  // A client key's fingerprint identifies the client: never logged.
  const shown = text.replace(/SHA256:[A-Za-z0-9+/]{43}/g, "[key]");
  if (/^(fatal|error)/i.test(text)) return { severity: "warning", message: `sshd: ${shown}` };
  // The runtime's front counts a connection as unfinished until its client
  // authenticated; sshd names it by the front's side of it.
  const accepted = /^Accepted publickey for \S+ from 127\.0\.0\.1 port (\d+) /.exec(text);
  return {
    severity: "info",
    message: `sshd: ${shown}`,
    ...(accepted ? { handshaken: Number(accepted[1]) } : {}),
  };
}

/**
 * Whether sshd, by its version line (`sshd -V`: `OpenSSH_9.8p1, ...`),
 * penalizes sources (`PerSourcePenalties`, OpenSSH 9.8 and later).
 */
function hasSourcePenalties(version: string): boolean {
  const found = /OpenSSH_(\d+)\.(\d+)/.exec(version);
  if (found === null) return false;
  const major = Number(found[1]);
  return major > 9 || (major === 9 && Number(found[2]) >= 8);
}

/**
 * A path as an ssh or sshd configuration value: quoted, since both split
 * values at spaces (UserKnownHostsFile and AuthorizedKeysFile take several
 * files: a state directory such as `.../Application Support/...` named two
 * others), and with `%` doubled where the keyword expands `%` tokens.
 */
function configPath(path: string, expanded: boolean): string {
  const value = expanded ? path.replaceAll("%", "%%") : path;
  return `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

/** IPv6 literals are bracketed in ssh's and sshd's address arguments. */
function bracketed(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

const HEADER = "ssh destination header";

/**
 * A client connection's pair: the destination (SOCKS5 address format, as
 * Shadowsocks' header) goes first, at once (the server may speak first),
 * then the bytes as they are; the tunnel is ssh's.
 */
function clientPair(destination: HostPort | undefined): TransportPair {
  if (destination === undefined) {
    throw new TypeError("The ssh transport is free: each connection needs a destination");
  }
  const header = encodeAddress(destination);
  return {
    encode: new TransformStream({ start: (controller) => controller.enqueue(header) }),
    decode: new TransformStream(),
  };
}

/**
 * A server connection's pair: reads the destination header (at most
 * 259 bytes), resolves `destination` and
 * `ready`, then passes the bytes as they are. A connection that ends or
 * sends a malformed header first fails its handshake.
 */
function serverPair(): TransportPair {
  const destination = deferred<HostPort>();
  const ready = deferred<void>();
  let buffered = new Uint8Array(0);
  let done = false;
  const fail = (error: Error) => {
    destination.reject(error);
    ready.reject(error);
    return error;
  };
  const decode = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (done) {
        controller.enqueue(chunk);
        return;
      }
      const joined = new Uint8Array(buffered.length + chunk.length);
      joined.set(buffered);
      joined.set(chunk, buffered.length);
      let parsed;
      try {
        parsed = decodeAddress(joined, HEADER);
      } catch (error) {
        throw fail(error as Error);
      }
      if (parsed === undefined) {
        buffered = joined;
        return;
      }
      done = true;
      destination.resolve(parsed.destination);
      ready.resolve();
      if (parsed.length < joined.length) controller.enqueue(joined.subarray(parsed.length));
    },
    flush() {
      if (!done) throw fail(new SyntaxError(`Cannot read ${HEADER}: the stream ended first`));
    },
    cancel(reason) {
      if (!done) fail(reason instanceof Error ? reason : new Error(`Cannot read ${HEADER}`));
    },
  });
  return {
    encode: new TransformStream(),
    decode,
    ready: ready.promise,
    destination: destination.promise,
  };
}

/** The client public keys announced on `signals` by this process. */
const announced = new Set<string>();

class SshClient implements ClientTransport {
  #config: SshClientConfig | undefined;
  #privateKey: string;
  #relayHost: string;

  constructor(config: SshClientConfig | undefined, privateKey: string, publicKey: string) {
    this.#config = config;
    this.#privateKey = privateKey;
    this.#relayHost = sshRelayHost(publicKey);
  }

  /** The configuration; without one, the error a missing `fp` gives. */
  get #checked(): SshClientConfig {
    return this.#config ?? parseSshClientConfig({});
  }

  pair(_settings: TransportOptions, destination?: HostPort): TransportPair {
    // Without a configuration, the error a missing `fp` gives.
    if (this.#config === undefined) parseSshClientConfig({});
    return clientPair(destination);
  }

  connection(): { hostname: string; port: number } {
    // The tunnel ends at the server's relay, at the loopback address sshd
    // lets this client's key open (and only this key).
    return { hostname: this.#relayHost, port: this.#checked.relay };
  }

  socksHelper(destination: HostPort, context: HelperContext): HelperProcess {
    const config = this.#checked;
    const host = config.host ?? destination.hostname;
    const port = config.port ?? destination.port;
    const dir = context.directory;
    const files: Record<string, string> = {
      "id_ed25519": this.#privateKey,
      // Only the pinned key, for any host name: the fingerprint pins it.
      "known_hosts": config.hostKey === undefined ? "" : `* ${config.hostKey}\n`,
      // Without the key itself, ssh asks this script, which vouches for the
      // offered key only when its fingerprint is the pinned one.
      "known_hosts.sh": [
        "#!/bin/sh",
        `[ "$1" = '${config.fingerprint}' ] || exit 0`,
        `case "$2" in ''|*[!A-Za-z0-9+/=]*) exit 0 ;; esac`,
        `printf '* ssh-ed25519 %s\\n' "$2"`,
        "",
      ].join("\n"),
    };
    const options = [
      "BatchMode=yes",
      "IdentitiesOnly=yes",
      "IdentityAgent=none",
      `IdentityFile=${configPath(`${dir}/id_ed25519`, true)}`,
      `UserKnownHostsFile=${configPath(`${dir}/known_hosts`, true)}`,
      "GlobalKnownHostsFile=none",
      ...(config.hostKey === undefined
        ? [`KnownHostsCommand=/bin/sh ${configPath(`${dir}/known_hosts.sh`, true)} %f %K`]
        : []),
      // ssh's own host key algorithms: cut to ssh-ed25519, its KEXINIT
      // was 456 bytes shorter than any stock client's, a first flight a
      // censor can pick out. Only the pinned key passes either way: the
      // known_hosts file and the script above know no other.
      "StrictHostKeyChecking=yes",
      "CheckHostIP=no",
      "UpdateHostKeys=no",
      "HashKnownHosts=no",
      "PreferredAuthentications=publickey",
      "PasswordAuthentication=no",
      "KbdInteractiveAuthentication=no",
      "ForwardAgent=no",
      "ForwardX11=no",
      "ControlMaster=no",
      "ControlPath=none",
      "ProxyCommand=none",
      "PermitLocalCommand=no",
      "ExitOnForwardFailure=yes",
      "ServerAliveInterval=15",
      "ServerAliveCountMax=3",
      "ConnectTimeout=30",
      // INFO: a forward the server refuses ("channel 2: open failed:
      // administratively prohibited", a wrong relay= or user=) is said only
      // at this level; below it a SOCKS request just closes.
      "LogLevel=INFO",
    ];
    return {
      command: "ssh",
      args: [
        "-F",
        "none",
        "-N",
        "-T",
        ...options.flatMap((option) => ["-o", option]),
        "-D",
        `${bracketed(context.listen.hostname)}:${context.listen.port}`,
        "-p",
        String(port),
        "-l",
        config.user,
        "--",
        host,
      ],
      files,
      restartDelay: 10_000,
      describeOutput: describeSshOutput,
    };
  }
}

class SshServer implements ServerTransport {
  #local: NonNullable<TransportEnvironment["local"]>;
  #hostKey: string;
  #hostPublicKey: string;
  // Insertion-ordered: sshd's authorized_keys lists them in this order.
  #authorized: Set<string>;
  #relayPort: number | undefined;
  #user: string | undefined;
  #context: HelperContext | undefined;
  #pending: Promise<void> = Promise.resolve();
  #signals: SignalPipe | undefined;
  #onNotice: ((message: string) => void) | undefined;
  // The stored keys as last read, the timer that reads them again, and the
  // last reason they could not be read (said once, not every 3 s).
  #stored: string | undefined;
  #reload: ReturnType<typeof setInterval> | undefined;
  #unreadable: string | undefined;

  constructor(
    local: NonNullable<TransportEnvironment["local"]>,
    hostKey: string,
    stored: string | Error,
    relayPort: number | undefined,
    onNotice: ((message: string) => void) | undefined,
  ) {
    this.#local = local;
    this.#hostKey = hostKey;
    this.#hostPublicKey = publicKeyOfPrivate(hostKey);
    this.#onNotice = onNotice;
    this.#authorized = new Set();
    if (stored instanceof Error) this.#cannotRead(stored);
    else this.#take(stored);
    this.#relayPort = relayPort;
  }

  /**
   * The stored keys cannot be read (a file another user owns, say): said
   * once per reason; the server goes on with the keys it has.
   */
  #cannotRead(error: Error): void {
    if (error.message === this.#unreadable) return;
    this.#unreadable = error.message;
    this.#onNotice?.(
      `ssh: cannot read the stored client keys (${SSH_AUTHORIZED_KEYS}; write it as the PT's own user): ${error.message}`,
    );
  }

  /**
   * Take the keys of the stored text, which lists every authorized key (those
   * relayed on signals are appended to it): a key deleted from it is
   * refused from the next login on. Whether the keys changed.
   */
  #take(text: string): boolean {
    this.#stored = text;
    const keys = this.#keysOf(text);
    const before = [...this.#authorized];
    this.#authorized = keys;
    return before.length !== keys.size || before.some((key) => !keys.has(key));
  }

  /**
   * The keys of the stored text, one per line: a public key line, or a
   * client's `CMESSAGE ssh <base64>` line as its PT printed it (what an
   * operator appends by hand: under tor nothing relays it). A line that is
   * neither is skipped and said, by number (never quoted).
   */
  #keysOf(text: string): Set<string> {
    const keys = new Set<string>();
    for (const [i, raw] of text.split("\n").entries()) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      try {
        const message = /^CMESSAGE\s+ssh\s+(\S+)$/.exec(line);
        keys.add(parseSshKeyMessage(message === null ? line : utf8OfBase64(message[1]!)));
      } catch {
        // The parser's reason would quote the line (an sshd option such as
        // from="ADDRESS", a pasted token): only its number is said.
        this.#onNotice?.(
          `ssh: line ${
            i + 1
          } of the stored client keys (${SSH_AUTHORIZED_KEYS}) is skipped: it is neither an ssh-ed25519 public key line nor a client's CMESSAGE ssh line`,
        );
      }
    }
    return keys;
  }

  /** Read the stored keys again; sshd gets the ones added or deleted since. */
  async #reloadKeys(): Promise<void> {
    let text: string;
    try {
      text = (await this.#local.get(SSH_AUTHORIZED_KEYS)) ?? "";
    } catch (error) {
      return this.#cannotRead(error as Error);
    }
    this.#unreadable = undefined;
    if (text === this.#stored || !this.#take(text)) return;
    await this.#context?.writeFile("authorized_keys", this.#authorizedKeys());
  }

  /** Stop reading the stored keys again (the listener closed). */
  close(): void {
    clearInterval(this.#reload);
    this.#reload = undefined;
  }

  get clientOptions(): TransportOptions {
    return {
      fp: openSshFingerprint(this.#hostPublicKey),
      ...(this.#user === undefined ? {} : { user: this.#user }),
      ...(this.#relayPort === undefined ? {} : { relay: String(this.#relayPort) }),
    };
  }

  get helper(): { relayPort?: number; process: (c: HelperContext) => Promise<HelperProcess> } {
    return {
      ...(this.#relayPort === undefined ? {} : { relayPort: this.#relayPort }),
      process: (context) => this.#process(context),
    };
  }

  pair(): TransportPair {
    return serverPair();
  }

  /** Announce the host key on `signals` at start, and take client keys from it. */
  listenTo(signals: SignalPipe): void {
    this.#signals = signals;
    this.readSignals(signals);
  }

  /** Take client keys from `signals` for as long as it is open. */
  async readSignals(signals: SignalPipe, onBadMessage?: (error: Error) => void): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of signals.readable) {
        let line: string;
        try {
          line = parseSshKeyMessage(decoder.decode(chunk));
        } catch (error) {
          onBadMessage?.(error as Error);
          continue;
        }
        // A key that cannot be stored now (the state cannot be read or
        // written) is said; the next messages are still taken.
        await this.authorize(line).catch((error) => {
          const reason = error instanceof Error ? error : new Error(String(error));
          if (onBadMessage !== undefined) onBadMessage(reason);
          else {
            this.#onNotice?.(`ssh: a client key could not be stored: ${reason.message}`);
          }
        });
      }
    } catch {
      // The pipe ended.
    }
  }

  /** Append a client key to the authorized keys (kept in `local`). */
  authorize(publicKey: string): Promise<void> {
    const line = parseOpenSshPublicKey(publicKey).line;
    const next = this.#pending.then(async () => {
      if (this.#authorized.has(line)) return;
      // Appended: what an operator wrote there stays as it is. Taken once
      // stored, so that a key that failed to be stored can be sent again.
      const stored = (await this.#local.get(SSH_AUTHORIZED_KEYS)) ?? "";
      const text = `${stored}${stored === "" || stored.endsWith("\n") ? "" : "\n"}${line}\n`;
      await this.#local.set(SSH_AUTHORIZED_KEYS, text);
      this.#stored = text;
      this.#authorized.add(line);
      if (this.#context !== undefined) {
        await this.#context.writeFile("authorized_keys", this.#authorizedKeys());
      }
    });
    this.#pending = next.catch(() => {});
    return next;
  }

  /**
   * sshd's authorized keys. Each key may only open the relay, at its own
   * loopback address (see {@linkcode sshRelayHost}), or at 127.0.0.1 as
   * clients of earlier versions do (all of them one source there): no
   * shell, command, PTY, agent, X11. The runtime is asked to accept at
   * those addresses first.
   */
  #authorizedKeys(): string {
    const relay = this.#relayPort;
    const keys = [...this.#authorized];
    this.#context?.relayHosts?.(keys.map(sshRelayHost));
    return keys.map((line) =>
      `restrict,port-forwarding,permitopen="${
        sshRelayHost(line)
      }:${relay}",permitopen="127.0.0.1:${relay}",command="/bin/false" ${line}\n`
    ).join("");
  }

  async #process(context: HelperContext): Promise<HelperProcess> {
    const relay = context.relay;
    if (relay === undefined) throw new TypeError("Cannot start sshd: the runtime gave no relay");
    this.#context = context;
    // Keys an operator added to the state by hand are taken within seconds.
    this.#reload ??= setInterval(() => {
      this.#pending = this.#pending.then(() => this.#reloadKeys()).catch((error) =>
        this.#onNotice?.(
          `ssh: cannot give sshd the stored client keys: ${(error as Error).message}`,
        )
      );
    }, KEYS_RELOAD_MS);
    this.#user = context.user;
    if (this.#relayPort !== relay.port) {
      // The kept port was taken by another program: every client configured
      // with it is refused from now on, which the operator must know.
      if (this.#relayPort !== undefined) {
        this.#onNotice?.(
          `ssh: the relay port kept in ${SSH_RELAY_PORT} is taken by another program: the relay is now at another port, so clients configured with relay=${this.#relayPort} are refused until given relay=${relay.port} (the SMETHOD ARGS say it)`,
        );
      }
      this.#relayPort = relay.port;
      await this.#local.set(SSH_RELAY_PORT, String(relay.port));
    }
    // The server's side of the key exchange, for the operator to pass on:
    // its host key and fingerprint with what else a client needs (the
    // SMETHOD ARGS carry the same). Once per start.
    const signals = this.#signals;
    this.#signals = undefined;
    if (signals !== undefined) {
      sendSignal(
        signals,
        JSON.stringify({
          fingerprint: openSshFingerprint(this.#hostPublicKey),
          hostKey: this.#hostPublicKey,
          user: context.user,
          relay: relay.port,
        }),
      );
    }
    const dir = context.directory;
    // Every connection reaches sshd from the runtime's front (127.0.0.1):
    // sshd's penalties (OpenSSH 9.8 and later, on by default) would block
    // that one address, every client with it, after a few connections that
    // did not log in. The front limits each source instead. Older sshd
    // refuses the keyword.
    const version = await context.probe?.("sshd", ["-V"]).catch(() => "") ?? "";
    const config = [
      // A loopback port: the runtime listens on the bind address and relays
      // each connection here.
      `ListenAddress ${bracketed(context.listen.hostname)}:${context.listen.port}`,
      `HostKey ${configPath(`${dir}/ssh_host_ed25519_key`, false)}`,
      `AuthorizedKeysFile ${configPath(`${dir}/authorized_keys`, true)}`,
      "AuthorizedPrincipalsFile none",
      // The runtime makes the directory 0700 and the files 0600; StrictModes
      // would also refuse any parent directory others may write (/tmp).
      "StrictModes no",
      "PidFile none",
      "UsePAM yes",
      "UseDNS no",
      "PermitRootLogin no",
      `AllowUsers ${context.user}`,
      "AuthenticationMethods publickey",
      "PubkeyAuthentication yes",
      "PubkeyAcceptedAlgorithms ssh-ed25519",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "HostbasedAuthentication no",
      "GSSAPIAuthentication no",
      "PermitEmptyPasswords no",
      "PermitTTY no",
      "PermitUserRC no",
      "PermitUserEnvironment no",
      "PermitTunnel no",
      "AllowAgentForwarding no",
      "AllowStreamLocalForwarding no",
      "X11Forwarding no",
      "GatewayPorts no",
      "PermitListen none",
      "AllowTcpForwarding local",
      // Any host at the relay's port: each key's own permitopen narrows it
      // to that key's loopback address (sshd requires both to allow it).
      `PermitOpen *:${relay.port}`,
      "ForceCommand /bin/false",
      "PrintMotd no",
      "PrintLastLog no",
      "Banner none",
      // sshd's default (6): a prober offering throwaway keys is cut off
      // after as many as by any stock sshd.
      "MaxAuthTries 6",
      "MaxSessions 0",
      "LoginGraceTime 30",
      // Unauthenticated connections: every one comes from the runtime's
      // front (127.0.0.1), which lets at most 192 through, 4 per source,
      // making room by the sources holding the most (sshd drops at random);
      // sshd's ceiling is above it, so it refuses none itself.
      "MaxStartups 256",
      ...(hasSourcePenalties(version) ? ["PerSourcePenalties no"] : []),
      "ClientAliveInterval 30",
      "ClientAliveCountMax 3",
      "LogLevel INFO",
      "",
    ].join("\n");
    return {
      command: "sshd",
      args: ["-D", "-e", "-f", `${dir}/sshd_config`],
      files: {
        "sshd_config": config,
        "ssh_host_ed25519_key": this.#hostKey,
        "authorized_keys": this.#authorizedKeys(),
      },
      restartDelay: 1_000,
      describeOutput: describeSshdOutput,
    };
  }
}

/**
 * The loopback address where a client key's tunnels reach the server's
 * relay: `127.A.B.C`, from the first bytes of the key's SHA-256
 * fingerprint (A and C in 1-254, so never 127.0.0.1). sshd lets each key
 * open only its own (`permitopen`), and the runtime counts each address as
 * a client of its own in its per-source limits: through sshd, every tunnel
 * comes from 127.0.0.1, and one client's channels would otherwise use up
 * every other client's share. Two keys share an address once in about 16
 * million pairs (then they share a share).
 *
 * @param publicKey The client's public key line.
 * @returns The IPv4 loopback literal.
 */
export function sshRelayHost(publicKey: string): string {
  const digest = atob(openSshFingerprint(publicKey).slice("SHA256:".length) + "=");
  const byte = (i: number) => digest.charCodeAt(i);
  return `127.${1 + byte(0) % 254}.${byte(1)}.${1 + byte(2) % 254}`;
}

/** The text a base64 `CMESSAGE` payload carries. */
function utf8OfBase64(encoded: string): string {
  let binary: string;
  try {
    binary = atob(encoded);
  } catch {
    throw new SyntaxError("Cannot parse ssh key message: the CMESSAGE payload is not base64");
  }
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

/**
 * The public key of a stored private key; a key that cannot be read fails
 * naming its file (the store's `describe`), as obfs4's state does, and
 * saying why it is left as it is.
 */
function storedKey(
  local: NonNullable<TransportEnvironment["local"]>,
  name: string,
  privateKey: string,
  what: string,
  why: string,
): string {
  try {
    return publicKeyOfPrivate(privateKey);
  } catch (error) {
    const reason = (error as Error).message.replace(/^Cannot parse SSH private key: /, "");
    throw new SyntaxError(
      `Cannot parse ${what} in ${
        local.describe?.(name) ?? name
      }: ${reason}; it is not replaced (${why}): restore it, or move it away for a new one`,
      { cause: error },
    );
  }
}

/**
 * The relay port kept in `local`, or `undefined` when none is: a value that
 * is not a port (a file emptied by a full disk, cut short, edited) is an
 * error naming the file, never silently replaced by a new port, which would
 * refuse every client configured with `relay=`.
 */
function storedPort(
  local: NonNullable<TransportEnvironment["local"]>,
  stored: string | undefined,
): number | undefined {
  if (stored === undefined) return undefined;
  const port = /^[0-9]{1,5}$/.test(stored.trim()) ? Number(stored.trim()) : 0;
  if (port >= 1 && port <= 65535) return port;
  throw new SyntaxError(
    `Cannot parse the ssh relay port in ${
      local.describe?.(SSH_RELAY_PORT) ?? SSH_RELAY_PORT
    }: not a port number (1-65535); it is not replaced (a new port changes relay=, so every client's configuration): restore it, or move it away for a new one`,
  );
}

function requireLocal(env: TransportEnvironment | undefined, side: string) {
  const local = env?.local;
  if (local === undefined) {
    throw new TypeError(`The ssh transport's ${side} needs local storage (its keys live there)`);
  }
  return local;
}

/**
 * The spec's SSH key-based free transport (PT 2.0 draft 1, section 3.2.3),
 * over Debian's OpenSSH.
 *
 * - **Client**: reads `sshKey` from `local`; when absent, generates an
 *   Ed25519 key, stores it and sends its public key on `signals` for the
 *   operator to pass on, as one message of JSON
 *   `{"sshKey": "ssh-ed25519 AAAA...", "fingerprint": "SHA256:..."}`. Its
 *   helper is `ssh -N -D 127.0.0.1:<port>` with the pinned host key (no
 *   trust-on-first-use, no `known_hosts` or config from `$HOME`, no
 *   agent), restarted after 10 s while it fails (the key has not been
 *   accepted yet), less often as failures go on. Each connection goes
 *   through that SOCKS proxy to the server's relay; a dial while the
 *   helper is not up yet fails at once with an `Error` saying so (dial
 *   again later).
 * - **Server**: its helper is its own `sshd` on the bind address, with a
 *   configuration in the helper directory: public-key authentication only,
 *   no shell, command, TTY, agent or X11 forwarding, TCP forwarding only to
 *   the runtime's loopback relay, where the runtime runs the bound target
 *   (tor's ORPort) or free mode with its destination policy (private
 *   ranges refused unless allowed). sshd cannot judge addresses (it resolves
 *   names itself and its `PermitOpen` knows no ranges), so destinations
 *   are judged by ptkit past the relay. Client keys arriving on `signals`
 *   (the client's message, or a bare `ssh-ed25519 AAAA...` line) are added
 *   to its authorized keys, restricted the same way. At each start it
 *   sends one message of JSON `{"fingerprint", "hostKey", "user",
 *   "relay"}` on `signals`. `SMETHOD` ARGS are `fp` (host key
 *   fingerprint), `user` and `relay`.
 *
 * Messages on `signals` are queued, not waited for: `listen`, `proxy` and
 * `createConnector` resolve whether or not the application reads them yet.
 *
 * Both sides need `local`; the host key lives under `sshHostKey`.
 *
 * @example The server's ARGS carry its host key fingerprint
 * ```ts
 * import { ssh } from "@ptkit/ptkit/transports/ssh";
 * import { MemoryStore } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * const server = await ssh.server({}, { local: new MemoryStore() });
 * ok(server.clientOptions.fp!.startsWith("SHA256:"));
 * ```
 */
export const ssh: Transport = {
  name: "ssh",
  free: true,
  optionKeys: { client: CLIENT_KEYS, server: [] },
  async client(options: TransportOptions, env?: TransportEnvironment): Promise<ClientTransport> {
    const known = dropUnknownOptions(options, CLIENT_KEYS, {
      transport: "ssh",
      ...(env?.onIgnoredOption === undefined ? {} : { onIgnored: env.onIgnoredOption }),
    });
    // No configuration at all (tor's client PT: each bridge line's
    // arguments come with its SOCKS request): checked per connection.
    const config = Object.keys(known).length === 0 ? undefined : parseSshClientConfig(known);
    const local = requireLocal(env, "client");
    let privateKey = await local.get(SSH_CLIENT_KEY);
    let publicKey: string;
    if (privateKey !== undefined) {
      // A damaged stored key is an error, never silently replaced.
      publicKey = storedKey(
        local,
        SSH_CLIENT_KEY,
        privateKey,
        "the ssh client key",
        "the server's operator would have to authorize a new one",
      );
    } else {
      const key = generateOpenSshKey("ptkit-ssh-client");
      privateKey = key.privateKey;
      publicKey = key.publicKey;
      await local.set(SSH_CLIENT_KEY, privateKey);
    }
    // Announced once per process (a message lost before the operator saw
    // it comes again at the next start); the server takes a key twice.
    if (env?.signals !== undefined && !announced.has(publicKey)) {
      announced.add(publicKey);
      sendSignal(env.signals, sshKeyMessage(publicKey));
    }
    return new SshClient(config, privateKey, publicKey);
  },
  async server(options: TransportOptions, env?: TransportEnvironment): Promise<ServerTransport> {
    dropUnknownOptions(options, [], {
      transport: "ssh",
      ...(env?.onIgnoredOption === undefined ? {} : { onIgnored: env.onIgnoredOption }),
    });
    const local = requireLocal(env, "server");
    // Read first: a start it refuses writes nothing (no new host key).
    const relay = storedPort(local, await local.get(SSH_RELAY_PORT));
    let hostKey = await local.get(SSH_HOST_KEY);
    if (hostKey === undefined) {
      hostKey = generateOpenSshKey("ptkit-ssh-host").privateKey;
      await local.set(SSH_HOST_KEY, hostKey);
    } else {
      // Damaged: an error naming the file, never silently replaced.
      storedKey(
        local,
        SSH_HOST_KEY,
        hostKey,
        "the ssh host key",
        "a new one changes fp=, so every client's configuration",
      );
    }
    // Stored keys that cannot be read leave the server up with none (said;
    // read again every few seconds), not down.
    const authorized = await local.get(SSH_AUTHORIZED_KEYS).then(
      (text) => text ?? "",
      (error) => error instanceof Error ? error : new Error(String(error)),
    );
    const server = new SshServer(
      local,
      hostKey,
      authorized,
      relay,
      env?.onNotice,
    );
    if (env?.signals !== undefined) server.listenTo(env.signals);
    return server;
  },
};

/**
 * Queue a message on `signals` without waiting for it to be taken: the pipe
 * is best-effort, and an application that reads it only after `listen` or
 * `createConnector` resolved (wiring a client and a server in one process)
 * waited for ever on a write its reader was not there for. A pipe that
 * fails the write loses the message, as an unreliable pipe may.
 */
function sendSignal(signals: SignalPipe | undefined, message: string): void {
  if (signals === undefined) return;
  const writer = signals.writable.getWriter();
  writer.write(new TextEncoder().encode(message)).catch(() => {});
  // The queued write stays queued; the pipe is free for the next writer.
  writer.releaseLock();
}
