// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import type { CryptoLoader } from "../crypto_backend.ts";
import type { LocalStore, TransportOptions } from "../transport.ts";
import { isPlainOptionKey } from "../_option_keys.ts";
import type { BridgeIdentity, BridgeKeys, RandomFill } from "./_handshake.ts";
import type { IatMode } from "./_session.ts";
import { MAX_SEGMENT_LENGTH } from "./_framing.ts";
import { distributionValues } from "./_weighted_dist.ts";

/**
 * `loadWasmCrypto` (crypto_backend.ts), whose module loads at the first
 * call: a server reads its keys and reaches SMETHODS DONE without it
 * (WebCrypto gives the public key).
 */
export const loadWasm: CryptoLoader = async () =>
  await (await import("../crypto_backend.ts")).loadWasmCrypto();

/** The file obfs4 keeps its server state in (obfs4proxy's format). */
export const STATE_FILE = "obfs4_state.json";
/** The file with the bridge line a server writes next to its state. */
export const BRIDGE_LINE_FILE = "obfs4_bridgeline.txt";

const NODE_ID_LENGTH = 20;
const KEY_LENGTH = 32;
const SEED_LENGTH = 24;

/** A parsed obfs4 client configuration. */
export interface ClientConfig {
  /** The bridge's node ID and public key. */
  readonly identity: BridgeIdentity;
  /** The IAT mode for what the client sends. */
  readonly iatMode: IatMode;
}

