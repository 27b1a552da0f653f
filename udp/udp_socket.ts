// Copyright the ptkit authors. MIT license.

import { systemResolve } from "../net/_resolve.ts";
import {
  AF_INET,
  AF_INET6,
  BATCH,
  EAGAIN,
  ENOBUFS,
  HEADROOM,
  type Libc,
  NAME_SIZE,
  openLibc,
  SEND_ARENA,
  sockaddr,
} from "../net/_libc.ts";
import { classifyIp, formatIp, parseIp, parseIpv4 } from "../net/_ip_address.ts";
import { checkDialHostname, checkPort, type HostPort } from "../net/address.ts";
import { listenOn } from "../net/_listen.ts";
import { describe } from "../net/_chunk_io.ts";
import { callbackThrew } from "../net/_accept_loop.ts";

/**
 * A UDP address with an IP literal, as a {@linkcode UdpSocket} reports
 * senders. Sockets hand out the same object for the same sender while they
 * remember it, so `key` and `ipKey` cost nothing to read: use them as map
 * keys instead of building strings per datagram.
 */
export interface UdpEndpoint extends HostPort {
  /** 4 for IPv4, 6 for IPv6 (IPv4-mapped IPv6 addresses included). */
  readonly family: 4 | 6;
  /** The IP literal (IPv6 in RFC 5952 form, without brackets). */
  readonly hostname: string;
  /**
   * Identifies address and port: `ip * 65536 + port` (a number) for IPv4,
   * a string for IPv6. Equal keys mean equal endpoints.
   */
  readonly key: number | string;
  /** Identifies the address alone: the 32-bit address (a number) for IPv4, the literal for IPv6. */
  readonly ipKey: number | string;
}

/** Options for {@linkcode UdpSocket.open}. */
export interface UdpSocketOptions {
  /**
   * Local address to bind. Defaults to `"127.0.0.1"` without a peer or with
   * a loopback one (`"::1"` for an IPv6 peer), and to the wildcard address
   * (`"0.0.0.0"`, `"::"`) with a peer on another host, so that datagrams
   * can leave by the route toward it.
   */
  readonly hostname?: string;
  /** Local port; 0 (the default) picks a free one. */
  readonly port?: number;
  /**
   * Talk to this peer only: datagrams from anyone else are dropped (counted
   * as `foreign`), and {@linkcode UdpSocket.send} needs no address. A host
   * name is resolved once, here. Its port is 1-65535.
   */
  readonly connect?: HostPort;
  /**
   * Kernel receive and send buffer size to ask for, in bytes. Defaults to
   * `Infinity`: as much as the kernel allows (Linux caps the request at
   * net.core.rmem_max / wmem_max and grants twice that; a process with
   * CAP_NET_ADMIN, as root, gets up to 4 MiB past that cap). Applied only
   * with FFI (see {@linkcode UdpSocket.bufferSize}).
   */
  readonly bufferSize?: number;
  /**
   * Bytes of datagrams held while the kernel's send buffer is full (or, without
   * FFI, while earlier sends are in flight); beyond that `send` drops them
   * (counted as `congested`). Defaults to 1 MiB.
   */
  readonly sendQueueBytes?: number;
}

/** Why a {@linkcode UdpSocket} dropped a datagram (counts by reason). */
type UdpSocketDrops = { -readonly [K in keyof UdpSocketStats["drops"]]: number };

/** A {@linkcode UdpSocket}'s counters. */
export interface UdpSocketStats {
  /** Datagrams handed to `onmessage`. */
  readonly datagramsReceived: number;
  /** Their bytes. */
  readonly bytesReceived: number;
  /** Datagrams handed to the kernel. */
  readonly datagramsSent: number;
  /** Their bytes. */
  readonly bytesSent: number;
  /** Datagrams dropped, by reason. The kernel's own drops (a full receive buffer) are not here: see `/proc/net/snmp`, `RcvbufErrors`. */
  readonly drops: {
    /** Larger than a UDP datagram of the socket's family can be (65,507 bytes over IPv4, 65,527 over IPv6). */
    readonly oversize: number;
    /** Arrived cut short (cannot happen with 64 KiB receive buffers; counted if it does). */
    readonly truncated: number;
    /** From another sender than the connected peer. */
    readonly foreign: number;
    /** From port 0: no answer can reach its sender (a forged or broken one). */
    readonly fromPortZero: number;
    /** The send queue was full. */
    readonly congested: number;
    /** The kernel refused to send it (an unreachable network, an unresolvable name, ...). */
    readonly sendFailed: number;
    /** Sent after the socket was closed. */
    readonly closed: number;
  };
}

/** The largest UDP payload over IPv4 (65,535 - 20 - 8). */
const MAX_PAYLOAD_4 = 65_507;
/** The largest UDP payload over IPv6 without jumbograms (65,535 - 8). */
const MAX_PAYLOAD_6 = 65_527;
/**
 * Writable bytes before (and at least as many after) every datagram a
 * {@linkcode UdpSocket} delivers, so a relay can frame it in place (a TURN
 * server's 4-byte ChannelData header and padding). Internal: not exported
 * by `@ptkit/ptkit/udp`.
 */
export const RECEIVE_HEADROOM: number = HEADROOM;
const RECEIVE_SIZE = 65_536;
const CACHE_LIMIT = 16_384;
/** Rounds of hand-offs between sockets of this process in one microtask. */
const HOT_ROUNDS = 64;
/**
 * Batches of `recvmmsg` one wake-up takes at most: a sender as fast as this
 * process fills every batch, and a drain that went on while they came full
 * kept the event loop from everything else for as long as it sent. What is
 * left is taken at the next wake-up, after timers and other I/O.
 */
const DRAIN_BATCHES = 16;

/** The part of `Deno.DatagramConn` used here (unstable in Deno 2: `--unstable-net`). */
interface DatagramConn {
  readonly addr: { readonly hostname: string; readonly port: number };
  receive(p?: Uint8Array): Promise<[Uint8Array, { hostname: string; port: number }]>;
  send(p: Uint8Array, addr: { transport: "udp"; hostname: string; port: number }): Promise<number>;
  close(): void;
}
type ListenDatagram = (options: {
  transport: "udp";
  hostname: string;
  port: number;
}) => DatagramConn;

function listenDatagram(): ListenDatagram {
  const listen = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (typeof listen !== "function") {
    throw new Deno.errors.NotSupported(
      'Cannot open UDP socket: Deno.listenDatagram is unstable; run with --unstable-net or add "unstable": ["net"] to deno.json',
    );
  }
  return listen;
}

