// Copyright the ptkit authors. MIT license.

import type { LocalStore } from "../../transports/transport.ts";
import { concat } from "../../transports/_bytes.ts";
import { restated } from "./_log.ts";
import { inDirectory } from "./_state_dir.ts";

const KEY = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** The largest value read back (state files are a few KiB at most). */
const MAX_VALUE_BYTES = 1 << 20;

/**
 * Read an open file to its end as UTF-8, refusing one larger than
 * {@linkcode MAX_VALUE_BYTES}. (Not `new Response(file.readable).text()`:
 * Deno sets up fetch's classes at their first use, milliseconds that a PT
 * would spend before SMETHODS DONE.)
 */
async function readText(file: Deno.FsFile, path: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const chunk = new Uint8Array(16384);
    const n = await file.read(chunk);
    if (n === null) break;
    total += n;
    if (total > MAX_VALUE_BYTES) {
      throw new RangeError(
        `Cannot read state file ${path}: larger than ${MAX_VALUE_BYTES} bytes`,
      );
    }
    chunks.push(chunk.subarray(0, n));
  }
  return new TextDecoder().decode(concat(...chunks));
}

/**
 * A {@linkcode LocalStore} that keeps each value in a file of the PT state
 * directory (`TOR_PT_STATE_LOCATION`). Keys are plain file names, so
 * nothing is ever written outside the directory.
 *
 * The store never follows or replaces what it did not write: a key whose
 * file is a symbolic link (even a dangling one, as when the state lives on
 * a volume that is not mounted yet), a directory or anything but a regular
 * file, or a file of another owner, is refused with an error naming the
 * file, for reads and writes alike, and left untouched. Writes go to
 * `<key>.tmp`, created exclusively with mode 0600 (a link planted there is
 * refused, not followed), flushed to disk, then renamed over the file,
 * and the directory flushed so that the rename survives a power loss. A
 * `<key>.tmp` regular file of ours, left by a write a crash interrupted, is
 * removed first and `onNotice` told.
 */
export class FileStore implements LocalStore {
  #dir: string;
  #onNotice: ((message: string) => void) | undefined;
  #onWarning: ((message: string) => void) | undefined;
  #warned = new Set<string>();

  /**
   * Use a directory that exists.
   *
   * @param dir The state directory.
   * @param options `onNotice`, told when a write removes a temporary file
   * an interrupted write left (for a `LOG` line); `onWarning`, told once per
   * file when a file read grants its group or others any access (it holds
   * keys: an operator who copied it with `cp` or a umask of 022 left it
   * readable; obfs4proxy and ptkit create it 0600).
   */
  constructor(
    dir: string,
    options: {
      readonly onNotice?: (message: string) => void;
      readonly onWarning?: (message: string) => void;
    } = {},
  ) {
    this.#dir = dir.replace(/\/+$/, "") || "/";
    this.#onNotice = options.onNotice;
    this.#onWarning = options.onWarning;
  }

  /**
   * Read a value.
   *
   * @param key A file name.
   * @returns The value, or `undefined` when there is no such file.
   * @throws {TypeError} When the key is not a plain file name.
   * @throws {Error} When the file is a symbolic link, not a regular file,
   * or of another owner (the message names the file).
   */
  async get(key: string): Promise<string | undefined> {
    const path = this.#path(key);
    try {
      return await this.#get(path);
    } catch (error) {
      throw inContext(error, `Cannot read state file ${path}`);
    }
  }

  async #get(path: string): Promise<string | undefined> {
    const info = await lstatOrUndefined(path);
    if (info === undefined) return undefined;
    checkOwnFile(path, info, "read");
    const mode = (info.mode ?? 0) & 0o777;
    if ((mode & 0o077) !== 0 && this.#onWarning !== undefined && !this.#warned.has(path)) {
      this.#warned.add(path);
      this.#onWarning(
        `State file ${path} may be read by other users (mode 0${
          mode.toString(8)
        }); ptkit keeps state files 0600, as they may hold keys: chmod 600 it`,
      );
    }
    const file = await Deno.open(path, { read: true });
    try {
      // The file opened must be the one checked, not one swapped in since.
      const opened = await file.stat();
      if (opened.dev !== info.dev || opened.ino !== info.ino) {
        throw new Error(`Cannot read state file ${path}: it was replaced while being opened`);
      }
      return await readText(file, path);
    } finally {
      try {
        file.close();
      } catch {
        // Closed by reading it to the end.
      }
    }
  }

  /**
   * Store a value.
   *
   * @param key A file name.
   * @param value The value.
   * @throws {TypeError} When the key is not a plain file name.
   * @throws {Error} When the file or `<key>.tmp` is a symbolic link, not a
   * regular file, or of another owner (the message names the file).
   */
  async set(key: string, value: string): Promise<void> {
    await writeFileSafely(
      this.#path(key),
      new TextEncoder().encode(value),
      "state file",
      this.#onNotice,
    );
  }

  /**
   * The file that holds `key`, for messages.
   *
   * @param key A file name.
   * @returns Its path in the state directory.
   * @throws {TypeError} When the key is not a plain file name.
   */
  describe(key: string): string {
    return this.#path(key);
  }

  #path(key: string): string {
    if (typeof key !== "string" || !KEY.test(key) || key.endsWith(".tmp")) {
      throw new TypeError(`Invalid state key ${JSON.stringify(key)}: must be a plain file name`);
    }
    return inDirectory(this.#dir, key);
  }
}

