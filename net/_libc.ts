// Copyright the ptkit authors. MIT license.
// Internal: what ptkit's sockets do through libc when the process may use
// FFI (`--allow-ffi`) on 64-bit Linux. Deno has no setsockopt, no batch
// receive, no synchronous send and no listen backlog; libc has them. The
// socket itself stays Deno's (Deno owns the descriptor, wakes the loop and
// closes it); this module finds the descriptor by its local address.
//
// A TCP listener's backlog is raised to what the kernel allows
// (net.core.somaxconn; Deno asks for 511), as Go servers (obfs4proxy) get.
// (Deno itself raises the soft limit on open files to the hard one.)
//
// On a UDP socket:
//
// - raises SO_RCVBUF and SO_SNDBUF (the kernel caps them at
//   net.core.rmem_max / wmem_max and doubles what it grants); where that
//   cap leaves less than asked for, up to FORCED_BUFFER, a process with
//   CAP_NET_ADMIN (root) gets it anyway through SO_RCVBUFFORCE /
//   SO_SNDBUFFORCE, as stock Linux's 212,992 bytes hold only a few hundred
//   datagrams (a pause of the process longer than ~0.2 s at a few thousand
//   datagrams per second loses some);
// - drains the datagrams already queued with one recvmmsg(2) call into a
//   shared arena (32 slots of 64 KiB, each with 4 bytes of headroom);
// - sends with sendto(2), MSG_DONTWAIT, from the caller's buffer: no copy,
//   no promise; several datagrams to one receiver with one sendmmsg(2) call
//   (copied into a send arena), so the receiver is woken once per batch,
//   not once per datagram; a run of datagrams of one size in that batch
//   goes as one message with UDP_SEGMENT (UDP GSO, Linux 4.18): the kernel
//   cuts it into the same datagrams, each on the wire as if sent alone, but
//   takes the route, the IP output and (over loopback) the receive path
//   once for the run instead of once per datagram.
//
// Without FFI none of this runs and the socket uses Deno's API alone.

import type { HostPort } from "./address.ts";
import { parseIp } from "./_ip_address.ts";

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
/**
 * The most a buffer is forced to past net.core.rmem_max / wmem_max (with
 * CAP_NET_ADMIN): 4 MiB, which the kernel doubles. coturn asks for 2 MiB on
 * its server sockets. The memory is taken only while datagrams wait.
 */
const FORCED_BUFFER = 4 * 1024 * 1024;
/** Each buffer's option, and the one that passes the kernel's cap. */
const BUFFER_OPTIONS = [[SO_RCVBUF, SO_RCVBUFFORCE], [SO_SNDBUF, SO_SNDBUFFORCE]] as const;
const SOCK_DGRAM = 2;
/** Linux: close the descriptor on exec (a helper process never inherits it). */
const SOCK_CLOEXEC = 0o2000000;
const SOCK_STREAM = 1;
const SO_ACCEPTCONN = 30;
const SO_KEEPALIVE = 9;
const SO_REUSEPORT = 15;
const IPPROTO_TCP = 6;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
/** What listen(2) is asked for; the kernel caps it at net.core.somaxconn. */
const MAX_BACKLOG = 65_535;
/** `AF_INET` on Linux. */
export const AF_INET = 2;
/** `AF_INET6` on Linux. */
export const AF_INET6 = 10;
const MSG_DONTWAIT = 0x40;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
/** A cmsg with a u16: CMSG_LEN(2) and CMSG_SPACE(2) on LP64. */
const GSO_CMSG_LEN = 18;
const GSO_CMSG_SPACE = 24;
/** Datagrams one UDP_SEGMENT message carries at most (the kernel's UDP_MAX_SEGMENTS is 64 or more). */
const GSO_SEGMENTS = 64;
/** Bytes one UDP_SEGMENT message carries at most: one IPv4 datagram's payload. */
const GSO_BYTES = 65_507;
const EINVAL = 22;
const EMSGSIZE = 90;
const EIO = 5;
const ENOPROTOOPT = 92;
const EOPNOTSUPP = 95;
const MSG_TRUNC = 0x20;
const EBADF = 9;
/** `EAGAIN` on Linux. */
export const EAGAIN = 11;
/** `ENOBUFS` on Linux. */
export const ENOBUFS = 105;
const MAX_FD_SCAN = 1 << 20;

