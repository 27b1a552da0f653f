// Copyright the ptkit authors. MIT license.
// Real nginx (Debian `nginx`) in front of a WebTunnel server, with a TLS
// certificate made at test time by openssl (Debian `openssl`): a small CA
// and a leaf for localhost and 127.0.0.1 signed by it (rustls refuses a
// self-signed CA certificate as a server's).

import { requireBinary } from "./ipc_util.ts";
import { freePort } from "./tor_util.ts";

/** A test CA and a server certificate it signed. */
export interface TestCertificate {
  /** The CA certificate, PEM (what clients trust). */
  readonly caPem: string;
  /** Path of the CA certificate file (for `DENO_CERT`, `curl --cacert`). */
  readonly caFile: string;
  /** Path of the server certificate (leaf then CA). */
  readonly certFile: string;
  /** Path of the server's private key. */
  readonly keyFile: string;
}

async function run(binary: string, args: string[], cwd: string): Promise<void> {
  const { code, stderr } = await new Deno.Command(binary, {
    args,
    cwd,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`${binary} ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
  }
}

/** Make a CA and a certificate for localhost / 127.0.0.1 in `dir`. */
export async function makeCertificate(dir: string): Promise<TestCertificate> {
  const openssl = requireBinary("openssl", "openssl");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run(openssl, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=ptkit test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  await run(openssl, [
    "req",
    ...ec,
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
      "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
  );
  await run(openssl, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "server.ext",
    "-out",
    "server.pem",
  ], dir);
  const caPem = await Deno.readTextFile(`${dir}/ca.pem`);
  await Deno.writeTextFile(
    `${dir}/chain.pem`,
    (await Deno.readTextFile(`${dir}/server.pem`)) + caPem,
  );
  return {
    caPem,
    caFile: `${dir}/ca.pem`,
    certFile: `${dir}/chain.pem`,
    keyFile: `${dir}/server.key`,
  };
}

/** Options for {@linkcode Nginx.start}. */
export interface NginxOptions {
  /** A directory nginx may use (made world-readable: workers run as nobody under root). */
  readonly dir: string;
  /** The certificate nginx serves. */
  readonly certificate: TestCertificate;
  /** The secret path (with its leading `/`) forwarded to the WebTunnel server. */
  readonly secretPath: string;
  /** The WebTunnel server's port. */
  readonly backendPort: number;
  /** The WebTunnel server's address. Defaults to 127.0.0.1. */
  readonly backendHost?: string;
  /** Source address of nginx's connections to the backend. Defaults to the kernel's choice. */
  readonly proxyBind?: string;
  /** Extra files served from the site root, by name. */
  readonly files?: Readonly<Record<string, Uint8Array>>;
}

/** The README's secret path and WebTunnel server address, replaced in its nginx blocks. */
const README_PATH = "/6d0c2f8a3b1e4f5a9c7d";
const README_BACKEND = "http://127.0.0.1:15000;";

/**
 * The `location` blocks of README.md's "Running a WebTunnel bridge" nginx
 * configuration, as an operator copies them, with this test's secret path
 * and backend port (and `proxy_bind`): the tests run the documented setup.
 */
async function readmeLocations(options: NginxOptions): Promise<string> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const start = readme.indexOf(`\n    location = ${README_PATH} {\n`);
  if (start < 0) throw new Error("README.md has no WebTunnel nginx location block");
  const lines: string[] = [];
  for (const line of readme.slice(start + 1).split("\n")) {
    if (!line.startsWith("    ")) break;
    lines.push(line.slice(4));
  }
  const text = lines.join("\n");
  if (!text.includes(README_BACKEND)) throw new Error("README.md's nginx block has no proxy_pass");
  const bind = options.proxyBind === undefined ? "" : `\n        proxy_bind ${options.proxyBind};`;
  return text.replace(`location = ${README_PATH} {`, `location = ${options.secretPath} {`)
    .replace(
      README_BACKEND,
      `http://${options.backendHost ?? "127.0.0.1"}:${options.backendPort};${bind}`,
    );
}

/** The cover page nginx serves on `/`. */
export const COVER_PAGE = "<!doctype html><title>Recipes</title><h1>Grandma's recipes</h1>\n";

/** nginx on a free loopback port, TLS, cover site, secret path to the backend. */
export class Nginx implements AsyncDisposable {
  readonly port: number;
  readonly dir: string;
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;

  private constructor(port: number, dir: string, child: Deno.ChildProcess) {
    this.port = port;
    this.dir = dir;
    this.#child = child;
    this.#status = child.status;
  }

  /** Write the configuration and start nginx; resolves once it listens. */
  static async start(options: NginxOptions): Promise<Nginx> {
    const nginx = requireBinary("nginx", "nginx");
    const { dir, certificate } = options;
    const www = `${dir}/www`;
    await Deno.mkdir(www, { recursive: true });
    await Deno.writeTextFile(`${www}/index.html`, COVER_PAGE);
    for (const [name, bytes] of Object.entries(options.files ?? {})) {
      await Deno.writeFile(`${www}/${name}`, bytes);
    }
    // Workers run as nobody when nginx starts as root: let them read the site.
    for (const path of [dir, www]) await Deno.chmod(path, 0o755);
    for await (const entry of Deno.readDir(www)) await Deno.chmod(`${www}/${entry.name}`, 0o644);
    const port = freePort();
    const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
      .map((kind) => `  ${kind}_temp_path ${dir}/${kind}_temp;`).join("\n");
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 1024; }
http {
  access_log off;
${temp}
  sendfile on;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${certificate.certFile};
    ssl_certificate_key ${certificate.keyFile};
    root ${www};
    location / {
      index index.html;
    }
${await readmeLocations(options)}
  }
}
`,
    );
    const child = new Deno.Command(nginx, {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const server = new Nginx(port, dir, child);
    for (let i = 0; i < 500; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return server;
      } catch {
        const exited = await Promise.race([
          server.#status.then(() => true),
          new Promise<false>((r) => setTimeout(() => r(false), 20)),
        ]);
        if (exited) {
          const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
          throw new Error(`nginx exited at start: ${await stderr}\n${log}`);
        }
      }
    }
    await server[Symbol.asyncDispose]();
    throw new Error("nginx did not listen within 10 s");
  }

  /** nginx's error log so far. */
  errorLog(): Promise<string> {
    return Deno.readTextFile(`${this.dir}/error.log`).catch(() => "");
  }

  /** Stop nginx and wait for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.#status;
  }
}
