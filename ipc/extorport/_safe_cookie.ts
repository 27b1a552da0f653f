// Copyright the ptkit authors. MIT license.
// Internal: Extended ORPort SAFE_COOKIE authentication (tor
// ext-orport-spec.txt, proposal 217), written once for both sides: the
// cookie file and the two HMAC-SHA256 hashes.

import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { fileURLToPath } from "node:url";
import { writeFileSafely } from "../managed/_file_store.ts";

/** The 32-byte header of a cookie file: `"! Extended ORPort Auth Cookie !\n"`. */
export const COOKIE_HEADER: Uint8Array = new TextEncoder().encode(
  "! Extended ORPort Auth Cookie !\n",
);

/** Length of the cookie, of each nonce and of each hash, in bytes. */
export const AUTH_LENGTH = 32;

/** The SAFE_COOKIE authentication type byte. */
export const SAFE_COOKIE = 1;

const SERVER_TO_CLIENT = new TextEncoder().encode(
  "ExtORPort authentication server-to-client hash",
);
const CLIENT_TO_SERVER = new TextEncoder().encode(
  "ExtORPort authentication client-to-server hash",
);

function checkLength(value: Uint8Array, what: string): void {
  if (!(value instanceof Uint8Array) || value.length !== AUTH_LENGTH) {
    throw new RangeError(
      `Invalid ExtORPort ${what}: expected ${AUTH_LENGTH} bytes, got ${
        value instanceof Uint8Array ? value.length : typeof value
      }`,
    );
  }
}

function hash(
  label: Uint8Array,
  cookie: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
): Uint8Array {
  checkLength(cookie, "cookie");
  checkLength(clientNonce, "client nonce");
  checkLength(serverNonce, "server nonce");
  const message = new Uint8Array(label.length + 2 * AUTH_LENGTH);
  message.set(label);
  message.set(clientNonce, label.length);
  message.set(serverNonce, label.length + AUTH_LENGTH);
  return hmac(sha256, cookie, message);
}

/**
 * ServerHash: HMAC-SHA256(cookie, "ExtORPort authentication server-to-client
 * hash" | ClientNonce | ServerNonce), sent by tor (or the application) and
 * checked by the PT.
 *
 * @throws {RangeError} When an input is not 32 bytes.
 */
export function serverHash(
  cookie: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
): Uint8Array {
  return hash(SERVER_TO_CLIENT, cookie, clientNonce, serverNonce);
}

/**
 * ClientHash: the same with "client-to-server", sent by the PT.
 *
 * @throws {RangeError} When an input is not 32 bytes.
 */
export function clientHash(
  cookie: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
): Uint8Array {
  return hash(CLIENT_TO_SERVER, cookie, clientNonce, serverNonce);
}

/** Compare two byte strings in time that depends only on their length. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * The cookie inside a cookie file's bytes: exactly 64, the header then the
 * cookie (goptlib refuses any other length).
 *
 * @throws {SyntaxError} When the length or the header is wrong.
 */
export function parseCookieFile(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== 2 * AUTH_LENGTH) {
    throw new SyntaxError(
      `Cannot read auth cookie file: expected 64 bytes, got ${
        bytes.length > 64 ? "more" : bytes.length
      }`,
    );
  }
  if (!constantTimeEqual(bytes.subarray(0, AUTH_LENGTH), COOKIE_HEADER)) {
    throw new SyntaxError("Cannot read auth cookie file: wrong header");
  }
  return bytes.slice(AUTH_LENGTH);
}

/**
 * The 64 bytes of a cookie file holding `cookie`.
 *
 * @throws {RangeError} When the cookie is not 32 bytes.
 */
export function formatCookieFile(cookie: Uint8Array): Uint8Array {
  checkLength(cookie, "cookie");
  const bytes = new Uint8Array(2 * AUTH_LENGTH);
  bytes.set(COOKIE_HEADER);
  bytes.set(cookie, AUTH_LENGTH);
  return bytes;
}

/**
 * Read a cookie file (`TOR_PT_AUTH_COOKIE_FILE`). At most 65 bytes are
 * read: enough to tell a wrong length, never a huge file. Read it again for
 * every connection: tor may rewrite it (tor bug 15240).
 *
 * @param path The file.
 * @returns The 32-byte cookie.
 * @throws {SyntaxError} When the file has the wrong length or header.
 * @throws {TypeError} When it is not a regular file (a FIFO would block the
 * read for good, a directory cannot be read); the message names the path.
 */
export async function readCookieFile(path: string | URL): Promise<Uint8Array> {
  const what = `Cannot read auth cookie file ${String(path)}`;
  let info: Deno.FileInfo;
  let file: Deno.FsFile;
  try {
    info = await Deno.stat(path);
    if (!info.isFile) {
      const kind = info.isDirectory ? "a directory" : "not a regular file";
      throw new TypeError(`${what}: ${kind}`);
    }
    file = await Deno.open(path, { read: true });
  } catch (error) {
    // Deno says "No such file or directory (os error 2): stat '...'":
    // said once, with the file's name first, in the class it came in.
    if (error instanceof Error && !error.message.startsWith(what)) {
      error.message = `${what}: ${error.message.replace(/: \w+ '.*'$/, "")}`;
    }
    throw error;
  }
  try {
    const buffer = new Uint8Array(2 * AUTH_LENGTH + 1);
    let length = 0;
    while (length < buffer.length) {
      const n = await file.read(buffer.subarray(length));
      if (n === null) break;
      length += n;
    }
    try {
      return parseCookieFile(buffer.subarray(0, length));
    } catch (error) {
      throw new SyntaxError(
        (error as Error).message.replace("Cannot read auth cookie file", what),
      );
    }
  } finally {
    file.close();
  }
}

/**
 * Write a cookie file with mode 0600 (a fresh random cookie when none is
 * given), as state files are written: never through a symbolic link (at
 * the path or at `<path>.tmp`), never over anything but a regular file of
 * this process's user (refused, naming it, and left untouched); the bytes
 * go to `<path>.tmp`, created exclusively, then renamed into place.
 *
 * @returns The cookie.
 * @throws {Error} When the file is refused or cannot be written (the
 * message names it).
 */
export async function writeCookieFile(
  path: string | URL,
  cookie: Uint8Array = crypto.getRandomValues(new Uint8Array(AUTH_LENGTH)),
): Promise<Uint8Array> {
  const file = path instanceof URL ? fileURLToPath(path) : path;
  await writeFileSafely(file, formatCookieFile(cookie), "auth cookie file");
  return cookie.slice();
}
