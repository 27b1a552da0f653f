// Copyright the ptkit authors. MIT license.
// Internal: chunk sources and sinks over sockets and Web Streams, and the
// pump that moves chunks from one to the other. Not part of the public API.

import type { NetConn } from "./net_conn.ts";
import { writeFull } from "./conn_io.ts";

/** Something chunks can be read from. `null` means end of stream. */
export interface ChunkSource {
  read(): Promise<Uint8Array | null>;
  cancel(reason: unknown): void;
}

/** Something chunks can be written to. `end` is a half-close. */
export interface ChunkSink {
  write(chunk: Uint8Array): Promise<void>;
  end(): Promise<void>;
  abort(reason: unknown): void;
}

/**
 * How a relay reads and writes a stream connection without its public
 * streams (a {@linkcode TransportConn}'s: they would cost an idle
 * connection about 5 KiB of promises, queues and controllers). Registered
 * by the class that has them, so that this module imports none.
 */
interface DirectAccess {
  /** Whether `end` has direct ends a relay may take now. */
  available(end: object): boolean;
  /** Take them: the end's streams, if asked for later, are locked. */
  take(end: object): DirectEnds;
}

/** A connection's direct ends (see {@linkcode takeDirectEnds}). */
export interface DirectEnds {
  /** Reads as its `readable` would. */
  readonly source: ChunkSource;
  /** Writes as its `writable` would, one write in flight (a relay's). */
  readonly sink: ChunkSink;
  /**
   * Write a chunk and wait until the connection took it, rejecting with its
   * failure: what a writer of its `writable` does. Not mixed with `sink`.
   */
  send(chunk: Uint8Array): Promise<void>;
  /**
   * Tell `release` of each chunk written through `sink` once the
   * connection's encoder has taken it (copied what it needs).
   */
  releaseTo(release: (chunk: Uint8Array) => void): void;
  /**
   * Say that the reader of `source` writes each chunk in full and keeps
   * nothing of it before its next read (a relay writing to a socket): each
   * chunk's buffer may then carry a later one from that read on.
   */
  recycleReads(): void;
}
let directAccess: DirectAccess | undefined;

/** Register the one class whose connections have direct ends. */
export function registerDirectEnds(access: DirectAccess): void {
  directAccess = access;
}

/** Whether a relay may read and write `end` through its direct ends. */
export function hasDirectEnds(end: object): boolean {
  return directAccess?.available(end) ?? false;
}

/** Take `end`'s direct ends (check {@linkcode hasDirectEnds} first). */
export function takeDirectEnds(end: object): DirectEnds {
  return directAccess!.take(end);
}

/** A socket's first read through {@linkcode connSource}, and the smallest read. */
export const MIN_READ = 2 * 1024;
const MAX_READ = 256 * 1024;
/**
 * What the read buffers of every socket of the process may hold together
 * before each read is made smaller. A relay whose one end stops reading
 * holds about five chunks of a read's size in its stages (the pending
 * write, the transport's queues, the next read): at 256 KiB each, a
 * thousand connections opened to a target that floods them, by a client
 * that never reads, held over a gigabyte (red team, server round: 50 such
 * obfs4 connections raised a server's RSS by 138 MB, obfs4proxy's by 20).
 * Past 64 open sockets, the largest read is this budget shared among them
 * (a power of two), down to {@linkcode MIN_CAP}.
 */
const READ_BUDGET = 16 * 1024 * 1024;
/** The smallest the largest read gets, however many sockets are open. */
const MIN_CAP = 4 * 1024;
/** Sockets read through {@linkcode connSource} that have not ended. */
let openSources = 0;

/**
 * What the chunks that sockets' reads handed out and that their readers still
 * hold, and the writes sockets have not taken yet, may come to together
 * before reads are made smaller. A chunk is held from its read until its
 * reader asks for the next one (a relay's pump, once its sink took it), or,
 * read into a spare buffer, until it is given back; a source that ends lets
 * go of all of its. A write through {@linkcode connSink} is held until the
 * socket took all of it (a peer that stops reading holds it there). The
 * socket count's share above is taken when a read starts: a relay whose
 * reader stalls keeps the chunks it read while few sockets were open, and
 * each doubling of stalled connections added about as much again (red
 * team, session 48: 200 obfs4 connections whose client never read, their
 * target flooding, held 70 MB outside the heap, 20 of them 20 MB). Past
 * half of this, the largest read is an eighth of what is left, down to
 * {@linkcode MIN_CAP}.
 */
