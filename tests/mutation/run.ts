// Copyright the ptkit authors. MIT license.

/**
 * Targeted mutation testing: proves that every security check listed in
 * `mutations.ts` has a test that fails without it.
 *
 * Each mutation replaces one exact piece of text in one file (removing or
 * weakening a check) in a scratch copy of the repository (the working tree
 * as it is, uncommitted changes included; the working tree itself is never
 * touched), runs only that mutation's test files there, and restores the
 * file. A mutation is **killed** when at least one of those tests fails,
 * and **survived** when they all pass (the check is untested). First the
 * listed runs (test files and filter) are made once on the unmutated copy:
 * they must pass, or no result would mean anything.
 *
 * Usage (from the repository root; `deno task mutation` runs it):
 *
 * ```sh
 * deno run --allow-all tests/mutation/run.ts [--only ID[,ID...]] [--list]
 *     [--timeout SECONDS] [--no-baseline] [--keep] [--json FILE]
 * ```
 *
 * - `--only`: run the mutations with these ids (or id prefixes) only.
 * - `--list`: print the table and exit.
 * - `--timeout`: the most one test run may take (default 600 s); a run that
 *   takes longer is stopped and counted as killed ("timeout").
 * - `--no-baseline`: skip the unmutated run.
 * - `--keep`: keep the scratch copy and print where it is.
 * - `--json`: also write the results to FILE.
 *
 * Tests run with `--no-check`, so that a mutation is killed by a failing
 * test and never by a type error; a run that ends without deno's summary
 * line (a syntax error, a crash) is reported as "error", not as killed.
 * The exit status is 0 only when every mutation was killed.
 *
 * @module
 */

import { type Mutation, MUTATIONS } from "./mutations.ts";

/** The outcome of one mutation. */
export interface MutationResult {
  readonly id: string;
  readonly outcome: "killed" | "timeout" | "survived" | "stale" | "error";
  /** Tests that failed (killed), or why the mutation could not run. */
  readonly detail: string;
  readonly seconds: number;
}

interface RunOutcome {
  readonly status: "passed" | "failed" | "timeout" | "error";
  readonly failedTests: string[];
  readonly output: string;
}

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

function parseArgs(args: string[]) {
  const options = {
    only: undefined as string[] | undefined,
    list: false,
    timeoutSeconds: 600,
    baseline: true,
    keep: false,
    json: undefined as string | undefined,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new TypeError(`Missing value for ${arg}`);
      return v;
    };
    if (arg === "--only") options.only = value().split(",").filter((s) => s !== "");
    else if (arg === "--list") options.list = true;
    else if (arg === "--timeout") options.timeoutSeconds = Number(value());
    else if (arg === "--no-baseline") options.baseline = false;
    else if (arg === "--keep") options.keep = true;
    else if (arg === "--json") options.json = value();
    else throw new TypeError(`Unknown argument ${JSON.stringify(arg)}`);
  }
  if (!(options.timeoutSeconds > 0)) {
    throw new RangeError(`Invalid --timeout ${options.timeoutSeconds}: expected seconds > 0`);
  }
  return options;
}

/** How many times `search` occurs in `text` (non-overlapping). */
export function occurrences(text: string, search: string): number {
  if (search === "") return 0;
  let count = 0;
  for (let at = text.indexOf(search); at >= 0; at = text.indexOf(search, at + search.length)) {
    count++;
  }
  return count;
}

/**
 * Why a mutation cannot be applied to the tree at `root`, or `undefined`
 * when its search text occurs exactly once and its test files exist.
 */
export function staleReason(root: string, mutation: Mutation): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${root}/${mutation.file}`);
  } catch {
    return `file ${mutation.file} not found`;
  }
  const count = occurrences(text, mutation.search);
  if (count !== 1) {
    return `search text occurs ${count} times in ${mutation.file} (expected exactly once)`;
  }
  if (mutation.search === mutation.replace) return "replacement equals the search text";
  for (const test of mutation.tests) {
    try {
      Deno.statSync(`${root}/${test}`);
    } catch {
      return `test file ${test} not found`;
    }
  }
  return undefined;
}

async function git(args: string[]): Promise<string> {
  const out = await new Deno.Command("git", { args, cwd: ROOT, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`git ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Copy the working tree (tracked and untracked, not ignored files) to a new temporary directory. */
async function scratchCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ptkit-mutation-" });
  const files = (await git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"]))
    .split("\0").filter((f) => f !== "");
  for (const file of new Set(files)) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(`${ROOT}/${file}`);
    } catch {
      continue; // Deleted in the working tree.
    }
    if (!info.isFile) continue;
    const slash = file.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(`${dir}/${file.slice(0, slash)}`, { recursive: true });
    await Deno.copyFile(`${ROOT}/${file}`, `${dir}/${file}`);
  }
  // The npm packages `deno install` put in place (read only by the tests).
  try {
    await Deno.stat(`${ROOT}/node_modules`);
    await Deno.symlink(`${ROOT}/node_modules`, `${dir}/node_modules`);
  } catch {
    // No node_modules: deno resolves from its cache.
  }
  return dir;
}

/** Names of the failed tests in deno test's report. */
function failedTests(output: string): string[] {
  const names: string[] = [];
  const heading = [...output.matchAll(/^ ?FAILURES ?$/gm)].pop();
  if (heading === undefined) return names;
  for (const line of output.slice(heading.index).split("\n")) {
    const match = /^(.+) => \S+:\d+:\d+$/.exec(line.trim());
    if (match) names.push(match[1]!);
  }
  return names;
}

