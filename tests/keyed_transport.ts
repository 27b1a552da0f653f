// Copyright the ptkit authors. MIT license.
// A test transport that needs both `local` and `signals` (like PT 2.0 draft 1's
// SSH example): the client keeps a random key in `local`, sends its 16-byte
// key id to the server's operator through `signals` when it makes the key,
// and starts every connection with that id; the server keeps an allow-list
// in `local`, adds ids that arrive on `signals`, and fails the handshake of
// an unknown id. No secrecy: it only shows the plumbing works.

import type {
  LocalStore,
  SignalPipe,
  Transport,
  TransportEnvironment,
  TransportPair,
} from "../transports/transport.ts";

const ID_BYTES = 16;
const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text: string) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));

function needs(env: TransportEnvironment | undefined): { local: LocalStore; signals: SignalPipe } {
  if (env?.local === undefined || env.signals === undefined) {
    throw new TypeError("Cannot configure transport 'keyed': it needs local and signals");
  }
  return { local: env.local, signals: env.signals };
}

/** The key id of a key: the first 16 bytes of its SHA-256. */
export async function keyId(key: Uint8Array): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest("SHA-256", key as Uint8Array<ArrayBuffer>);
  return new Uint8Array(digest).subarray(0, ID_BYTES);
}

/** The `keyed` test transport. */
export const keyed: Transport = {
  name: "keyed",
  async client(_config, env) {
    const { local, signals } = needs(env);
    const stored = await local.get("keyed_client.json");
    let key: Uint8Array;
    if (stored === undefined) {
      key = crypto.getRandomValues(new Uint8Array(32));
      await local.set("keyed_client.json", JSON.stringify({ key: hex(key) }));
      const writer = signals.writable.getWriter();
      await writer.write(await keyId(key));
      writer.releaseLock();
    } else {
      key = unhex((JSON.parse(stored) as { key: string }).key);
    }
    const id = await keyId(key);
    return {
      pair: (): TransportPair => ({
        encode: new TransformStream({ start: (controller) => controller.enqueue(id.slice()) }),
        decode: new TransformStream(),
      }),
    };
  },
  async server(_config, env) {
    const { local, signals } = needs(env);
    const allowed = new Set<string>(
      JSON.parse(await local.get("keyed_server.json") ?? "[]") as string[],
    );
    (async () => {
      for await (const message of signals.readable) {
        if (message.length !== ID_BYTES || allowed.has(hex(message))) continue;
        allowed.add(hex(message));
        await local.set("keyed_server.json", JSON.stringify([...allowed]));
      }
    })().catch(() => {});
    return {
      clientOptions: {},
      pair(): TransportPair {
        let resolve!: () => void;
        let reject!: (error: Error) => void;
        const ready = new Promise<void>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        ready.catch(() => {});
        let head = new Uint8Array(0);
        let checked = false;
        const decode = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            if (checked) return controller.enqueue(chunk);
            const joined = new Uint8Array(head.length + chunk.length);
            joined.set(head);
            joined.set(chunk, head.length);
            if (joined.length < ID_BYTES) {
              head = joined;
              return;
            }
            const id = hex(joined.subarray(0, ID_BYTES));
            if (!allowed.has(id)) {
              const error = new Error("Transport 'keyed': unknown key id");
              reject(error);
              controller.error(error);
              return;
            }
            checked = true;
            resolve();
            if (joined.length > ID_BYTES) controller.enqueue(joined.slice(ID_BYTES));
          },
          flush() {
            if (!checked) {
              reject(new Error("Transport 'keyed': connection ended before the key id"));
            }
          },
        });
        return { encode: new TransformStream(), decode, ready };
      },
    };
  },
};
