// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { hkdf } from "@noble/hashes/hkdf.js";
import { md5, sha1 } from "@noble/hashes/legacy.js";
import type { TransportOptions } from "../transport.ts";
import { suggestOptionKey } from "../_option_keys.ts";
import type { AeadAlgorithm } from "../crypto_backend.ts";

/** The AEAD methods ptkit's Shadowsocks speaks (SIP004/SIP007, the classic ones). */
export type ShadowsocksMethod =
  | "chacha20-ietf-poly1305"
  | "aes-128-gcm"
  | "aes-192-gcm"
  | "aes-256-gcm"
  | "xchacha20-ietf-poly1305";

/** Sizes of one method, in bytes. */
export interface MethodInfo {
  /** The method's name. */
  readonly name: ShadowsocksMethod;
  /** Key length; the salt is as long. */
  readonly keyLength: number;
  /** Nonce length (12, or 24 for XChaCha20). */
  readonly nonceLength: number;
  /** The AEAD a crypto backend provides for it. */
  readonly algorithm: AeadAlgorithm;
}

/** Every AEAD tag is 16 bytes. */
export const TAG_LENGTH = 16;

/** The methods, by name. */
export const METHODS: Readonly<Record<ShadowsocksMethod, MethodInfo>> = {
  "chacha20-ietf-poly1305": {
    name: "chacha20-ietf-poly1305",
    keyLength: 32,
    nonceLength: 12,
    algorithm: "chacha20-poly1305",
  },
  "aes-128-gcm": { name: "aes-128-gcm", keyLength: 16, nonceLength: 12, algorithm: "aes-128-gcm" },
  "aes-192-gcm": { name: "aes-192-gcm", keyLength: 24, nonceLength: 12, algorithm: "aes-192-gcm" },
  "aes-256-gcm": { name: "aes-256-gcm", keyLength: 32, nonceLength: 12, algorithm: "aes-256-gcm" },
  "xchacha20-ietf-poly1305": {
    name: "xchacha20-ietf-poly1305",
    keyLength: 32,
    nonceLength: 24,
    algorithm: "xchacha20-poly1305",
  },
};

/** The option keys both sides understand. */
export const OPTION_KEYS: readonly string[] = ["method", "password", "key"];

/** The client's option keys: the common ones and Outline's salt `prefix`. */
export const CLIENT_OPTION_KEYS: readonly string[] = [...OPTION_KEYS, "prefix"];

/** A parsed configuration: the method and the master key. */
export interface ShadowsocksConfig {
  /** The method. */
  readonly method: MethodInfo;
  /** The master key (from `key`, or derived from `password`). */
  readonly key: Uint8Array;
  /**
   * A client's salt prefix (Outline's connection prefix): the first bytes
   * of each connection's salt, the rest random. Absent: all random.
   */
  readonly prefix?: Uint8Array;
}

/**
 * Outline's connection prefix from its text as an access key writes it
 * (`prefix=%16%03%01%00%C2%A8%01%01`): form-decoded (`+` a space, `%XX`
 * UTF-8), then each character, U+0000 to U+00FF, one byte, as Outline's
 * clients read it (`%C2%A8` is the byte 0xA8). It must leave at least one
 * byte of the salt random: a salt all prefix is the same salt on every
 * connection, which a server's replay filter refuses after the first.
 *
 * @param text The option's text.
 * @param method The method (its salt is as long as its key).
 * @returns The prefix's bytes (empty for an empty text).
 * @throws {RangeError} When the text is not such an encoding or too long.
 */
