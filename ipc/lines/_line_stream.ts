// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.
// Internal: the one line splitter of the line protocol: the managed proxy's
// stdin (CMESSAGE/SMESSAGE from the parent) and a driven PT's stdout and
// stderr, with memory bounded by the longest line allowed.

/** Options for {@linkcode LineStream}. */
export interface LineStreamOptions {
  /** The longest line kept, in characters; longer lines are dropped whole. */
  readonly maxLength: number;
  /** Told about each line dropped for its length, with the characters seen. */
  readonly onTooLong?: (length: number) => void;
}

/**
 * Splits text into lines at `\n` (a `\r` before it stays, for the line's
 * parser to drop). A line longer than `maxLength` is dropped whole and
 * reported once, and never held in memory beyond `maxLength`. A last line
 * without a newline is given at the end of the stream.
 */
export class LineStream extends TransformStream<string, string> {
  /**
   * Make a splitter.
   *
   * @param options The longest line and what to do about longer ones.
   */
  constructor(options: LineStreamOptions) {
    const { maxLength, onTooLong } = options;
    let buffer = "";
    let discarding = false;
    super({
      transform(chunk, controller) {
        buffer += chunk;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (discarding) discarding = false;
          else if (line.length > maxLength) onTooLong?.(line.length);
          else controller.enqueue(line);
        }
        if (buffer.length > maxLength) {
          if (!discarding) onTooLong?.(buffer.length);
          discarding = true;
          buffer = "";
        }
      },
      flush(controller) {
        if (buffer !== "" && !discarding) controller.enqueue(buffer);
      },
    });
  }
}
