// Copyright the ptkit authors. MIT license.
// Transports are runtime-agnostic: the public transports entry points
// (`@ptkit/ptkit/transports`: plain and the contract helpers;
// `@ptkit/ptkit/transports/obfs4`, `@ptkit/ptkit/transports/shadowsocks`,
// `@ptkit/ptkit/transports/webtunnel`) are bundled with esbuild, npm dependencies
// inside, and tests/portable_checks.ts runs on the bundle in headless
// Chromium (Debian's `chromium`) and in Node 20 (`nodejs`), in memory with
// Web Streams only: obfs4's reference vectors (ntor server key, Hash DRBG,
// handshake MACs), a fixed-key handshake that must be byte for byte Deno's, a
// 1 MiB round trip each way, and plain, layered, IAT-mode-1 and WebTunnel
// round trips and WebTunnel's connection plan; Shadowsocks round trips for
// every method (destination carried) and streams recorded from ss-local
// 3.3.5 decoded.
// A static check keeps `Deno` out of transports/.

import { deepStrictEqual, match, ok, strictEqual } from "node:assert";
import * as esbuild from "esbuild";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes } from "@noble/hashes/utils.js";
import {
  FIXED_NOW,
  FIXED_SERVER,
  payload,
  type PortableReport,
  ROUND_TRIP_BYTES,
  runPortableChecks,
  SHADOWSOCKS_METHODS,
  SMALL_BYTES,
  SS_LOCAL_RECORDED,
  toHex,
} from "./portable_checks.ts";
import { requireBinary } from "./ipc_util.ts";
import { inChromium as runInChromium } from "./chromium_util.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CHECKS = new URL("./portable_checks.ts", import.meta.url).pathname;
// Generous: the machine is shared; a run takes a few seconds.
const RUN_TIMEOUT_MS = 120_000;

// The reference ntor vector's server key B for b = 0x33 x 32
// (shared/reference/obfs4.md).
const REFERENCE_B = "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14";
// bridgeCloseDelay of CLOSE_DELAY_SEEDS: Go's Int31n(60) of the reference
// Hash DRBG's first block, then obfs4proxy 0.0.14's measured delays.
const CLOSE_DELAYS = [24, 7, 12, 33, 41];
// The obfs4 handshake sizes (reference: padding 77-8128 from the client,
// 0-8051 from the server; the 45-byte seed frame follows the server's MAC).
const CLIENT_PADDING = [77, 8128];
const SERVER_PADDING = [0, 8051];
const SEED_FRAME_LENGTH = 2 + 16 + 3 + 24;