const HELD_BUDGET = 8 * 1024 * 1024;
/** Bytes of the chunks that sources handed out and sinks are writing, still held. */
let heldBytes = 0;

/**
 * Bytes counted against the budget of what is held now (for tests: 0 once
 * every socket has ended and every write has settled).
 */
export function heldNow(): number {
  return heldBytes;
}

/** The largest read a socket gets now, in bytes. */
function readCap(): number {
  const share = Math.min(
    READ_BUDGET / Math.max(1, openSources),
    Math.max(0, HELD_BUDGET - heldBytes) / 8,
  );
  return Math.max(MIN_CAP, Math.min(MAX_READ, 2 ** Math.floor(Math.log2(share || 1))));
}
/**
 * The largest buffer a read gets right after one that found the socket
 * drained (it did not fill its buffer): that read most likely waits, and
 * holds its buffer while it does.
 */
const WAIT_READ = 16 * 1024;

/**
 * Read buffers that sources with `reuse` gave back, by length (a power of
 * two), for the next read of that length on any socket: a socket's reads
 * change size as it drains and fills, and a fresh buffer for each was
 * zeroed memory from the allocator (page faults, memset, frees) per read.
 * Up to {@linkcode MAX_SPARES} of each length are kept, at most
 * {@linkcode SPARE_BUDGET} bytes in all: 16 streams relayed at once each
 * hold a read of their size, and four spares a length (the limit before)
 * made most of their reads take a fresh buffer.
 */
const spares = new Map<number, Uint8Array[]>();
const MAX_SPARES = 16;
const SPARE_BUDGET = 4 * 1024 * 1024;
/** Bytes of the buffers in {@linkcode spares}. */
let sparedBytes = 0;
/**
 * The most buffers one source keeps track of as lent (read into and handed
 * out, not yet given back): past it, the oldest is forgotten (never made a
 * spare), so a reader that gives none back costs nothing more.
 */
const MAX_LENT = 8;

function takeSpare(length: number): Uint8Array {
  const spare = spares.get(length)?.pop();
  if (spare === undefined) return new Uint8Array(length);
  sparedBytes -= length;
  return spare;
}

function putSpare(buffer: Uint8Array): void {
  if (sparedBytes + buffer.length > SPARE_BUDGET) return;
  let kept = spares.get(buffer.length);
  if (kept === undefined) spares.set(buffer.length, kept = []);
  if (kept.length < MAX_SPARES) {
    kept.push(buffer);
    sparedBytes += buffer.length;
  }
}

/**
 * Reads a socket into chunks that are the reader's to keep. The read buffer's
 * size follows the reads: it starts small and stays small while reads are
 * small, grows fourfold while reads fill it, and falls back to the size of a
 * read that did not fill half of it. A read that filled at least half of the
 * buffer is handed over as it is; a smaller one is copied out and the buffer
 * is read into again, so a socket whose reads stop short of the buffer (TLS
 * gives one 16 KiB record per read) costs neither a fresh zeroed buffer per
 * read nor a mostly empty one per chunk. A read that follows one which did
 * not fill its buffer (the socket was drained, so this one most likely
 * waits) gets at most 16 KiB, and the grown size again once it fills that
 * (a larger buffer kept from a short read is not reused for it, though it
 * would fit: this costs reads of 16 KiB records a fresh buffer every other
 * read): an idle connection's pending read holds at most 16 KiB, however large a
 * burst came before (a client's bursts on a thousand connections, then
 * silence, held 256 KiB on each). `first` sizes the first read (a
 * transport's handshake, up to 8 KiB for obfs4, then arrives in one read).
 * Past 64 open sockets, every read is capped at a share of a 16 MiB budget
 * (at least 4 KiB), so a relay stalled by an end that stops reading holds a
 * few of them, not a few 256 KiB chunks.
 *
 * With `reuse`, each read takes a buffer of its size from the process's
 * spares, and `release(chunk)` gives a chunk's buffer back once the reader
 * is done with it (a transport's decoder that copies what it keeps): a
 * stream costs no fresh buffer per read, and no copy. A read that waits
 * still holds at most 16 KiB. A chunk given back twice, or one the source
 * did not read, is ignored. Without `reuse`, `release` does nothing.
 */