class Endpoint implements UdpEndpoint {
  readonly family: 4 | 6;
  readonly hostname: string;
  readonly port: number;
  readonly key: number | string;
  readonly ipKey: number | string;
  /** The address bytes (4 or 16). */
  readonly ip: Uint8Array;
  #name4: Uint8Array | undefined;
  #name6: Uint8Array | undefined;

  constructor(ip: Uint8Array, port: number) {
    this.ip = ip;
    this.port = port;
    this.hostname = formatIp(ip);
    if (ip.length === 4) {
      this.family = 4;
      this.ipKey = ((ip[0]! << 24) | (ip[1]! << 16) | (ip[2]! << 8) | ip[3]!) >>> 0;
      this.key = this.ipKey * 65536 + port;
    } else {
      this.family = 6;
      this.ipKey = this.hostname;
      this.key = `[${this.hostname}]:${port}`;
    }
  }

  /** The sockaddr to send to this endpoint from a socket of `family`, or undefined. */
  name(family: 4 | 6): Uint8Array | undefined {
    if (family === 4) {
      if (this.family !== 4) return undefined;
      return this.#name4 ??= sockaddr(this.ip, this.port);
    }
    if (this.family === 6) return this.#name6 ??= sockaddr(this.ip, this.port);
    const mapped = new Uint8Array(16);
    mapped[10] = mapped[11] = 0xff;
    mapped.set(this.ip, 12);
    return this.#name6 ??= sockaddr(mapped, this.port);
  }
}

/**
 * Check a kernel buffer size to ask for (`bufferSize`, the pools'
 * `udpBufferSize`): a positive number of bytes, `Infinity` for as much as the
 * kernel allows. Internal: the pools check theirs at start with it, as a
 * server opens a socket per flow only when one arrives.
 */
export function checkBufferSize(value: unknown, name: string, what: string): number {
  if (typeof value !== "number") {
    throw new TypeError(`Cannot ${what}: ${name} must be a number, got ${typeof value}`);
  }
  if (!(value > 0)) throw new RangeError(`Cannot ${what}: ${name} must be positive, got ${value}`);
  return value;
}

function literal(hostname: string): Uint8Array | undefined {
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  try {
    return parseIp(bare);
  } catch {
    return undefined;
  }
}

/**
 * Make a {@linkcode UdpEndpoint} from an IP literal and a port.
 *
 * @param hostname An IPv4 or IPv6 literal (brackets allowed).
 * @param port The port, 0-65535.
 * @returns The endpoint.
 * @throws {TypeError} When `hostname` is not an IP literal, or `port` not a number.
 * @throws {RangeError} When `port` is out of range.
 *
 * @example Keys for map lookups
 * ```ts
 * import { udpEndpoint } from "./udp_socket.ts";
 * import { strictEqual } from "node:assert";
 *
 * const a = udpEndpoint("127.0.0.1", 5000);
 * strictEqual(a.key, udpEndpoint("127.0.0.1", 5000).key);
 * strictEqual(a.ipKey, 0x7f000001);
 * strictEqual(udpEndpoint("[0:0::1]", 9).hostname, "::1");
 * ```
 */
export function udpEndpoint(hostname: string, port: number): UdpEndpoint {
  const ip = typeof hostname === "string" ? literal(hostname) : undefined;
  if (ip === undefined) {
    throw new TypeError(
      `Cannot make UDP endpoint: ${JSON.stringify(hostname)} is not an IP literal`,
    );
  }
  return new Endpoint(ip, checkPort(port, "make UDP endpoint"));
}

/**
 * Resolve a peer's address (its port 1-65535) to an endpoint: an IP
 * literal as it is, a host name through the name servers of
 * `/etc/resolv.conf` and `/etc/hosts`, its IPv4 address first (a name that does not resolve is an error naming it:
 * `Cannot <what>: cannot resolve "name" (no address)`). Internal.
 */
export async function resolveUdpAddress(address: HostPort, what: string): Promise<Endpoint> {
  // A peer, never port 0: no datagram can be sent there (send refuses it).
  const port = checkPort(address?.port, what, 1);
  if (typeof address.hostname !== "string" || address.hostname === "") {
    throw new TypeError(`Cannot ${what}: invalid hostname ${JSON.stringify(address.hostname)}`);
  }
  const ip = literal(address.hostname);
  if (ip !== undefined) return new Endpoint(ip, port);
  // A name no resolver takes ("a b") is the caller's mistake, said as a
  // dial's is, not the resolver's 'proto error: unrecognized char'.
  const name = checkDialHostname(address.hostname, what);
  let found: string | undefined;
  try {
    [found] = await systemResolve(name);
  } catch (error) {
    // Say what was being done, and why in a few words.
    const why = error instanceof Deno.errors.NotFound ? "no address" : (error as Error).message;
    throw new Error(`Cannot ${what}: cannot resolve ${JSON.stringify(address.hostname)} (${why})`, {
      cause: error,
    });
  }
  return new Endpoint(parseIp(found!), port);
}

function isWildcard(ip: Uint8Array): boolean {
  return ip.every((b) => b === 0);
}

function sameBytes(ip: Uint8Array, name: Uint8Array, offset: number): boolean {
  for (let i = 0; i < ip.length; i++) if (ip[i] !== name[offset + i]) return false;
  return true;
}

const zeroDrops = (): UdpSocketDrops => ({
  oversize: 0,
  truncated: 0,
  foreign: 0,
  fromPortZero: 0,
  congested: 0,
  sendFailed: 0,
  closed: 0,
});

interface Pending {
  readonly data: Uint8Array;
  readonly to: HostPort;
}

/**
 * An {@linkcode UdpSocket.open} option, internal (not exported by
 * `@ptkit/ptkit/udp`): with FFI, the socket waits for datagrams through
 * the process's one epoll instance, every datagram taken by `recvmmsg`
 * into the shared arena, instead of through a Deno receive of its own,
 * which holds a 64 KiB buffer (resident: ~58 KB of the ~76 KB a socket
 * cost) for as long as the socket is open. For sockets held by the
 * thousand, mostly idle: a TURN server's relayed sockets. The first
 * {@linkcode OWN_FIRST} receive on their own all the same, and a socket
 * that has received {@linkcode PROMOTE_AFTER} datagrams goes on receiving
 * on its own (faster), up to {@linkcode OWN_RECEIVERS} such sockets in all;
 * without FFI the option changes nothing.
 */
