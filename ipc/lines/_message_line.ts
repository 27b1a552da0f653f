// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/** Largest message payload, in bytes (before base64). */
export const MAX_MESSAGE_BYTES: number = 16384;

/** Longest `CMESSAGE` / `SMESSAGE` line, in characters (newline excluded). */
export const MAX_MESSAGE_LINE_LENGTH: number = 9 + 128 + 1 + Math.ceil(MAX_MESSAGE_BYTES / 3) * 4;

/**
 * `CMESSAGE`: from the client side to the server side; `SMESSAGE`: from the
 * server side to the client side.
 */
export type MessageKind = "CMESSAGE" | "SMESSAGE";

/** An out-of-band message line, parsed. */
export interface MessageLine {
  /** Which direction it travels. */
  readonly kind: MessageKind;
  /** The transport it belongs to. */
  readonly transport: string;
  /** The message. */
  readonly payload: Uint8Array;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Format an out-of-band message line: `<kind> <transport> <base64>` plus a
 * newline (standard base64 with padding).
 *
 * @param kind `CMESSAGE` or `SMESSAGE`.
 * @param transport The transport's name.
 * @param payload 1 to {@linkcode MAX_MESSAGE_BYTES} bytes.
 * @returns The line, newline included.
 * @throws {TypeError} On a bad kind or transport name.
 * @throws {RangeError} When the payload is empty or too large.
 */
export function formatMessageLine(
  kind: MessageKind,
  transport: string,
  payload: Uint8Array,
): string {
  if (kind !== "CMESSAGE" && kind !== "SMESSAGE") {
    throw new TypeError(`Invalid message kind ${JSON.stringify(kind)}`);
  }
  if (typeof transport !== "string" || !NAME.test(transport)) {
    throw new TypeError(`Invalid transport name ${JSON.stringify(transport)} for ${kind}`);
  }
  if (!(payload instanceof Uint8Array)) {
    throw new TypeError(`Cannot send ${kind}: the payload must be a Uint8Array`);
  }
  if (payload.length === 0 || payload.length > MAX_MESSAGE_BYTES) {
    throw new RangeError(
      `Cannot send ${kind}: payload of ${payload.length} bytes (expected 1-${MAX_MESSAGE_BYTES})`,
    );
  }
  let binary = "";
  for (let i = 0; i < payload.length; i += 4096) {
    binary += String.fromCharCode(...payload.subarray(i, i + 4096));
  }
  return `${kind} ${transport} ${btoa(binary)}\n`;
}

/**
 * Parse an out-of-band message line (without its newline; a trailing `\r`
 * is dropped).
 *
 * @param line The line.
 * @returns The kind, transport and payload.
 * @throws {SyntaxError} When it is not exactly `<kind> <transport> <base64>`
 * with valid padded base64 of 1 to {@linkcode MAX_MESSAGE_BYTES} bytes.
 */
export function parseMessageLine(line: string): MessageLine {
  if (line.endsWith("\r")) line = line.slice(0, -1);
  if (line.length > MAX_MESSAGE_LINE_LENGTH) {
    throw new SyntaxError(
      `Cannot parse message line: ${line.length} characters exceed ${MAX_MESSAGE_LINE_LENGTH}`,
    );
  }
  const words = line.split(" ");
  const kind = words[0];
  if (kind !== "CMESSAGE" && kind !== "SMESSAGE") {
    throw new SyntaxError(`Cannot parse message line: expected CMESSAGE or SMESSAGE`);
  }
  if (words.length !== 3) {
    throw new SyntaxError(`Cannot parse ${kind} line: expected <transport> <base64>`);
  }
  const [, transport, text] = words as [string, string, string];
  if (!NAME.test(transport)) {
    throw new SyntaxError(
      `Cannot parse ${kind} line: invalid transport name ${
        JSON.stringify(transport.slice(0, 40).replace(/[^\x20-\x7e]/g, "?"))
      }`,
    );
  }
  if (text === "" || !BASE64.test(text)) {
    throw new SyntaxError(`Cannot parse ${kind} line: invalid base64 payload`);
  }
  const binary = atob(text);
  if (binary.length > MAX_MESSAGE_BYTES) {
    throw new SyntaxError(
      `Cannot parse ${kind} line: payload of ${binary.length} bytes exceeds ${MAX_MESSAGE_BYTES}`,
    );
  }
  const payload = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) payload[i] = binary.charCodeAt(i);
  return { kind, transport, payload };
}
