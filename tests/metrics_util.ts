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

/** A free TCP port on 127.0.0.1 (closed again: the caller binds it). */
export function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/**
 * A real Prometheus (Debian `prometheus`) on 127.0.0.1, with a generated
 * configuration scraping `targets` (host:port) every second, its data in a
 * temporary directory.
 */
export class PrometheusServer implements AsyncDisposable {
  readonly port: number;
  readonly dir: string;
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<string>;

  private constructor(dir: string, port: number, child: Deno.ChildProcess) {
    this.dir = dir;
    this.port = port;
    this.#child = child;
    this.#output = Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]).then(([out, err]) => out + err);
  }

  /** Start it and wait until it is ready. */
  static async start(targets: readonly string[]): Promise<PrometheusServer> {
    const binary = requireBinary("prometheus", "prometheus");
    const dir = await Deno.makeTempDir({ prefix: "ptkit-prometheus-" });
    const port = freePort();
    await Deno.writeTextFile(
      `${dir}/prometheus.yml`,
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: ptkit",
        "    static_configs:",
        `      - targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}]`,
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(binary, {
      args: [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const server = new PrometheusServer(dir, port, child);
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/-/ready`);
        await response.body?.cancel();
        if (response.ok) return server;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        await server[Symbol.asyncDispose]();
        throw new Error(`Prometheus did not become ready: ${await server.#output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** An instant query through the HTTP API: each result's labels and value. */
  async query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]> {
    const url = `http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(promql)}`;
    const body = await (await fetch(url)).json();
    if (body.status !== "success") {
      throw new Error(`Query ${promql} failed: ${JSON.stringify(body)}`);
    }
    return (body.data.result as { metric: Record<string, string>; value: [number, string] }[])
      .map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** The scrape targets' health, as Prometheus sees it. */
  async targets(): Promise<{ scrapeUrl: string; health: string; lastError: string }[]> {
    const body = await (await fetch(`http://127.0.0.1:${this.port}/api/v1/targets`)).json();
    return body.data.activeTargets;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Exited.
    }
    await this.#child.status;
    await this.#output;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
