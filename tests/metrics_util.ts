// Copyright the ptkit authors. MIT license.

// Helpers for the metrics tests: promtool (Debian `prometheus`) on an
// exposition, and reading one sample out of one.

import { requireBinary } from "./ipc_util.ts";

/** Run `promtool check metrics` on `text`; throw with its output unless it passes cleanly. */
export async function promtoolCheckMetrics(text: string): Promise<void> {
  const promtool = requireBinary("promtool", "prometheus");
  const child = new Deno.Command(promtool, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const said = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0 || said.trim() !== "") {
    throw new Error(`promtool check metrics failed (exit ${code}):\n${said}\n--- input:\n${text}`);
  }
}

/**
 * The value of the series written exactly as `series` (name and labels in
 * the exposition's order), or undefined when it is not there.
 */
export function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}