const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const indexOf = (haystack: Uint8Array, needle: Uint8Array, from: number) => {
  outer: for (let i = from; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
};
const digestOf = (...parts: Uint8Array[]) => toHex(sha256(concatBytes(...parts)));

/**
 * Check one side's handshake bytes against obfs4's wire format, with
 * HMAC-SHA256 from @noble/hashes (not ptkit's code): the mark
 * HMAC(B || NODEID, representative)[:16] after `minMark` bytes, then the
 * MAC over everything up to it and the epoch hour.
 */
function checkHandshake(
  bytes: Uint8Array,
  side: string,
  minMark: number,
  padding: number[],
  trailer: number,
) {
  const key = concatBytes(fromHex(REFERENCE_B), fromHex(FIXED_SERVER["node-id"]!));
  const mark = hmac(sha256, key, bytes.subarray(0, 32)).subarray(0, 16);
  const at = indexOf(bytes, mark, minMark);
  ok(at >= 0, `the ${side} handshake carries no mark`);
  const pad = at - minMark;
  ok(pad >= padding[0]! && pad <= padding[1]!, `${side} padding ${pad} out of range`);
  strictEqual(bytes.length, at + 32 + trailer, `${side} handshake length`);
  const epochHour = new TextEncoder().encode(String(Math.floor(FIXED_NOW / 3_600_000)));
  const mac = hmac(sha256, key, concatBytes(bytes.subarray(0, at + 16), epochHour)).subarray(0, 16);
  deepStrictEqual(bytes.subarray(at + 16, at + 32), mac, `the ${side} handshake MAC`);
}

/** Check a report against the reference vectors and the data sent. */
function checkReport(report: PortableReport) {
  const cert = btoa(String.fromCharCode(...fromHex(FIXED_SERVER["node-id"]! + REFERENCE_B)))
    .replace(/=+$/, "");
  deepStrictEqual(report.clientOptions, { cert, "iat-mode": "0" });
  deepStrictEqual(report.closeDelays, CLOSE_DELAYS);
  checkHandshake(fromHex(report.clientHandshake), "client", 32, CLIENT_PADDING, 0);
  checkHandshake(fromHex(report.serverHandshake), "server", 64, SERVER_PADDING, SEED_FRAME_LENGTH);
  strictEqual(report.upDigest, digestOf(payload(11, ROUND_TRIP_BYTES)), "client to server");
  strictEqual(report.downDigest, digestOf(payload(12, ROUND_TRIP_BYTES)), "server to client");
  ok(report.bothEnded, "each side saw the other's close");
  const small = (seed: number) =>
    digestOf(payload(seed, SMALL_BYTES), payload(seed + 1, SMALL_BYTES));
  strictEqual(report.plainDigest, small(21), "plain");
  strictEqual(report.layeredDigest, small(23), "rot under obfs4");
  strictEqual(report.iatDigest, small(25), "obfs4 in IAT mode 1");
  strictEqual(report.webtunnelDigest, small(27), "webtunnel");
  deepStrictEqual(JSON.parse(report.webtunnelPlan), {
    hostname: "example.com",
    port: 8443,
    keepAlive: 15,
    tls: { serverNames: ["example.com"] },
  });
  deepStrictEqual(report.ignored, ["obfs4.iatMode->obfs4.iat-mode"]);
  deepStrictEqual(
    report.shadowsocks,
    SHADOWSOCKS_METHODS.map((method, i) => ({
      method,
      destination: "example.com:443",
      digest: digestOf(payload(31 + 2 * i, SMALL_BYTES), payload(32 + 2 * i, SMALL_BYTES)),
    })),
  );
  deepStrictEqual(
    report.shadowsocksRecorded,
    Object.keys(SS_LOCAL_RECORDED).map(() => "example.com:80 GET / HTTP/1.0\r\n\r\n"),
  );
}

let denoReport: Promise<PortableReport> | undefined;

/** The report of the same checks run here, in Deno, on the sources. */
function reference(): Promise<PortableReport> {
  return denoReport ??= runPortableChecks();
}

/** Check a bundle's report, and that its fixed-key handshake is Deno's, byte for byte. */
async function checkAgainstDeno(report: PortableReport) {
  checkReport(report);
  const deno = await reference();
  strictEqual(report.clientHandshake, deno.clientHandshake, "client handshake differs from Deno's");
  strictEqual(report.serverHandshake, deno.serverHandshake, "server handshake differs from Deno's");
}

/** Resolve `@ptkit/ptkit/...` through deno.json's exports, as a user's import would. */
const ptkitExports: esbuild.Plugin = {
  name: "ptkit-exports",
  setup(build) {
    build.onResolve({ filter: /^@ptkit\/ptkit(\/|$)/ }, async ({ path }) => {
      const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
      const target = config.exports[`.${path.slice("@ptkit/ptkit".length)}`];
      if (typeof target !== "string") return { errors: [{ text: `${path} is not exported` }] };
      return { path: `${ROOT}${target.replace(/^\.\//, "")}` };
    });
  },
};

/**
 * Bundle tests/portable_checks.ts and everything it imports, npm packages
 * included, into one ES module for a browser or for Node.
 */
async function bundle(platform: "browser" | "node"): Promise<string> {
  try {
    const result = await esbuild.build({
      entryPoints: [CHECKS],
      absWorkingDir: ROOT,
      bundle: true,
      write: false,
      format: "esm",
      platform,
      target: platform === "node" ? "node20" : "es2022",
      plugins: [ptkitExports],
      logLevel: "silent",
      ...(platform === "node"
        ? {
          // CommonJS dependencies (libsodium) reach Node's built-ins and
          // their own location through `require` and `__dirname`.
          banner: {
            js: 'import { createRequire } from "node:module";\n' +
              'import { fileURLToPath } from "node:url";\n' +
              "const require = createRequire(import.meta.url);\n" +
              'const __dirname = fileURLToPath(new URL(".", import.meta.url));',
          },
        }
        : {}),
    });
    return result.outputFiles[0]!.text;
  } catch (error) {
    throw new Error(
      `Cannot bundle the transports for ${platform} (after \`deno install\`): ${error}`,
    );
  } finally {
    await esbuild.stop();
  }
}

/** Code with its comments and the text of its strings blanked, lines kept. */
function codeOnly(code: string): string {
  return code.replace(
    /"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\[\s\S]|[^`\\])*`|\/\/[^\n]*|\/\*[\s\S]*?\*\//g,
    (text) => text.replace(/[^\n]/g, " "),
  );
}

/** Lines of `code` that name `Deno` outside comments. */
function denoReferences(code: string): number[] {
  return codeOnly(code).split("\n").flatMap((line, i) => /\bDeno\b/.test(line) ? [i + 1] : []);
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* sources(path);
    else if (/\.[cm]?[jt]sx?$/.test(entry.name)) yield path;
  }
}

