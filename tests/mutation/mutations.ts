// Copyright the ptkit authors. MIT license.

/**
 * The mutations `run.ts` applies, one at a time: each removes or weakens
 * one security check (an authentication, an authorization, a bound on
 * stored state or a "refuse unless allowed" policy), and the listed tests
 * must fail without it. Files are named through the constants below, so
 * that moving a file is a one-line change here. `search` must occur exactly
 * once in its file (`tests/mutation_table_test.ts` checks that on every
 * run of the suite).
 *
 * @module
 */

/** One targeted mutation. */
export interface Mutation {
  /** Unique id, `area-what`. */
  readonly id: string;
  /** What kind of check it removes. */
  readonly kind: "authentication" | "authorization" | "bound" | "policy";
  /** The check it removes, as a review would name it. */
  readonly description: string;
  /** The mutated file, relative to the repository root. */
  readonly file: string;
  /** Exact text that occurs once in `file`. */
  readonly search: string;
  /** What replaces it. */
  readonly replace: string;
  /** Test files (relative to the root) to run; at least one test must fail. */
  readonly tests: readonly string[];
  /**
   * Run only the tests whose name contains this text (`deno test --filter`),
   * e.g. to leave out a test that would hang rather than fail.
   */
  readonly filter?: string;
}

// Mutated files.
const TURN_SERVER = "udp/turn/_turn_server.ts";
const IP_ADDRESS = "net/_ip_address.ts";
const STUN_INTEGRITY = "udp/stun/_integrity.ts";
const TURN_STREAM = "udp/turn/_stream_server.ts";
const QUEUE_BUDGET = "udp/_queue_budget.ts";
const HELPER_FRONT = "net/_helper_front.ts";
const SSH = "transports/ssh/_ssh.ts";
const T_SSH = "tests/ssh_test.ts";
const OBFS4 = "transports/obfs4/obfs4.ts";
const OBFS4_HANDSHAKE = "transports/obfs4/_handshake.ts";
const OBFS4_FRAMING = "transports/obfs4/_framing.ts";
const OBFS4_SESSION = "transports/obfs4/_session.ts";
const CRYPTO_BACKEND = "transports/crypto_backend.ts";
const NATIVE_CRYPTO = "net/native_crypto.ts";
const REPLAY_FILTER = "transports/_replay_filter.ts";
const DECODE_TURNS = "transports/_decode_turns.ts";
const EXT_ORPORT = "ipc/extorport/_client.ts";
const SAFE_COOKIE = "ipc/extorport/_safe_cookie.ts";
const EXT_ORPORT_SERVER = "ipc/extorport/server.ts";
const DESTINATION_POLICY = "net/destination_policy.ts";
const SOCKS_TARGET = "ipc/socks/_target.ts";
const SOCKS_HANDSHAKE = "ipc/socks/_server_handshake.ts";
const MANAGED_CONFIG = "ipc/managed/config.ts";
const SOCKS_SERVER = "ipc/socks/_socks_server.ts";
const LINE_STREAM = "ipc/lines/_line_stream.ts";
const TURN_CLI = "ipc/cli/_turn.ts";
const MANAGED_RUN = "ipc/managed/_run.ts";
const SOURCE_SHARE = "net/_source_share.ts";
const REPLAY_HUB = "ipc/managed/_replay_hub.ts";
const SOURCE_LIMITS = "net/source_limits.ts";
const UDP_CLIENT_POOL = "udp/client_pool.ts";
const UDP_FLOW = "udp/_flow.ts";
const UDP_SOCKET = "udp/udp_socket.ts";
const LENGTH_FRAMING = "udp/length_framing.ts";
const STUN_FRAMING = "udp/stun/framing.ts";
const AEAD = "net/_aead.ts";
const SS_FRAMING = "transports/shadowsocks/_framing.ts";

// Test files.
const T_TURN_SERVER = "tests/turn_server_test.ts";
const T_TURN_UDP = "tests/turn_udp_test.ts";
const T_OBFS4_AUTH = "tests/obfs4_handshake_auth_test.ts";
const T_OBFS4_PAIR = "tests/obfs4_pair_test.ts";
const T_OBFS4_FRAMING = "tests/obfs4_framing_test.ts";
const T_OBFS4_IAT = "tests/obfs4_iat_delay_test.ts";
const T_OBFS4_DEADLINES = "tests/obfs4_deadline_test.ts";
const T_REPLAY = "tests/obfs4_replay_filter_test.ts";
const T_EXT_ORPORT = "tests/ipc_extorport_test.ts";
const T_ADAPTER_EXT_ORPORT = "tests/adapter_extorport_test.ts";
const T_POLICY = "tests/ipc_server_parsers_test.ts";
const T_IP = "tests/ip_address_test.ts";
const T_LINE_STREAM = "tests/line_stream_test.ts";
const T_OBFS4_CRYPTO = "tests/obfs4_crypto_test.ts";
const T_SS_FRAMING = "tests/shadowsocks_framing_test.ts";
const T_FREE = "tests/ipc_free_test.ts";
const T_SOCKS_LIMITS = "tests/socks_limits_test.ts";
const T_SOCKS_TARGET = "tests/socks_target_test.ts";
const T_SOURCE_LIMITS = "tests/hardening_limits_test.ts";
const T_WORKERS = "tests/workers_test.ts";
const T_REPLAY_HUB = "tests/replay_hub_test.ts";
const T_UDP_POOL = "tests/udp_pool_test.ts";
const T_UDP_SOCKET = "tests/udp_socket_test.ts";
const T_UDP_FRAMING = "tests/udp_framing_test.ts";
const T_TURN_FLAGS = "tests/ipc_server_messages_test.ts";
const T_TURN_CLI = "tests/turn_cli_test.ts";
const T_IPC_UDP = "tests/ipc_udp_test.ts";

