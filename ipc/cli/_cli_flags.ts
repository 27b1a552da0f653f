// Copyright the ptkit authors. MIT license.
// Internal: the flags of main.ts's own commands (`server`, `client`,
// `start`, `turn`): -flag or --flag, the value next or after "=", a "did you
// mean" for a near miss, and no value ever echoed.

import { unexpectedArgument } from "../../net/_userinfo.ts";
import { suggestOptionKey } from "../../transports/_option_keys.ts";

/** One flag of a command. */
export interface Spec {
  /** The value's placeholder in the usage; absent for a flag without one. */
  readonly value?: string;
  readonly help: string;
  readonly fallback?: string;
}

/**
 * The managed proxy's flags (and tor's torrc options) a user of obfs4proxy
 * or tor may type to a command, and the command's flag for the same thing:
 * too far from it in spelling for a "did you mean" of edit distance.
 */
const OTHER_NAMES: Readonly<Record<string, string>> = {
  socksport: "socks",
  proxylistenaddr: "socks",
  orport: "target",
  extorport: "target",
  bindaddr: "listen",
  listen: "socks",
};

/** Where a command is, among the program's others, for an unknown flag's hint. */
export interface FlagContext {
  /** The command as typed: `main.ts client`. */
  readonly command: string;
  /**
   * The flags of the program's other commands that this one lacks, each
   * with the command that takes it (`listen` → `main.ts server`).
   */
  readonly elsewhere: Readonly<Record<string, string>>;
}

/**
 * Parse a command's flags: `-name` or `--name`, the value next or after
 * `=` (`--logLevel` is `--log-level`, as the managed proxy spells it). A
 * flag given again takes the later value; every value of each flag, in
 * order, goes to `all` when it is given (a repeatable flag: turn's --user).
 *
 * @param args The arguments after the subcommand.
 * @param specs The command's flags by name.
 * @param before How many arguments came before `args` (for positions).
 * @param positional Takes an argument that is not a flag (a link), or not.
 * @param all Receives every value of each flag.
 * @param context The command among the others: a flag of another command
 * (`main.ts client --orport`) is named as that command's.
 * @returns The values by flag name (`"true"` for one without a value), or
 * the reason, which names flags only.
 */
export function parseCliFlags(
  args: readonly string[],
  specs: Record<string, Spec>,
  before: number,
  positional: (arg: string) => boolean = () => false,
  all?: Record<string, string[]>,
  context?: FlagContext,
): Record<string, string> | string {
  const values: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const match = /^(--?)([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?$/s.exec(args[i]!);
    if (match === null && positional(args[i]!)) continue;
    if (match === null) return unexpectedArgument(args[i]!, before + i + 1);
    const [, dashes, given, inline] = match;
    // The managed proxy's spelling works too: --logLevel is --log-level.
    const name = flagName(given!);
    const key = name === "h" ? "help" : name;
    const spec = specs[key];
    if (spec === undefined) {
      const other = OTHER_NAMES[name.toLowerCase().replaceAll("-", "")];
      const near = other !== undefined && Object.hasOwn(specs, other)
        ? other
        : suggestOptionKey(name, Object.keys(specs));
      // Another command's flag (a server's --orport given to the client):
      // which command takes it, not silence.
      const owner = near === undefined && context !== undefined
        ? Object.hasOwn(context.elsewhere, key)
          ? { command: context.elsewhere[key]!, as: "" }
          : other !== undefined && Object.hasOwn(context.elsewhere, other)
          ? { command: context.elsewhere[other]!, as: ` as --${other}` }
          : undefined
        : undefined;
      if (owner !== undefined) {
        return `Unknown flag ${dashes}${given}: ${
          context!.command
        } has no such flag; ${owner.command} takes it${owner.as}`;
      }
      // Named as typed (`-L`, not `--l`), so the user finds it in their command.
      return `Unknown flag ${dashes}${given}${
        near === undefined ? "" : ` (did you mean --${near}?)`
      }`;
    }
    let value: string;
    if (spec.value === undefined) {
      if (inline !== undefined) return `Flag --${key} takes no value`;
      value = "true";
    } else if (inline !== undefined) value = inline;
    else if (i + 1 < args.length && knownFlag(args[i + 1]!, specs) === undefined) {
      value = args[++i]!;
    } else {
      // A value left out before the next flag (`--listen --target socks`,
      // an empty shell variable) is named as such, not taken as the value.
      const next = i + 1 < args.length ? knownFlag(args[i + 1]!, specs) : undefined;
      return `Flag --${key} needs a value${
        next === undefined ? "" : ` (the next argument is the flag --${next})`
      }`;
    }
    values[key] = value;
    if (all !== undefined) (all[key] ??= []).push(value);
  }
  return values;
}

/** A flag's name as the specs spell it: --logLevel is --log-level. */
function flagName(given: string): string {
  return given.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}

/** The name of the command's flag `arg` is (without a value), if it is one. */
function knownFlag(arg: string, specs: Record<string, Spec>): string | undefined {
  const match = /^--?([A-Za-z][A-Za-z0-9-]*)$/.exec(arg);
  if (match === null) return undefined;
  const name = flagName(match[1]!);
  const key = name === "h" ? "help" : name;
  return Object.hasOwn(specs, key) ? key : undefined;
}