export const SHARED_WAIT: unique symbol = Symbol("ptkit.udp.sharedWait");

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLLIN = 0x001;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const EPOLL_CLOEXEC = 0o2000000;
const EINTR = 4;
/** Events one epoll_wait call takes at most. */
const WAIT_EVENTS = 256;
/**
 * Shared-wait sockets that receive on their own instead, once busy (see
 * {@linkcode PROMOTE_AFTER}): a datagram woken through the shared wait
 * takes a hop to Deno's blocking pool and back (4.5-5.5 us of CPU per
 * datagram on its own, 8-10 us shared, at 8,000 a second; 30% more CPU
 * under turnutils_uclient's echo load), so the busy ones go the fast way,
 * the idle ones hold no buffer. 512 of them hold at most 32 MiB of receive
 * buffers, whatever peers send.
 */
const OWN_RECEIVERS = 512;
/** Datagrams a shared-wait socket receives before it receives on its own (when there is room). */
const PROMOTE_AFTER = 256;
/**
 * Shared-wait sockets that receive on their own from the start, the first
 * ones (among the OWN_RECEIVERS): a server with a few allocations never
 * takes the hop (turnutils_uclient's echo load, 20 allocations: 0.56-0.64
 * CPU seconds a run this way, 0.85-1.03 starting shared and promoted).
 */
const OWN_FIRST = 128;
/**
 * Turns of the event loop with nothing ready before the shared wait goes
 * back to the blocking pool: datagrams a few microseconds apart are taken
 * without a hop there and back each; a quiet process hops once.
 */
const IDLE_POLLS = 16;

