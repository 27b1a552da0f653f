// Copyright the ptkit authors. MIT license.

// obfs4's spare ephemeral key pairs made in a Web Worker (KeyPairReserve's
// `worker` option): the pairs are good ones, the worker goes with close(),
// and a worker that cannot load leaves the spares to the main thread and
// says why.

import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual } from "node:assert";
import { KeyPairReserve } from "../transports/obfs4/_keypair_reserve.ts";
import { representativeToPublicKey } from "../transports/obfs4/_elligator2.ts";
import { CRYPTO_BACKENDS, eachBackend } from "./crypto_backends.ts";
import type { CryptoBackend } from "../transports/crypto_backend.ts";

const sanitized = { sanitizeOps: true, sanitizeResources: true } as const;

// The native backend dlopens libcrypto once per process: before the
// sanitized tests, which would count it as theirs.
for (const { load } of CRYPTO_BACKENDS) await load();

async function until(what: string, ready: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test({
  name: "KeyPairReserve with a worker fills to its size with good key pairs, on each backend",
  ...sanitized,
  fn: async (t) => {
    await eachBackend(t, async (crypto) => {
      const errors: string[] = [];
      const reserve = new KeyPairReserve(crypto, {
        size: 8,
        worker: true,
        onWorkerError: (reason) => errors.push(reason),
      });
      try {
        // No thread before the first refill (a side that never serves starts none).
        strictEqual(reserve.usesWorker, false);
        reserve.take();
        reserve.refillAfter(60_000);
        await until("the worker's start", () => reserve.usesWorker);
        await until("the worker's spares", () => reserve.spares === 8);
        // Over half full, a handshake's refillAfter sets no timer (one
        // costs the main thread 20-30 us on the path of the answer).
        const setTimer = globalThis.setTimeout;
        let timers = 0;
        globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
          timers++;
          return setTimer(...args);
        }) as typeof setTimeout;
        let first;
        try {
          first = reserve.take();
          reserve.refillAfter(0);
        } finally {
          globalThis.setTimeout = setTimer;
        }
        strictEqual(timers, 0);
        const pairs = [first, ...Array.from({ length: 7 }, () => reserve.take())];
        strictEqual(reserve.spares, 0);
        // Taken below half: refillAfter asks the worker (the delay is for
        // the main-thread path only).
        reserve.refillAfter(60_000);
        await until("the worker's refill", () => reserve.spares === 8);
        for (const [i, pair] of pairs.entries()) {
          deepStrictEqual(representativeToPublicKey(pair.representative), pair.publicKey);
          const other = pairs[(i + 1) % pairs.length]!;
          notDeepStrictEqual(pair.secretKey, other.secretKey);
          // The dirty public key agrees with its secret key under X25519
          // (the low-order part vanishes in a clamped multiplication).
          deepStrictEqual(
            crypto.x25519(pair.secretKey, other.publicKey),
            crypto.x25519(other.secretKey, pair.publicKey),
          );
        }
        deepStrictEqual(errors, []);
      } finally {
        reserve.close();
      }
      strictEqual(reserve.usesWorker, false);
    });
  },
});

Deno.test({
  name:
    "KeyPairReserve: a worker left idle with the reserve full stops (its thread and heap go), and starts again once half the spares are taken",
  ...sanitized,
  fn: async (t) => {
    await eachBackend(t, async (crypto) => {
      const errors: string[] = [];
      const reserve = new KeyPairReserve(crypto, {
        size: 8,
        worker: true,
        workerIdleTimeout: 50,
        onWorkerError: (reason) => errors.push(reason),
      });
      try {
        reserve.take();
        reserve.refillAfter(60_000);
        await until("the worker's start", () => reserve.usesWorker);
        await until("the worker's spares", () => reserve.spares === 8);
        // Nothing taken: an idle bridge keeps its spares, not the worker.
        await until("the idle worker's stop", () => !reserve.usesWorker, 10_000);
        strictEqual(reserve.spares, 8);
        // Above half, the spares it made are handed out; no worker yet.
        const pairs = Array.from({ length: 3 }, () => reserve.take());
        reserve.refillAfter(60_000);
        strictEqual(reserve.usesWorker, false);
        strictEqual(reserve.spares, 5);
        // Down to half: it starts again and fills the reserve.
        pairs.push(reserve.take());
        reserve.refillAfter(60_000);
        await until("the worker's new start", () => reserve.usesWorker);
        await until("the new worker's spares", () => reserve.spares === 8);
        pairs.push(...Array.from({ length: 8 }, () => reserve.take()));
        for (const pair of pairs) {
          deepStrictEqual(representativeToPublicKey(pair.representative), pair.publicKey);
        }
        strictEqual(new Set(pairs.map((pair) => pair.secretKey.join())).size, pairs.length);
        deepStrictEqual(errors, []);
      } finally {
        reserve.close();
      }
    });
  },
});