async function runTests(
  dir: string,
  tests: readonly string[],
  timeoutSeconds: number,
  filter?: string,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "--allow-all",
      "--no-check",
      ...(filter === undefined ? [] : ["--filter", filter]),
      ...tests,
    ],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    // Its own process group, so that a timeout stops the peers it started too.
    detached: true,
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }, timeoutSeconds * 1000);
  const output = await child.output();
  clearTimeout(timer);
  try {
    // Whatever the tests left running in the group.
    Deno.kill(-child.pid, "SIGKILL");
  } catch {
    // None.
  }
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  const summary = /^(ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed/m.exec(text);
  let status: RunOutcome["status"];
  if (timedOut) status = "timeout";
  else if (output.success && summary?.[1] === "ok") status = "passed";
  else if (summary !== null && Number(summary[3]) > 0) status = "failed";
  else status = "error";
  return { status, failedTests: failedTests(text), output: text } satisfies RunOutcome;
}

function selected(only: string[] | undefined): Mutation[] {
  if (only === undefined) return [...MUTATIONS];
  const picked = MUTATIONS.filter((m) => only.some((o) => m.id === o || m.id.startsWith(o)));
  if (picked.length === 0) throw new RangeError(`No mutation matches --only ${only.join(",")}`);
  return picked;
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

async function main(): Promise<number> {
  const options = parseArgs(Deno.args);
  const mutations = selected(options.only);
  const ids = new Set<string>();
  for (const m of MUTATIONS) {
    if (ids.has(m.id)) throw new Error(`Duplicate mutation id ${m.id}`);
    ids.add(m.id);
  }
  if (options.list) {
    for (const m of mutations) {
      const filter = m.filter === undefined ? "" : ` (--filter ${JSON.stringify(m.filter)})`;
      console.log(
        `${m.id} [${m.kind}] ${m.file}: ${m.description}\n  tests: ${m.tests.join(" ")}${filter}`,
      );
    }
    return 0;
  }
  const dir = await scratchCopy();
  console.log(`Scratch copy: ${dir} (${mutations.length} mutations)`);
  const results: MutationResult[] = [];
  try {
    if (options.baseline) {
      // Each distinct run the mutations make (test files and filter), once.
      const runs = new Map<string, Mutation>();
      for (const m of mutations) runs.set(JSON.stringify([m.tests, m.filter ?? null]), m);
      console.log(`Baseline: ${runs.size} runs on the unmutated copy ...`);
      const started = performance.now();
      for (const m of runs.values()) {
        const base = await runTests(dir, m.tests, options.timeoutSeconds, m.filter);
        if (base.status !== "passed") {
          console.error(tail(base.output, 60));
          console.error(
            `Baseline ${base.status} (${m.tests.join(" ")}${
              m.filter === undefined ? "" : ` --filter ${JSON.stringify(m.filter)}`
            }): fix the tests before mutating.`,
          );
          return 2;
        }
      }
      console.log(`Baseline passed in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
    for (const [index, m] of mutations.entries()) {
      const started = performance.now();
      const stale = staleReason(dir, m);
      let result: MutationResult;
      if (stale !== undefined) {
        result = { id: m.id, outcome: "stale", detail: stale, seconds: 0 };
      } else {
        const path = `${dir}/${m.file}`;
        const original = await Deno.readTextFile(path);
        await Deno.writeTextFile(path, original.replace(m.search, () => m.replace));
        let run: RunOutcome;
        try {
          run = await runTests(dir, m.tests, options.timeoutSeconds, m.filter);
        } finally {
          await Deno.writeTextFile(path, original);
        }
        const seconds = (performance.now() - started) / 1000;
        if (run.status === "failed") {
          const names = run.failedTests;
          const detail = names.slice(0, 2).join("; ") +
            (names.length > 2 ? ` (and ${names.length - 2} more)` : "");
          result = { id: m.id, outcome: "killed", detail, seconds };
        } else if (run.status === "timeout") {
          result = {
            id: m.id,
            outcome: "timeout",
            detail: `no result within ${options.timeoutSeconds} s`,
            seconds,
          };
        } else if (run.status === "passed") {
          result = { id: m.id, outcome: "survived", detail: "every listed test passed", seconds };
        } else {
          result = { id: m.id, outcome: "error", detail: tail(run.output, 8), seconds };
        }
      }
      results.push(result);
      const mark = result.outcome === "killed" || result.outcome === "timeout"
        ? result.outcome
        : result.outcome.toUpperCase();
      console.log(
        `[${index + 1}/${mutations.length}] ${mark.padEnd(8)} ${m.id} (${
          result.seconds.toFixed(0)
        } s): ${m.description}${result.detail === "" ? "" : `\n    ${result.detail}`}`,
      );
    }
  } finally {
    if (options.keep) console.log(`Kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const killed = results.filter((r) => r.outcome === "killed" || r.outcome === "timeout").length;
  console.log(
    `\nmutations: ${killed} killed, ${results.length - killed} not killed, ${results.length} total`,
  );
  for (const r of results) {
    if (r.outcome !== "killed" && r.outcome !== "timeout") console.log(`  ${r.outcome}: ${r.id}`);
  }
  if (options.json !== undefined) {
    await Deno.writeTextFile(options.json, JSON.stringify(results, null, 2) + "\n");
  }
  return killed === results.length ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