/** A parsed obfs4 server configuration. */
export interface ServerConfig {
  /** The bridge's long-term keys. */
  readonly keys: BridgeKeys;
  /** The seed of the length and IAT distributions, sent to every client. */
  readonly drbgSeed: Uint8Array;
  /** The IAT mode for what the server sends. */
  readonly iatMode: IatMode;
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What a configuration error begins with, by where the value came from. */
const OPTIONS = "Cannot configure transport 'obfs4'";
const STATE = `Cannot parse ${STATE_FILE}`;

/** Bytes from hex; an error names the key, never the value (it may be a secret). */
function fromHex(name: string, value: unknown, length: number, from = OPTIONS): Uint8Array {
  if (typeof value !== "string" || !/^[0-9a-fA-F]*$/.test(value) || value.length !== length * 2) {
    throw new TypeError(`${from}: '${name}' must be ${length} bytes of hex`);
  }
  return Uint8Array.from(value.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/**
 * An iat-mode: 0, 1 or 2, written as Go's strconv.Atoi reads it (what
 * obfs4proxy and lyrebird parse it with): a sign and leading zeros are
 * allowed (`01`, `+1`, `-0`).
 */
function parseIatMode(value: unknown, from = OPTIONS): IatMode {
  const text = typeof value === "number" ? String(value) : value;
  if (typeof text === "string" && /^[+-]?[0-9]{1,18}$/.test(text)) {
    const mode = Number(text);
    if (mode === 0) return 0; // -0 too
    if (mode === 1 || mode === 2) return mode;
  }
  throw new RangeError(
    `${from}: invalid iat-mode${
      typeof text === "string" && text.length <= 8 && isPlainOptionKey(text)
        ? ` ${JSON.stringify(text)}`
        : ""
    }: expected 0, 1 or 2`,
  );
}

/**
 * The `cert` argument of a bridge line: base64 of node ID and public key,
 * without padding.
 *
 * @example Encoding a cert
 * ```ts
 * import { encodeCert } from "./_config.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual(encodeCert({ nodeId: new Uint8Array(20), publicKey: new Uint8Array(32) }).length, 70);
 * ```
 *
 * @param identity The bridge's node ID and public key.
 * @returns The cert string.
 */
export function encodeCert(identity: BridgeIdentity): string {
  const bytes = new Uint8Array(NODE_ID_LENGTH + KEY_LENGTH);
  bytes.set(identity.nodeId);
  bytes.set(identity.publicKey, NODE_ID_LENGTH);
  const toBase64 = (bytes as { toBase64?: (options: { omitPadding: boolean }) => string })
    .toBase64;
  return typeof toBase64 === "function"
    ? toBase64.call(bytes, { omitPadding: true })
    : btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
}

/**
 * Uint8Array's own base64 decoder where the runtime has it (Deno 2.9,
 * current browsers), else atob. Deno loads atob and btoa's module at
 * their first call (3 ms of a server's start, before SMETHODS DONE: the
 * cert and the public key are encoded and decoded there).
 */
const fromBase64 = (Uint8Array as {
  fromBase64?: (text: string, options: { alphabet: "base64url" }) => Uint8Array;
}).fromBase64;

/**
 * What is wrong with a cert that is not 70 characters of base64 (72 with
 * obfs4proxy's `==`): empty, the position of a character that is not
 * base64, or its length (lyrebird names the byte or the length). Never its
 * text: a bridge line is not to be printed.
 */
function certProblem(cert: string): string {
  if (cert === "") return "is empty: expected 70 characters of base64";
  const body = cert.length === 72 && cert.endsWith("==") ? cert.slice(0, 70) : cert;
  const at = body.search(/[^A-Za-z0-9+/]/);
  if (at !== -1) {
    return `has a character that is not base64 at position ${at + 1} of ${cert.length}${
      body[at] === "-" || body[at] === "_"
        ? " (URL-safe '-' and '_' are not taken: obfs4 writes '+' and '/')"
        : ""
    }`;
  }
  return `has ${cert.length} characters: expected 70 of base64`;
}

function decodeCert(cert: string): BridgeIdentity {
  if (!/^[A-Za-z0-9+/]{70}(==)?$/.test(cert)) {
    // Where to fix it: a SIP003 plugin names its plugin options instead.
    throw new TypeError(
      `Cannot configure transport 'obfs4': 'cert' ${certProblem(cert)} (the bridge line's cert=)`,
    );
  }
  const bytes = Uint8Array.from(atob(cert.slice(0, 70) + "=="), (c) => c.charCodeAt(0));
  return { nodeId: bytes.slice(0, NODE_ID_LENGTH), publicKey: bytes.slice(NODE_ID_LENGTH) };
}

/** The keys of an obfs4 client configuration (a bridge line's arguments). */
export const CLIENT_KEYS: readonly string[] = ["cert", "iat-mode", "node-id", "public-key"];
/** The keys of an obfs4 server configuration (`ServerTransportOptions`). */
export const SERVER_KEYS: readonly string[] = [
  "node-id",
  "private-key",
  "drbg-seed",
  "iat-mode",
  "public-key",
];

/**
 * Where a client's `cert` and `iat-mode` come from, for the error that finds
 * one missing (a user coming from obfs4proxy copies a bridge line and may cut
 * it short). A SIP003 plugin's error names its plugin options instead
 * (pluginWording), an ss:// link's its plugin option.
 */
const FROM_BRIDGE_LINE = "; 'cert' and 'iat-mode' come from the bridge line the bridge's " +
  "operator gives (obfs4 ADDR:PORT FINGERPRINT cert=... iat-mode=0): keep both on tor's Bridge " +
  "line or in --bridge";

/**
 * Parse an obfs4 client configuration: `cert` and `iat-mode`, or the legacy
 * `node-id` and `public-key` (hex) with `iat-mode` (not looked at when a
 * `cert` is given, as obfs4proxy does). Other keys are not looked at (the
 * transport drops and reports them before this runs).
 *
 * @example Parsing a bridge line's arguments
 * ```ts
 * import { parseClientConfig } from "./_config.ts";
 * import { strictEqual } from "node:assert";
 *
 * const cert = "A".repeat(70);
 * strictEqual(parseClientConfig({ cert, "iat-mode": "1" }).iatMode, 1);
 * ```
 *
 * @param options The client options.
 * @returns The parsed configuration.
 */
export function parseClientConfig(options: TransportOptions): ClientConfig {
  // Every missing key is named at once (an empty configuration lacks both).
  const noIdentity = options.cert === undefined &&
    (options["node-id"] === undefined || options["public-key"] === undefined);
  if (options["iat-mode"] === undefined) {
    throw new TypeError(
      `Cannot configure transport 'obfs4': missing option 'iat-mode'${
        noIdentity ? " and option 'cert' (or 'node-id' and 'public-key')" : ""
      }${FROM_BRIDGE_LINE}`,
    );
  }
  const iatMode = parseIatMode(options["iat-mode"]);
  // With a cert, obfs4proxy and lyrebird never read node-id and public-key.
  if (options.cert !== undefined) return { identity: decodeCert(options.cert), iatMode };
  if (options["node-id"] === undefined || options["public-key"] === undefined) {
    throw new TypeError(
      "Cannot configure transport 'obfs4': missing option 'cert' (or 'node-id' and 'public-key')" +
        FROM_BRIDGE_LINE,
    );
  }
  return {
    identity: {
      nodeId: fromHex("node-id", options["node-id"], NODE_ID_LENGTH),
      publicKey: fromHex("public-key", options["public-key"], KEY_LENGTH),
    },
    iatMode,
  };
}

const PKCS8_X25519_PREFIX = Uint8Array.of(
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
);

/**
 * The X25519 public key of `secretKey`: from WebCrypto where it has X25519
 * (built in, nothing to load: a server starts without loading a crypto
 * library), else from the crypto backend.
 */
async function publicKeyOf(secretKey: Uint8Array, crypto: CryptoLoader): Promise<Uint8Array> {
  try {
    const pkcs8 = new Uint8Array(48);
    pkcs8.set(PKCS8_X25519_PREFIX);
    pkcs8.set(secretKey, 16);
    const key = await globalThis.crypto.subtle.importKey("pkcs8", pkcs8, "X25519", true, [
      "deriveBits",
    ]);
    const jwk = await globalThis.crypto.subtle.exportKey("jwk", key);
    const publicKey = typeof fromBase64 === "function"
      ? fromBase64(jwk.x!, { alphabet: "base64url" })
      : Uint8Array.from(
        atob(jwk.x!.replace(/-/g, "+").replace(/_/g, "/") + "="),
        (c) => c.charCodeAt(0),
      );
    if (publicKey.length === KEY_LENGTH) return publicKey;
  } catch {
    // No X25519 in this runtime's WebCrypto.
  }
  return (await crypto()).x25519Base(secretKey);
}

async function fromSecret(
  nodeId: Uint8Array,
  secretKey: Uint8Array,
  drbgSeed: Uint8Array,
  iatMode: IatMode,
  crypto: CryptoLoader,
): Promise<ServerConfig> {
  return {
    keys: { nodeId, secretKey, publicKey: await publicKeyOf(secretKey, crypto) },
    drbgSeed,
    iatMode,
  };
}

/**
 * Serialize a server configuration as obfs4proxy's `obfs4_state.json`.
 *
 * @example Writing state
 * ```ts
 * import { formatState, parseState } from "./_config.ts";
 * import { deepStrictEqual } from "node:assert";
 *
 * const state = await parseState(formatState(await parseState(JSON.stringify({
 *   "node-id": "00".repeat(20), "private-key": "11".repeat(32),
 *   "drbg-seed": "22".repeat(24), "iat-mode": 0,
 * }))));
 * deepStrictEqual(state.keys.nodeId, new Uint8Array(20));
 * ```
 *
 * @param config The server configuration.
 * @returns The JSON text.
 */
export function formatState(config: ServerConfig): string {
  return JSON.stringify({
    "node-id": toHex(config.keys.nodeId),
    "private-key": toHex(config.keys.secretKey),
    "public-key": toHex(config.keys.publicKey),
    "drbg-seed": toHex(config.drbgSeed),
    "iat-mode": config.iatMode,
  });
}

/**
 * Parse obfs4proxy's `obfs4_state.json`.
 *
 * @example Reading state
 * ```ts
 * import { parseState } from "./_config.ts";
 * import { rejects } from "node:assert";
 *
 * await rejects(parseState("{"), SyntaxError);
 * ```
 *
 * @param text The JSON text.
 * @param crypto Loads the crypto backend, in case WebCrypto has no X25519.
 * Defaults to {@linkcode loadWasm}.
 * @returns The server configuration.
 */
export async function parseState(
  text: string,
  crypto: CryptoLoader = loadWasm,
): Promise<ServerConfig> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SyntaxError(`${STATE}: invalid JSON`);
  }
  if (typeof json !== "object" || json === null) {
    throw new SyntaxError(`${STATE}: not an object`);
  }
  // Every missing key is named at once (an empty file, `{}`, lacks all three).
  const missing = ["node-id", "private-key", "drbg-seed"].filter((k) => json[k] === undefined);
  if (missing.length > 0) {
    const names = missing.map((k) => `'${k}'`);
    throw new TypeError(
      `${STATE}: ${
        names.length === 1
          ? `${names[0]} is`
          : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are`
      } missing`,
    );
  }
  const config = await fromSecret(
    fromHex("node-id", json["node-id"], NODE_ID_LENGTH, STATE),
    fromHex("private-key", json["private-key"], KEY_LENGTH, STATE),
    fromHex("drbg-seed", json["drbg-seed"], SEED_LENGTH, STATE),
    parseIatMode(json["iat-mode"] ?? 0, STATE),
    crypto,
  );
  // obfs4proxy and lyrebird derive the public key from the private one and
  // never read this member; they write it empty when the keys came from
  // server transport options.
  if (json["public-key"] !== undefined && json["public-key"] !== "") {
    const stored = fromHex("public-key", json["public-key"], KEY_LENGTH, STATE);
    if (toHex(stored) !== toHex(config.keys.publicKey)) {
      throw new SyntaxError(`${STATE}: public-key does not match private-key`);
    }
  }
  return config;
}

/**
 * `obfs4_state.json`'s text with its `iat-mode` set to `iatMode` and every
 * other member (the keys) exactly as it was.
 */
function withIatMode(text: string, iatMode: IatMode): string {
  return JSON.stringify({ ...JSON.parse(text), "iat-mode": iatMode });
}

/**
 * Generate a fresh server configuration.
 *
 * @example Generating keys
 * ```ts
 * import { generateServerConfig } from "./_config.ts";
 * import { strictEqual } from "node:assert";
 *
 * strictEqual((await generateServerConfig(0)).keys.publicKey.length, 32);
 * ```
 *
 * @param iatMode The IAT mode.
 * @param random Random byte source. Defaults to `crypto.getRandomValues`.
 * @param crypto Loads the crypto backend, in case WebCrypto has no X25519.
 * Defaults to {@linkcode loadWasm}.
 * @returns The configuration.
 */
export function generateServerConfig(
  iatMode: IatMode,
  random: RandomFill = (b) => globalThis.crypto.getRandomValues(b),
  crypto: CryptoLoader = loadWasm,
): Promise<ServerConfig> {
  const nodeId = new Uint8Array(NODE_ID_LENGTH);
  const secretKey = new Uint8Array(KEY_LENGTH);
  const drbgSeed = new Uint8Array(SEED_LENGTH);
  random(nodeId);
  random(secretKey);
  // A bridge sends its drbg seed to every client, which draws its packet
  // lengths from it. obfs4proxy and lyrebird clients in iat-mode 2 crash
  // ("BUG: Write(), iat length was 0") when that table holds the length 0,
  // as it does for about 3.4% of seeds: draw again (a fixed test source
  // that only yields such seeds keeps its last one).
  for (let attempt = 0; attempt < 32; attempt++) {
    random(drbgSeed);
    if (!distributionValues(drbgSeed, 0, MAX_SEGMENT_LENGTH).includes(0)) break;
  }
  return fromSecret(nodeId, secretKey, drbgSeed, iatMode, crypto);
}

/**
 * The text of `obfs4_bridgeline.txt` for a server configuration.
 *
 * @example Making a bridge line
 * ```ts
 * import { bridgeLine, generateServerConfig } from "./_config.ts";
 * import { ok } from "node:assert";
 *
 * ok(bridgeLine(await generateServerConfig(0)).includes("iat-mode=0"));
 * ```
 *
 * @param config The server configuration.
 * @returns The file's text.
 */
export function bridgeLine(config: ServerConfig): string {
  return [
    "# obfs4 bridge line, written by ptkit from this bridge's keys.",
    "#",
    "# <IP ADDRESS>, <PORT> and <FINGERPRINT> below are placeholders, not",
    "# values: before handing the line out, replace them with",
    "#   <IP ADDRESS>   the bridge's public IP address (IPv6 in brackets),",
    "#   <PORT>         its obfs4 port (ServerTransportListenAddr),",
    "#   <FINGERPRINT>  its relay fingerprint (DataDirectory/fingerprint).",
    "# tor writes the finished line itself to DataDirectory/bridgelines.",
    "# Editing this file has no effect: the keys live in obfs4_state.json.",
    "",
    `Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=${
      encodeCert(config.keys)
    } iat-mode=${config.iatMode}`,
    "",
  ].join("\n");
}

/**
 * Resolve an obfs4 server configuration: from `node-id`, `private-key` and
 * `drbg-seed` (hex, all or none) and `iat-mode` options, else from
 * `obfs4_state.json` in `local` (created when missing), else freshly
 * generated. Other keys are not looked at.
 *
 * As obfs4proxy does, a server that uses `local` writes
 * `obfs4_bridgeline.txt` on every start (when its text differs from the
 * running configuration's: missing, stale or edited), and an `iat-mode`
 * option that differs from the stored one is saved into `obfs4_state.json`
 * and told to `onNotice`; the keys in it are never changed. Nothing is
 * written before both files have been read (a store that refuses either, a
 * symbolic link in its place, stops the start with nothing changed).
 *
 * @example Creating state in a store
 * ```ts
 * import { loadServerConfig } from "./_config.ts";
 * import { MemoryStore } from "../memory_store.ts";
 * import { ok } from "node:assert";
 *
 * const store = new MemoryStore();
 * await loadServerConfig({}, store);
 * ok(await store.get("obfs4_state.json"));
 * ```
 *
 * @param options The server transport options.
 * @param local Long-term storage, if any.
 * @param random Random byte source. Defaults to `crypto.getRandomValues`.
 * @param crypto Loads the crypto backend, in case WebCrypto has no X25519.
 * Defaults to {@linkcode loadWasm}.
 * @param onNotice Told, in a sentence for the operator's log, when the
 * stored iat-mode was changed. Defaults to ignoring.
 * @returns The configuration.
 */
export async function loadServerConfig(
  options: TransportOptions,
  local?: LocalStore,
  random?: RandomFill,
  crypto: CryptoLoader = loadWasm,
  onNotice?: (message: string) => void,
): Promise<ServerConfig> {
  const iatOption = options["iat-mode"] === undefined
    ? undefined
    : parseIatMode(options["iat-mode"]);
  const keyNames = ["node-id", "private-key", "drbg-seed"] as const;
  const given = keyNames.filter((k) => options[k] !== undefined);
  if (given.length > 0) {
    if (given.length !== keyNames.length) {
      throw new TypeError(
        "Cannot configure transport 'obfs4': give all of 'node-id', 'private-key' and 'drbg-seed' or none",
      );
    }
    const config = await fromSecret(
      fromHex("node-id", options["node-id"], NODE_ID_LENGTH),
      fromHex("private-key", options["private-key"], KEY_LENGTH),
      fromHex("drbg-seed", options["drbg-seed"], SEED_LENGTH),
      iatOption ?? 0,
      crypto,
    );
    if (
      options["public-key"] !== undefined &&
      options["public-key"].toLowerCase() !== toHex(config.keys.publicKey)
    ) {
      throw new TypeError(
        "Cannot configure transport 'obfs4': 'public-key' does not match 'private-key'",
      );
    }
    return config;
  }
  if (local === undefined) return await generateServerConfig(iatOption ?? 0, random, crypto);
  // Read both files before writing anything: a store that refuses the
  // bridge line's file (a symbolic link in its place) must stop us before
  // a new key, or a changed iat-mode, is written.
  const stored = await local.get(STATE_FILE);
  const line = await local.get(BRIDGE_LINE_FILE);
  let config: ServerConfig;
  if (stored === undefined) {
    config = await generateServerConfig(iatOption ?? 0, random, crypto);
    await local.set(STATE_FILE, formatState(config));
  } else {
    try {
      config = await parseState(stored, crypto);
    } catch (error) {
      // Named where it is, as obfs4proxy does: the operator opens that file.
      // Under tor this one line is all the operator sees: why the file is
      // kept, and the two ways out (the ssh transport's keys say the same).
      if (error instanceof Error && error.message.startsWith(STATE)) {
        const where = local.describe?.(STATE_FILE) ?? STATE_FILE;
        const reason = stored.trim() === ""
          ? ": the file is empty"
          : error.message.slice(STATE.length);
        error.message =
          `Cannot parse ${where}${reason}; it is not replaced (new keys change cert=, so every client's bridge line): restore it from a backup, or move it away for a new identity`;
      }
      throw error;
    }
    if (iatOption !== undefined && iatOption !== config.iatMode) {
      // obfs4proxy writes its state back with the iat-mode it was given: a
      // bridge keeps it when the option is later removed. The keys stay.
      const previous = config.iatMode;
      config = { ...config, iatMode: iatOption };
      await local.set(STATE_FILE, withIatMode(stored, iatOption));
      onNotice?.(
        `${STATE_FILE}: iat-mode changed from ${previous} to ${iatOption} (given in the server transport options); the keys are unchanged`,
      );
    }
  }
  const text = bridgeLine(config);
  if (line !== text) await local.set(BRIDGE_LINE_FILE, text);
  return config;
}
