// Copyright the ptkit authors. MIT license.

const HEADER = "! Extended ORPort Auth Cookie !\n";

/**
 * Read tor's Extended ORPort authentication cookie file
 * (`TOR_PT_AUTH_COOKIE_FILE`): exactly 64 bytes, a fixed 32-byte header
 * then the 32-byte cookie. Read it again for every connection: tor may
 * rewrite it.
 *
 * @param path The file.
 * @returns The 32-byte cookie.
 * @throws {SyntaxError} When the file has the wrong length or header.
 *
 * @example Reading a cookie file
 * ```ts
 * import { readAuthCookie } from "@ptkit/ptkit/ipc";
 * import { deepStrictEqual, rejects } from "node:assert";
 *
 * const path = await Deno.makeTempFile();
 * const header = new TextEncoder().encode("! Extended ORPort Auth Cookie !\n");
 * await Deno.writeFile(path, new Uint8Array([...header, ...new Uint8Array(32).fill(7)]));
 * deepStrictEqual((await readAuthCookie(path))[0], 7);
 * await Deno.writeFile(path, header);
 * await rejects(readAuthCookie(path), SyntaxError);
 * await Deno.remove(path);
 * ```
 */
export async function readAuthCookie(path: string): Promise<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  let bytes: Uint8Array;
  try {
    // Read at most 65 bytes: enough to tell a wrong length, never a huge file.
    const buffer = new Uint8Array(65);
    let length = 0;
    for (;;) {
      const n = await file.read(buffer.subarray(length));
      if (n === null) break;
      length += n;
      if (length === buffer.length) break;
    }
    bytes = buffer.subarray(0, length);
  } finally {
    file.close();
  }
  if (bytes.length !== 64) {
    throw new SyntaxError(
      `Cannot read auth cookie file: expected 64 bytes, got ${
        bytes.length > 64 ? "more" : bytes.length
      }`,
    );
  }
  if (new TextDecoder().decode(bytes.subarray(0, 32)) !== HEADER) {
    throw new SyntaxError("Cannot read auth cookie file: wrong header");
  }
  return bytes.slice(32);
}
