// Copyright the ptkit authors. MIT license.
// Headless Chromium (Debian's `chromium`) on a page served from loopback:
// the page posts its outcome back as JSON to `/result`.

import { requireBinary } from "./ipc_util.ts";

/** What a page posts to `/result`: its report, or why it has none. */
export interface PageOutcome<T> {
  readonly report?: T;
  readonly error?: string;
}

/** A page for {@linkcode inChromium}. */
export interface ChromiumPage {
  /** The HTML served at `/`. */
  readonly html: string;
  /** More files, by path (`/x.js`), served as JavaScript. */
  readonly scripts?: Readonly<Record<string, string>>;
  /** Other routes the page may call; `undefined` means 404. */
  readonly handle?: (request: Request) => Response | undefined | Promise<Response | undefined>;
  /** Extra Chromium command-line switches. */
  readonly args?: readonly string[];
  /** How long the page may take to post its result, in ms (default 120 s). */
  readonly timeoutMs?: number;
}

/** Kill a process group, politely first. */
async function killGroup(child: Deno.ChildProcess): Promise<void> {
  const status = child.status;
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    try {
      Deno.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      status.then(() => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 3000)),
    ]);
    clearTimeout(timer);
    if (exited) break;
  }
  await status;
  // Chromium's helpers may outlive it briefly: the group goes at once.
  try {
    Deno.kill(-child.pid, "SIGKILL");
  } catch {
    // None left.
  }
}

/**
 * Serve `page` on 127.0.0.1 to headless Chromium and return the report the
 * page posts to `/result` (`{ report }`, or `{ error }`, which throws with
 * Chromium's stderr). Chromium is ended (its whole process group) before
 * this returns. A missing `chromium` fails naming the Debian package.
 */
export async function inChromium<T>(page: ChromiumPage): Promise<T> {
  const chromium = requireBinary("chromium", "chromium");
  const setsid = requireBinary("setsid", "util-linux");
  let deliver!: (body: PageOutcome<T>) => void;
  const posted = new Promise<PageOutcome<T>>((r) => deliver = r);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const { pathname } = new URL(req.url);
    if (req.method === "POST" && pathname === "/result") {
      deliver(JSON.parse(await req.text()));
      return new Response(null, { status: 204 });
    }
    if (pathname === "/") {
      return new Response(page.html, { headers: { "content-type": "text/html" } });
    }
    const script = page.scripts?.[pathname];
    if (script !== undefined) {
      return new Response(script, { headers: { "content-type": "text/javascript" } });
    }
    return await page.handle?.(req) ?? new Response("Not found", { status: 404 });
  });
  const profile = await Deno.makeTempDir({ prefix: "ptkit_chromium_" });
  // Its own session, so that the whole process tree can be ended.
  const child = new Deno.Command(setsid, {
    args: [
      chromium,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      ...page.args ?? [],
      `http://127.0.0.1:${server.addr.port}/`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const drained = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (text) => void (stderr = (stderr + text).slice(-20_000)) }),
  ).catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = await Promise.race<PageOutcome<T>>([
      posted,
      child.status.then((status) => ({ error: `chromium exited early (${status.code})` })),
      new Promise<{ error: string }>((resolve) => {
        timer = setTimeout(
          () => resolve({ error: "no report within the time limit" }),
          page.timeoutMs ?? 120_000,
        );
      }),
    ]);
    if (result.report === undefined) {
      // Without a D-Bus, Chromium complains at length: leave that out.
      const log = stderr.split("\n").filter((line) => !/:ERROR:dbus\//.test(line)).join("\n");
      throw new Error(
        `Chromium did not run the page: ${result.error}\nchromium stderr:\n${log.slice(-4000)}`,
      );
    }
    return result.report;
  } finally {
    clearTimeout(timer);
    await killGroup(child);
    await drained;
    await server.shutdown();
    await Deno.remove(profile, { recursive: true });
  }
}