/**
 * Write `bytes` to `path` as {@linkcode FileStore} writes a value, never
 * following or replacing what this process's user did not write: a `path`
 * (or `<path>.tmp`) that is a symbolic link (dangling or not), anything but
 * a regular file, or a file of another owner, is refused with an error
 * naming it, and left untouched. The bytes go to `<path>.tmp`, created
 * exclusively with mode 0600, flushed to disk, then renamed over `path`,
 * and `path`'s directory flushed (the rename survives a power loss); a
 * `.tmp` regular file of ours (a write interrupted by a crash) is removed
 * first, and `onNotice` told (never a link: one there is refused, not
 * followed).
 *
 * @param path The file.
 * @param bytes Its new content.
 * @param what What the file is, for errors (`Cannot write <what> <path>: ...`).
 * @param onNotice Told when a stale `.tmp` file was removed.
 * @throws {Error} When the file or `<path>.tmp` is refused, or the system
 * refuses the write (the message names the file).
 */
export async function writeFileSafely(
  path: string,
  bytes: Uint8Array,
  what = "state file",
  onNotice?: (message: string) => void,
): Promise<void> {
  try {
    await writeSafely(path, bytes, what, onNotice);
  } catch (error) {
    throw inContext(error, `Cannot write ${what} ${path}`);
  }
}

async function writeSafely(
  path: string,
  bytes: Uint8Array,
  what: string,
  onNotice: ((message: string) => void) | undefined,
): Promise<void> {
  const temp = `${path}.tmp`;
  const existing = await lstatOrUndefined(path);
  if (existing !== undefined) checkOwnFile(path, existing, "replace", what);
  const stale = await lstatOrUndefined(temp);
  if (stale !== undefined) {
    // A write interrupted by a crash leaves its own regular file: remove it.
    checkOwnFile(temp, stale, "replace", what);
    await Deno.remove(temp);
    onNotice?.(`Removed ${temp}, left by an interrupted write`);
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new Error(`Cannot write ${what} ${temp}: it appeared while being created`, {
        cause: error,
      });
    }
    throw error;
  }
  try {
    let offset = 0;
    while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
    await file.syncData();
  } catch (error) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  file.close();
  await Deno.rename(temp, path);
  // The rename is an entry of the directory: until the directory is
  // flushed too, a power loss may leave the old file (or none) in place.
  const slash = path.lastIndexOf("/");
  await syncDirectory(slash < 0 ? "." : path.slice(0, slash) || "/");
}

/**
 * Flush a directory's entries to disk (`fsync` of the directory, as Deno
 * opens one for reading on Unix). A directory that cannot be opened (no
 * read permission) or a file system that refuses to flush one is left as
 * it is: the file was written and renamed, and only durability across a
 * power loss is at stake.
 */
async function syncDirectory(dir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(dir, { read: true });
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch {
    // EINVAL on file systems without fsync for directories.
  } finally {
    handle.close();
  }
}

/**
 * What went wrong with a file, for a person: "permission denied" when the
 * system or Deno's permissions refused (Deno's own text suggests flags that
 * are rarely the fix), else the error's message.
 *
 * @param error The error.
 * @returns The reason.
 */
export function fileErrorReason(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return "permission denied";
  }
  // mkdir over a file (or a path through one): the system's words name the call, not the fault.
  if (error instanceof Deno.errors.AlreadyExists) return "a file is in the way (not a directory)";
  if (error instanceof Deno.errors.NotADirectory) return "a part of the path is not a directory";
  // (mkdir -p where a parent cannot be made: /proc, a missing mount.)
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  return error instanceof Error ? error.message : String(error);
}

/**
 * The system's error with what was being done first (`Cannot read state
 * file /x: permission denied`), of the same class; this file's own errors,
 * which say it already, unchanged.
 */
function inContext(error: unknown, doing: string): unknown {
  if (!(error instanceof Error) || error.message.startsWith("Cannot ")) return error;
  return restated(error, `${doing}: ${fileErrorReason(error)}`);
}

async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Throw unless `info` (from lstat) is a regular file of this process's user. */
function checkOwnFile(
  path: string,
  info: Deno.FileInfo,
  action: "read" | "replace",
  what = "state file",
): void {
  const refuse = (why: string): never => {
    throw new Error(`Cannot ${action} ${what} ${path}: ${why}; it is left untouched`);
  };
  if (info.isSymlink) refuse("it is a symbolic link (refusing to follow it)");
  if (!info.isFile) refuse(info.isDirectory ? "it is a directory" : "it is not a regular file");
  const uid = ownUid();
  if (uid !== undefined && info.uid !== null && info.uid !== uid) {
    refuse(
      `it belongs to user ${info.uid}, not to this process's user ${uid} (if it is this PT's ` +
        `own, chown it to user ${uid}, the user this PT runs as)`,
    );
  }
}

/**
 * This process's user id, when the platform has one and it may be read
 * without a prompt (`--allow-sys=uid`, which main.ts has).
 */
function ownUid(): number | undefined {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state !== "granted") {
      return undefined;
    }
    return Deno.uid() ?? undefined;
  } catch {
    return undefined;
  }
}
