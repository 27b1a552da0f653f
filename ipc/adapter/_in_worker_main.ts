// Copyright the ptkit authors. MIT license.
// The Worker side of the in-process front end (seed 4.3): runs the managed
// proxy with the parent's arguments and environment, and sends every line it
// would print to the parent as a message instead. Loaded by in_worker.ts.

import { runManagedProxy } from "../managed/managed_proxy.ts";

/** Parent to worker. */
export type ToWorker =
  | { type: "start"; args: string[]; env: Record<string, string> }
  | { type: "stop" }
  | { type: "stdin"; text: string };

/** Worker to parent. */
export type FromWorker =
  | { type: "stdout" | "stderr"; text: string }
  | { type: "exit"; code: number }
  | { type: "crash"; message: string };

/** The worker's global scope, as far as this module uses it. */
const scope = globalThis as unknown as {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};
const stop = new AbortController();
const send = (message: FromWorker) => scope.postMessage(message);
let input!: ReadableStreamDefaultController<Uint8Array>;
const stdin = new ReadableStream<Uint8Array>({ start: (controller) => input = controller });

scope.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "stop") {
    stop.abort();
    return;
  }
  if (message.type === "stdin") {
    input.enqueue(new TextEncoder().encode(message.text));
    return;
  }
  runManagedProxy({
    args: message.args,
    getEnv: (name) => message.env[name],
    stdout: (text) => send({ type: "stdout", text }),
    stderr: (text) => send({ type: "stderr", text }),
    signal: stop.signal,
    process: false,
    stdin,
  }).then(
    (code) => send({ type: "exit", code }),
    (error) =>
      send({ type: "crash", message: error instanceof Error ? error.message : String(error) }),
  );
};