/** A reserve of 4 on the WebAssembly backend whose worker loads `worker`, and its errors. */
async function reserveLoading(
  worker: { module?: string; load: string },
  workerAnswerTimeout?: number,
): Promise<{ reserve: KeyPairReserve; errors: string[] }> {
  const { loadWasmCrypto } = await import("../transports/crypto_backend.ts");
  const wasm = await loadWasmCrypto();
  const backend: CryptoBackend = {
    ...wasm,
    worker: { module: worker.module ?? wasm.worker!.module, load: worker.load },
  };
  const errors: string[] = [];
  const reserve = new KeyPairReserve(backend, {
    size: 4,
    worker: true,
    ...(workerAnswerTimeout === undefined ? {} : { workerAnswerTimeout }),
    onWorkerError: (reason) => errors.push(reason),
  });
  return { reserve, errors };
}

Deno.test({
  name:
    "KeyPairReserve: a worker that cannot load its backend says why; spares come from the main thread",
  ...sanitized,
  fn: async () => {
    const { reserve, errors } = await reserveLoading({ load: "noSuchLoader" });
    try {
      reserve.take();
      reserve.refillAfter(60_000);
      await until("the worker's failure", () => errors.length > 0);
      ok(errors[0]!.includes("noSuchLoader"), errors[0]);
      strictEqual(reserve.usesWorker, false);
      // The main thread refilled at once (refillAfter(0) on the failure).
      await until("the main thread's refill", () => reserve.spares > 0, 5_000);
      strictEqual(errors.length, 1);
    } finally {
      reserve.close();
    }
  },
});

Deno.test({
  name: "KeyPairReserve: a worker that never answers is given up after its timeout",
  ...sanitized,
  fn: async () => {
    // A backend module whose loading never ends.
    const { reserve, errors } = await reserveLoading(
      { module: "data:text/javascript,await new Promise(() => {});", load: "x" },
      500,
    );
    try {
      reserve.take();
      reserve.refillAfter(60_000);
      await until("the timeout", () => errors.length > 0, 10_000);
      ok(errors[0]!.includes("no answer in 500 ms"), errors[0]);
      strictEqual(reserve.usesWorker, false);
      await until("the main thread's refill", () => reserve.spares > 0, 5_000);
    } finally {
      reserve.close();
    }
  },
});

Deno.test({
  name: "KeyPairReserve: while its worker loads, an empty reserve is refilled on the main thread",
  ...sanitized,
  fn: async () => {
    // A worker still loading (here: never done) answers nothing for a
    // while; handshakes meanwhile must not each make their pair on the
    // path of their answer.
    const { reserve, errors } = await reserveLoading(
      { module: "data:text/javascript,await new Promise(() => {});", load: "x" },
      60_000,
    );
    try {
      reserve.take();
      reserve.refillAfter(10);
      await until("the worker's start", () => reserve.usesWorker);
      // The next handshake's spare, made here while the worker loads.
      await until("the refill after the start", () => reserve.spares === 1, 5_000);
      for (let i = 0; i < 2; i++) {
        reserve.take();
        reserve.refillAfter(10);
        await until("the main thread's refill", () => reserve.spares === 1, 5_000);
      }
      strictEqual(reserve.usesWorker, true, "the worker is still waited for");
      deepStrictEqual(errors, []);
    } finally {
      reserve.close();
    }
  },
});

Deno.test({
  name: "KeyPairReserve: a backend without a worker loader, or given randomness, makes no worker",
  ...sanitized,
  fn: async () => {
    const { loadWasmCrypto } = await import("../transports/crypto_backend.ts");
    const { worker: _, ...withoutWorker } = await loadWasmCrypto();
    const a = new KeyPairReserve(withoutWorker, { worker: true });
    a.take();
    a.refillAfter(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    strictEqual(a.usesWorker, false);
    strictEqual(a.spares, 1, "refilled on this thread");
    a.close();
    let n = 0;
    const b = new KeyPairReserve(await loadWasmCrypto(), {
      worker: true,
      random: (bytes) => bytes.fill(n++ & 0xff),
    });
    b.take();
    b.refillAfter(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    strictEqual(b.usesWorker, false);
    b.close();
  },
});

Deno.test({
  name:
    "obfs4 server side closed while its crypto loads: a connection made before it leaves no worker behind",
  fn: async () => {
    const { obfs4 } = await import("../transports/obfs4/mod.ts");
    const generated = await obfs4.generateConfig!();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./obfs4_side_close_main.ts", import.meta.url).pathname,
        JSON.stringify(generated),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    strictEqual(new TextDecoder().decode(out.stdout), "", stderr);
    strictEqual(out.code, 0, stderr);
  },
});