export function connSource(
  conn: NetConn,
  first: number = MIN_READ,
  reuse: boolean = false,
): ChunkSource & { release(chunk: Uint8Array): void } {
  let size = first;
  let drained = false;
  let buffer: Uint8Array | undefined;
  // With `reuse`: the buffers of chunks handed out and not given back yet.
  const lent: Uint8Array[] | undefined = reuse ? [] : undefined;
  // Bytes this source counts in heldBytes: without `reuse`, the buffer of
  // the chunk handed out last (until the next read); with it, the lent ones.
  let held = 0;
  const hold = (bytes: number) => {
    held += bytes;
    heldBytes += bytes;
  };
  let open = true;
  openSources++;
  const ended = () => {
    buffer = undefined;
    if (open) openSources--;
    open = false;
    hold(-held);
  };
  // A lent buffer given back or forgotten: no longer counted (nothing
  // once the source ended, which let go of all).
  const forget = (buffer: Uint8Array) => {
    if (held > 0) hold(-Math.min(held, buffer.length));
  };
  return {
    async read() {
      if (lent === undefined) hold(-held);
      const cap = readCap();
      const want = Math.min(drained ? Math.min(size, WAIT_READ) : size, cap);
      // A buffer kept from a short read is reused unless it is four times
      // larger than the reads need now (or too small for them, or over the
      // cap); a read that most likely waits reuses none larger than it gets.
      const largest = Math.min(drained ? want : want * 4, cap);
      if (reuse) {
        // A spare, never a buffer lent out before (released when done with).
        buffer = takeSpare(want);
      } else if (buffer === undefined || buffer.length < want || buffer.length > largest) {
        buffer = new Uint8Array(want);
      }
      const into = buffer;
      let n: number | null;
      try {
        n = await conn.read(into);
      } catch (error) {
        ended();
        throw error;
      }
      if (n === null) {
        if (reuse) putSpare(into);
        ended();
        return null;
      }
      drained = n < into.length;
      if (n === into.length) size = Math.min(Math.max(size, into.length * 4), MAX_READ);
      else if (n < into.length / 2) size = Math.max(MIN_READ, 2 ** Math.ceil(Math.log2(n || 1)));
      if (reuse) {
        buffer = undefined;
        // Lent until given back: the buffer is found by the chunk's (no
        // view made to give it back), and only once.
        if (open) hold(into.length);
        if (lent!.push(into) > MAX_LENT) forget(lent!.shift()!);
        return n === into.length ? into : into.subarray(0, n);
      }
      if (n < into.length / 2) {
        if (open) hold(n);
        return into.slice(0, n);
      }
      buffer = undefined;
      if (open) hold(into.length);
      return into.subarray(0, n);
    },
    cancel() {
      ended();
    },
    release(chunk) {
      if (lent === undefined) return;
      for (let i = 0; i < lent.length; i++) {
        const buffer = lent[i]!;
        if (buffer.buffer !== chunk.buffer) continue;
        lent.splice(i, 1);
        forget(buffer);
        putSpare(buffer);
        return;
      }
    },
  };
}

/** Writes whole chunks to a socket; `end` shuts its write side. */
export function connSink(conn: NetConn): ChunkSink {
  return {
    async write(chunk) {
      // Held until the socket took it all: a peer that stops reading
      // holds it there, and the reads that fill the stages before it are
      // made smaller (see HELD_BUDGET).
      const bytes = chunk.byteLength;
      heldBytes += bytes;
      try {
        await writeFull(conn, chunk);
      } finally {
        heldBytes -= bytes;
      }
    },
    async end() {
      await conn.closeWrite();
    },
    abort() {},
  };
}

/** Reads a `ReadableStream`, checking that every chunk is a `Uint8Array`. */
export function streamSource(readable: ReadableStream<Uint8Array>, what: string): ChunkSource {
  const reader = readable.getReader();
  return {
    async read() {
      const { value, done } = await reader.read();
      if (done) return null;
      if (!(value instanceof Uint8Array)) {
        const error = new TypeError(
          `${what} produced a chunk that is not a Uint8Array: ${describe(value)}`,
        );
        reader.cancel(error).catch(() => {});
        throw error;
      }
      return value;
    },
    cancel(reason) {
      reader.cancel(reason).catch(() => {});
    },
  };
}

