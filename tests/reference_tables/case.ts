// Copyright the ptkit authors. MIT license.
// The shape of a transcribed reference case.

import type { Difference } from "./differences.ts";

/** The reference test files the tables were transcribed from. */
export type Source =
  | "goptlib args_test.go"
  | "goptlib pt_test.go"
  | "goptlib proxy_test.go"
  | "goptlib socks_test.go"
  | "goptlib 0.5 socks_test.go (SOCKS4a)"
  | "lyrebird common/socks5/socks_test.go"
  | "arti tor-ptmgr src/ipc.rs";

/**
 * One case of a reference implementation's test table, as data: the input,
 * what the reference expects, and, where ptkit deliberately differs, the
 * reason (see differences.ts) and what ptkit does instead.
 */
export interface Case<Input, Result> {
  /** The reference's test function (and which of its checks). */
  readonly test: string;
  /** The input, as the reference test gives it. */
  readonly input: Input;
  /** What the reference test expects. */
  readonly expect: Result;
  /** A deliberate difference: ptkit does `ptkit` instead, for this reason. */
  readonly differs?: Difference;
  /**
   * An open issue whose change makes ptkit give `expect`; until it lands,
   * ptkit gives `ptkit` and either is accepted.
   */
  readonly pending?: number;
  /** What ptkit gives where it differs (or until `pending` lands). */
  readonly ptkit?: Result;
}

/** A table: cases of one source. */
export interface Table<Input, Result> {
  /** Where the cases come from. */
  readonly source: Source;
  /** The cases. */
  readonly cases: readonly Case<Input, Result>[];
}

/** A parse that fails. */
export const ERROR = "error" as const;

/** Transport arguments as goptlib's `Args`: every value of each key. */
export type Args = Readonly<Record<string, readonly string[]>>;