Deno.test("no file under transports/ references Deno", async () => {
  // The check itself: it sees a use (a type too) and ignores comments and strings.
  deepStrictEqual(
    denoReferences('// Deno.env\n/* Deno.args */ const a = "Deno.x";\nDeno.env.get("A");\n'),
    [3],
  );
  deepStrictEqual(denoReferences("const t: Deno.Conn = c;\nglobalThis.Deno;"), [1, 2]);
  let files = 0;
  const found: string[] = [];
  for await (const path of sources(`${ROOT}transports`)) {
    files++;
    const lines = denoReferences(await Deno.readTextFile(path));
    for (const line of lines) found.push(`${path.slice(ROOT.length)}:${line}`);
  }
  ok(files > 10, `only ${files} files found under transports/`);
  deepStrictEqual(found, [], "transports/ must run outside Deno");
});

Deno.test("portable checks pass in Deno on the sources", async () => {
  const report = await reference();
  match(report.runtime, /^Deno\//);
  checkReport(report);
});

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>ptkit portable checks</title>
<script type="module">
  const send = (body) => fetch("/result", { method: "POST", body: JSON.stringify(body) });
  try {
    const { runPortableChecks } = await import("/portable_checks.js");
    await send({ report: await runPortableChecks() });
  } catch (error) {
    await send({ error: String(error?.stack ?? error) });
  }
</script>
`;

/** Serve the bundle to headless Chromium and collect the page's report. */
function inChromium(code: string): Promise<PortableReport> {
  return runInChromium<PortableReport>({
    html: PAGE,
    scripts: { "/portable_checks.js": code },
    timeoutMs: RUN_TIMEOUT_MS,
  });
}

/** Run the Node bundle with `node` and read the report it prints. */
async function inNode(code: string): Promise<PortableReport> {
  const node = requireBinary("node", "nodejs");
  const dir = await Deno.makeTempDir({ prefix: "ptkit_node_" });
  try {
    await Deno.writeTextFile(`${dir}/portable_checks.mjs`, code);
    await Deno.writeTextFile(
      `${dir}/run.mjs`,
      'import { runPortableChecks } from "./portable_checks.mjs";\n' +
        "console.log(JSON.stringify({ version: process.version, report: await runPortableChecks() }));\n",
    );
    const output = await new Deno.Command(node, {
      args: [`${dir}/run.mjs`],
      cwd: dir,
      clearEnv: true,
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
    }).output();
    const text = new TextDecoder();
    ok(output.success, `node failed (${output.code}): ${text.decode(output.stderr).slice(-4000)}`);
    const { version, report } = JSON.parse(text.decode(output.stdout));
    const major = Number(/^v(\d+)\./.exec(version)?.[1]);
    ok(major >= 20, `Node ${version} is too old: the transports need Node 20 or later`);
    return report;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("transports bundle runs in headless Chromium: obfs4 vectors, Deno's handshake, 1 MiB each way", async () => {
  const report = await inChromium(await bundle("browser"));
  match(report.runtime, /Chrome\//);
  await checkAgainstDeno(report);
});

Deno.test("transports bundle runs in Node: obfs4 vectors, Deno's handshake, 1 MiB each way", async () => {
  const report = await inNode(await bundle("node"));
  match(report.runtime, /^Node\.js\//);
  await checkAgainstDeno(report);
});