/** The table. */
export const MUTATIONS: readonly Mutation[] = [
  // TURN: permissions on every path to or from a peer.
  {
    id: "turn-send-permission",
    kind: "authorization",
    description: "TURN Send indication relayed without a permission",
    file: TURN_SERVER,
    search: `    if (!this.#permitted(allocation, peer.ipKey, now)) {
      this.#drops.noPermission++;
      return;
    }
    this.#toPeer(allocation, data, peer);`,
    replace: `    this.#toPeer(allocation, data, peer);`,
    tests: [T_TURN_SERVER, T_TURN_UDP],
  },
  {
    id: "turn-channeldata-permission",
    kind: "authorization",
    description: "TURN ChannelData relayed on a live channel whose permission expired",
    file: TURN_SERVER,
    search: `    if (!this.#permitted(allocation, channel.peer.ipKey, now)) {
      this.#drops.noPermission++;
      return;
    }`,
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-channeldata-channel-expiry",
    kind: "authorization",
    description: "TURN ChannelData relayed on an expired channel",
    file: TURN_SERVER,
    search: "if (channel === undefined || channel.expires <= now) {",
    replace: "if (channel === undefined) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-peer-permission",
    kind: "authorization",
    description: "TURN datagram from a peer without a permission relayed to the client",
    file: TURN_SERVER,
    search: `    if (!this.#permitted(allocation, peer.ipKey, now)) {
      this.#drops.noPermission++;
      return;
    }
    const channel = allocation.peerChannels.get(peer.key);`,
    replace: "    const channel = allocation.peerChannels.get(peer.key);",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-permission-expiry",
    kind: "bound",
    description: "TURN permissions never expire (300 s)",
    file: TURN_SERVER,
    search: "return expires !== undefined && expires > now;",
    replace: "return expires !== undefined;",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-allocation-expiry",
    kind: "bound",
    description: "TURN data path uses an expired allocation until the next sweep",
    file: TURN_SERVER,
    search: `    if (allocation.expires <= now) {
      this.#delete(allocation);
      this.#drops.noAllocation++;
      return undefined;`,
    replace: `    if (false) {
      this.#delete(allocation);
      this.#drops.noAllocation++;
      return undefined;`,
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-peer-allocation-expiry",
    kind: "bound",
    description: "TURN relays a peer's datagram to the client of an expired allocation",
    file: TURN_SERVER,
    search: `    if (allocation.expires <= now) {
      this.#delete(allocation);
      this.#drops.noAllocation++;
      return;
    }`,
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-createpermission-policy",
    kind: "policy",
    description: "TURN CreatePermission ignores the peer policy's refusal",
    file: TURN_SERVER,
    search: `      if (typeof peer === "number") {
        this.#error(allocation.client, request, peer, allocation.key);
        return;
      }
      peers.push(peer);`,
    replace: '      if (typeof peer !== "number") peers.push(peer);',
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-channelbind-policy",
    kind: "policy",
    description: "TURN ChannelBind binds a peer the policy refuses",
    file: TURN_SERVER,
    search: `    if (typeof peer === "number") {
      this.#error(allocation.client, request, peer, allocation.key);
      return;
    }
    const now = this.#now();`,
    replace: "    const now = this.#now();",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-loopback-policy",
    kind: "policy",
    description: "TURN loopback peers allowed without allowLoopbackPeers",
    file: TURN_SERVER,
    search: `...(options.allowLoopbackPeers ? ["loopback" as const] : []),`,
    replace: `"loopback" as const,`,
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-private-policy",
    kind: "policy",
    description: "TURN private peers allowed without allowPrivatePeers",
    file: TURN_SERVER,
    search: `...(options.allowPrivatePeers ? ["private" as const, "link-local" as const] : []),`,
    replace: `"private" as const, "link-local" as const,`,
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-forbidden-policy",
    kind: "policy",
    description: "TURN peers the policy refuses (multicast, unspecified, reserved) allowed",
    file: TURN_SERVER,
    search: "if (this.#peers.refusal(peer.hostname, peer.port) !== undefined) return 403;",
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-port-zero",
    kind: "policy",
    description: "TURN peer port 0 allowed",
    file: TURN_SERVER,
    search: "if (peer.port === 0 && !anyPort) return 403;",
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-mapped-ipv4",
    kind: "policy",
    description: "IP classification reads ::ffff:127.0.0.1 as a public IPv6 address",
    file: IP_ADDRESS,
    search: "if (isMapped(bytes)) return bytes.subarray(12);",
    replace: "",
    tests: [T_IP, T_TURN_SERVER],
  },
  {
    id: "turn-max-permissions-create",
    kind: "bound",
    description: "TURN CreatePermission ignores maxPermissions",
    file: TURN_SERVER,
    search: `    if (!fits()) {
      // Expired ones make room (and one of these peers' may be among them).`,
    replace: `    if (false) {
      // Expired ones make room (and one of these peers' may be among them).`,
    tests: [T_TURN_SERVER],
  },
  {
    id: "workers-replay-filter-shared",
    kind: "authentication",
    description: "-workers: each process keeps its replay filter to itself",
    file: MANAGED_RUN,
    search: "    replays: (name: string) => replays.env(name),",
    replace: "",
    tests: [T_WORKERS, T_REPLAY_HUB],
  },
  {
    id: "replay-hub-snapshot",
    kind: "authentication",
    description: "A worker started again gets none of the values seen before",
    file: REPLAY_HUB,
    search: "for (const value of filter.values(now)) text += line(transport, value);",
    replace: "",
    tests: [T_WORKERS, T_REPLAY_HUB],
  },
  {
    id: "source-share",
    kind: "bound",
    description: "A full UDP server or TURN quota never gives a source holding fewer a place",
    file: SOURCE_SHARE,
    search: "return most.length > count(this.#bySource.get(source)).length + 1 ? most : undefined;",
    replace: "return undefined;",
    tests: [T_SOURCE_LIMITS, T_TURN_SERVER],
  },
  {
    id: "turn-reservations-per-source",
    kind: "bound",
    description: "TURN lets a source pile up reservations, one per new client",
    file: TURN_SERVER,
    search: "while (tokens.length > bound) this.#dropReservation(tokens[0]!);",
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-reservation-disconnect",
    kind: "bound",
    description: "TURN keeps a closed client's reservation",
    file: TURN_SERVER,
    search: "if (token !== undefined) this.#dropReservation(token);",
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-max-channels",
    kind: "bound",
    description: "TURN ChannelBind ignores maxChannels",
    file: TURN_SERVER,
    search: "if (allocation.channels.size >= this.#maxChannels) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-one-reservation-per-client",
    kind: "bound",
    description: "TURN keeps every reservation a client makes",
    file: TURN_SERVER,
    search: "if (earlier !== undefined) this.#dropReservation(earlier);",
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-max-permissions-bind",
    kind: "bound",
    description: "TURN ChannelBind ignores maxPermissions",
    file: TURN_SERVER,
    search: `      !allocation.permissions.has(peer.ipKey) &&
      allocation.permissions.size >= this.#maxPermissions`,
    replace: "      false",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-user-quota",
    kind: "bound",
    description: "TURN ignores the per-user allocation quota",
    file: TURN_SERVER,
    search: "if ((this.#userCounts.get(username) ?? 0) >= this.#userQuota) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-total-quota",
    kind: "bound",
    description: "TURN ignores the total allocation quota",
    file: TURN_SERVER,
    search: "pending !== undefined && taken + slots > this.#totalQuota",
    replace: "false",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-quota-recheck",
    kind: "bound",
    description: "TURN does not check the quotas again once a pending Allocate's relay is open",
    file: TURN_SERVER,
    search:
      "victim = this.#sourceFull(client, source, slots)\n        ? 486\n        : this.#room(source, username, 0, slots);",
    replace: "",
    tests: [T_TURN_SERVER],
    filter: "arriving together",
  },
  {
    id: "turn-stream-request-rate",
    kind: "bound",
    description: "TURN takes any number of requests from a byte-stream client",
    file: TURN_SERVER,
    search: "if (client.stream === true && !this.#takeRequestToken(client, now, cost)) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
    filter: "50 requests a second",
  },
  {
    id: "turn-source-request-rate",
    kind: "bound",
    description: "TURN answers any number of unauthenticated requests from one source",
    file: TURN_SERVER,
    search: "if (source === undefined || rates.take(source, now, cost)) return true;",
    replace: "return true;",
    tests: [T_TURN_SERVER],
    filter: "500 at once",
  },
  {
    id: "turn-stream-read-pause",
    kind: "bound",
    description: "TURN reads a stream client that takes none of its answers",
    file: TURN_STREAM,
    search: "if (out.queued > READ_PAUSE) await out.drained(READ_PAUSE);",
    replace: "",
    tests: [T_TURN_SERVER],
    filter: "never reads",
  },
  {
    id: "turn-channel-range",
    kind: "bound",
    description: "TURN accepts channel numbers above the allowed range",
    file: TURN_SERVER,
    search: "if (number < 0x4000 || number > this.#maxChannel) {",
    replace: "if (number < 0x4000) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-reservation-expiry",
    kind: "bound",
    description: "TURN RESERVATION-TOKEN usable after it expired (30 s)",
    file: TURN_SERVER,
    search: "if (!reservation || reservation.expires <= this.#now()) {",
    replace: "if (!reservation) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-oversize-to-peer",
    kind: "bound",
    description: "TURN sends a peer datagrams larger than the relay's maximum",
    file: TURN_SERVER,
    search: "if (data.byteLength > (allocation.relay.maxDatagram ?? MAX_UDP_PAYLOAD)) {",
    replace: "if (false) {",
    tests: [T_TURN_UDP],
  },
  {
    id: "turn-stream-queue",
    kind: "bound",
    description: "TURN over a stream queues without limit toward a slow client",
    file: TURN_STREAM,
    search: "if (this.broken || this.queued + view.length > this.#limit) return false;",
    replace: "if (this.broken) return false;",
    tests: [T_TURN_SERVER],
  },
  // TURN: authentication.
  {
    id: "turn-message-integrity",
    kind: "authentication",
    description: "TURN request accepted without checking MESSAGE-INTEGRITY",
    file: TURN_SERVER,
    search: "if (!verifyIntegrity(request, key)) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "stun-integrity-compare",
    kind: "authentication",
    description: "STUN MESSAGE-INTEGRITY comparison always succeeds",
    file: STUN_INTEGRITY,
    search: "for (let i = 0; i < 20; i++) diff |= mac[i]! ^ got[i]!;",
    replace: "",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-nonce-mac",
    kind: "authentication",
    description: "TURN nonce accepted without checking its MAC",
    file: TURN_SERVER,
    search:
      "if (!match || match[3] !== this.#nonceMac(`${match[1]}.${match[2]}`, client)) return false;",
    replace: "if (!match) return false;",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-nonce-client",
    kind: "authentication",
    description: "TURN nonce good from any address: a replayed Allocate takes an allocation",
    file: TURN_SERVER,
    search: "const mac = hmacSha1(this.#secret, encoder.encode(`${expiry}.${client.key}`));",
    replace: "const mac = hmacSha1(this.#secret, encoder.encode(expiry));",
    tests: [T_TURN_UDP],
    filter: "replayed from another address",
  },
  {
    id: "turn-nonce-expiry",
    kind: "bound",
    description: "TURN nonce never goes stale",
    file: TURN_SERVER,
    search: "return known.expiry > this.#now();",
    replace: "return true;",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-nonce-cache",
    kind: "authentication",
    description:
      "TURN takes any nonce from a client once one of its nonces was good (the remembered one is not compared)",
    file: TURN_SERVER,
    search: "if (known === undefined || known.nonce !== nonce) {",
    replace: "if (known === undefined) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-unknown-user",
    kind: "authentication",
    description: "TURN accepts a user name it does not know",
    file: TURN_SERVER,
    search: "if (password === undefined && given === undefined) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-realm",
    kind: "authentication",
    description: "TURN accepts another realm",
    file: TURN_SERVER,
    search: "if (realm !== this.#realm) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-allocation-owner",
    kind: "authorization",
    description: "TURN lets another user act on an allocation (441)",
    file: TURN_SERVER,
    search: "if (allocation.username !== username) {",
    replace: "if (false) {",
    tests: [T_TURN_SERVER],
  },
  {
    id: "turn-fingerprint",
    kind: "authentication",
    description: "TURN takes a message with a wrong FINGERPRINT",
    file: TURN_SERVER,
    search: "if (!verifyFingerprint(message)) {",
    replace: "if (false) {",
    tests: [T_TURN_UDP],
  },
  {
    id: "turn-allow-flag",
    kind: "policy",
    description: "-target turn accepts -allow values other than loopback and private",
    file: MANAGED_CONFIG,
    search: `if (a !== "loopback" && a !== "private") {`,
    replace: "if (false) {",
    tests: [T_TURN_FLAGS],
  },
  {
    id: "turn-cli-loopback-default",
    kind: "policy",
    description: "main.ts turn relays to loopback peers without --allow-loopback-peers",
    file: TURN_CLI,
    search: "let allowLoopbackPeers = false;",
    replace: "let allowLoopbackPeers = true;",
    tests: [T_TURN_CLI],
  },
  {
    id: "managed-turn-loopback-default",
    kind: "policy",
    description: "the embedded TURN server (-target turn) allows loopback peers without -allow",
    file: MANAGED_CONFIG,
    search: `allowLoopbackPeers: allowed.includes("loopback"),`,
    replace: "allowLoopbackPeers: true,",
    tests: [T_IPC_UDP],
  },
  {
    id: "managed-turn-private-default",
    kind: "policy",
    description: "the embedded TURN server (-target turn) allows private peers without -allow",
    file: MANAGED_CONFIG,
    search: `allowPrivatePeers: allowed.includes("private"),`,
    replace: "allowPrivatePeers: true,",
    tests: [T_IPC_UDP],
  },
  // obfs4: handshake authentication.
  {
    id: "obfs4-client-auth",
    kind: "authentication",
    description: "obfs4 client skips the ntor AUTH check",
    file: OBFS4_HANDSHAKE,
    search: "if (result === undefined || !equal(result.auth, auth)) {",
    replace: "if (result === undefined) {",
    tests: [T_OBFS4_AUTH],
  },
  {
    id: "obfs4-client-mac",
    kind: "authentication",
    description: "obfs4 client skips the server's handshake MAC",
    file: OBFS4_HANDSHAKE,
    search:
      "if (!equal(tag, mac(crypto, this.#key, received.subarray(0, pos + MARK_LENGTH), this.#epoch))) {",
    replace: "if (false) {",
    tests: [T_OBFS4_AUTH],
  },
  {
    id: "obfs4-server-mac",
    kind: "authentication",
    description: "obfs4 server skips the client's handshake MAC",
    file: OBFS4_HANDSHAKE,
    search:
      "if (equal(tag, mac(crypto, this.#key, received.subarray(0, pos + MARK_LENGTH), candidate))) {",
    replace: "if (true) {",
    tests: [T_OBFS4_AUTH],
  },
  {
    id: "obfs4-server-mark",
    kind: "authentication",
    description: "obfs4 server does not look for the client's mark",
    file: OBFS4_HANDSHAKE,
    search: "if (!equal(received.subarray(pos, pos + MARK_LENGTH), this.#mark)) {",
    replace: "if (false) {",
    tests: [T_OBFS4_AUTH],
  },
  {
    id: "obfs4-epoch-window",
    kind: "bound",
    description: "obfs4 server accepts a client clock two hours off",
    file: OBFS4_HANDSHAKE,
    search: "for (const offset of [0, -1, 1]) {",
    replace: "for (const offset of [0, -1, 1, -2, 2]) {",
    tests: [T_OBFS4_FRAMING],
  },
  {
    id: "obfs4-replay",
    kind: "authentication",
    description: "obfs4 server accepts a replayed handshake",
    file: OBFS4_HANDSHAKE,
    search: `if (this.#filter.testAndSet(now, tag)) throw fail("replayed handshake");`,
    replace: "this.#filter.testAndSet(now, tag);",
    tests: [T_OBFS4_PAIR],
  },
  {
    id: "obfs4-trailing",
    kind: "bound",
    description: "obfs4 server accepts bytes after the client's MAC",
    file: OBFS4_HANDSHAKE,
    search: `if (received.length !== end) throw fail("trailing data after the MAC");`,
    replace: "",
    tests: [T_OBFS4_FRAMING],
  },
  {
    id: "obfs4-server-handshake-length",
    kind: "bound",
    description: "obfs4 server buffers a handshake past 8192 bytes",
    file: OBFS4_HANDSHAKE,
    search: `if (received.length >= MAX_HANDSHAKE_LENGTH) throw fail("mark not found");`,
    replace: "",
    tests: [T_OBFS4_AUTH],
  },
  {
    id: "obfs4-client-handshake-length",
    kind: "bound",
    description: "obfs4 client buffers a server answer past 8192 bytes",
    file: OBFS4_HANDSHAKE,
    search: `      if (received.length >= MAX_HANDSHAKE_LENGTH) {
        throw new SyntaxError("Cannot complete obfs4 handshake: server mark not found");
      }`,
    replace: "",
    tests: [T_OBFS4_PAIR],
  },
  // obfs4: frames.
  {
    id: "obfs4-frame-tag",
    kind: "authentication",
    description: "obfs4 frames taken although their Poly1305 tag is wrong",
    file: OBFS4_FRAMING,
    search: `if (!opened) throw new SyntaxError("Cannot decode obfs4 frame: bad tag");`,
    replace: "",
    tests: [T_OBFS4_PAIR, T_OBFS4_FRAMING],
  },
  {
    id: "secretbox-wasm-tag",
    kind: "authentication",
    description: "WebAssembly secretbox opens a box whose tag is wrong",
    file: CRYPTO_BACKEND,
    search:
      `        if (lib._crypto_secretbox_open_easy(output, input, box.length, 0, n, k) !== 0) {
          return false;
        }`,
    replace: "        lib._crypto_secretbox_open_easy(output, input, box.length, 0, n, k);",
    tests: [T_OBFS4_FRAMING, T_OBFS4_CRYPTO],
  },
  {
    id: "secretbox-native-tag",
    kind: "authentication",
    description: "native secretbox opens a box whose tag is wrong",
    file: NATIVE_CRYPTO,
    search: "return sodium.crypto_secretbox_open_easy(message, box, nonce, key);",
    replace: "sodium.crypto_secretbox_open_easy(message, box, nonce, key);\n        return true;",
    tests: [T_OBFS4_FRAMING, T_OBFS4_CRYPTO],
  },
  {
    id: "obfs4-frame-length",
    kind: "bound",
    description: "obfs4 frame length outside [16, 1446] accepted",
    file: OBFS4_FRAMING,
    search: "if (length < MIN_BOX_LENGTH || length > MAX_BOX_LENGTH) {",
    replace: "if (false) {",
    tests: [T_OBFS4_FRAMING],
  },
  {
    id: "obfs4-packet-length",
    kind: "bound",
    description: "obfs4 packet payload length larger than its frame accepted",
    file: OBFS4_SESSION,
    search: "if (length > packetLength - PACKET_OVERHEAD) {",
    replace: "if (false) {",
    tests: [T_OBFS4_FRAMING],
  },
  // obfs4: deadlines.
  {
    id: "obfs4-server-handshake-deadline",
    kind: "bound",
    description: "obfs4 server answers a handshake completed after its deadline",
    file: OBFS4,
    search: "core.after(shared.handshakeTimeoutMs, giveUp);",
    replace: "",
    tests: [T_OBFS4_DEADLINES],
  },
  {
    id: "obfs4-probe-close",
    kind: "bound",
    description: "obfs4 server never closes a connection without a good handshake",
    file: OBFS4,
    search: `      core.after(
        shared.closeDelayMs,
        () =>
          core.fail(`,
    replace: `      core.after(
        shared.closeDelayMs,
        () =>
          void (`,
    tests: [T_OBFS4_DEADLINES],
  },
  {
    id: "obfs4-client-handshake-deadline",
    kind: "bound",
    description: "obfs4 client waits for the server's handshake forever",
    file: OBFS4,
    search: `() =>
          core.fail(
            new HandshakeError(
              "timeout",`,
    replace: `() =>
          void (
            new HandshakeError(
              "timeout",`,
    tests: [T_OBFS4_DEADLINES],
  },
  // obfs4: the replay filter.
  {
    id: "replay-cap",
    kind: "bound",
    description: "obfs4 replay filter grows past 102,400 MACs",
    file: REPLAY_FILTER,
    search: "if (now - time < this.#ttlMs && this.#seen.size < this.#maxEntries) break;",
    replace: "if (now - time < this.#ttlMs) break;",
    tests: [T_REPLAY],
  },
  {
    id: "replay-cap-size",
    kind: "bound",
    description: "obfs4 replay filter holds 10 times as many MACs",
    file: REPLAY_FILTER,
    search: "const MAX_ENTRIES = 100 * 1024;",
    replace: "const MAX_ENTRIES = 1000 * 1024;",
    tests: [T_REPLAY],
  },
  {
    id: "replay-ttl",
    kind: "bound",
    description: "obfs4 replay filter remembers MACs for 4 hours",
    file: REPLAY_FILTER,
    search: "const TTL_MS = 3 * 60 * 60 * 1000;",
    replace: "const TTL_MS = 4 * 60 * 60 * 1000;",
    tests: [T_REPLAY],
  },
  {
    id: "replay-eviction-order",
    kind: "bound",
    description: "obfs4 replay filter, once full, forgets every MAC instead of the oldest",
    file: REPLAY_FILTER,
    search: `      this.#seen.delete(key);
    }`,
    replace: `      if (this.#seen.size >= this.#maxEntries) this.#seen.clear();
      else this.#seen.delete(key);
    }`,
    tests: [T_REPLAY],
  },
  // obfs4: IAT mode 1.
  {
    id: "iat-no-wait",
    kind: "bound",
    description: "obfs4 IAT: the next write does not wait for the sleep",
    file: OBFS4,
    search: "if (wait !== undefined) await wait;",
    replace: "",
    tests: [T_OBFS4_IAT],
  },
  {
    id: "iat-mode1-off",
    kind: "bound",
    description: "obfs4 IAT modes write with no sleep at all",
    file: OBFS4,
    search: `    const wait = sleep(session.iatDelay());
    if (wait !== undefined) await wait;`,
    replace: "",
    tests: [T_OBFS4_IAT],
  },
  {
    id: "iat-delay-zero",
    kind: "bound",
    description: "obfs4 IAT sleeps 0 instead of the sampled delay",
    file: OBFS4,
    search: "const wait = sleep(session.iatDelay());",
    replace: "const wait = sleep(0);",
    tests: [T_OBFS4_IAT],
  },
  {
    id: "iat-mode1-bursts",
    kind: "bound",
    description: "obfs4 IAT mode 1 writes whole bursts instead of segments",
    file: OBFS4_SESSION,
    search: "writes.push(burst.subarray(at, at + MAX_SEGMENT_LENGTH));",
    replace: "if (at === 0) writes.push(burst);",
    tests: [T_OBFS4_IAT],
  },
  {
    id: "iat-client-reseed",
    kind: "bound",
    description: "obfs4 client keeps its own IAT table after the server's seed",
    file: OBFS4_SESSION,
    search: "this.#iatDist.reset(this.#crypto.sha256(seed).subarray(0, 24));",
    replace: "",
    tests: [T_OBFS4_IAT],
  },
  {
    id: "iat-server-table",
    kind: "bound",
    description: "obfs4 server draws IAT delays from the length table's seed",
    file: OBFS4,
    search: "const iatSeed = new Uint8Array(digest, 0, 24);",
    replace: "const iatSeed = server.drbgSeed.slice(0, 24);",
    tests: [T_OBFS4_IAT],
  },
  // Shadowsocks: AEAD tags, salts, lengths.
  {
    id: "aead-openssl-tag",
    kind: "authentication",
    description: "OpenSSL AEAD opens a chunk whose tag is wrong",
    file: AEAD,
    search:
      "if (lib.EVP_CipherFinal_ex(ctx, out.subarray(n), lengthBytes) !== 1) return undefined;",
    replace: "lib.EVP_CipherFinal_ex(ctx, out.subarray(n), lengthBytes);",
    tests: [T_SS_FRAMING],
  },
  {
    id: "aead-node-tag",
    kind: "authentication",
    description: "node:crypto AEAD opens a chunk whose tag is wrong",
    file: AEAD,
    search: `        try {
          decipher.final();
        } catch {
          return undefined;
        }`,
    replace: `        try {
          decipher.final();
        } catch {
          // Ignored.
        }`,
    tests: [T_SS_FRAMING],
  },
  {
    id: "ss-salt-replay",
    kind: "authentication",
    description: "shadowsocks server accepts a salt it has seen (a replayed stream)",
    file: SS_FRAMING,
    search: `if (!this.#onSalt(this.#salt!)) throw new ChunkError("repeated salt", "salt");`,
    replace: "",
    tests: [T_SS_FRAMING],
  },
  {
    id: "ss-chunk-length",
    kind: "bound",
    description:
      "shadowsocks chunk lengths read whole, not as their low 14 bits (as ss-libev reads them)",
    file: SS_FRAMING,
    search: "const n = ((length[0]! << 8) | length[1]!) & MAX_PAYLOAD;",
    replace: "const n = (length[0]! << 8) | length[1]!;",
    tests: [T_SS_FRAMING],
  },
  // ExtORPort, the PT side.
  {
    id: "extorport-status",
    kind: "authentication",
    description: "ExtORPort authentication status 0 ignored",
    file: EXT_ORPORT,
    search:
      `if (status !== 1) throw new Error("Extended ORPort authentication failed (wrong cookie)");`,
    replace: "",
    tests: [T_EXT_ORPORT],
  },
  {
    id: "extorport-server-hash",
    kind: "authentication",
    description: "ExtORPort server hash not checked",
    file: EXT_ORPORT,
    search: "if (!constantTimeEqual(expected, reply.subarray(0, AUTH_LENGTH))) {",
    replace: "if (false) {",
    tests: [T_EXT_ORPORT],
  },
  {
    id: "extorport-deny",
    kind: "authorization",
    description: "ExtORPort DENY ignored",
    file: EXT_ORPORT,
    search: `if (command === CMD_DENY) throw new Error("Extended ORPort denied the connection");`,
    replace: "",
    tests: [T_EXT_ORPORT],
  },
  {
    id: "extorport-safe-cookie-offered",
    kind: "authentication",
    description: "ExtORPort goes on when SAFE_COOKIE is not offered",
    file: EXT_ORPORT,
    search: "if (!types.includes(SAFE_COOKIE)) {",
    replace: "if (false) {",
    tests: [T_EXT_ORPORT],
  },
  {
    id: "auth-cookie-header",
    kind: "authentication",
    description: "auth cookie file read without checking its header",
    file: SAFE_COOKIE,
    search: "if (!constantTimeEqual(bytes.subarray(0, AUTH_LENGTH), COOKIE_HEADER)) {",
    replace: "if (false) {",
    tests: [T_EXT_ORPORT],
  },
  {
    id: "extorport-deadline",
    kind: "bound",
    description: "ExtORPort handshake with a stalled tor never ends",
    file: EXT_ORPORT,
    search: `    timedOut = true;
    closeQuietly(conn);`,
    replace: "    timedOut = true;",
    tests: [T_EXT_ORPORT],
    // The main.ts test of the same deadline has no guard: it would hang.
    filter: "extOrPortHandshake",
  },
  // ExtORPort, the server side (driving other PTs) and SAFE_COOKIE itself.
  {
    id: "extorport-server-client-hash",
    kind: "authentication",
    description: "ExtORPort server accepts a wrong client hash",
    file: EXT_ORPORT_SERVER,
    search: "if (!constantTimeEqual(theirs, clientHash(this.#cookie, clientNonce, serverNonce))) {",
    replace: "if (false) {",
    tests: [T_ADAPTER_EXT_ORPORT],
  },
  {
    id: "safe-cookie-equal",
    kind: "authentication",
    description: "SAFE_COOKIE's constant-time comparison compares nothing",
    file: SAFE_COOKIE,
    search: "for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;",
    replace: "",
    tests: [T_ADAPTER_EXT_ORPORT],
  },
  {
    id: "extorport-server-messages",
    kind: "bound",
    description: "ExtORPort server reads messages without limit before DONE",
    file: EXT_ORPORT_SERVER,
    search: "const MAX_MESSAGES = 64;",
    replace: "const MAX_MESSAGES = 1_000_000;",
    tests: [T_ADAPTER_EXT_ORPORT],
  },
  {
    id: "extorport-server-deadline",
    kind: "bound",
    description: "ExtORPort server waits for a silent PT forever",
    file: EXT_ORPORT_SERVER,
    search: `      timedOut = true;
      closeQuietly(conn);`,
    replace: "      timedOut = true;",
    tests: [T_ADAPTER_EXT_ORPORT],
  },
  {
    id: "extorport-server-max-pending",
    kind: "bound",
    description: "ExtORPort server queues authenticated connections past maxPending",
    file: EXT_ORPORT_SERVER,
    search: "} else if (this.#pending.length >= (this.#options.maxPending ?? 64)) {",
    replace: "} else if (false) {",
    tests: [T_ADAPTER_EXT_ORPORT],
  },
  {
    id: "line-buffer",
    kind: "bound",
    description: "a line (a driven PT's stdout, the PT's stdin) is buffered without limit",
    file: LINE_STREAM,
    search: "if (buffer.length > maxLength) {",
    replace: "if (false) {",
    tests: [T_LINE_STREAM],
  },
  {
    id: "line-too-long",
    kind: "bound",
    description: "a line longer than allowed that arrives whole is passed on",
    file: LINE_STREAM,
    search: "          else if (line.length > maxLength) onTooLong?.(line.length);\n",
    replace: "",
    tests: [T_LINE_STREAM],
  },
  // Free mode and TURN peers: the IP classification and the destination policy.
  {
    id: "ip-loopback4",
    kind: "policy",
    description: "IP classification reads 127.0.0.0/8 as public",
    file: IP_ADDRESS,
    search: `["127.0.0.0/8", "loopback"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-private10",
    kind: "policy",
    description: "IP classification reads 10.0.0.0/8 as public",
    file: IP_ADDRESS,
    search: `["10.0.0.0/8", "private"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-private172",
    kind: "policy",
    description: "IP classification reads 172.16.0.0/12 as public",
    file: IP_ADDRESS,
    search: `["172.16.0.0/12", "private"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-private192",
    kind: "policy",
    description: "IP classification reads 192.168.0.0/16 as public",
    file: IP_ADDRESS,
    search: `["192.168.0.0/16", "private"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-shared",
    kind: "policy",
    description: "IP classification reads 100.64.0.0/10 (CGNAT) as public",
    file: IP_ADDRESS,
    search: `["100.64.0.0/10", "shared"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-link-local4",
    kind: "policy",
    description: "IP classification reads 169.254.0.0/16 as public",
    file: IP_ADDRESS,
    search: `["169.254.0.0/16", "link-local"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-multicast4",
    kind: "policy",
    description: "IP classification reads 224.0.0.0/4 as public",
    file: IP_ADDRESS,
    search: `["224.0.0.0/4", "multicast"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-unspecified4",
    kind: "policy",
    description: "IP classification reads 0.0.0.0/8 as public",
    file: IP_ADDRESS,
    search: `["0.0.0.0/8", "unspecified"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-broadcast",
    kind: "policy",
    description: "IP classification reads 255.255.255.255 as reserved, not broadcast",
    file: IP_ADDRESS,
    search: `["255.255.255.255/32", "broadcast"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-loopback6",
    kind: "policy",
    description: "IP classification reads ::1 as reserved, not loopback",
    file: IP_ADDRESS,
    search: `["::1/128", "loopback"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-ula",
    kind: "policy",
    description: "IP classification reads fc00::/7 as public",
    file: IP_ADDRESS,
    search: `["fc00::/7", "unique-local"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-link-local6",
    kind: "policy",
    description: "IP classification reads fe80::/10 as public",
    file: IP_ADDRESS,
    search: `["fe80::/10", "link-local"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-site-local",
    kind: "policy",
    description: "IP classification reads fec0::/10 as public",
    file: IP_ADDRESS,
    search: `["fec0::/10", "site-local"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-multicast6",
    kind: "policy",
    description: "IP classification reads ff00::/8 as public",
    file: IP_ADDRESS,
    search: `["ff00::/8", "multicast"],`,
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-nat64",
    kind: "policy",
    description: "IP classification reads 64:ff9b::127.0.0.1 (NAT64) as public",
    file: IP_ADDRESS,
    search: "if (zeros(bytes, 4, 12)) return bytes.subarray(12);",
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-6to4",
    kind: "policy",
    description: "IP classification reads 2002:7f00:1:: (6to4 of 127.0.0.1) as public",
    file: IP_ADDRESS,
    search: "if (bytes[0] === 0x20 && bytes[1] === 0x02) return classify4(bytes.subarray(2, 6));",
    replace: "",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-v6-unassigned",
    kind: "policy",
    description: "IP classification reads IPv6 space outside 2000::/3 as public",
    file: IP_ADDRESS,
    search: `((bytes[0]! & 0xe0) === 0x20 ? "public" : "reserved")`,
    replace: `"public"`,
    tests: [T_IP, T_POLICY],
  },
  {
    id: "ip-longest-prefix",
    kind: "policy",
    description: "IP classification takes the first matching prefix, not the longest",
    file: IP_ADDRESS,
    search: "    .sort((a, b) => b[1] - a[1]);",
    replace: ";",
    tests: [T_IP, T_POLICY],
  },
  {
    id: "policy-never-allowed",
    kind: "policy",
    description: "free-mode policy allows classes no allowance names (documentation, reserved...)",
    file: DESTINATION_POLICY,
    search: "if (scope === undefined) return kind;",
    replace: "if (scope === undefined) return undefined;",
    tests: [T_POLICY],
  },
  {
    id: "policy-scope-map",
    kind: "policy",
    description: "free-mode policy lets -allow private open loopback",
    file: DESTINATION_POLICY,
    search: `  "loopback": "loopback",`,
    replace: `  "loopback": "private",`,
    tests: [T_POLICY],
  },
  {
    id: "policy-exact-port",
    kind: "policy",
    description: "free-mode ip:port allowance opens every port of the address",
    file: DESTINATION_POLICY,
    search: "return formatHostPort({ hostname: formatIp(unmapIpv4(bytes)), port });",
    replace: "return formatHostPort({ hostname: formatIp(unmapIpv4(bytes)), port: 1 });",
    tests: [T_POLICY],
  },
  {
    id: "policy-not-ip",
    kind: "policy",
    description: "free-mode policy allows what is not an IP address",
    file: DESTINATION_POLICY,
    search: `return "not an IP address";`,
    replace: "return undefined;",
    tests: [T_POLICY],
  },
  {
    id: "socks-target-policy",
    kind: "policy",
    description: "free-mode SOCKS target dials every resolved address, allowed or not",
    file: SOCKS_TARGET,
    search:
      "const allowed = addresses.filter((ip) => policy.refusal(ip, destination.port) === undefined);",
    replace: "const allowed = addresses;",
    tests: [T_FREE],
  },
  {
    id: "socks-target-default-policy",
    kind: "policy",
    description: "free-mode SOCKS target allows loopback by default",
    file: SOCKS_TARGET,
    search: "const policy = options.policy ?? new DestinationPolicy();",
    replace: `const policy = options.policy ?? new DestinationPolicy({ allow: ["loopback"] });`,
    tests: [T_IP, T_SOCKS_TARGET],
  },
  {
    id: "socks-target-lookup-bound",
    kind: "bound",
    description:
      "free-mode name lookups unbounded per source (a silent name server holds every socket)",
    file: SOCKS_TARGET,
    search: "lookups.run(options.source, () => resolve(destination.hostname), signal),",
    replace: "resolve(destination.hostname),",
    tests: [T_SOCKS_TARGET],
  },
  {
    id: "socks-target-dial-cap",
    kind: "bound",
    description: "free-mode destination dials every address its name has, each up to two minutes",
    file: SOCKS_TARGET,
    search: "for (const ip of alternateFamilies(allowed).slice(0, MAX_DIAL_ADDRESSES)) {",
    replace: "for (const ip of alternateFamilies(allowed)) {",
    tests: [T_SOCKS_TARGET],
  },
  // SOCKS handshake lengths.
  {
    id: "socks-json-length",
    kind: "bound",
    description: "SOCKS5 length-prefixed JSON settings over maxSettingsBytes accepted",
    file: SOCKS_HANDSHAKE,
    search: "if (length > maxSettings) {",
    replace: "if (false) {",
    tests: [T_SOCKS_LIMITS],
  },
  {
    id: "socks-json-object-length",
    kind: "bound",
    description: "SOCKS5 bare JSON object settings read without limit",
    file: SOCKS_HANDSHAKE,
    search: "if (i >= max) return -1;",
    replace: "",
    tests: [T_SOCKS_LIMITS],
  },
  {
    id: "socks-handshake-length",
    kind: "bound",
    description: "SOCKS handshake may hold a thousand times maxSettingsBytes",
    file: SOCKS_HANDSHAKE,
    search: "new HandshakeReader(io, maxSettings + 600, options.signal)",
    replace: "new HandshakeReader(io, maxSettings * 1000 + 600, options.signal)",
    tests: [T_SOCKS_LIMITS],
  },
  {
    id: "socks4a-name-length",
    kind: "bound",
    description: "SOCKS4a host name read past 255 bytes",
    file: SOCKS_HANDSHAKE,
    search: 'reader.findZero(offset, 255, "SOCKS4a request: host name"),',
    replace: 'reader.findZero(offset, reader.max, "SOCKS4a request: host name"),',
    tests: [T_SOCKS_LIMITS],
  },
  {
    id: "socks4-field-length",
    kind: "bound",
    description: "SOCKS4 user ID and host name read without limit",
    file: SOCKS_HANDSHAKE,
    search: "if (++i - from > limit) {",
    replace: "if ((++i, false)) {",
    tests: [T_SOCKS_LIMITS],
  },
  {
    id: "socks-server-deadline",
    kind: "bound",
    description: "SOCKS server keeps a client that never finishes its handshake",
    file: SOCKS_SERVER,
    search: `      );
      closeQuietly(conn);
    }, this.#options.handshakeTimeout ?? 5000);`,
    replace: `      );
    }, this.#options.handshakeTimeout ?? 5000);`,
    tests: [T_SOCKS_LIMITS],
  },
  // Per-source limits.
  {
    id: "limits-max-connections",
    kind: "bound",
    description: "listeners accept past maxConnections",
    file: SOURCE_LIMITS,
    search: "if (this.#open >= limits.maxConnections && !this.#evictForRoom(source)) {",
    replace: "if (false) {",
    tests: [T_SOURCE_LIMITS],
  },
  {
    id: "limits-full-newcomer-share",
    kind: "bound",
    description: "a full listener closes a slow handshake of a small source for a big one",
    file: SOURCE_LIMITS,
    search: "if (source.handshaking.size < (waited ? newcomer : newcomer + 1)) continue;",
    replace: "",
    tests: [T_SOURCE_LIMITS],
    filter: "keep their connections young",
  },
  {
    id: "limits-per-source-connections",
    kind: "bound",
    description: "listeners ignore maxConnectionsPerSource",
    file: SOURCE_LIMITS,
    search: "source.open - source.handshaking.size >= limits.maxConnectionsPerSource",
    replace: "false",
    tests: [T_SOURCE_LIMITS],
  },
  {
    id: "limits-per-source-handshakes",
    kind: "bound",
    description: "listeners ignore maxHandshakesPerSource",
    file: SOURCE_LIMITS,
    search: "if (source.handshaking.size <= this.#limits.maxHandshakesPerSource) {",
    replace: "if (true) {",
    tests: [T_SOURCE_LIMITS],
    // The 4200-connection test would hang rather than fail without the limit.
    filter: "listen():",
  },
  {
    id: "limits-ipv6-prefix",
    kind: "bound",
    description: "per-source limits count each IPv6 address, not each /64",
    file: SOURCE_LIMITS,
    search: "groups.slice(0, 4)",
    replace: "groups.slice(0, 8)",
    tests: [T_SOURCE_LIMITS],
  },
  // UDP over transports.
  {
    id: "udp-client-max-flows",
    kind: "bound",
    description: "UDP client opens flows past maxFlows",
    file: UDP_CLIENT_POOL,
    search: "if (this.#flows.size >= maxFlows && !this.#evictIdlest()) {",
    replace: "if (false) {",
    tests: [T_UDP_POOL],
  },
  {
    id: "udp-server-max-flows",
    kind: "bound",
    description: "UDP server serves flows past maxFlows",
    file: SOURCE_SHARE,
    search: "if (this.size >= total) {",
    replace: "if (false) {",
    tests: [T_UDP_POOL],
  },
  {
    id: "udp-server-flows-per-source",
    kind: "bound",
    description:
      "UDP server and embedded TURN server let one source hold flows past maxConnectionsPerSource",
    file: SOURCE_SHARE,
    search: "if (this.count(source) >= perSource) {",
    replace: "if (false) {",
    tests: [T_UDP_POOL, T_IPC_UDP],
  },
  {
    id: "udp-waiting-queue",
    kind: "bound",
    description: "UDP flow queues without limit while its connection is being made",
    file: UDP_FLOW,
    search: `        this.#queuedDatagrams >= this.#settings.queueDatagrams ||
        this.#queuedBytes + length > this.#settings.queueBytes`,
    replace: "        false",
    tests: [T_UDP_POOL],
    filter: "Waiting queue",
  },
  {
    id: "udp-pool-budget",
    kind: "bound",
    description:
      "Queues toward clients that do not read share no budget (UDP flows hold 1 MiB each)",
    file: QUEUE_BUDGET,
    search: "return held + length <= this.share || this.#used + length <= this.limit;",
    replace: "return true;",
    tests: [T_UDP_POOL],
    filter: "poolBufferBytes",
  },
  {
    id: "obfs4-decode-turns",
    kind: "bound",
    description:
      "obfs4 decodes a whole read of small frames at once, keeping every other connection waiting",
    file: DECODE_TURNS,
    search: "if (at < wire.length && decoded < SMALL_UNITS_PER_SLICE) {",
    replace: "if (at < wire.length) {",
    tests: [T_OBFS4_PAIR],
    filter: "many small frames",
  },
  {
    id: "ss-decode-turns",
    kind: "bound",
    description:
      "Shadowsocks decodes a whole read of small chunks at once, keeping every other connection waiting",
    file: DECODE_TURNS,
    search: "if (at < wire.length && decoded < SMALL_UNITS_PER_SLICE) {",
    replace: "if (at < wire.length) {",
    tests: [T_SS_FRAMING],
    filter: "many small chunks",
  },
  {
    id: "udp-flow-turn",
    kind: "bound",
    description:
      "A UDP flow sends every datagram of the reads already queued without giving the event loop a turn",
    file: UDP_FLOW,
    search: "if (++turn % DATAGRAMS_PER_TURN === 0) {",
    replace: "if (false) {",
    tests: [T_UDP_POOL],
    filter: "event loop a turn",
  },
  {
    id: "udp-socket-drain-cap",
    kind: "bound",
    description:
      "A UdpSocket's wake-up drains the kernel's queue while recvmmsg fills its batches: a flood freezes the process",
    file: UDP_SOCKET,
    search: "if (batches === DRAIN_BATCHES) {",
    replace: "if (false) {",
    tests: [T_UDP_SOCKET],
    filter: "under a flood",
  },
  {
    id: "udp-socket-hand-over-nested",
    kind: "bound",
    description:
      "A datagram handed over directly between sockets of one process is answered directly too: two sockets answering each other recurse until the stack overflows",
    file: UDP_SOCKET,
    search:
      "if (UdpSocket.#handingOver || this.#family !== 4 || !(peer instanceof Endpoint)) return false;",
    replace: "if (this.#family !== 4 || !(peer instanceof Endpoint)) return false;",
    tests: [T_UDP_SOCKET],
    filter: "answer each other at once",
  },
  {
    id: "udp-length-deframe-max",
    kind: "bound",
    description: "length-framed datagrams over maxDatagram accepted from the stream",
    file: LENGTH_FRAMING,
    search: `    const n = (header[0]! << 8) | header[1]!;
    if (n > maxDatagram) {`,
    replace: `    const n = (header[0]! << 8) | header[1]!;
    if (false) {`,
    tests: [T_UDP_FRAMING],
  },
  {
    id: "udp-stun-deframe-max",
    kind: "bound",
    description: "STUN-framed messages over maxDatagram accepted from the stream",
    file: STUN_FRAMING,
    search: "if (total > maxDatagram) {",
    replace: "if (false) {",
    tests: [T_UDP_FRAMING],
  },
  {
    id: "ssh-front-handshakes",
    kind: "bound",
    description:
      "sshd's unauthenticated connections are not counted per source: idle ones from 64 sources lock new clients out",
    file: HELPER_FRONT,
    search: "const admitted = this.#handshakes.admit(conn.remoteAddr, () => closeQuietly(conn));",
    replace: "const admitted = { release: () => {} };",
    tests: [T_SSH],
    filter: "lock no new client out",
  },
  {
    id: "ssh-front-authenticated",
    kind: "bound",
    description:
      "An authenticated SSH connection still counts as unfinished and loses its place to idle ones",
    file: SSH,
    search: "/^Accepted publickey for \\S+ from 127\\.0\\.0\\.1 port (\\d+) /",
    replace: "/^never$/",
    tests: [T_SSH],
    filter: "lock no new client out",
  },
  {
    id: "connection-loop-exhausted-room",
    kind: "bound",
    description:
      "A ConnectionLoop out of descriptors (the ssh front) closes nothing: one source holding them all locks the others out",
    file: "net/_accept_loop.ts",
    search: "const limiter = options.makeRoomWhenExhausted ? this.#limiter : undefined;",
    replace: "const limiter = undefined as SourceLimiter | undefined;",
    tests: ["tests/hardening_fd_limit_test.ts"],
    filter: "ConnectionLoop out of descriptors",
  },
];
