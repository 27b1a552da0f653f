// Copyright the ptkit authors. MIT license.
// Internal: one process's hub for the transports' replay filters
// (`TransportEnvironment.replays`). Every value a server's filter records
// (an obfs4 handshake MAC, a Shadowsocks salt) reaches the process's other
// filters of the same transport (a SIP003 server listening on several
// addresses) and, with `-workers`, every other process: a child sends
// `PTKIT-REPLAY <transport> <base64>` lines to its parent, which adds them
// to its own filters, remembers them and passes them to its other children;
// a child started later (or again) gets what the parent remembers in its
// setup, and its filters have it before it listens.
// A replay that reaches any process is then refused as it would be by one
// (only one sent within the moment a line takes to cross may get through).

import type { ReplayFilter } from "../../transports/_replay_filter.ts";
import type { TransportEnvironment } from "../../transports/transport.ts";

/** The keyword of a replay line (not a PT line: parent and children keep it). */
const KEYWORD = "PTKIT-REPLAY";
/** A transport name and base64 of at most 64 bytes. */
const LINE = /^PTKIT-REPLAY ([A-Za-z_][A-Za-z0-9_]{0,63}) ([A-Za-z0-9+/]{1,88}={0,2})$/;

/** Options of a {@linkcode ReplayHub}. */
export interface ReplayHubOptions {
  /**
   * Sends a line to the other processes (a child: to its parent; the
   * parent: to its children but the one `from`). Defaults to none.
   */
  readonly send?: (line: string, from?: number) => void;
  /**
   * Keep what every process recorded, in filters of this class
   * (`ReplayFilter`, which only a process that remembers loads): a filter
   * that subscribes later gets it, and so does a child started later
   * ({@linkcode ReplayHub.snapshot}). Defaults to keeping nothing.
   */
  readonly remember?: typeof ReplayFilter;
  /** Lines to take first (a child's: its parent's snapshot); with `remember`. Defaults to none. */
  readonly initial?: string;
  /** The clock, in ms since the epoch. Defaults to `Date.now`. */
  readonly now?: () => number;
}

/** A process's share of its transports' replay filters. */
export class ReplayHub {
  #send: ((line: string, from?: number) => void) | undefined;
  #now: () => number;
  #local = new Map<string, Set<(value: Uint8Array) => void>>();
  #remembered: Map<string, ReplayFilter> | undefined;
  #filter: typeof ReplayFilter | undefined;

  constructor(options: ReplayHubOptions = {}) {
    this.#send = options.send;
    this.#now = options.now ?? Date.now;
    this.#filter = options.remember;
    if (options.remember !== undefined) this.#remembered = new Map();
    for (const line of (options.initial ?? "").split("\n")) {
      if (line !== "") this.handleLine(line);
    }
  }

  /**
   * Where the sender goes once it exists (the parent's children start after
   * its transports).
   */
  set send(send: (line: string, from?: number) => void) {
    this.#send = send;
  }

  /**
   * The `replays` of one transport's environment.
   *
   * @param transport The transport's name.
   * @returns What its servers share their filters through.
   */
  env(transport: string): NonNullable<TransportEnvironment["replays"]> {
    return {
      recorded: (value) => this.#spread(transport, value.slice(), "local"),
      subscribe: (add) => {
        let subscribers = this.#local.get(transport);
        if (subscribers === undefined) this.#local.set(transport, subscribers = new Set());
        subscribers.add(add);
        const now = this.#now();
        for (const value of this.#remembered?.get(transport)?.values(now) ?? []) add(value);
        return () => subscribers.delete(add);
      },
    };
  }

  /**
   * Take a line from another process.
   *
   * @param line The line, without its newline.
   * @param from The child it came from (on the parent's side); absent on a
   * child's, for a line from its parent, which is not sent back.
   * @returns Whether it was a replay line (valid or not: it is not a PT line).
   */
  handleLine(line: string, from?: number): boolean {
    if (!line.startsWith(`${KEYWORD} `)) return false;
    const match = LINE.exec(line);
    if (match === null) return true;
    let value: Uint8Array;
    try {
      value = Uint8Array.from(atob(match[2]!), (c) => c.charCodeAt(0));
    } catch {
      return true;
    }
    this.#spread(match[1]!, value, from ?? "parent");
    return true;
  }

  /**
   * Every value remembered (the parent's), as lines for a child that
   * starts now.
   *
   * @returns The lines, newlines included.
   */
  snapshot(): string {
    const now = this.#now();
    let text = "";
    for (const [transport, filter] of this.#remembered ?? []) {
      for (const value of filter.values(now)) text += line(transport, value);
    }
    return text;
  }

  /**
   * Add `value` to this process's filters and pass it on: a local value to
   * every other process, a child's to the other children, the parent's to
   * nobody.
   */
  #spread(transport: string, value: Uint8Array, from: "local" | "parent" | number): void {
    if (this.#remembered !== undefined) {
      let filter = this.#remembered.get(transport);
      if (filter === undefined) this.#remembered.set(transport, filter = new this.#filter!());
      filter.record(this.#now(), value);
    }
    // A value from elsewhere reaches every local filter; a local one the
    // others (its own filter has it already; adding it again is harmless).
    for (const add of this.#local.get(transport) ?? []) add(value);
    if (from === "parent") return;
    this.#send?.(line(transport, value), from === "local" ? undefined : from);
  }
}

function line(transport: string, value: Uint8Array): string {
  return `${KEYWORD} ${transport} ${btoa(String.fromCharCode(...value))}\n`;
}