export function parsePrefix(text: string, method: MethodInfo): Uint8Array {
  let decoded: string | undefined;
  try {
    decoded = decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    decoded = undefined;
  }
  const chars = decoded === undefined ? [] : [...decoded];
  if (decoded === undefined || chars.some((c) => c.codePointAt(0)! > 0xff)) {
    throw new RangeError(
      "Cannot configure shadowsocks: option 'prefix' must be percent-encoded as in an Outline " +
        "access key, each character U+0000 to U+00FF one byte (the byte 0xA8 is written %C2%A8)",
    );
  }
  if (chars.length >= method.keyLength) {
    throw new RangeError(
      `Cannot configure shadowsocks: option 'prefix' is ${chars.length} bytes, but ${method.name}'s ` +
        `salt is ${method.keyLength}: the prefix must leave some of it random (a shorter prefix)`,
    );
  }
  return Uint8Array.from(chars, (c) => c.codePointAt(0)!);
}

/**
 * The classic master key from a password: OpenSSL's `EVP_BytesToKey` with
 * MD5, no salt and one iteration (`D_i = MD5(D_{i-1} || password)`),
 * truncated to the key length, as shadowsocks-libev derives it.
 *
 * @param password The password's bytes (UTF-8).
 * @param keyLength The key length in bytes.
 * @returns The master key.
 */
export function evpBytesToKey(password: Uint8Array, keyLength: number): Uint8Array {
  const out = new Uint8Array(keyLength);
  let previous = new Uint8Array(0);
  for (let filled = 0; filled < keyLength;) {
    const input = new Uint8Array(previous.length + password.length);
    input.set(previous);
    input.set(password, previous.length);
    previous = md5(input);
    out.set(previous.subarray(0, keyLength - filled), filled);
    filled += previous.length;
  }
  return out;
}

const SUBKEY_INFO = new TextEncoder().encode("ss-subkey");

/**
 * A session subkey: HKDF-SHA1 of the master key with the direction's salt
 * and the info `ss-subkey`, as long as the master key (SIP004).
 *
 * @param key The master key.
 * @param salt The salt that starts the direction's stream.
 * @returns The subkey.
 */
export function sessionSubkey(key: Uint8Array, salt: Uint8Array): Uint8Array {
  return hkdf(sha1, key, salt, SUBKEY_INFO, key.length);
}

/**
 * Methods other Shadowsocks programs accept and ptkit does not: named in an
 * error as they are (a known name is no secret).
 */
const OTHER_METHODS: ReadonlySet<string> = new Set([
  "table",
  "rc4",
  "rc4-md5",
  "aes-128-cfb",
  "aes-192-cfb",
  "aes-256-cfb",
  "aes-128-ctr",
  "aes-192-ctr",
  "aes-256-ctr",
  "bf-cfb",
  "camellia-128-cfb",
  "camellia-192-cfb",
  "camellia-256-cfb",
  "cast5-cfb",
  "des-cfb",
  "idea-cfb",
  "rc2-cfb",
  "seed-cfb",
  "salsa20",
  "chacha20",
  "chacha20-ietf",
  "xchacha20",
  "none",
  "plain",
  "aes-128-ccm",
  "aes-256-ccm",
  "aes-128-gcm-siv",
  "aes-256-gcm-siv",
  "2022-blake3-aes-128-gcm",
  "2022-blake3-aes-256-gcm",
  "2022-blake3-chacha20-poly1305",
  "2022-blake3-chacha8-poly1305",
]);

/**
 * Other programs' names for the methods ptkit has (shadowsocks-rust's
 * aliases, go-shadowsocks2's and Outline's AEAD_ names): named in an error
 * with the name ss-libev and ptkit use.
 */
const OTHER_NAMES: ReadonlyMap<string, ShadowsocksMethod> = new Map([
  ["chacha20-poly1305", "chacha20-ietf-poly1305"],
  ["xchacha20-poly1305", "xchacha20-ietf-poly1305"],
  ["aead_chacha20_poly1305", "chacha20-ietf-poly1305"],
  ["aead_xchacha20_poly1305", "xchacha20-ietf-poly1305"],
  ["aead_aes_128_gcm", "aes-128-gcm"],
  ["aead_aes_192_gcm", "aes-192-gcm"],
  ["aead_aes_256_gcm", "aes-256-gcm"],
]);

