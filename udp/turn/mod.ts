// Copyright the ptkit authors. MIT license.

/**
 * An embedded TURN server (RFC 8656, UDP relaying): STUN codec, server logic decoupled from
 * I/O, a UDP front end, a STUN-framed byte-stream front end and the `turn` command. The UDP
 * front end and the relayed sockets are `UdpSocket`s from `@ptkit/ptkit/udp`: they need
 * `--unstable-net`, and carry load best with `--allow-ffi` (raised kernel buffers, batch receive).
 *
 * @example Running a TURN server on loopback
 * ```ts
 * import { serveTurnUdp } from "@ptkit/ptkit/udp/turn";
 * import { ok } from "node:assert";
 *
 * const turn = await serveTurnUdp({
 *   hostname: "127.0.0.1", port: 0, realm: "pt.test", users: { u: "p" },
 * });
 * ok(turn.addr.port > 0);
 * await turn.close();
 * ```
 *
 * @module
 */

export * from "./channel_data.ts";
export * from "./cli.ts";
export * from "./stream_server.ts";
export * from "./stun_attributes.ts";
export * from "./stun_constants.ts";
export * from "./stun_integrity.ts";
export * from "./stun_message.ts";
export * from "./turn_server.ts";
export * from "./udp_relay.ts";
export * from "./udp_server.ts";
