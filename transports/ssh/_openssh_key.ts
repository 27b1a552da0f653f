// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat } from "../_bytes.ts";

/**
 * An Ed25519 key pair in OpenSSH's formats: the private key file
 * (`openssh-key-v1`, unencrypted, as `ssh-keygen -t ed25519 -N ""` writes
 * it), the `authorized_keys` / `known_hosts` public key line and the
 * fingerprint `ssh-keygen -l` prints.
 */
export interface OpenSshKeyPair {
  /** The private key file, PEM-armoured `openssh-key-v1` (PROTOCOL.key). */
  readonly privateKey: string;
  /** The public key line: `ssh-ed25519 <base64 blob> <comment>`. */
  readonly publicKey: string;
  /** The public key's fingerprint: `SHA256:` and unpadded base64. */
  readonly fingerprint: string;
}

const KEY_TYPE = "ssh-ed25519";
const MAGIC = "openssh-key-v1\0";
const ARMOUR_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----";
const ARMOUR_END = "-----END OPENSSH PRIVATE KEY-----";
const encoder = new TextEncoder();

/**
 * Generate an Ed25519 key pair (32 random bytes from
 * `crypto.getRandomValues`, public key by `@noble/curves`) and encode it in
 * OpenSSH's formats.
 *
 * @param comment The key's comment (no line breaks). Defaults to `"ptkit"`.
 * @returns The key pair.
 * @throws {TypeError} When the comment holds a line break.
 */
export function generateOpenSshKey(comment = "ptkit"): OpenSshKeyPair {
  return openSshKeyFromSeed(crypto.getRandomValues(new Uint8Array(32)), comment);
}

/**
 * Encode the Ed25519 key pair a 32-byte seed (RFC 8032's private key)
 * gives in OpenSSH's formats (the private file's check integers are random,
 * as ssh-keygen's are).
 *
 * @param seed The 32-byte private key.
 * @param comment The key's comment (no line breaks). Defaults to `"ptkit"`.
 * @returns The key pair.
 * @throws {RangeError} When the seed is not 32 bytes.
 * @throws {TypeError} When the comment holds a line break.
 */
export function openSshKeyFromSeed(seed: Uint8Array, comment = "ptkit"): OpenSshKeyPair {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new RangeError(
      `Cannot make an Ed25519 key: the seed must be 32 bytes, got ${
        seed instanceof Uint8Array ? seed.length : typeof seed
      }`,
    );
  }
  if (typeof comment !== "string" || /[\r\n\0]/.test(comment)) {
    throw new TypeError("Cannot make an Ed25519 key: the comment must be one line of text");
  }
  const pub = ed25519.getPublicKey(seed);
  const blob = concat(sshString(encoder.encode(KEY_TYPE)), sshString(pub));
  // Both check integers are equal and random, as ssh-keygen writes them
  // (they only detect a wrong passphrase).
  const check = crypto.getRandomValues(new Uint8Array(4));
  const secret = concat(
    check,
    check,
    sshString(encoder.encode(KEY_TYPE)),
    sshString(pub),
    sshString(concat(seed, pub)),
    sshString(encoder.encode(comment)),
  );
  // Padding 1, 2, 3, ... to the cipher's block size (8 for "none").
  const padLength = (8 - secret.length % 8) % 8;
  const padded = concat(secret, Uint8Array.from({ length: padLength }, (_, i) => i + 1));
  const file = concat(
    encoder.encode(MAGIC),
    sshString(encoder.encode("none")),
    sshString(encoder.encode("none")),
    sshString(new Uint8Array(0)),
    uint32(1),
    sshString(blob),
    sshString(padded),
  );
  const base64 = toBase64(file);
  const lines = base64.match(/.{1,70}/g) ?? [];
  const publicBase64 = toBase64(blob);
  return {
    privateKey: `${ARMOUR_BEGIN}\n${lines.join("\n")}\n${ARMOUR_END}\n`,
    publicKey: comment === ""
      ? `${KEY_TYPE} ${publicBase64}`
      : `${KEY_TYPE} ${publicBase64} ${comment}`,
    fingerprint: fingerprintOfBlob(blob),
  };
}

/**
 * The fingerprint of an OpenSSH public key line (`ssh-ed25519 AAAA...
 * [comment]`) or of its base64 blob alone, as `ssh-keygen -l` prints it:
 * `SHA256:` and the unpadded base64 of the blob's SHA-256.
 *
 * @param publicKey The public key line or blob.
 * @returns The fingerprint.
 * @throws {SyntaxError} When the key is not an OpenSSH Ed25519 public key.
 */
export function openSshFingerprint(publicKey: string): string {
  return fingerprintOfBlob(parseOpenSshPublicKey(publicKey).blob);
}

/**
 * Parse an OpenSSH Ed25519 public key line (`ssh-ed25519 <base64>
 * [comment]`, or the base64 blob alone) strictly: the blob must name
 * `ssh-ed25519` and hold a 32-byte key, and nothing else.
 *
 * @param publicKey The public key line or blob.
 * @returns The blob, and the canonical line without a comment.
 * @throws {SyntaxError} When the key is not an OpenSSH Ed25519 public key.
 */
