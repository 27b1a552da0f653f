// Copyright the ptkit authors. MIT license.

import type { PtLine } from "../lines/pt_line.ts";
import { formatHostPort } from "../../net/address.ts";

/** What a PT reported while starting. */
export interface PtLaunchResult {
  /** The negotiated version. */
  readonly version: string;
  /** `CMETHOD` or `SMETHOD` lines of requested transports, by name. */
  readonly methods: ReadonlyMap<string, PtLine>;
  /** `CMETHOD-ERROR` / `SMETHOD-ERROR` messages, by name. */
  readonly errors: ReadonlyMap<string, string>;
}

/** Options for {@linkcode PtStartup}. */
export interface PtStartupOptions {
  /** `client` (expects `CMETHOD`s) or `server` (expects `SMETHOD`s). */
  readonly kind: "client" | "server";
  /** The versions offered to the PT. */
  readonly versions: readonly string[];
  /** The transports asked for; others are ignored. Defaults to any. */
  readonly requested?: ReadonlySet<string>;
  /** Whether an upstream proxy was given, so `PROXY DONE` is required. */
  readonly proxy: boolean;
  /** Told about lines that are ignored. */
  readonly warn: (message: string) => void;
}

/**
 * The parent's side of a PT's start-up, as a state machine fed one parsed
 * line at a time: checks the order and content of `VERSION`, the error
 * lines, `PROXY DONE` and the method lines, and yields the result at
 * `CMETHODS DONE` / `SMETHODS DONE`. Used for PT processes and for ptkit's
 * own front end running in a Worker.
 *
 * @example Reading a client PT's start-up
 * ```ts
 * import { parsePtLine } from "@ptkit/ptkit/ipc";
 * import { PtStartup } from "./pt_startup.ts";
 * import { strictEqual } from "node:assert";
 *
 * const startup = new PtStartup({ kind: "client", versions: ["1"], proxy: false, warn: () => {} });
 * startup.handle(parsePtLine("VERSION 1"));
 * startup.handle(parsePtLine("CMETHOD obfs4 socks5 127.0.0.1:5000"));
 * const result = startup.handle(parsePtLine("CMETHODS DONE"));
 * strictEqual(result?.methods.size, 1);
 * ```
 */
export class PtStartup {
  #options: PtStartupOptions;
  #version: string | undefined;
  #proxyDone = false;
  #methods = new Map<string, PtLine>();
  #errors = new Map<string, string>();

  /**
   * Start reading.
   *
   * @param options The role, versions offered, transports asked for.
   */
  constructor(options: PtStartupOptions) {
    this.#options = options;
  }

  /** The version the PT chose, once it has. */
  get version(): string | undefined {
    return this.#version;
  }

  /**
   * Take one start-up line (`LOG`, `STATUS` and unknown lines are not for
   * this and are ignored).
   *
   * @param line The parsed line.
   * @returns The result once the PT said it is done, else `undefined`.
   * @throws {Error} When the line shows the PT failed to start; the message
   * says why.
   */
  handle(line: PtLine): PtLaunchResult | undefined {
    const { kind, versions, requested, proxy, warn } = this.#options;
    const doneText = kind === "client" ? "CMETHODS DONE" : "SMETHODS DONE";
    switch (line.type) {
      case "VERSION":
        if (this.#version !== undefined) throw new Error("it sent VERSION twice");
        if (!versions.includes(line.version)) {
          throw new Error(
            `it chose version ${JSON.stringify(line.version)}, which was not offered (${
              versions.join(",")
            })`,
          );
        }
        this.#version = line.version;
        return undefined;
      case "VERSION-ERROR":
        throw new Error(
          `it supports none of the versions offered (${
            versions.join(",")
          }): VERSION-ERROR ${line.message}`,
        );
      case "ENV-ERROR":
        throw new Error(`it rejected its environment: ENV-ERROR ${line.message}`);
      case "PROXY-ERROR":
        throw new Error(`it rejected the upstream proxy: PROXY-ERROR ${line.message}`);
      case "PROXY-DONE":
        this.#proxyDone = true;
        return undefined;
      case "CMETHOD":
      case "SMETHOD":
      case "CMETHOD-ERROR":
      case "SMETHOD-ERROR": {
        if (this.#version === undefined) throw new Error(`it sent ${line.type} before VERSION`);
        const mine = line.type.startsWith(kind === "client" ? "C" : "S");
        if (!mine) {
          const other = kind === "client" ? "server" : "client";
          warn(
            `Ignored ${line.type} for ${line.transport} (a ${other} PT's line; this PT was launched as a ${kind})`,
          );
          return undefined;
        }
        if (requested !== undefined && !requested.has(line.transport)) {
          warn(`Ignored ${line.type} for ${line.transport} (not requested)`);
          return undefined;
        }
        if (line.type === "CMETHOD-ERROR" || line.type === "SMETHOD-ERROR") {
          this.#errors.set(line.transport, line.message);
        } else {
          const first = this.#methods.get(line.transport);
          if (first !== undefined) {
            // tor keeps the first ("the same transport already exists ...
            // Skipping"): so does the adapter, and says so.
            warn(
              `Ignored a second ${line.type} for ${line.transport} at ${
                formatHostPort(line.address)
              } (the first, at ${
                formatHostPort((first as typeof line).address)
              }, is kept, as tor keeps it)`,
            );
            return undefined;
          }
          this.#methods.set(line.transport, line);
        }
        return undefined;
      }
      case "CMETHODS-DONE":
      case "SMETHODS-DONE": {
        if (line.type !== (kind === "client" ? "CMETHODS-DONE" : "SMETHODS-DONE")) {
          // A client binary launched as a server (or the reverse): said, as
          // its method lines are, so the start-up failure is not a bare timeout.
          const other = kind === "client" ? "server" : "client";
          warn(
            `Ignored ${
              line.type.replace("-", " ")
            } (a ${other} PT's line; this PT was launched as a ${kind})`,
          );
          return undefined;
        }
        if (this.#version === undefined) throw new Error(`it sent ${doneText} before VERSION`);
        if (proxy && !this.#proxyDone) {
          throw new Error("it did not accept the upstream proxy (no PROXY DONE)");
        }
        if (this.#methods.size === 0) {
          const why = [...this.#errors].map(([name, message]) => `${name}: ${message}`).join("; ");
          const names = requested === undefined ? "its transports" : [...requested].join(", ");
          throw new Error(`it started none of ${names}${why === "" ? "" : ` (${why})`}`);
        }
        return { version: this.#version, methods: this.#methods, errors: this.#errors };
      }
      default:
        return undefined;
    }
  }
}
