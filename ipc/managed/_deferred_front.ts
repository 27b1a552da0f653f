// Copyright the ptkit authors. MIT license.
// Internal: a listener bound before the modules that serve it have loaded
// (the managed client's SOCKS front ends under tor: CMETHOD and CMETHODS
// DONE go out first, and the kernel's backlog holds tor's connections until
// the front end accepts).

import type { RunningProxy } from "./runner.ts";

/** A bound listener whose server starts later, or never when stopped first. */
export class DeferredFront implements RunningProxy {
  #listener: Deno.Listener;
  #start: () => RunningProxy;
  #running: RunningProxy | undefined;
  #stopped = false;

  /**
   * @param listener The bound listener, which the server takes over.
   * @param start Makes the server once its modules have loaded.
   */
  constructor(listener: Deno.Listener, start: () => RunningProxy) {
    this.#listener = listener;
    this.#start = start;
  }

  /** Start serving, unless drained or closed already. */
  start(): void {
    if (this.#stopped || this.#running !== undefined) return;
    try {
      this.#running = this.#start();
    } catch (error) {
      this.fail();
      throw error;
    }
  }

  /** It cannot be served: close the listener (its connections are refused). */
  fail(): void {
    this.#stopped = true;
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
  }

  drain(): Promise<void> {
    if (this.#running !== undefined) return this.#running.drain();
    // Nothing accepted yet: nothing to wait for.
    this.fail();
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.#running !== undefined) return this.#running.close();
    this.fail();
    return Promise.resolve();
  }
}