/**
 * Parse `method` and `password` or `key` (base64 of the key's bytes), and
 * a client's `prefix` (see {@linkcode parsePrefix}).
 *
 * @param options The transport options.
 * @param role Whose options: a server has no `prefix`.
 * @returns The method and master key (and a client's salt prefix).
 * @throws {TypeError} When `method` or both `password` and `key` are missing.
 * @throws {RangeError} On an unknown method, both `password` and `key`, an
 * empty password, a key that is not base64 of the right length, or a bad
 * client `prefix`.
 */
export function parseConfig(
  options: TransportOptions,
  role: "client" | "server" = "server",
): ShadowsocksConfig {
  const config = parseKey(options);
  if (role === "server" || options.prefix === undefined) return config;
  const prefix = parsePrefix(options.prefix, config.method);
  return prefix.length === 0 ? config : { ...config, prefix };
}

function parseKey(options: TransportOptions): ShadowsocksConfig {
  const name = options.method;
  if (name === undefined) {
    // Both missing are named at once (as obfs4 names its own): one run, not two.
    const secret = options.password === undefined && options.key === undefined
      ? " and option 'password' (or 'key')"
      : "";
    throw new TypeError(`Cannot configure shadowsocks: missing option 'method'${secret}`);
  }
  const method = METHODS[name.toLowerCase() as ShadowsocksMethod];
  if (method === undefined || !Object.hasOwn(METHODS, name.toLowerCase())) {
    // Named only when it is a known method or close to one: a value that
    // is neither may be a password joined to it (`method=aes-256-gcm;password=...`).
    const lower = name.toLowerCase();
    const close = suggestOptionKey(name, Object.keys(METHODS));
    const named = OTHER_METHODS.has(lower)
      ? ` ${JSON.stringify(lower)} (${
        lower.startsWith("2022-")
          ? "Shadowsocks 2022, not supported"
          : /^(none|plain|table)$/.test(lower)
          ? "no encryption"
          : /-(ccm|gcm-siv)$/.test(lower)
          ? "an AEAD method ptkit does not have"
          : "a stream cipher, insecure and not supported"
      })`
      : OTHER_NAMES.has(lower)
      ? ` ${JSON.stringify(name)} (another program's name for ${
        OTHER_NAMES.get(lower)
      }: write that)`
      : close === undefined
      ? " (not shown)"
      : ` ${JSON.stringify(name)} (did you mean ${close}?)`;
    throw new RangeError(
      `Cannot configure shadowsocks: unsupported method${named}: expected one of ${
        Object.keys(METHODS).join(", ")
      }`,
    );
  }
  const { password, key } = options;
  if (password !== undefined && key !== undefined) {
    throw new RangeError("Cannot configure shadowsocks: give 'password' or 'key', not both");
  }
  if (key !== undefined) {
    let bytes: Uint8Array | undefined;
    try {
      bytes = Uint8Array.from(
        atob(key.replaceAll("-", "+").replaceAll("_", "/")),
        (c) => c.charCodeAt(0),
      );
    } catch {
      bytes = undefined;
    }
    if (bytes === undefined || bytes.length !== method.keyLength) {
      throw new RangeError(
        `Cannot configure shadowsocks: option 'key' must be base64 of ${method.keyLength} bytes for ${method.name}`,
      );
    }
    return { method, key: bytes };
  }
  if (password === undefined) {
    throw new TypeError("Cannot configure shadowsocks: missing option 'password' (or 'key')");
  }
  if (password === "") {
    throw new RangeError("Cannot configure shadowsocks: option 'password' is empty");
  }
  return { method, key: evpBytesToKey(new TextEncoder().encode(password), method.keyLength) };
}

/**
 * URL-safe base64 of bytes (`-` and `_`, padded): the form
 * shadowsocks-libev's `--key` requires (it refuses `+` and `/`) and
 * prints; `key` takes either alphabet.
 *
 * @param bytes The bytes.
 * @returns The text.
 */
export function toBase64Url(bytes: Uint8Array): string {
  return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""))
    .replaceAll("+", "-").replaceAll("/", "_");
}
