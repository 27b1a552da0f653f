// Copyright the ptkit authors. MIT license.

/**
 * Extended ORPort SAFE_COOKIE authentication (tor `ext-orport-spec.txt`):
 * the cookie file format and the two HMAC-SHA256 hashes both sides compute.
 * Shared by the application side (the ExtORPort server) and the PT side
 * (the ExtORPort client).
 *
 * @module
 */

import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

/** The 32-byte header of an ExtORPort cookie file: `"! Extended ORPort Auth Cookie !\n"`. */
export const EXT_OR_PORT_COOKIE_HEADER: Uint8Array = new TextEncoder().encode(
  "! Extended ORPort Auth Cookie !\n",
);

/** Length of the cookie, of each nonce and of each hash, in bytes. */
export const EXT_OR_PORT_AUTH_LENGTH = 32;

/** The SAFE_COOKIE authentication type byte. */
export const EXT_OR_PORT_AUTH_SAFE_COOKIE = 1;

const SERVER_TO_CLIENT = new TextEncoder().encode(
  "ExtORPort authentication server-to-client hash",
);
const CLIENT_TO_SERVER = new TextEncoder().encode(
  "ExtORPort authentication client-to-server hash",
);

function checkLength(value: Uint8Array, what: string): void {
  if (!(value instanceof Uint8Array) || value.length !== EXT_OR_PORT_AUTH_LENGTH) {
    throw new RangeError(
      `Invalid ExtORPort ${what}: expected ${EXT_OR_PORT_AUTH_LENGTH} bytes, got ${
        value instanceof Uint8Array ? value.length : typeof value
      }`,
    );
  }
}

function hash(label: Uint8Array, cookie: Uint8Array, client: Uint8Array, server: Uint8Array) {
  checkLength(cookie, "cookie");
  checkLength(client, "client nonce");
  checkLength(server, "server nonce");
  const message = new Uint8Array(label.length + 64);
  message.set(label);
  message.set(client, label.length);
  message.set(server, label.length + 32);
  return hmac(sha256, cookie, message);
}

/**
 * The SAFE_COOKIE hashes and cookie file helpers, as one namespace.
 *
 * - `serverHash`: HMAC-SHA256(cookie, "ExtORPort authentication
 *   server-to-client hash" || ClientNonce || ServerNonce), sent by the
 *   server (the application) and checked by the PT.
 * - `clientHash`: the same with "client-to-server", sent by the PT.
 * - `equal`: constant-time comparison of two hashes.
 * - `parseCookieFile` / `formatCookieFile`: the 64-byte file (header, cookie).
 * - `readCookieFile` / `writeCookieFile`: the same on disk (mode 0600).
 *
 * @example Checking the test vectors of goptlib
 * ```ts
 * import { extOrPortAuth } from "./extorport_auth.ts";
 * import { deepStrictEqual, ok } from "node:assert";
 *
 * const zero = new Uint8Array(32);
 * const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
 * deepStrictEqual(
 *   hex(extOrPortAuth.serverHash(zero, zero, zero)),
 *   "9e221919982a84f75faf60ef926949796268c97833e06960ff265369a90fd6d8",
 * );
 * const file = extOrPortAuth.formatCookieFile(zero);
 * ok(extOrPortAuth.equal(extOrPortAuth.parseCookieFile(file), zero));
 * ```
 */
export const extOrPortAuth: {
  serverHash(cookie: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array): Uint8Array;
  clientHash(cookie: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array): Uint8Array;
  equal(a: Uint8Array, b: Uint8Array): boolean;
  parseCookieFile(bytes: Uint8Array): Uint8Array;
  formatCookieFile(cookie: Uint8Array): Uint8Array;
  readCookieFile(path: string | URL): Promise<Uint8Array>;
  writeCookieFile(path: string | URL, cookie?: Uint8Array): Promise<Uint8Array>;
} = {
  /**
   * The server-to-client hash.
   *
   * @throws {RangeError} When an input is not 32 bytes.
   */
  serverHash(cookie, clientNonce, serverNonce) {
    return hash(SERVER_TO_CLIENT, cookie, clientNonce, serverNonce);
  },
  /**
   * The client-to-server hash.
   *
   * @throws {RangeError} When an input is not 32 bytes.
   */
  clientHash(cookie, clientNonce, serverNonce) {
    return hash(CLIENT_TO_SERVER, cookie, clientNonce, serverNonce);
  },
  /** Compare two byte strings in time that depends only on their length. */
  equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
    return diff === 0;
  },
  /**
   * The cookie inside a cookie file's bytes.
   *
   * @throws {SyntaxError} When the length is not 64 or the header is wrong.
   */
  parseCookieFile(bytes) {
    if (bytes.length !== 64) {
      throw new SyntaxError(
        `Cannot parse ExtORPort cookie file: expected 64 bytes, got ${bytes.length}`,
      );
    }
    for (let i = 0; i < 32; i++) {
      if (bytes[i] !== EXT_OR_PORT_COOKIE_HEADER[i]) {
        throw new SyntaxError("Cannot parse ExtORPort cookie file: bad header");
      }
    }
    return bytes.slice(32);
  },
  /**
   * The 64 bytes of a cookie file holding `cookie`.
   *
   * @throws {RangeError} When the cookie is not 32 bytes.
   */
  formatCookieFile(cookie) {
    checkLength(cookie, "cookie");
    const bytes = new Uint8Array(64);
    bytes.set(EXT_OR_PORT_COOKIE_HEADER);
    bytes.set(cookie, 32);
    return bytes;
  },
  /** Read and parse a cookie file. */
  async readCookieFile(path) {
    return extOrPortAuth.parseCookieFile(await Deno.readFile(path));
  },
  /**
   * Write a cookie file with mode 0600 (a fresh random cookie when none is
   * given) and return the cookie.
   */
  async writeCookieFile(path, cookie = crypto.getRandomValues(new Uint8Array(32))) {
    const bytes = extOrPortAuth.formatCookieFile(cookie);
    await Deno.writeFile(path, bytes, { mode: 0o600 });
    await Deno.chmod(path, 0o600);
    return cookie.slice();
  },
};