const epollSymbols = {
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // On a thread of Deno's blocking pool: the event loop goes on meanwhile.
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  // The same call on the event loop's thread, with a timeout of 0: what is
  // ready now, without a hop to the blocking pool and back.
  epoll_pwait: { parameters: ["i32", "buffer", "i32", "i32", "pointer"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/**
 * One epoll instance for the process's shared-wait sockets (see
 * {@linkcode SHARED_WAIT}), level-triggered: one epoll_wait call at a time
 * waits for them all, on a thread of Deno's blocking pool, and each socket
 * that has datagrams queued drains them. An eventfd wakes the wait when the
 * last socket goes, so that nothing is left pending (the loop ends, and
 * starts again with the next socket).
 */
class SharedWait {
  #lib: Deno.DynamicLibrary<typeof epollSymbols>["symbols"];
  #epfd: number;
  #wake: number;
  /**
   * struct epoll_event: packed on x86-64 (12 bytes, its data at 4); on
   * aarch64 its 64-bit data is aligned (16 bytes, at 8).
   */
  #eventSize = Deno.build.arch === "x86_64" ? 12 : 16;
  #dataAt = Deno.build.arch === "x86_64" ? 4 : 8;
  #events: Uint8Array;
  #view: DataView;
  #control: Uint8Array;
  #controlView: DataView;
  #word = new BigUint64Array(1);
  #sockets = new Map<number, () => void>();
  #loop: Promise<void> | undefined;

  private constructor(lib: Deno.DynamicLibrary<typeof epollSymbols>["symbols"]) {
    this.#lib = lib;
    this.#events = new Uint8Array(WAIT_EVENTS * this.#eventSize);
    this.#view = new DataView(this.#events.buffer);
    this.#control = new Uint8Array(this.#eventSize);
    this.#controlView = new DataView(this.#control.buffer);
    this.#epfd = lib.epoll_create1(EPOLL_CLOEXEC);
    this.#wake = this.#epfd < 0 ? -1 : lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wake < 0 || !this.#ctl(EPOLL_CTL_ADD, this.#wake)) {
      throw new Error("Cannot set up the shared UDP wait");
    }
  }

  static #instance: SharedWait | null | undefined;

  /** The process's one instance, or null when it cannot be had. */
  static get(): SharedWait | null {
    if (SharedWait.#instance !== undefined) return SharedWait.#instance;
    try {
      SharedWait.#instance = new SharedWait(Deno.dlopen("libc.so.6", epollSymbols).symbols);
    } catch {
      SharedWait.#instance = null;
    }
    return SharedWait.#instance;
  }

  #ctl(op: number, fd: number): boolean {
    this.#controlView.setUint32(0, EPOLLIN, true);
    this.#controlView.setInt32(this.#dataAt, fd, true);
    return this.#lib.epoll_ctl(this.#epfd, op, fd, this.#control) === 0;
  }

  /**
   * Wait for datagrams on `fd`: `readable` is called when some are queued
   * (again, while some are).
   *
   * @returns Whether it was added (else the caller receives on its own).
   */
  add(fd: number, readable: () => void): boolean {
    if (!this.#ctl(EPOLL_CTL_ADD, fd)) return false;
    this.#sockets.set(fd, readable);
    this.#loop ??= this.#run();
    return true;
  }

  /**
   * Stop waiting for `fd` (before it is closed: the number may be reused).
   *
   * @returns Resolves once the wait has ended, when it was the last.
   */
  remove(fd: number): Promise<void> {
    if (!this.#sockets.delete(fd)) return Promise.resolve();
    this.#ctl(EPOLL_CTL_DEL, fd);
    if (this.#sockets.size > 0 || this.#loop === undefined) return Promise.resolve();
    this.#word[0] = 1n;
    this.#lib.write(this.#wake, new Uint8Array(this.#word.buffer), 8n);
    return this.#loop;
  }

  async #run(): Promise<void> {
    try {
      while (this.#sockets.size > 0) {
        let n = await this.#lib.epoll_wait(this.#epfd, this.#events, WAIT_EVENTS, -1);
        // While datagrams keep coming, the next are looked for on this
        // thread (timers and other I/O first: one turn of the event loop),
        // and the blocking pool waits only once they stop (see IDLE_POLLS).
        for (let idle = 0; idle < IDLE_POLLS;) {
          idle = n === 0 ? idle + 1 : 0;
          if (n < 0) {
            const errno = new Int32Array(
              Deno.UnsafePointerView.getArrayBuffer(this.#lib.__errno_location()!, 4),
            )[0];
            if (errno !== EINTR) throw new Error(`epoll_wait failed (errno ${errno})`);
          }
          for (let i = 0; i < n; i++) {
            const fd = this.#view.getInt32(i * this.#eventSize + this.#dataAt, true);
            if (fd === this.#wake) {
              this.#lib.read(this.#wake, new Uint8Array(this.#word.buffer), 8n);
              continue;
            }
            // A socket removed meanwhile is skipped.
            this.#sockets.get(fd)?.();
          }
          if (this.#sockets.size === 0) break;
          await new Promise((resolve) => setImmediate(resolve));
          n = this.#lib.epoll_pwait(this.#epfd, this.#events, WAIT_EVENTS, 0, null);
        }
      }
    } finally {
      this.#loop = undefined;
      // Sockets added after the loop saw none left start it again.
      if (this.#sockets.size > 0) this.#loop = this.#run();
    }
  }
}

/**
 * A UDP socket: ptkit's one UDP layer, under the transparent-UDP and STUN
 * pools and the TURN server.
 *
 * It is a `Deno.DatagramConn` (`Deno.listenDatagram`, which needs
 * `--unstable-net` or `"unstable": ["net"]` in deno.json): measured on
 * loopback against `node:dgram` (whose Deno polyfill allocates a 64 KiB
 * buffer per datagram and does not apply `recvBufferSize`), it echoes
 * datagrams with about half the CPU time and a fraction of the latency, and
 * receives into one reused buffer, so datagrams up to 65,507 bytes (65,527
 * over IPv6) arrive whole.
 *
 * With FFI (`--allow-ffi`, 64-bit Linux) the same socket goes faster through
 * libc: the kernel buffers are raised to what it allows, every wake-up takes
 * the queued datagrams 32 to a `recvmmsg` call (at most 512; timers and
 * other I/O go before the rest) instead of a promise per datagram, and `send` is one `sendto` call on the caller's bytes
 * (to another IPv4 socket of this process bound to one address, no call at all: the datagram is
 * handed to its `onmessage` directly, from this socket's address, as the kernel would). Without
 * FFI the kernel's default buffers stay (212,992 bytes on stock Linux, a few
 * hundred datagrams) and each datagram takes a promise each way.
 *
 * Datagrams arrive through {@linkcode UdpSocket.onmessage} as views into a
 * receive buffer that is reused: copy one (`data.slice()`) to keep it past
 * the call. There is no backpressure, as with any UDP socket; what cannot be
 * carried is dropped and counted in {@linkcode UdpSocket.stats}.
 *
 * @example Echoing one datagram
 * ```ts
 * import { UdpSocket } from "@ptkit/ptkit/udp";
 * import { deepStrictEqual } from "node:assert";
 *
 * await using server = await UdpSocket.open({ hostname: "127.0.0.1" });
 * server.onmessage = (data, from) => server.send(data, from);
 * await using client = await UdpSocket.open({ connect: server.addr });
 * const reply = new Promise<Uint8Array>((resolve) => client.onmessage = (d) => resolve(d.slice()));
 * client.send(new Uint8Array([1, 2]));
 * deepStrictEqual(await reply, new Uint8Array([1, 2]));
 * deepStrictEqual(client.stats().datagramsSent, 1);
 * ```
 */
export class UdpSocket implements AsyncDisposable {
  #conn: DatagramConn;
  #addr: Endpoint;
  #family: 4 | 6;
  #maxPayload: number;
  #peer: Endpoint | undefined;
  #libc: Libc | null;
  #fd = -1;
  /** The shared wait this socket's datagrams come through, if any (see SHARED_WAIT). */
  #shared: SharedWait | undefined;
  /** Among the first (OWN_FIRST) or left the shared wait (busy): counted among the OWN_RECEIVERS. */
  #ownReceiver = false;
  /** Shared-wait sockets that receive on their own. */
  static #ownReceivers = 0;
  #bufferSize: number | undefined;
  #closed = false;
  #receiving: Promise<void>;
  #pending: Pending[] = [];
  #pendingHead = 0;
  #pendingBytes = 0;
  #sendQueueBytes: number;
  #pumping = false;
  #scratch4 = new Uint8Array(16);
  #cache4 = new Map<number, Endpoint>();
  #cache6 = new Map<string, Map<number, Endpoint>>();
  #cache6Names = new Map<number, Endpoint>();
  /** The IPv4 sender a drain saw last. */
  #lastFrom4: Endpoint | undefined;
  #received = 0;
  #receivedBytes = 0;
  #sent = 0;
  #sentBytes = 0;
  #drops = zeroDrops();
  #hot = false;
  /**
   * A socket of this process sent here through the kernel since the last
   * drain that emptied the queue: a datagram handed over directly now
   * could overtake it (see `#handOver`).
   */
  #kernelSent = false;

  /**
   * Batched sockets of this process by their local endpoint's key, and those
   * just sent a datagram from here: a relay that sends to its own process (a
   * TURN server relaying between two of its allocations) drains the
   * receiving socket right after, in a microtask, instead of waiting for the
   * event loop to wake it. The microtask runs after the continuations of
   * receives Deno already completed, so a datagram never overtakes one that
   * came before it.
   */
  static #locals = new Map<number | string, UdpSocket>();
  static #hotSockets: UdpSocket[] = [];
  static #hotScheduled = false;
  static #hotThrottled = false;
  /** Inside a direct hand-over: sends from its `onmessage` go through the kernel. */
  static #handingOver = false;
  /** Where a datagram handed over directly lies, with headroom before and after. */
  static #handOverBuffer: Uint8Array | undefined;
  /**
   * The last view handed out for each slot of the process's receive arena
   * (see `#drain`): a datagram of the same length in that slot gets it
   * again. `onmessage`'s data is valid until the call returns, as the
   * next drain overwrites the arena anyway.
   */
  static #views: Uint8Array[] = [];

  static #flushHot(): void {
    let round = 0;
    // Beyond HOT_ROUNDS hand-offs, the event loop runs first.
    while (UdpSocket.#hotSockets.length > 0 && round++ < HOT_ROUNDS) {
      const sockets = UdpSocket.#hotSockets;
      UdpSocket.#hotSockets = [];
      for (const socket of sockets) {
        socket.#hot = false;
        if (socket.#fd >= 0) socket.#drain();
      }
    }
    UdpSocket.#hotScheduled = false;
    if (UdpSocket.#hotSockets.length > 0) {
      // Sockets of this process talking to each other without end: let
      // timers and I/O run; what is queued, Deno's receive delivers.
      for (const socket of UdpSocket.#hotSockets) socket.#hot = false;
      UdpSocket.#hotSockets = [];
      UdpSocket.#hotThrottled = true;
      setTimeout(() => UdpSocket.#hotThrottled = false, 0);
    }
  }

  #markHot(): void {
    if (this.#hot || UdpSocket.#hotThrottled) return;
    this.#hot = true;
    UdpSocket.#hotSockets.push(this);
    if (!UdpSocket.#hotScheduled) {
      UdpSocket.#hotScheduled = true;
      queueMicrotask(UdpSocket.#flushHot);
    }
  }

  /**
   * Called with each datagram received and its sender. `data` is a view
   * into a reused buffer, valid until the call returns: copy it
   * (`data.slice()`) to keep it.
   */
  onmessage: ((data: Uint8Array, from: UdpEndpoint) => void) | undefined;
  /**
   * Called with errors while receiving or sending (the datagram is already
   * counted), and with what `onmessage` throws. Defaults to ignoring them
   * (an `onmessage` that throws is then printed once with `console.error`).
   * One that throws changes nothing: its first throw is printed with
   * `console.error`, later ones are ignored.
   */
  onerror: ((error: Error) => void) | undefined;
  #onmessageThrew = callbackThrew("UdpSocket onmessage");
  #onerrorThrew = callbackThrew("UdpSocket onerror");

  private constructor(
    conn: DatagramConn,
    peer: Endpoint | undefined,
    bufferSize: number,
    sendQueueBytes: number,
    sharedWait = false,
  ) {
    this.#conn = conn;
    this.#peer = peer;
    this.#sendQueueBytes = sendQueueBytes;
    const local = literal(conn.addr.hostname)!;
    this.#addr = new Endpoint(local, conn.addr.port);
    this.#family = this.#addr.family;
    this.#maxPayload = this.#family === 4 ? MAX_PAYLOAD_4 : MAX_PAYLOAD_6;
    this.#libc = openLibc();
    if (this.#libc !== null) {
      this.#fd = this.#libc.findUdpSocket(sockaddr(local, conn.addr.port));
      if (this.#fd >= 0) {
        const granted = this.#libc.setBuffers(this.#fd, bufferSize);
        if (granted > 0) this.#bufferSize = granted;
      }
    }
    if (this.#fd >= 0 && !isWildcard(local)) UdpSocket.#locals.set(this.#addr.key, this);
    // The first OWN_FIRST such sockets receive on their own (the fastest
    // path); past them, through the shared wait until busy.
    const shared = sharedWait && this.#fd >= 0 && UdpSocket.#ownReceivers >= OWN_FIRST
      ? SharedWait.get()
      : null;
    if (shared !== null && shared.add(this.#fd, () => this.#readable())) {
      this.#shared = shared;
      this.#receiving = Promise.resolve();
    } else {
      if (sharedWait) this.#ownReceiver = true;
      if (sharedWait) UdpSocket.#ownReceivers++;
      this.#receiving = this.#receive();
    }
  }

  /**
   * Datagrams are queued for a shared-wait socket: take them (at most
   * DRAIN_BATCHES batches). Once it has received PROMOTE_AFTER, it
   * receives on its own, when fewer than OWN_RECEIVERS do: nothing queued
   * is lost, the kernel keeps it for the receive.
   */
  #readable(): void {
    if (this.#closed) return;
    this.#drain();
    if (
      !this.#closed && this.#shared !== undefined && this.#received >= PROMOTE_AFTER &&
      UdpSocket.#ownReceivers < OWN_RECEIVERS
    ) {
      this.#shared.remove(this.#fd);
      this.#shared = undefined;
      this.#ownReceiver = true;
      UdpSocket.#ownReceivers++;
      this.#receiving = this.#receive();
    }
  }

  /**
   * Open a socket: bind it, and connect it when asked.
   *
   * @param options Where to bind, what to connect to, buffer sizes.
   * @returns The open socket.
   * @throws {Deno.errors.NotSupported} When `Deno.listenDatagram` is not available (no `--unstable-net`).
   * @throws {TypeError} When `options` is not an object, `connect` is not a
   * `{ hostname, port }` object (an `"host:port"` string, say), or a port is
   * not a number.
   * @throws {RangeError} When a port or size is out of range (`connect`'s
   * port must be 1-65535: no datagram can be sent to port 0).
   */
  static async open(options: UdpSocketOptions = {}): Promise<UdpSocket> {
    const what = "open UDP socket";
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`Cannot ${what}: options must be an object, got ${describe(options)}`);
    }
    const connect: unknown = options.connect;
    if (connect !== undefined && (typeof connect !== "object" || connect === null)) {
      throw new TypeError(
        `Cannot ${what}: connect must be an object { hostname, port }, got ${describe(connect)}`,
      );
    }
    const listen = listenDatagram();
    const peer = options.connect === undefined
      ? undefined
      : await resolveUdpAddress(options.connect, what);
    // A socket bound to loopback cannot send to another host (the kernel
    // refuses a loopback source off the machine): toward one, bind the
    // wildcard address and let the route choose the source.
    const hostname = options.hostname ??
      (peer === undefined || classifyIp(peer.hostname) === "loopback"
        ? (peer?.family === 6 ? "::1" : "127.0.0.1")
        : (peer.family === 6 ? "::" : "0.0.0.0"));
    const port = checkPort(options.port ?? 0, what);
    const bufferSize = checkBufferSize(options.bufferSize ?? Infinity, "bufferSize", what);
    const sendQueueBytes = options.sendQueueBytes ?? 1024 * 1024;
    if (typeof sendQueueBytes !== "number") {
      throw new TypeError(
        `Cannot ${what}: sendQueueBytes must be a number, got ${typeof sendQueueBytes}`,
      );
    }
    if (!(sendQueueBytes >= 0)) {
      throw new RangeError(
        `Cannot ${what}: sendQueueBytes must be non-negative, got ${sendQueueBytes}`,
      );
    }
    const conn = listenOn({ hostname, port }, () => listen({ transport: "udp", hostname, port }));
    const sharedWait = (options as { [SHARED_WAIT]?: boolean })[SHARED_WAIT] === true;
    return new UdpSocket(conn, peer, bufferSize, sendQueueBytes, sharedWait);
  }

  /**
   * The receive buffer size the kernel granted, or `undefined` when it was
   * not set (no `--allow-ffi`, or not 64-bit Linux).
   */
  get bufferSize(): number | undefined {
    return this.#bufferSize;
  }

  /** Whether this socket goes through libc (FFI): batch receive and synchronous send. */
  get batched(): boolean {
    return this.#fd >= 0;
  }

  /** The local address. */
  get addr(): UdpEndpoint {
    return this.#addr;
  }

  /** The largest datagram this socket can send, in bytes (65,507 over IPv4, 65,527 over IPv6). */
  get maxDatagram(): number {
    return this.#maxPayload;
  }

  /**
   * Counters of datagrams received, sent and dropped.
   *
   * @returns A snapshot.
   */
  stats(): UdpSocketStats {
    return {
      datagramsReceived: this.#received,
      bytesReceived: this.#receivedBytes,
      datagramsSent: this.#sent,
      bytesSent: this.#sentBytes,
      drops: { ...this.#drops },
    };
  }

  /**
   * Send one datagram. `data` may be reused as soon as this returns.
   *
   * @param data The datagram.
   * @param to The receiver; omit it on a connected socket.
   * @returns `true` when the datagram was handed to the kernel or queued for
   * it, `false` when it was dropped (counted in {@linkcode UdpSocket.stats}:
   * too large, queue full, closed, or refused by the kernel).
   * @throws {TypeError} When `data` is not a `Uint8Array` (the message names
   * its type, never its content), `to` is missing on a socket that is not
   * connected, or `to.port` is not a number or `to.hostname` not a string,
   * or neither an IP address nor a host name (a name is looked up as the
   * datagram goes; an internationalized one by its punycode form).
   * @throws {RangeError} When `to.port` is not an integer from 1 to 65535
   * (70000 went to port 4464, the kernel taking it modulo 65536).
   */
  send(data: Uint8Array, to?: HostPort): boolean {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot send UDP datagram: data must be a Uint8Array, got ${describe(data)}`,
      );
    }
    const peer = this.#receiver(to);
    if (this.#closed) {
      this.#drops.closed++;
      return false;
    }
    const size = data.byteLength;
    if (size > this.#maxPayload) {
      this.#drops.oversize++;
      return false;
    }
    if (this.#fd >= 0 && this.#pendingHead === this.#pending.length) {
      if (this.#handOver(data, peer)) {
        this.#sent++;
        this.#sentBytes += size;
        return true;
      }
      const name = this.#nameOf(peer);
      if (name !== undefined) {
        const sent = this.#libc!.sendTo(this.#fd, data, name);
        if (sent >= 0) {
          this.#sent++;
          this.#sentBytes += size;
          this.#wakeLocal(peer);
          return true;
        }
        if (sent !== -EAGAIN && sent !== -ENOBUFS) {
          this.#drops.sendFailed++;
          this.#report(new Error(`Cannot send UDP datagram: errno ${-sent}`));
          return false;
        }
      }
    }
    if (
      this.#pendingBytes + size > this.#sendQueueBytes && this.#pendingHead < this.#pending.length
    ) {
      this.#drops.congested++;
      return false;
    }
    // A name (not an IP literal) is resolved by Deno as the datagram goes:
    // one no resolver takes ("a b") is refused here, as a dial's is, not
    // told to onerror later as Deno's URIError while send returned true.
    const receiver = peer instanceof Endpoint || literal(peer.hostname) !== undefined
      ? peer
      : { hostname: checkDialHostname(peer.hostname, "send UDP datagram"), port: peer.port };
    this.#pending.push({ data: data.slice(), to: receiver });
    this.#pendingBytes += size;
    if (!this.#pumping) this.#pump();
    return true;
  }

  /**
   * Send several datagrams to one receiver, in order: the same as calling
   * {@linkcode UdpSocket.send} for each (the same checks, counts and
   * drops), but with FFI those that fit go to the kernel together, up to
   * 32 in one system call, which wakes the receiver once for them all.
   * The datagrams may be reused as soon as this returns.
   *
   * @param datagrams The datagrams.
   * @param count How many of them, from the first. Defaults to all.
   * @param to The receiver; omit it on a connected socket.
   * @param results Set to whether each datagram was handed to the kernel or
   * queued for it (`send`'s result), when given: `results[i]` for
   * `datagrams[i]`.
   * @returns How many were handed to the kernel or queued for it.
   * @throws {TypeError} As {@linkcode UdpSocket.send}; the datagrams before
   * the one refused were sent.
   * @throws {RangeError} As {@linkcode UdpSocket.send}.
   *
   * @example Three datagrams in one call
   * ```ts
   * import { UdpSocket } from "@ptkit/ptkit/udp";
   * import { deepStrictEqual } from "node:assert";
   *
   * await using server = await UdpSocket.open({ hostname: "127.0.0.1" });
   * const got: number[] = [];
   * const all = new Promise<void>((resolve) =>
   *   server.onmessage = (d) => got.push(d[0]!) === 3 && resolve()
   * );
   * await using client = await UdpSocket.open({ connect: server.addr });
   * const sent = client.sendMany([new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([3])]);
   * deepStrictEqual(sent, 3);
   * await all;
   * deepStrictEqual(got, [1, 2, 3]);
   * ```
   */
  sendMany(
    datagrams: readonly Uint8Array[],
    count: number = datagrams.length,
    to?: HostPort,
    results?: boolean[],
  ): number {
    let accepted = 0;
    const one = (i: number) => {
      const ok = this.send(datagrams[i]!, to);
      if (results !== undefined) results[i] = ok;
      if (ok) accepted++;
    };
    // Anything send would refuse first (a first datagram that is not bytes)
    // or that cannot go in a batch takes the ordinary way, one by one.
    const peer = this.#fd >= 0 && count > 1 && !this.#closed && datagrams[0] instanceof Uint8Array
      ? this.#receiver(to)
      : undefined;
    const name = peer === undefined ? undefined : this.#nameOf(peer);
    if (name === undefined) {
      for (let i = 0; i < count; i++) one(i);
      return accepted;
    }
    const max = this.#maxPayload;
    let i = 0;
    while (i < count) {
      // The run that may go in one call: bytes, in order, none refused by send's checks.
      let n = 0;
      let bytes = 0;
      while (i + n < count && n < BATCH) {
        const data = datagrams[i + n];
        if (!(data instanceof Uint8Array)) break;
        const size = data.byteLength;
        if (size > max || bytes + size > SEND_ARENA) break;
        bytes += size;
        n++;
      }
      if (n < 2 || this.#closed || this.#fd < 0 || this.#pendingHead !== this.#pending.length) {
        one(i++);
        continue;
      }
      const sent = this.#libc!.sendMany(this.#fd, datagrams, i, n, name);
      for (let k = 0; k < sent; k++) {
        this.#sent++;
        this.#sentBytes += datagrams[i + k]!.byteLength;
        if (results !== undefined) results[i + k] = true;
      }
      if (sent > 0) {
        accepted += sent;
        i += sent;
        this.#wakeLocal(peer!);
      }
      // The next one was not sent (the kernel's buffer is full, or an
      // error): it goes the ordinary way, queued or counted as send does.
      if (sent < n) one(i++);
    }
    return accepted;
  }

  /** The receiver of a send: `to` checked, or the connected peer. */
  #receiver(to: HostPort | undefined): HostPort {
    const peer = to ?? this.#peer;
    if (peer === undefined) {
      throw new TypeError(
        "Cannot send UDP datagram: no address given and the socket is not connected",
      );
    }
    if (to !== undefined) {
      const port = to.port;
      if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) {
        if (typeof port !== "number") {
          throw new TypeError(
            `Cannot send UDP datagram: port must be a number, got ${typeof port}`,
          );
        }
        throw new RangeError(
          `Cannot send UDP datagram: invalid port ${port}: must be an integer from 1 to 65535`,
        );
      }
      if (typeof to.hostname !== "string") {
        // It was taken, and failed in the kernel later ('Invalid argument'),
        // told to onerror while send had returned true.
        throw new TypeError(
          `Cannot send UDP datagram: hostname must be a string, got ${
            to.hostname === null ? "null" : typeof to.hostname
          }`,
        );
      }
    }
    return peer;
  }

  /** A socket of this process at `peer` drains right after a send to it (see `#locals`). */
  #wakeLocal(peer: HostPort): void {
    if (peer instanceof Endpoint) {
      const local = UdpSocket.#locals.get(peer.key);
      if (local !== undefined) {
        local.#kernelSent = true;
        local.#markHot();
      }
    }
  }

  /**
   * Hand a datagram to a socket of this process at `peer` without the
   * kernel (a TURN server relaying between two of its allocations): what the
   * kernel would deliver, the same bytes from this socket's address, counted
   * as sent here and received there, without a sendto(2), a wake-up and a
   * recvmmsg(2) for it. IPv4 sockets bound to one address (the kernel would
   * choose the source of a wildcard one), both through libc. Not from
   * inside another hand-over (a receiver answering at once goes through the
   * kernel, so two sockets of this process cannot call each other without
   * end), and not while datagrams this process sent there through the
   * kernel may still wait in its queue (this one would overtake them).
   *
   * @returns Whether it was handed over (else it goes through the kernel).
   */
  #handOver(data: Uint8Array, peer: HostPort): boolean {
    if (UdpSocket.#handingOver || this.#family !== 4 || !(peer instanceof Endpoint)) return false;
    const local = UdpSocket.#locals.get(peer.key);
    if (
      local === undefined || local === this || local.#family !== 4 || local.#kernelSent ||
      UdpSocket.#hotThrottled || isWildcard(this.#addr.ip)
    ) return false;
    const buffer = UdpSocket.#handOverBuffer ??= new Uint8Array(
      RECEIVE_HEADROOM + RECEIVE_SIZE + RECEIVE_HEADROOM,
    );
    buffer.set(data, RECEIVE_HEADROOM);
    const from = local.#endpointOfLocal(this.#addr);
    UdpSocket.#handingOver = true;
    try {
      local.#deliver(buffer.subarray(RECEIVE_HEADROOM, RECEIVE_HEADROOM + data.byteLength), from);
    } finally {
      UdpSocket.#handingOver = false;
    }
    return true;
  }

  #nameOf(to: HostPort): Uint8Array | undefined {
    if (to instanceof Endpoint) return to.name(this.#family);
    if (this.#family === 4) {
      const ip = parseIpv4(to.hostname);
      if (ip < 0) return undefined;
      const name = this.#scratch4;
      name[0] = AF_INET;
      name[2] = to.port >> 8;
      name[3] = to.port & 0xff;
      name[4] = ip >>> 24;
      name[5] = (ip >>> 16) & 0xff;
      name[6] = (ip >>> 8) & 0xff;
      name[7] = ip & 0xff;
      return name;
    }
    const ip = literal(to.hostname);
    return ip === undefined ? undefined : new Endpoint(ip, to.port).name(6);
  }

  /** Send what waits, one datagram at a time: Deno reorders concurrent sends. */
  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#pendingHead < this.#pending.length && !this.#closed) {
        const { data, to } = this.#pending[this.#pendingHead]!;
        try {
          await this.#conn.send(data, { transport: "udp", hostname: to.hostname, port: to.port });
          this.#sent++;
          this.#sentBytes += data.byteLength;
          this.#wakeLocal(to);
        } catch (error) {
          if (this.#closed) break;
          this.#drops.sendFailed++;
          this.#report(error);
        }
        this.#pendingBytes -= data.byteLength;
        this.#pending[this.#pendingHead++] = undefined as unknown as Pending;
        if (this.#pendingHead > 1024 && this.#pendingHead * 2 > this.#pending.length) {
          this.#pending = this.#pending.slice(this.#pendingHead);
          this.#pendingHead = 0;
        }
      }
    } finally {
      this.#pumping = false;
      if (this.#closed) {
        this.#drops.closed += this.#pending.length - this.#pendingHead;
        this.#pending = [];
        this.#pendingHead = 0;
        this.#pendingBytes = 0;
      }
    }
  }

  async #receive(): Promise<void> {
    // The largest datagram (65,527 bytes) leaves more than the headroom free after it.
    const buffer = new Uint8Array(RECEIVE_HEADROOM + RECEIVE_SIZE);
    const target = buffer.subarray(RECEIVE_HEADROOM);
    while (!this.#closed) {
      let data: Uint8Array;
      let from: { hostname: string; port: number };
      try {
        [data, from] = await this.#conn.receive(target);
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        this.#report(error);
        continue;
      }
      this.#deliver(data, this.#endpointOf(from.hostname, from.port));
      if (this.#fd >= 0 && this.#drain()) {
        // More is queued: a receive would complete at once, and the next
        // drain too, without end under a flood. Timers and I/O go first: one
        // turn of the event loop (a 0 ms setTimeout waits 1-3 ms in Deno,
        // while the queue grows).
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }

  /**
   * Take and deliver the datagrams already queued in the kernel (FFI), at
   * most {@linkcode DRAIN_BATCHES} batches.
   *
   * @returns Whether it stopped at that limit (more may be queued).
   */
  #drain(): boolean {
    const libc = this.#libc!;
    let n = BATCH;
    // What was sent here before this call is taken by it, unless it stops
    // at the limit.
    const kernelSent = this.#kernelSent;
    this.#kernelSent = false;
    for (let batches = 0; n === BATCH && !this.#closed; batches++) {
      if (batches === DRAIN_BATCHES) {
        this.#kernelSent ||= kernelSent;
        return true;
      }
      n = libc.drain(this.#fd);
      const views = UdpSocket.#views;
      for (let i = 0; i < n; i++) {
        if (libc.truncated(i)) {
          this.#drops.truncated++;
          continue;
        }
        const from = this.#endpointFromName(libc.names, i * NAME_SIZE);
        if (from === undefined) continue;
        // The slot's view from an earlier drain when it has this length:
        // the same bytes of the arena, without a new array per datagram.
        let data = views[i];
        if (data === undefined || data.length !== libc.length(i)) {
          data = views[i] = libc.datagram(i);
        }
        this.#deliver(data, from);
        if (this.#closed) return false;
      }
    }
    return false;
  }

  #deliver(data: Uint8Array, from: Endpoint): void {
    if (this.#peer !== undefined && from.key !== this.#peer.key) {
      this.#drops.foreign++;
      return;
    }
    // Nothing can answer it: a transparent-UDP client would dial a flow for
    // it, a TURN server allocate for it.
    if (from.port === 0) {
      this.#drops.fromPortZero++;
      return;
    }
    this.#received++;
    this.#receivedBytes += data.byteLength;
    try {
      this.onmessage?.(data, from);
    } catch (error) {
      // The application's fault: its onerror hears it, or the console does
      // (once), rather than nobody.
      if (this.onerror === undefined) this.#onmessageThrew(error);
      else this.#report(error);
    }
  }

  /**
   * Tell `onerror`. One that throws would end the receive loop or the send
   * queue (an uncaught error ends the process): its first throw is printed
   * on the console, as a server's callbacks' are, later ones ignored.
   */
  #report(error: unknown): void {
    try {
      this.onerror?.(error instanceof Error ? error : new Error(String(error)));
    } catch (thrown) {
      this.#onerrorThrew(thrown);
    }
  }

  /** The cached endpoint for a sender Deno reported. */
  #endpointOf(hostname: string, port: number): Endpoint {
    const ip = parseIpv4(hostname);
    if (ip >= 0) {
      const key = ip * 65536 + port;
      let endpoint = this.#cache4.get(key);
      if (endpoint === undefined) {
        endpoint = new Endpoint(parseIp(hostname), port);
        this.#remember4(key, endpoint);
      }
      return endpoint;
    }
    let ports = this.#cache6.get(hostname);
    if (ports === undefined) {
      if (this.#cache6.size >= CACHE_LIMIT) this.#cache6.clear();
      this.#cache6.set(hostname, ports = new Map());
    }
    let endpoint = ports.get(port);
    if (endpoint === undefined) {
      if (ports.size >= CACHE_LIMIT) ports.clear();
      ports.set(port, endpoint = new Endpoint(parseIp(hostname), port));
    }
    return endpoint;
  }

  /** The cached endpoint for the sender's sockaddr at `at` in `names` (FFI). */
  #endpointFromName(names: Uint8Array, at: number): Endpoint | undefined {
    const family = names[at]! | (names[at + 1]! << 8);
    const port = (names[at + 2]! << 8) | names[at + 3]!;
    if (family === AF_INET) {
      // The sender of the datagram before, most often: no key computed
      // (a number past 2^31, which V8 allocates).
      const last = this.#lastFrom4;
      if (last !== undefined && last.port === port && sameBytes(last.ip, names, at + 4)) {
        return last;
      }
      const key = (((names[at + 4]! << 24) | (names[at + 5]! << 16) | (names[at + 6]! << 8) |
            names[at + 7]!) >>> 0) * 65536 + port;
      let endpoint = this.#cache4.get(key);
      if (endpoint === undefined) {
        endpoint = new Endpoint(names.slice(at + 4, at + 8), port);
        this.#remember4(key, endpoint);
      }
      return this.#lastFrom4 = endpoint;
    }
    if (family !== AF_INET6) return undefined;
    // FNV-1a over the address, then the port; a hit is checked byte by byte.
    let hash = 0x811c9dc5;
    for (let i = at + 8; i < at + 24; i++) hash = Math.imul(hash ^ names[i]!, 0x01000193);
    const key = (hash >>> 0) * 65536 + port;
    const cached = this.#cache6Names.get(key);
    if (cached !== undefined && cached.port === port && sameBytes(cached.ip, names, at + 8)) {
      return cached;
    }
    const endpoint = new Endpoint(names.slice(at + 8, at + 24), port);
    if (cached === undefined) {
      if (this.#cache6Names.size >= CACHE_LIMIT) this.#cache6Names.clear();
      this.#cache6Names.set(key, endpoint);
    }
    return endpoint;
  }

  /** The cached endpoint for a socket of this process at `addr` (IPv4) sending here. */
  #endpointOfLocal(addr: Endpoint): Endpoint {
    const key = addr.key as number;
    let endpoint = this.#cache4.get(key);
    if (endpoint === undefined) {
      endpoint = new Endpoint(addr.ip.slice(), addr.port);
      this.#remember4(key, endpoint);
    }
    return endpoint;
  }

  #remember4(key: number, endpoint: Endpoint): void {
    if (this.#cache4.size >= CACHE_LIMIT) this.#cache4.clear();
    this.#cache4.set(key, endpoint);
  }

  /**
   * Close the socket. Calling it again returns the same promise.
   *
   * @returns Resolves once the socket is closed and its receive loop ended.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      // Out of the shared wait before the descriptor is closed (its number may be reused).
      if (this.#shared !== undefined) this.#receiving = this.#shared.remove(this.#fd);
      if (this.#ownReceiver) UdpSocket.#ownReceivers--;
      this.#fd = -1;
      if (UdpSocket.#locals.get(this.#addr.key) === this) UdpSocket.#locals.delete(this.#addr.key);
      try {
        this.#conn.close();
      } catch {
        // Already closed.
      }
    }
    return this.#receiving;
  }

  /** Whether {@linkcode UdpSocket.close} was called. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Close the socket and wait until it is. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
