// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { defineTransport } from "../define_transport.ts";
import { deferred } from "../_deferred.ts";
import type { HostPort, Transport, TransportPair } from "../transport.ts";
import { checkReplayFilterBounds, GenerationalReplayFilter } from "../_replay_filter.ts";
import { checkTimerMs } from "../_timeout.ts";
import { checkFactoryOptions } from "../_factory_options.ts";
import { decodeInTurns } from "../_decode_turns.ts";
import { cryptoLoader, loadWasmCrypto } from "../crypto_backend.ts";
import type { TransportEnvironment } from "../transport.ts";
import { decodeRequest, encodeAddress } from "./_address.ts";
import { type AeadFactory, ChunkDecoder, ChunkEncoder, ChunkError } from "./_framing.ts";
import {
  CLIENT_OPTION_KEYS,
  type MethodInfo,
  OPTION_KEYS,
  parseConfig,
  type ShadowsocksConfig,
  toBase64Url,
} from "./_methods.ts";
import { concat } from "../_bytes.ts";

// Fresh salts drawn before a server connection gives up: a good random
// source repeats none.
const MAX_SALT_TRIES = 16;

// Room for one decoded chunk, so the request is read before anyone reads.
const DECODE_READABLE: QueuingStrategy<Uint8Array> = { highWaterMark: 1 };

/** Hooks and tuning for {@linkcode createShadowsocks}. */
export interface ShadowsocksOptions {
  /** Fills its argument with random bytes (salts, keys). Defaults to `crypto.getRandomValues`. */
  readonly random?: (bytes: Uint8Array) => void;
  /** The clock, in ms since the epoch (the replay filter's). Defaults to `Date.now`. */
  readonly now?: () => number;
  /**
   * How long, in ms after it was accepted, a server connection may take to
   * send a valid request. A connection with garbage, a wrong key or a
   * replayed salt is read and its bytes discarded, unanswered, until the
   * peer closes or this deadline; then it is closed. Defaults to no
   * deadline: shadowsocks-libev never closes such a connection itself, so
   * a close at any moment would tell a prober the server is not it (the
   * listener's limits bound how many are held).
   */
  readonly drainTimeout?: number;
  /**
   * Bounds of the server's salt replay filter: how long a salt is
   * remembered (ms) and how many at most. Defaults to 3 hours and
   * 2,000,000: the newest half of that (500,000 connections, each with the
   * client's salt and the server's) and the last 3 hours' are always
   * remembered, at most 16 bytes a salt (shadowsocks-libev's server keeps
   * 500,000 to 1,000,000 client salts).
   */
  readonly replayFilter?: { readonly ttlMs?: number; readonly maxEntries?: number };
}

interface Parsed {
  /** Absent on a client whose connections bring their own options. */
  readonly config?: ShadowsocksConfig;
  readonly factories: Map<string, AeadFactory>;
  /** The salts seen: a server's clients' and its own, or a client's. */
  readonly filter: GenerationalReplayFilter;
  /** Undefined: no deadline. */
  readonly drainMs: number | undefined;
  readonly options: Readonly<Record<string, string>>;
  readonly env: TransportEnvironment;
}

/**
 * The AEAD of a method from the runtime's crypto backend (`env.crypto`:
 * OpenSSL or node:crypto in ptkit's Deno runtime), or from the WebAssembly
 * backend when the runtime offers none or lacks the method.
 */
async function aeadFactory(env: TransportEnvironment, method: MethodInfo): Promise<AeadFactory> {
  const { algorithm, keyLength } = method;
  const crypto = await cryptoLoader(env)();
  const backend = crypto.aead(algorithm, new Uint8Array(keyLength)) === undefined
    ? await loadWasmCrypto()
    : crypto;
  return (key) => {
    const aead = backend.aead(algorithm, key);
    if (aead === undefined) throw new TypeError(`Cannot use ${method.name}: no backend has it`);
    return aead;
  };
}

/**
 * Enqueue the payloads one wire read completed as one chunk: one stream
 * operation and one socket write downstream instead of one per 16 KiB.
 */
