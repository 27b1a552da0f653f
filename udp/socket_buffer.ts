// Copyright the ptkit authors. MIT license.
// Internal: raise a UDP socket's kernel buffers. Deno's node:dgram accepts
// recvBufferSize/sendBufferSize but does not apply them, and Deno has no
// setsockopt, so on Linux, when the process may use FFI (--allow-ffi), this
// finds the socket by its local port and calls libc's setsockopt. Otherwise
// it does nothing and the kernel default (net.core.rmem_default) stays.

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SOCK_DGRAM = 2;
const AF_INET = 2;
const AF_INET6 = 10;
const MAX_FD = 65_536;

const symbols = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const;

let libc: Deno.DynamicLibrary<typeof symbols> | null | undefined;

function open(): Deno.DynamicLibrary<typeof symbols> | null {
  if (libc !== undefined) return libc;
  libc = null;
  try {
    if (Deno.build.os !== "linux") return null;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    libc = Deno.dlopen("libc.so.6", symbols);
  } catch {
    libc = null;
  }
  return libc;
}

/**
 * Set SO_RCVBUF and SO_SNDBUF of this process's UDP socket bound to `port`.
 *
 * @returns The receive buffer size the kernel granted (it doubles the
 * request and caps it at net.core.rmem_max), or `undefined` when it could
 * not be set.
 */
export function setUdpBufferSize(port: number, size: number): number | undefined {
  const lib = open();
  if (lib === null) return undefined;
  const address = new Uint8Array(128);
  const length = new Uint32Array(1);
  const value = new Int32Array(1);
  const valueLength = new Uint32Array(1);
  for (let fd = 3; fd < MAX_FD; fd++) {
    length[0] = address.byteLength;
    if (lib.symbols.getsockname(fd, address, length) !== 0) continue;
    const family = address[0]! | (address[1]! << 8);
    if (family !== AF_INET && family !== AF_INET6) continue;
    if (((address[2]! << 8) | address[3]!) !== port) continue;
    valueLength[0] = 4;
    if (lib.symbols.getsockopt(fd, SOL_SOCKET, SO_TYPE, value, valueLength) !== 0) continue;
    if (value[0] !== SOCK_DGRAM) continue;
    const wanted = new Int32Array([size]);
    lib.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, wanted, 4);
    lib.symbols.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, wanted, 4);
    valueLength[0] = 4;
    if (lib.symbols.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, valueLength) !== 0) {
      return undefined;
    }
    return value[0];
  }
  return undefined;
}
