// Copyright the ptkit authors. MIT license.
// Test helper: UDP datagrams with a source port no ordinary socket can have
// (0), sent through a raw IPv4 socket (root, or CAP_NET_RAW; through libc
// with FFI).

/**
 * Send one IPv4 UDP datagram from 127.0.0.1 port `sourcePort` to
 * 127.0.0.1 port `port` (no checksum, as IPv4 allows).
 *
 * @throws {Error} When the raw socket cannot be opened (not root).
 */
export function sendRawUdp(port: number, sourcePort: number, payload: Uint8Array): void {
  const libc = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    sendto: {
      parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
      result: "isize",
    },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    // AF_INET, SOCK_RAW, IPPROTO_UDP: the kernel writes the IP header.
    const fd = libc.symbols.socket(2, 3, 17);
    if (fd < 0) throw new Error("Cannot open a raw socket: run the tests as root");
    try {
      const datagram = new Uint8Array(8 + payload.length);
      const view = new DataView(datagram.buffer);
      view.setUint16(0, sourcePort);
      view.setUint16(2, port);
      view.setUint16(4, datagram.length);
      datagram.set(payload, 8);
      const address = new Uint8Array(16);
      new DataView(address.buffer).setUint16(0, 2, true);
      new DataView(address.buffer).setUint16(2, port);
      address.set([127, 0, 0, 1], 4);
      const sent = libc.symbols.sendto(fd, datagram, BigInt(datagram.length), 0, address, 16);
      if (Number(sent) !== datagram.length) throw new Error("Cannot send a raw UDP datagram");
    } finally {
      libc.symbols.close(fd);
    }
  } finally {
    libc.close();
  }
}