function enqueueAll(
  controller: TransformStreamDefaultController<Uint8Array>,
  parts: Uint8Array[],
): void {
  if (parts.length === 0) return;
  if (parts.length === 1) {
    controller.enqueue(parts[0]!);
    return;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  controller.enqueue(out);
}

function randomBytes(random: (bytes: Uint8Array) => void, n: number): Uint8Array {
  const out = new Uint8Array(n);
  random(out);
  return out;
}

/**
 * How long a client holds its request (the address header) for the
 * application's first data, to send both in one write (the request a chunk
 * of its own, the data the next chunks, as ss-local seals them): ss-local's 50 ms
 * (shadowsocks-libev 3.3.5, `delayed_connect_watcher`). An application's
 * first bytes come after the SOCKS reply, a round trip later: sent at once,
 * the request made a first flight of its own, of a fixed size (73 bytes for
 * an IPv4 destination with a 32-byte key), which ss-local never sends to an
 * application that speaks first. ss-local counts from its SOCKS reply; the
 * client counts from the first read of its encoder, which a connection
 * (TransportConn) makes once the TCP connection is made, just before the
 * SOCKS reply: counted from the pair's making, before a TCP connection
 * slower than the wait, the request went alone on every such path.
 */
const REQUEST_WAIT_MS = 50;

/**
 * A client's encoder: application bytes in, chunks out, the request held
 * for the first data until {@linkcode REQUEST_WAIT_MS} after the first read.
 * A TransformStream's own parts, made by hand to see that first read (a
 * TransformStream tells its transformer nothing of reads); as one, it holds
 * one chunk and a write settles once the reader asks for more.
 */
function clientEncoder(encoder: ChunkEncoder, destination: HostPort): TransformStream<
  Uint8Array,
  Uint8Array
> {
  let request: Uint8Array | undefined = encodeAddress(destination);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let read = false;
  let out!: ReadableStreamDefaultController<Uint8Array>;
  let input!: WritableStreamDefaultController;
  let demand: (() => void) | undefined;
  const wake = () => {
    const resolve = demand;
    demand = undefined;
    resolve?.();
  };
  const sendRequest = () => {
    clearTimeout(timer);
    if (request === undefined) return;
    const bytes = request;
    request = undefined;
    try {
      out.enqueue(encoder.encode(bytes));
    } catch {
      // The connection already ended.
    }
  };
  const readable = new ReadableStream<Uint8Array>({
    start: (controller) => {
      out = controller;
    },
    pull: () => {
      // The first read: the connection is made.
      if (!read) {
        read = true;
        if (request !== undefined) timer = setTimeout(sendRequest, REQUEST_WAIT_MS);
      }
      wake();
    },
    cancel: (reason) => {
      clearTimeout(timer);
      request = undefined;
      input.error(reason);
      wake();
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({
    start: (controller) => {
      input = controller;
    },
    write: async (chunk) => {
      let bytes: Uint8Array;
      try {
        if (request !== undefined) {
          clearTimeout(timer);
          const header = request;
          request = undefined;
          // As ss-local: the request is a chunk of its own, the data the
          // next ones, both in one write.
          bytes = chunk.length === 0
            ? encoder.encode(header)
            : concat(encoder.encode(header), encoder.encode(chunk));
        } else if (chunk.length > 0) {
          bytes = encoder.encode(chunk);
        } else {
          return;
        }
      } catch (error) {
        try {
          out.error(error);
        } catch {
          // Already ended.
        }
        throw error;
      }
      out.enqueue(bytes);
      // Backpressure, as a TransformStream's: one chunk held until read.
      if ((out.desiredSize ?? 1) <= 0) await new Promise<void>((resolve) => demand = resolve);
    },
    close: () => {
      sendRequest();
      out.close();
    },
    abort: (reason) => {
      clearTimeout(timer);
      request = undefined;
      try {
        out.error(reason);
      } catch {
        // Already ended.
      }
    },
  });
  return { readable, writable } as TransformStream<Uint8Array, Uint8Array>;
}

/**
 * Salts a client remembers, its own and its servers' (the newest half always):
 * shadowsocks-libev's ss-local keeps 10,000 to 20,000 (its client-sized
 * replay filter) and refuses a server stream whose salt it has seen.
 */
const CLIENT_REPLAY_ENTRIES = 20_000;

function clientPair(
  config: ShadowsocksConfig,
  factory: AeadFactory,
  destination: HostPort,
  random: (bytes: Uint8Array) => void,
  filter: GenerationalReplayFilter,
  now: () => number,
): TransportPair {
  const { method, key, prefix } = config;
  // Outline's connection prefix, when given, starts the salt; the rest is random.
  const salt = randomBytes(random, method.keyLength);
  if (prefix !== undefined) salt.set(prefix);
  // Its own salt too: its stream reflected back at it is refused.
  filter.testAndSet(now(), salt);
  // The request goes with the first data written within REQUEST_WAIT_MS of
  // the connection, in the same write (two chunks), as ss-local sends it;
  // alone when the application waits for the server.
  const encode = clientEncoder(new ChunkEncoder(method, factory, key, salt), destination);
  // A server's stream whose salt was seen (a recorded one replayed, or the
  // client's own reflected) is refused, as ss-local refuses it.
  const decoder = new ChunkDecoder(method, factory, key, (salt) => !filter.testAndSet(now(), salt));
  const decode = new TransformStream<Uint8Array, Uint8Array>(
    {
      transform: (chunk, controller) => {
        const out: Uint8Array[] = [];
        return decodeInTurns(chunk, (slice) => {
          try {
            decoder.decode(slice, (payload) => out.push(payload));
          } catch (error) {
            if (error instanceof ChunkError && error.message.endsWith(": repeated salt")) {
              throw new Error(
                "Cannot read the server's shadowsocks stream: its salt was seen before " +
                  "(a recorded stream replayed, or this client's own sent back)",
              );
            }
            // Before any chunk opened, the peer is not the server the
            // options describe: say so, rather than which tag failed.
            if (error instanceof ChunkError && error.stage === "salt") {
              throw new Error(
                "Cannot read the server's shadowsocks stream: its first chunk does not authenticate " +
                  "(a server with another method or password, or not a Shadowsocks server)",
              );
            }
            throw error;
          }
          const opened = out.length;
          enqueueAll(controller, out.splice(0));
          return opened;
        }, () => controller.desiredSize !== null);
      },
      flush: () => {
        if (decoder.pending > 0) {
          throw new Error("Cannot read shadowsocks stream: it ends inside a chunk");
        }
      },
    },
    undefined,
    DECODE_READABLE,
  );
  return { encode, decode };
}

function serverPair(
  config: ShadowsocksConfig,
  factory: AeadFactory,
  filter: GenerationalReplayFilter,
  drainMs: number | undefined,
  random: (bytes: Uint8Array) => void,
  now: () => number,
): TransportPair {
  const { method, key } = config;
  const ready = deferred<void>();
  const destination = deferred<HostPort>();
  const decoder = new ChunkDecoder(method, factory, key, (salt) => !filter.testAndSet(now(), salt));
  let encoder: ChunkEncoder | undefined;
  let head: Uint8Array = new Uint8Array(0);
  let established = false;
  let draining = false;
  let finished = false;
  let encodeController!: TransformStreamDefaultController<Uint8Array>;
  let decodeController!: TransformStreamDefaultController<Uint8Array>;
  const fail = (error: Error) => {
    clearTimeout(timer);
    if (finished) return;
    finished = true;
    ready.reject(error);
    destination.reject(error);
    for (const controller of [encodeController, decodeController]) {
      try {
        controller.error(error);
      } catch {
        // Already errored or closed.
      }
    }
  };
  // Probe resistance: whatever a connection without a valid request sends
  // is read and dropped, unanswered, until it closes (as shadowsocks-libev
  // does) or the deadline, if one was given.
  const timer = drainMs === undefined ? undefined : setTimeout(
    () =>
      fail(
        new Error(
          "Cannot accept shadowsocks connection: no valid request (a client with another password or method, or a probe); closed after the probe delay",
        ),
      ),
    drainMs,
  );
  const drain = () => {
    draining = true;
    head = new Uint8Array(0);
  };
  const encode = new TransformStream<Uint8Array, Uint8Array>({
    start: (controller) => {
      encodeController = controller;
    },
    transform: (chunk, controller) => {
      if (chunk.length === 0) return;
      if (encoder === undefined) {
        // The server's salts go in the filter too, so that its own stream
        // reflected back at it is refused.
        // A repeat is a broken random source (a constant `random` hook):
        // fail this connection rather than spin the event loop forever.
        let salt = randomBytes(random, method.keyLength);
        for (let tries = 1; filter.testAndSet(now(), salt); tries++) {
          if (tries === MAX_SALT_TRIES) {
            throw new Error(
              `Cannot make a shadowsocks salt: the random source gave ${MAX_SALT_TRIES} salts already used`,
            );
          }
          salt = randomBytes(random, method.keyLength);
        }
        encoder = new ChunkEncoder(method, factory, key, salt);
      }
      controller.enqueue(encoder.encode(chunk));
    },
  });
  const decode = new TransformStream<Uint8Array, Uint8Array>(
    {
      start: (controller) => {
        decodeController = controller;
      },
      transform: (chunk, controller) => {
        if (draining) return;
        const out: Uint8Array[] = [];
        let opened = 0;
        const emit = (payload: Uint8Array) => {
          opened++;
          if (established) {
            out.push(payload);
            return;
          }
          if (draining) return;
          head = concat(head, payload);
          let request;
          try {
            request = decodeRequest(head);
          } catch {
            return drain();
          }
          if (request === undefined) return;
          established = true;
          clearTimeout(timer);
          destination.resolve(request.destination);
          ready.resolve();
          const rest = head.subarray(request.length);
          head = new Uint8Array(0);
          if (rest.length > 0) out.push(rest);
        };
        return decodeInTurns(chunk, (slice) => {
          const before = opened;
          try {
            decoder.decode(slice, emit);
            // The request must be whole in the first payloads (those of
            // one read), as shadowsocks-libev reads it from one read's.
            if (!established && head.length > 0) drain();
            enqueueAll(controller, out.splice(0));
          } catch (error) {
            if (!established) {
              drain();
              return -1;
            }
            fail(error as Error);
            throw error;
          }
          return draining ? -1 : opened - before;
        }, () => controller.desiredSize !== null && !draining);
      },
      flush: () => {
        clearTimeout(timer);
        if (!established) {
          const error = new Error(
            "Cannot accept shadowsocks connection: closed before a valid request",
          );
          fail(error);
          throw error;
        }
        if (decoder.pending > 0) {
          throw new Error("Cannot read shadowsocks stream: it ends inside a chunk");
        }
      },
      cancel: () => clearTimeout(timer),
    },
    undefined,
    DECODE_READABLE,
  );
  return {
    encode,
    decode,
    ready: ready.promise,
    destination: destination.promise,
    holdsProbes: drainMs === undefined,
  };
}

/**
 * Make a Shadowsocks transport with hooks (randomness, clock, drain
 * deadline, crypto backend). Applications use {@linkcode shadowsocks}.
 *
 * @example A server whose probes are closed after a second
 * ```ts
 * import { createShadowsocks } from "@ptkit/ptkit/transports/shadowsocks";
 * import { strictEqual } from "node:assert";
 *
 * const transport = createShadowsocks({ drainTimeout: 1000 });
 * strictEqual(transport.free, true);
 * ```
 *
 * @param options The hooks.
 * @returns The transport.
 * @throws {RangeError} When `drainTimeout` is not a positive number of ms a
 * timer can hold (up to 2,147,483,647), or `replayFilter`'s `ttlMs` is not
 * a positive number or its `maxEntries` an integer of at least 2.
 * @throws {TypeError} When `options` is not an object, `random` or `now` is
 * given and is not a function, or `drainTimeout` is given and is not a
 * number.
 */
export function createShadowsocks(options: ShadowsocksOptions = {}): Transport {
  const what = "create a Shadowsocks transport";
  checkFactoryOptions(options, what, ["random", "now"]);
  checkTimerMs(options.drainTimeout, "drainTimeout", what);
  checkReplayFilterBounds(options.replayFilter, what);
  const random = options.random ?? ((bytes: Uint8Array) => crypto.getRandomValues(bytes));
  const now = options.now ?? Date.now;
  const factoryOf = async (
    factories: Map<string, AeadFactory>,
    method: MethodInfo,
    env: TransportEnvironment,
  ): Promise<AeadFactory> => {
    let factory = factories.get(method.name);
    if (factory === undefined) {
      factory = await aeadFactory(env, method);
      factories.set(method.name, factory);
    }
    return factory;
  };
  return defineTransport<Parsed>({
    name: "shadowsocks",
    free: true,
    optionKeys: { client: CLIENT_OPTION_KEYS, server: OPTION_KEYS },
    async parseConfig(config, role, env): Promise<Parsed> {
      const factories = new Map<string, AeadFactory>();
      const drainMs = options.drainTimeout;
      // A client without options takes them from each connection's
      // settings (as tor's SOCKS arguments bring a bridge line's).
      const clientFilter = () =>
        new GenerationalReplayFilter({ maxEntries: CLIENT_REPLAY_ENTRIES, now });
      if (role === "client" && Object.keys(config).length === 0) {
        return { factories, drainMs, options: config, env, filter: clientFilter() };
      }
      const parsed = parseConfig(config, role);
      // Load the library now: connections then start without waiting.
      await factoryOf(factories, parsed.method, env);
      return {
        config: parsed,
        factories,
        drainMs,
        options: config,
        env,
        filter: role === "server"
          ? new GenerationalReplayFilter({
            ...options.replayFilter,
            ...(env?.replays === undefined ? {} : { share: env.replays }),
            now,
          })
          : clientFilter(),
      };
    },
    pair(parsed, role, settings, destination) {
      if (role === "server") {
        const config = parsed.config!;
        return serverPair(
          config,
          parsed.factories.get(config.method.name)!,
          parsed.filter,
          parsed.drainMs,
          random,
          now,
        );
      }
      const config = Object.keys(settings).length === 0 && parsed.config !== undefined
        ? parsed.config
        : parseConfig({ ...parsed.options, ...settings }, "client");
      const factory = parsed.factories.get(config.method.name);
      if (factory === undefined) {
        // A method first named by a connection's settings: load it, then go.
        return deferredPair(
          factoryOf(parsed.factories, config.method, parsed.env).then((loaded) =>
            clientPair(config, loaded, destination!, random, parsed.filter, now)
          ),
        );
      }
      return clientPair(config, factory, destination!, random, parsed.filter, now);
    },
    // The password is a secret: clients get the method here and the
    // password or key from the operator, never from a printed line.
    clientOptions: (parsed) => ({ method: parsed.config!.method.name }),
    close: (parsed) => parsed.filter.close(),
    generateConfig() {
      const key = toBase64Url(randomBytes(random, 32));
      const method = "chacha20-ietf-poly1305";
      return { client: { method, key }, server: { method, key } };
    },
  });
}

/** A pair whose streams are made once `later` resolves. */
function deferredPair(later: Promise<TransportPair>): TransportPair {
  const through = (pick: (pair: TransportPair) => TransformStream<Uint8Array, Uint8Array>) => {
    const outer = new TransformStream<Uint8Array, Uint8Array>();
    const inner = later.then(pick);
    const input = new TransformStream<Uint8Array, Uint8Array>();
    inner.then(
      (stream) => {
        input.readable.pipeThrough(stream).pipeTo(outer.writable).catch(() => {});
      },
      (error) => {
        input.readable.cancel(error).catch(() => {});
        outer.writable.abort(error).catch(() => {});
      },
    );
    return { writable: input.writable, readable: outer.readable } as TransformStream<
      Uint8Array,
      Uint8Array
    >;
  };
  return { encode: through((pair) => pair.encode), decode: through((pair) => pair.decode) };
}

/**
 * Shadowsocks AEAD ("classic", SIP004/SIP007), wire-compatible with
 * shadowsocks-libev 3.3.5 and every Shadowsocks client and server that
 * speaks these methods. A *free* transport: each client connection names
 * its destination (`connector.dial({ ..., destination })`; names travel
 * unresolved in the request header) and the server reports it as the
 * connection's `destination`, for the runtime to connect after its
 * destination policy allowed it.
 *
 * Options (both sides): `method` (`chacha20-ietf-poly1305`,
 * `aes-128-gcm`, `aes-192-gcm`, `aes-256-gcm`, `xchacha20-ietf-poly1305`), and `password`
 * (the master key is OpenSSL's `EVP_BytesToKey` of it) or `key` (base64, URL-safe or standard, of
 * the key's 16, 24 or 32 bytes). Client only: `prefix`, Outline's connection
 * prefix, written as an Outline access key writes it (`%16%03%01%00%C2%A8%01%01`,
 * `POST+`), the first bytes of each connection's salt (the rest random, at
 * least one byte), as Outline's clients send it, so a connection's first
 * bytes look like another protocol's. Each direction starts with a random salt; the
 * session subkey is HKDF-SHA1(key, salt, "ss-subkey"); chunks carry at most
 * 0x3FFF bytes. The server refuses salts seen in the last three hours
 * or among the newest million (its own included), and answers garbage, wrong
 * keys and replays with silence: it reads and discards until the peer
 * closes, as ss-server does (or until `drainTimeout`, when
 * {@linkcode createShadowsocks} is given one). A client configured with no options
 * takes them from each connection's settings. Other keys are ignored and
 * reported to `env.onIgnoredOption`.
 *
 * @example A connection's request and data through a client and server pair in memory
 * ```ts
 * import { shadowsocks } from "@ptkit/ptkit/transports/shadowsocks";
 * import { deepStrictEqual } from "node:assert";
 *
 * const options = { method: "chacha20-ietf-poly1305", password: "secret" };
 * const client = (await shadowsocks.client(options)).pair({}, {
 *   hostname: "example.com",
 *   port: 443,
 * });
 * const server = (await shadowsocks.server(options)).pair();
 * client.encode.readable.pipeTo(server.decode.writable);
 * await client.encode.writable.getWriter().write(new Uint8Array([1, 2, 3]));
 * deepStrictEqual(await server.destination, { hostname: "example.com", port: 443 });
 * const { value } = await server.decode.readable.getReader().read();
 * deepStrictEqual(value, new Uint8Array([1, 2, 3]));
 * ```
 */
export const shadowsocks: Transport = createShadowsocks();