/** Datagrams one {@linkcode Libc.drain} call takes at most, and one {@linkcode Libc.sendMany} call sends. */
export const BATCH = 32;
/** Bytes of datagrams one {@linkcode Libc.sendMany} call sends at most (any one datagram fits). */
export const SEND_ARENA = 256 * 1024;
/** Bytes before each received datagram that the receiver may overwrite (a ChannelData header). */
export const HEADROOM = 4;
/** Room for a datagram in a slot: the largest UDP payload, rounded up. */
const SLOT_DATA = 65_536;
/** A slot: headroom, datagram, and 4 bytes for ChannelData padding. */
const SLOT = HEADROOM + SLOT_DATA + 4;
const NAME = 32; // sockaddr_in6 is 28 bytes
/** Bytes between two senders' sockaddrs in {@linkcode Libc.names}. */
export const NAME_SIZE = NAME;
const MMSGHDR = 64; // struct mmsghdr on LP64: msghdr (56) + msg_len (4) + padding

// Each symbol Deno.dlopen binds costs start-up time (all twelve at once
// took 5-20 ms of a server's start, five about 2): the socket options a
// listener needs before *METHODS DONE are bound when the library opens,
// the datagram calls at their first use. errno is in the first group: the
// descriptor scan that finds a listener reads it (EBADF), and with it in
// the second every server bound all seven datagram calls before SMETHODS
// DONE.
const symbols = {
  listen: { parameters: ["i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The calls of UDP sockets and route lookups, bound at their first use. */
const datagramSymbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
} as const;

/** statx, bound for the one call that asks what a descriptor is. */
const fileSymbols = {
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
} as const;
const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 0x1;
const S_IFMT = 0o170000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;

/** libc's socket calls, with the UDP receive arena (made for the first UDP socket). One per process. */
export class Libc {
  #lib: Deno.DynamicLibrary<typeof symbols>;
  #arena = new Uint8Array(0);
  #names = new Uint8Array(BATCH * NAME);
  #headers = new Uint8Array(BATCH * MMSGHDR);
  #view = new DataView(this.#headers.buffer);
  #int = new Int32Array(1);
  #intLength = new Uint32Array(1);
  #address = new Uint8Array(128);
  #addressLength = new Uint32Array(1);
  // The headers hold the iovecs' address: keep them alive as long as this.
  #iovecs: BigUint64Array | undefined;
  // sendmmsg: headers, iovecs and the receiver's name pointing into the
  // send arena, made with the first batch.
  #sendArena = new Uint8Array(0);
  #sendHeaders = new Uint8Array(BATCH * MMSGHDR);
  #sendView = new DataView(this.#sendHeaders.buffer);
  #sendIovecBytes = new Uint8Array(BATCH * 16);
  #sendIovecs = new DataView(this.#sendIovecBytes.buffer);
  #sendName = new Uint8Array(NAME);
  #sendArenaBase = 0;
  /** One UDP_SEGMENT cmsg per message of a batch. */
  #sendControl = new Uint8Array(BATCH * GSO_CMSG_SPACE);
  #sendControlView = new DataView(this.#sendControl.buffer);
  /** Datagrams of each message of the last batch. */
  #messageDatagrams = new Uint32Array(BATCH);
  /**
   * UDP GSO is used for runs of datagrams shorter than this: lowered to the
   * size the kernel refused (EINVAL, EMSGSIZE: a route whose MTU is below
   * it, a socket with SO_NO_CHECK), 0 once
   * the kernel refused it for good (EIO: no checksum offload, IPsec;
   * ENOPROTOOPT, EOPNOTSUPP: a kernel without it). Such a run then goes
   * datagram by datagram, as without GSO.
   */
  #gsoBelow = Infinity;

  #datagramLib: Deno.DynamicLibrary<typeof datagramSymbols>["symbols"] | undefined;

  constructor(lib: Deno.DynamicLibrary<typeof symbols>) {
    this.#lib = lib;
  }

  /** The datagram calls, bound at the first use (the library is open already). */
  #datagram(): Deno.DynamicLibrary<typeof datagramSymbols>["symbols"] {
    return this.#datagramLib ??= Deno.dlopen("libc.so.6", datagramSymbols).symbols;
  }

  /**
   * Whether descriptor `fd` is a pipe or a socket (statx's file type; the
   * struct's layout is the same on every architecture), or `undefined`
   * where the kernel does not say.
   */
  isPipeOrSocket(fd: number): boolean | undefined {
    const lib = Deno.dlopen("libc.so.6", fileSymbols);
    try {
      const stat = new Uint8Array(256); // struct statx
      const path = new Uint8Array(1); // ""
      if (lib.symbols.statx(fd, path, AT_EMPTY_PATH, STATX_TYPE, stat) !== 0) return undefined;
      if ((stat[0]! & STATX_TYPE) === 0) return undefined; // stx_mask
      const type = (stat[28]! | stat[29]! << 8) & S_IFMT; // stx_mode
      return type === S_IFIFO || type === S_IFSOCK;
    } finally {
      lib.close();
    }
  }

  /** The 2 MiB receive arena and the headers pointing into it, once. */
  #prepareReceive(): void {
    if (this.#iovecs !== undefined) return;
    this.#arena = new Uint8Array(BATCH * SLOT);
    const base = (buffer: Uint8Array | BigUint64Array): bigint =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
    const iovecs = new BigUint64Array(BATCH * 2);
    const arena = base(this.#arena);
    const names = base(this.#names);
    const iovs = base(iovecs);
    for (let i = 0; i < BATCH; i++) {
      iovecs[i * 2] = arena + BigInt(i * SLOT + HEADROOM);
      iovecs[i * 2 + 1] = BigInt(SLOT_DATA);
      const h = i * MMSGHDR;
      this.#view.setBigUint64(h, names + BigInt(i * NAME), true); // msg_name
      this.#view.setBigUint64(h + 16, iovs + BigInt(i * 16), true); // msg_iov
      this.#view.setBigUint64(h + 24, 1n, true); // msg_iovlen
    }
    this.#iovecs = iovecs;
  }

  /**
   * Find the descriptor of this process's UDP socket bound to `name` (a
   * sockaddr as getsockname returns it: family, port, address).
   */
  findUdpSocket(name: Uint8Array): number {
    this.#prepareReceive();
    // A socket takes the lowest free descriptor: in a process that opens
    // many (a TURN server's relays), most often the one after the last
    // found, or the last again once that was closed. Those two first, then
    // the scan from 0 (each number looked at is a getsockname(2)).
    const hint = this.#udpHint;
    for (const fd of [hint + 1, hint]) {
      if (fd > 2 && this.#isSocket(fd, name, SOCK_DGRAM)) return this.#udpHint = fd;
    }
    const fd = this.#findSocket(name, SOCK_DGRAM);
    if (fd >= 0) this.#udpHint = fd;
    return fd;
  }

  /** Where {@linkcode Libc.findUdpSocket} last found a socket. */
  #udpHint = 0;

  /** Whether descriptor `fd` is a socket of `type` bound to `name`. */
  #isSocket(fd: number, name: Uint8Array, type: number): boolean {
    const address = this.#address;
    this.#addressLength[0] = address.byteLength;
    if (this.#lib.symbols.getsockname(fd, address, this.#addressLength) !== 0) return false;
    if (!sameName(address, name, name.byteLength)) return false;
    this.#intLength[0] = 4;
    return this.#lib.symbols.getsockopt(fd, SOL_SOCKET, SO_TYPE, this.#int, this.#intLength) ===
        0 && this.#int[0] === type;
  }

  /**
   * Raise the backlog of this process's TCP listener bound to `name` (a
   * sockaddr) to what the kernel allows (calling listen(2) again does that
   * on Linux).
   *
   * @returns Whether it was found and raised.
   */
  raiseListenBacklog(name: Uint8Array): boolean {
    const fd = this.#findSocket(name, SOCK_STREAM, true);
    return fd >= 0 && this.#lib.symbols.listen(fd, MAX_BACKLOG) === 0;
  }

  /**
   * Let other sockets of this user join this process's TCP listener bound
   * to `name` (SO_REUSEPORT, set after it listens: the kernel checks the
   * flag when another socket binds, and makes the group then).
   *
   * @returns Whether it was found and set.
   */
  allowReusePort(name: Uint8Array): boolean {
    const fd = this.#findSocket(name, SOCK_STREAM, true);
    if (fd < 0) return false;
    this.#int[0] = 1;
    return this.#lib.symbols.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, this.#int, 4) === 0;
  }

  /**
   * Turn TCP keepalive on for this process's TCP listener bound to `name`
   * (a sockaddr): probes after `seconds` idle, then every `seconds`.
   * Sockets it accepts inherit these options (Linux copies them). With
   * several listeners at `name` (`reusePort`, one per Web Worker), the
   * first without keepalive is the one just made; with none left, it is
   * already set.
   *
   * @returns Whether it was found and set.
   */
  setListenKeepAlive(name: Uint8Array, seconds: number): boolean {
    if (this.#findSocket(name, SOCK_STREAM, true) < 0) return false;
    const fd = this.#findSocket(name, SOCK_STREAM, true, (fd) => {
      this.#intLength[0] = 4;
      return this.#lib.symbols.getsockopt(
            fd,
            SOL_SOCKET,
            SO_KEEPALIVE,
            this.#int,
            this.#intLength,
          ) === 0 && this.#int[0] === 0;
    });
    if (fd < 0) return true;
    return this.#setKeepAlive(fd, seconds);
  }

  /**
   * Turn TCP keepalive on for this process's connected TCP sockets that
   * `pending` names (keyed by their local port): one pass over the
   * descriptors for all of them. Each found is taken out of `pending`.
   * The pass starts where the last one was found and goes both ways from
   * there: a dial's socket takes the lowest free descriptor, and one
   * connection after another get the same few numbers (28 descriptors
   * looked at a dial in a client with nothing else open, 1 now); it ends
   * as a pass from 0 did (all found, or 256 unused numbers past the top).
   */
  setConnectionsKeepAlive(pending: Map<number, PendingKeepAlive[]>): void {
    let up = this.#keepAliveHint;
    let down = up - 1;
    let unused = 0;
    while (pending.size > 0) {
      const upward = up < MAX_FD_SCAN && unused < 256;
      if (!upward && down < 0) return;
      if (upward) unused = this.#keepAliveAt(up++, pending) ? unused + 1 : 0;
      if (down >= 0 && pending.size > 0) this.#keepAliveAt(down--, pending);
    }
  }

  /**
   * Reset this process's connected TCP socket from `name` to `peer` now
   * (an RST, as a program's close with bytes left unread sends), leaving
   * its descriptor open for its owner to close: a `connect` to AF_UNSPEC,
   * Linux's disconnect, found by a scan of the descriptors. (SO_LINGER
   * would not do: Deno shuts the write side, a FIN, before it closes.)
   *
   * @returns Whether it was found and reset.
   */
  resetConnection(name: Uint8Array, peer: Uint8Array): boolean {
    const address = this.#address;
    const fd = this.#findSocket(name, SOCK_STREAM, false, (fd) => {
      this.#addressLength[0] = address.byteLength;
      return this.#lib.symbols.getpeername(fd, address, this.#addressLength) === 0 &&
        sameName(address, peer, peer.byteLength);
    });
    // sa_family AF_UNSPEC (0), the rest zero.
    return fd >= 0 && this.#datagram().connect(fd, new Uint8Array(16), 16) === 0;
  }

  /** Where {@linkcode Libc.setConnectionsKeepAlive} last found a socket. */
  #keepAliveHint = 0;

  /**
   * Set keepalive on `fd` if it is one of `pending`'s sockets (then taken
   * out of it). Returns whether `fd` is unused (EBADF).
   */
  #keepAliveAt(fd: number, pending: Map<number, PendingKeepAlive[]>): boolean {
    const address = this.#address;
    this.#addressLength[0] = address.byteLength;
    if (this.#lib.symbols.getsockname(fd, address, this.#addressLength) !== 0) {
      return this.#errno() === EBADF;
    }
    const port = (address[2]! << 8) | address[3]!;
    const waiting = pending.get(port);
    if (waiting === undefined) return false;
    const at = waiting.findIndex((w) => sameName(address, w.name, w.name.byteLength));
    if (at < 0) return false;
    const wanted = waiting[at]!;
    this.#intLength[0] = 4;
    if (
      this.#lib.symbols.getsockopt(fd, SOL_SOCKET, SO_TYPE, this.#int, this.#intLength) !== 0 ||
      this.#int[0] !== SOCK_STREAM
    ) return false;
    this.#addressLength[0] = address.byteLength;
    if (
      this.#lib.symbols.getpeername(fd, address, this.#addressLength) !== 0 ||
      !sameName(address, wanted.peer, wanted.peer.byteLength)
    ) return false;
    waiting.splice(at, 1);
    if (waiting.length === 0) pending.delete(port);
    this.#keepAliveHint = fd;
    this.#setKeepAlive(fd, wanted.seconds);
    return false;
  }

  #setKeepAlive(fd: number, seconds: number): boolean {
    const set = (level: number, option: number, value: number) => {
      this.#int[0] = value;
      return this.#lib.symbols.setsockopt(fd, level, option, this.#int, 4) === 0;
    };
    return set(IPPROTO_TCP, TCP_KEEPIDLE, seconds) && set(IPPROTO_TCP, TCP_KEEPINTVL, seconds) &&
      set(SOL_SOCKET, SO_KEEPALIVE, 1);
  }

  #findSocket(
    name: Uint8Array,
    type: number,
    listening = false,
    wanted: (fd: number) => boolean = () => true,
  ): number {
    const address = this.#address;
    const size = name.byteLength;
    // Descriptors are handed out lowest first and the socket was just made,
    // so a long run of unused numbers means it is not there.
    let unused = 0;
    for (let fd = 0; fd < MAX_FD_SCAN && unused < 256; fd++) {
      this.#addressLength[0] = address.byteLength;
      if (this.#lib.symbols.getsockname(fd, address, this.#addressLength) !== 0) {
        unused = this.#errno() === EBADF ? unused + 1 : 0;
        continue;
      }
      unused = 0;
      if (!sameName(address, name, size)) continue;
      this.#intLength[0] = 4;
      if (this.#lib.symbols.getsockopt(fd, SOL_SOCKET, SO_TYPE, this.#int, this.#intLength) !== 0) {
        continue;
      }
      if (this.#int[0] !== type) continue;
      if (!listening) {
        if (wanted(fd)) return fd;
        continue;
      }
      this.#intLength[0] = 4;
      if (
        this.#lib.symbols.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, this.#int, this.#intLength) ===
          0 && this.#int[0] === 1 && wanted(fd)
      ) return fd;
    }
    return -1;
  }

  /**
   * Ask for SO_RCVBUF and SO_SNDBUF of `size` bytes; where the kernel's cap
   * grants less than `min(size, FORCED_BUFFER)`, force that much (needs
   * CAP_NET_ADMIN; without it the capped size stays).
   *
   * @returns The receive buffer the kernel granted, or -1.
   */
  setBuffers(fd: number, size: number): number {
    const asked = Math.min(size, 0x3fff_ffff);
    const forced = Math.min(size, FORCED_BUFFER);
    for (const [option, force] of BUFFER_OPTIONS) {
      this.#int[0] = asked;
      this.#lib.symbols.setsockopt(fd, SOL_SOCKET, option, this.#int, 4);
      this.#intLength[0] = 4;
      // The kernel reports twice what it keeps as the limit.
      if (
        this.#lib.symbols.getsockopt(fd, SOL_SOCKET, option, this.#int, this.#intLength) === 0 &&
        this.#int[0]! < forced * 2
      ) {
        this.#int[0] = forced;
        this.#lib.symbols.setsockopt(fd, SOL_SOCKET, force, this.#int, 4);
      }
    }
    this.#intLength[0] = 4;
    if (this.#lib.symbols.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, this.#int, this.#intLength) !== 0) {
      return -1;
    }
    return this.#int[0]!;
  }

  /**
   * Take up to {@linkcode BATCH} queued datagrams without waiting.
   *
   * @returns How many were taken (0 when none was queued).
   */
  drain(fd: number): number {
    for (let i = 0; i < BATCH; i++) this.#view.setUint32(i * MMSGHDR + 8, NAME, true);
    const n = this.#datagram().recvmmsg(fd, this.#headers, BATCH, MSG_DONTWAIT, null);
    return n > 0 ? n : 0;
  }

  /** Length of the `i`-th datagram of the last drain. */
  length(i: number): number {
    return this.#view.getUint32(i * MMSGHDR + 56, true);
  }

  /** Whether the `i`-th datagram of the last drain was cut short. */
  truncated(i: number): boolean {
    return (this.#view.getInt32(i * MMSGHDR + 48, true) & MSG_TRUNC) !== 0;
  }

  /** The `i`-th datagram of the last drain, as a view into the arena. */
  datagram(i: number): Uint8Array {
    const start = i * SLOT + HEADROOM;
    return this.#arena.subarray(start, start + this.length(i));
  }

  /** Where the senders' sockaddrs of the last drain are: the `i`-th at `i * NAME_SIZE`. */
  get names(): Uint8Array {
    return this.#names;
  }

  /**
   * Send one datagram without blocking.
   *
   * @returns The bytes sent, or minus the errno.
   */
  sendTo(fd: number, data: Uint8Array, name: Uint8Array): number {
    const sent = Number(
      // Deno takes a number for usize at run time (no BigInt per send); its types say bigint.
      this.#datagram().sendto(
        fd,
        data,
        data.byteLength as unknown as bigint,
        MSG_DONTWAIT,
        name,
        name.byteLength,
      ),
    );
    return sent >= 0 ? sent : -this.#errno();
  }

  /** The send arena and the headers pointing into it, once. */
  #prepareSend(): void {
    if (this.#sendArena.byteLength !== 0) return;
    this.#sendArena = new Uint8Array(SEND_ARENA);
    const base = (buffer: Uint8Array): number =>
      Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
    this.#sendArenaBase = base(this.#sendArena);
    const name = BigInt(base(this.#sendName));
    const iovs = BigInt(base(this.#sendIovecBytes));
    const control = BigInt(base(this.#sendControl));
    for (let i = 0; i < BATCH; i++) {
      const h = i * MMSGHDR;
      this.#sendView.setBigUint64(h, name, true); // msg_name
      this.#sendView.setBigUint64(h + 16, iovs + BigInt(i * 16), true); // msg_iov
      this.#sendView.setBigUint64(h + 24, 1n, true); // msg_iovlen
      this.#sendView.setBigUint64(h + 32, control + BigInt(i * GSO_CMSG_SPACE), true); // msg_control
      const c = i * GSO_CMSG_SPACE;
      this.#sendControlView.setBigUint64(c, BigInt(GSO_CMSG_LEN), true); // cmsg_len
      this.#sendControlView.setInt32(c + 8, SOL_UDP, true); // cmsg_level
      this.#sendControlView.setInt32(c + 12, UDP_SEGMENT, true); // cmsg_type
    }
  }

  /**
   * Send `count` datagrams from `datagrams[start]` on (at most {@linkcode BATCH}, together at most
   * {@linkcode SEND_ARENA} bytes) to `name` with one sendmmsg call, without
   * blocking. They are copied first: the caller's buffers may be reused at
   * once. Two or more datagrams of one size in a row (and a shorter, not
   * empty, one after them) go as one UDP_SEGMENT message, which the kernel
   * cuts into those datagrams.
   *
   * @returns How many were sent (the first ones), or minus the errno when
   * the first could not be.
   */
  sendMany(
    fd: number,
    datagrams: readonly Uint8Array[],
    start: number,
    count: number,
    name: Uint8Array,
  ): number {
    this.#prepareSend();
    const arena = this.#sendArena;
    const headers = this.#sendView;
    const iovecs = this.#sendIovecs;
    const control = this.#sendControlView;
    const perMessage = this.#messageDatagrams;
    this.#sendName.set(name);
    let offset = 0;
    let messages = 0;
    for (let i = 0; i < count;) {
      const first = datagrams[start + i]!;
      const size = first.byteLength;
      const from = offset;
      arena.set(first, offset);
      offset += size;
      let n = 1;
      // A run of this size, and one shorter datagram to end it.
      if (size > 0 && size < this.#gsoBelow) {
        let next: Uint8Array | undefined;
        while (
          i + n < count && n < GSO_SEGMENTS &&
          (next = datagrams[start + i + n]!).byteLength <= size && next.byteLength > 0 &&
          offset - from + next.byteLength <= GSO_BYTES
        ) {
          arena.set(next, offset);
          offset += next.byteLength;
          n++;
          if (next.byteLength < size) break;
        }
      }
      const m = messages++;
      const address = this.#sendArenaBase + from;
      iovecs.setUint32(m * 16, address % 0x1_0000_0000, true); // iov_base
      iovecs.setUint32(m * 16 + 4, Math.floor(address / 0x1_0000_0000), true);
      iovecs.setUint32(m * 16 + 8, offset - from, true); // iov_len
      iovecs.setUint32(m * 16 + 12, 0, true);
      headers.setUint32(m * MMSGHDR + 8, name.byteLength, true); // msg_namelen
      // msg_controllen: the segment size's cmsg for a run, none for one datagram.
      headers.setUint32(m * MMSGHDR + 40, n > 1 ? GSO_CMSG_SPACE : 0, true);
      if (n > 1) control.setUint16(m * GSO_CMSG_SPACE + 16, size, true);
      perMessage[m] = n;
      i += n;
    }
    let done = 0;
    let sent = 0;
    while (done < messages) {
      const result = this.#datagram().sendmmsg(
        fd,
        done === 0 ? this.#sendHeaders : this.#sendHeaders.subarray(done * MMSGHDR),
        messages - done,
        MSG_DONTWAIT,
      );
      const errno = result < 0 ? this.#errno() : 0;
      for (let m = done; m < done + Math.max(result, 0); m++) sent += perMessage[m]!;
      done += Math.max(result, 0);
      if (done === messages) break;
      const n = perMessage[done]!;
      // A message was not sent. One datagram, or an error a datagram alone
      // would get too (a full buffer, an unreachable network): the caller
      // sends the next one by one, as without GSO. A run the kernel will
      // not cut (its errno is known once the run is first): refused for
      // such runs from now on, and the rest of the batch sent again.
      if (n === 1) return sent > 0 || result >= 0 ? sent : -errno;
      if (result > 0) continue;
      const before = this.#gsoBelow;
      if (errno === EINVAL || errno === EMSGSIZE) {
        this.#gsoBelow = Math.min(before, datagrams[start + sent]!.byteLength);
      } else if (errno === EIO || errno === ENOPROTOOPT || errno === EOPNOTSUPP) {
        this.#gsoBelow = 0;
      } else {
        return sent > 0 ? sent : -errno;
      }
      const rest = this.sendMany(fd, datagrams, start + sent, count - sent, name);
      // The run's first datagram failed alone too: not GSO's fault.
      if (rest < 0) this.#gsoBelow = before;
      return rest > 0 ? sent + rest : sent > 0 ? sent : rest;
    }
    return sent;
  }

  /**
   * The local address this host sends from toward `ip` (4 or 16 bytes): the
   * kernel's route lookup, through a UDP socket connected there (nothing is
   * sent), or `undefined` when there is no route.
   */
  routedSource(ip: Uint8Array): Uint8Array | undefined {
    const family = ip.length === 4 ? AF_INET : AF_INET6;
    const fd = this.#datagram().socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return undefined;
    try {
      const name = sockaddr(ip, 9);
      if (this.#datagram().connect(fd, name, name.byteLength) !== 0) return undefined;
      this.#addressLength[0] = this.#address.byteLength;
      if (this.#lib.symbols.getsockname(fd, this.#address, this.#addressLength) !== 0) {
        return undefined;
      }
      return this.#address.slice(ip.length === 4 ? 4 : 8, ip.length === 4 ? 8 : 24);
    } finally {
      this.#datagram().close(fd);
    }
  }

  #errno(): number {
    const pointer = this.#lib.symbols.__errno_location();
    return pointer === null ? 0 : new Deno.UnsafePointerView(pointer).getInt32();
  }
}

function sameName(a: Uint8Array, b: Uint8Array, size: number): boolean {
  // Family (2), port (2); then the address: 4 bytes at 4 (IPv4), 16 at 8 (IPv6).
  if (a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2] || a[3] !== b[3]) return false;
  const family = b[0]! | (b[1]! << 8);
  const [from, to] = family === AF_INET ? [4, 8] : [8, 24];
  if (size < to) return false;
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A sockaddr_in or sockaddr_in6 for an IP address (4 or 16 bytes) and a port. */
export function sockaddr(ip: Uint8Array, port: number): Uint8Array {
  const name = new Uint8Array(ip.length === 4 ? 16 : 28);
  const family = ip.length === 4 ? AF_INET : AF_INET6;
  name[0] = family & 0xff;
  name[1] = family >> 8;
  name[2] = port >> 8;
  name[3] = port & 0xff;
  name.set(ip, ip.length === 4 ? 4 : 8);
  return name;
}

/**
 * Raise the backlog of this process's TCP listener at `addr` to what the
 * kernel allows, when FFI may be used.
 *
 * @returns Whether it was raised.
 */
export function raiseListenBacklog(addr: Deno.NetAddr): boolean {
  const libc = openLibc();
  const name = libc === null ? undefined : nameOf(addr);
  return name !== undefined && libc!.raiseListenBacklog(name);
}

/**
 * Let `-workers` children join this process's TCP listener at `addr`
 * (SO_REUSEPORT set on it after it listened alone), when FFI may be used.
 *
 * @returns Whether it was set.
 */
export function allowReusePort(addr: HostPort): boolean {
  const libc = openLibc();
  const name = libc === null ? undefined : nameOf(addr);
  return name !== undefined && libc!.allowReusePort(name);
}

/**
 * Turn TCP keepalive on for this process's TCP listener at `addr` (probes
 * after `seconds` idle, then every `seconds`; accepted sockets inherit
 * it), when FFI may be used.
 *
 * @returns Whether it was set.
 */
export function setListenKeepAlive(addr: Deno.NetAddr, seconds: number): boolean {
  const libc = openLibc();
  const name = libc === null ? undefined : nameOf(addr);
  return name !== undefined && libc!.setListenKeepAlive(name, seconds);
}

/**
 * Reset this process's TCP connection from `local` to `remote` now (an RST;
 * the connection's reads and writes fail from then on, its close sends
 * nothing more), when FFI may be used: for passing on a reset that the
 * other end of a relay got, where a prober would see a FIN that the
 * program behind it never sends.
 *
 * @returns Whether it was reset.
 */
export function resetConnection(local: HostPort, remote: HostPort): boolean {
  const libc = openLibc();
  const name = libc === null ? undefined : nameOf(local);
  const peer = name === undefined ? undefined : nameOf(remote);
  return peer !== undefined && libc!.resetConnection(name!, peer);
}

/** A connection waiting for its keepalive. */
interface PendingKeepAlive {
  readonly name: Uint8Array;
  readonly peer: Uint8Array;
  readonly seconds: number;
}

// Finding a socket's descriptor is a scan of them all (Deno does not give
// it; about 1 us a descriptor): a dial's socket is looked for in the next
// turn of the event loop, off the dial's path (its first write, a
// transport's handshake, is made in the same turn as the dial completes),
// with those of the other dials meanwhile, in one pass. Not a timer: a
// setTimeout of 0 fires 1-3 ms later in Deno 2.9, when a loopback peer's
// answer has often come, and the five system calls (0.1-0.3 ms) then
// delayed it. (A longer wait would batch more, but a timer left running
// when a connection closes at once is a leak to Deno's test sanitizers.)
const pendingKeepAlive = new Map<number, PendingKeepAlive[]>();
let keepAliveScheduled = false;

/**
 * Turn TCP keepalive on for this process's connected TCP socket from
 * `local` to `remote` (probes after `seconds` idle, then every `seconds`),
 * when FFI may be used: in the next task, with the other connections
 * dialed meanwhile (one pass over the descriptors for all of them). A
 * connection closed before then is skipped.
 *
 * @returns Whether it will be set (FFI may be used, both addresses are IP).
 */
export function setConnectionKeepAlive(
  local: HostPort,
  remote: HostPort,
  seconds: number,
): boolean {
  const libc = openLibc();
  const name = libc === null ? undefined : nameOf(local);
  const peer = name === undefined ? undefined : nameOf(remote);
  if (peer === undefined) return false;
  const waiting = pendingKeepAlive.get(local.port);
  const entry = { name: name!, peer, seconds };
  if (waiting === undefined) pendingKeepAlive.set(local.port, [entry]);
  else waiting.push(entry);
  if (!keepAliveScheduled) {
    keepAliveScheduled = true;
    // The global, read here: importing node:timers (or reading the global)
    // loads Deno's Node compatibility layer, 10-20 ms of a server's start
    // before SMETHODS DONE when this module loaded with the listener.
    setImmediate(() => {
      keepAliveScheduled = false;
      libc!.setConnectionsKeepAlive(pendingKeepAlive);
      // What was not found has closed meanwhile.
      pendingKeepAlive.clear();
    });
  }
  return true;
}

function nameOf(addr: HostPort): Uint8Array | undefined {
  try {
    return sockaddr(parseIp(addr.hostname), addr.port);
  } catch {
    return undefined;
  }
}

let libc: Libc | null | undefined;

/**
 * The process's {@linkcode Libc}, or `null` when FFI is not allowed or this
 * is not 64-bit little-endian Linux (the struct layouts above are LP64's).
 */
export function openLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  try {
    if (Deno.build.os !== "linux") return null;
    if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return null;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    libc = new Libc(Deno.dlopen("libc.so.6", symbols));
  } catch {
    libc = null;
  }
  return libc;
}