export function parseOpenSshPublicKey(publicKey: string): { blob: Uint8Array; line: string } {
  if (typeof publicKey !== "string" || publicKey.length > 1024) {
    throw new SyntaxError("Cannot parse SSH public key: expected one short line of text");
  }
  const fields = publicKey.trim().split(/[ \t]+/);
  let encoded: string | undefined;
  if (fields.length === 1) encoded = fields[0];
  else if (fields[0] === KEY_TYPE) encoded = fields[1];
  else {
    throw new SyntaxError(
      `Cannot parse SSH public key: unsupported key type ${JSON.stringify(fields[0])}`,
    );
  }
  if (encoded === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) {
    throw new SyntaxError("Cannot parse SSH public key: the key is not base64");
  }
  let blob: Uint8Array;
  try {
    blob = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  } catch {
    throw new SyntaxError("Cannot parse SSH public key: the key is not base64");
  }
  const type = encoder.encode(KEY_TYPE);
  const expected = concat(sshString(type), uint32(32));
  if (
    blob.length !== expected.length + 32 ||
    expected.some((byte, i) => blob[i] !== byte)
  ) {
    throw new SyntaxError("Cannot parse SSH public key: not an Ed25519 key blob");
  }
  return { blob, line: `${KEY_TYPE} ${toBase64(blob)}` };
}

/**
 * Read the public key line back out of an `openssh-key-v1` private key file
 * (unencrypted Ed25519), as `ssh-keygen -y` does.
 *
 * @param privateKey The private key file.
 * @returns The public key line, without a comment.
 * @throws {SyntaxError} When the file is not an unencrypted OpenSSH Ed25519 key.
 */
export function publicKeyOfPrivate(privateKey: string): string {
  if (typeof privateKey !== "string" || privateKey.length > 16384) {
    throw new SyntaxError("Cannot parse SSH private key: expected a short text");
  }
  const text = privateKey.trim();
  if (!text.startsWith(ARMOUR_BEGIN) || !text.endsWith(ARMOUR_END)) {
    throw new SyntaxError("Cannot parse SSH private key: not an OpenSSH private key file");
  }
  const body = text.slice(ARMOUR_BEGIN.length, -ARMOUR_END.length).replace(/\s+/g, "");
  let file: Uint8Array;
  try {
    file = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  } catch {
    throw new SyntaxError("Cannot parse SSH private key: the body is not base64");
  }
  const reader = new SshReader(file);
  const magic = reader.bytes(MAGIC.length);
  if (new TextDecoder().decode(magic) !== MAGIC) {
    throw new SyntaxError("Cannot parse SSH private key: missing openssh-key-v1 magic");
  }
  const cipher = new TextDecoder().decode(reader.string());
  if (cipher !== "none") {
    throw new SyntaxError(`Cannot parse SSH private key: encrypted keys (${cipher}) are not used`);
  }
  reader.string();
  reader.string();
  if (reader.uint32() !== 1) {
    throw new SyntaxError("Cannot parse SSH private key: expected exactly one key");
  }
  const blob = reader.string();
  const secret = new SshReader(reader.string());
  if (secret.uint32() !== secret.uint32()) {
    throw new SyntaxError("Cannot parse SSH private key: check integers differ");
  }
  const { line } = parseOpenSshPublicKey(toBase64(blob));
  if (new TextDecoder().decode(secret.string()) !== KEY_TYPE) {
    throw new SyntaxError("Cannot parse SSH private key: not an Ed25519 key");
  }
  const pub = secret.string();
  const pair = secret.string();
  if (pub.length !== 32 || pair.length !== 64) {
    throw new SyntaxError("Cannot parse SSH private key: malformed Ed25519 key");
  }
  const derived = ed25519.getPublicKey(pair.subarray(0, 32));
  if (
    derived.some((byte, i) => byte !== pub[i] || byte !== pair[32 + i] || byte !== blob[19 + i])
  ) {
    throw new SyntaxError("Cannot parse SSH private key: the public key does not match");
  }
  return line;
}

function fingerprintOfBlob(blob: Uint8Array): string {
  return `SHA256:${toBase64(sha256(blob)).replace(/=+$/, "")}`;
}

class SshReader {
  #data: Uint8Array;
  #offset = 0;

  constructor(data: Uint8Array) {
    this.#data = data;
  }

  bytes(length: number): Uint8Array {
    if (this.#offset + length > this.#data.length) {
      throw new SyntaxError("Cannot parse SSH key: truncated");
    }
    const out = this.#data.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return out;
  }

  uint32(): number {
    const b = this.bytes(4);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }

  string(): Uint8Array {
    return this.bytes(this.uint32());
  }
}

function uint32(value: number): Uint8Array {
  return Uint8Array.of(value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
}

function sshString(data: Uint8Array): Uint8Array {
  return concat(uint32(data.length), data);
}

function toBase64(data: Uint8Array): string {
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary);
}