/**
 * Writes to a `WritableStream` without waiting for each write to finish, only
 * for its backpressure (`ready`); a failed write surfaces on the next call.
 */
export function streamSink(writable: WritableStream<Uint8Array>): ChunkSink {
  const writer = writable.getWriter();
  return {
    async write(chunk) {
      await writer.ready;
      writer.write(chunk).catch(() => {});
    },
    end() {
      return closeWriter(writer);
    },
    abort(reason) {
      writer.abort(reason).catch(() => {});
    },
  };
}

/**
 * Close a writer's stream. A stream that a failure errored earlier rejects
 * `close()` with a bare `TypeError` ("closed or errored"); the rejection
 * then carries the error that errored it (a peer's `BrokenPipe`, say), so
 * callers can tell a peer that left from a fault.
 */
export async function closeWriter(writer: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
  try {
    await writer.close();
  } catch (error) {
    // Rejects with the stored error when the stream errored; resolves when
    // it was merely closed already.
    await writer.closed;
    throw error;
  }
}

/** Options for {@linkcode pump}. */
export interface PumpOptions {
  /** Called when `source` reaches its end of stream, before the sink ends. */
  readonly onEnd?: () => void;
  /**
   * Whether a failed write (or end) on `sink` only means its peer left: then
   * the pump cancels `source` and resolves instead of rejecting.
   */
  readonly sinkGone?: (error: unknown) => boolean;
}

/**
 * Move chunks from `source` to `sink` until end of stream, then end the sink.
 * One chunk is in flight at a time, so memory is bounded by the chunk size.
 * On failure the other side is cancelled or aborted with the same error, and
 * the error is rethrown (a sink failure that `sinkGone` accepts resolves).
 */
export async function pump(
  source: ChunkSource,
  sink: ChunkSink,
  count: (bytes: number) => void,
  options: PumpOptions = {},
): Promise<void> {
  let chunk: Uint8Array | null;
  try {
    chunk = await source.read();
  } catch (error) {
    sink.abort(error);
    throw error;
  }
  while (chunk !== null) {
    try {
      await sink.write(chunk);
    } catch (error) {
      return sinkFailed(source, options, error);
    }
    count(chunk.byteLength);
    // Not kept while the next read waits: an idle connection held its last
    // chunk (up to a read's size) in each direction.
    chunk = null;
    try {
      chunk = await source.read();
    } catch (error) {
      sink.abort(error);
      throw error;
    }
  }
  options.onEnd?.();
  try {
    await sink.end();
  } catch (error) {
    sinkFailed(source, options, error);
  }
}

/**
 * A failed write or end of a pump's sink: the source is cancelled, and the
 * error rethrown unless `sinkGone` says the sink's peer only left. Not a
 * closure of each pump: an idle relayed connection has four pumps, each
 * of which kept one (with its context) for its life.
 */
function sinkFailed(source: ChunkSource, options: PumpOptions, error: unknown): void {
  source.cancel(error);
  if (!options.sinkGone?.(error)) throw error;
}

/** A constructor name as code spells it (anything else is not shown). */
const TYPE_NAME = /^[A-Za-z_$][\w$]{0,63}$/;

/**
 * A short description of a value's type, for error messages: the type and,
 * for strings, arrays and binary data, the length. Never the content: a
 * chunk that is not a `Uint8Array` is still the application's data (a
 * decoder that produced text, a string written by mistake), and messages
 * reach logs.
 *
 * @param value Anything.
 * @returns For example `string (11 characters)`, `ArrayBuffer (4 bytes)`,
 * `Object`, `number`, `null`.
 */
export function describe(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return `string (${value.length} characters)`;
    case "object":
      break;
    default:
      return typeof value;
  }
  try {
    if (Array.isArray(value)) return `Array (${value.length} items)`;
    const constructor = (value as { constructor?: { name?: unknown } }).constructor;
    const name = typeof constructor === "function" ? constructor.name : undefined;
    const type = typeof name === "string" && TYPE_NAME.test(name) ? name : "object";
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
      return `${type} (${value.byteLength} bytes)`;
    }
    return type;
  } catch {
    // A proxy or a getter that throws: its type is all that is known.
    return "object";
  }
}
