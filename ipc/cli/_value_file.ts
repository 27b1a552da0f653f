// Copyright the ptkit authors. MIT license.
// Internal: `@FILE` values of the commands (a password's carrier read from a
// file, so that it never shows in the process list).

/** A usage error: its message goes to stderr as `ptkit: error: ...`, exit 64. */
export class UsageError extends Error {}

/** The largest file `@FILE` reads, in bytes. */
const MAX_VALUE_FILE = 65_536;

/**
 * The value an `@FILE` argument stands for: the file's text without its
 * trailing line break. The path is named in errors; the content never is.
 * Synchronous: read once at start, before anything else runs.
 */
export function readValueFile(arg: string, what: string): string {
  const path = arg.slice(1);
  if (path === "") throw new UsageError(`Cannot read ${what}: '@' names no file (write @FILE)`);
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (!info.isFile) throw new UsageError(`Cannot read ${what} from ${path}: not a regular file`);
    if (info.size > MAX_VALUE_FILE) {
      throw new UsageError(
        `Cannot read ${what} from ${path}: ${info.size} bytes, more than ${MAX_VALUE_FILE}`,
      );
    }
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`Cannot read ${what} from ${path}: ${(error as Error).message}`);
  }
  return text.replace(/\r?\n$/, "");
}

/**
 * The one line of `text` that is neither blank nor a `#` comment; `file`
 * (`@PATH`) names the file otherwise (a line itself is never quoted: it may
 * hold a password).
 */
export function oneLine(text: string, file: string): string {
  const lines = valueLines(text);
  if (lines.length !== 1) {
    throw new UsageError(
      `The file ${
        file.slice(1)
      } holds ${lines.length} lines besides comments and blank ones: expected one`,
    );
  }
  return lines[0]!;
}

/** The lines of `text` that are neither blank nor `#` comments, trimmed. */
export function valueLines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => !/^\s*(#.*)?$/.test(line)).map((line) => line.trim());
}
