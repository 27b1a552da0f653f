// Copyright the ptkit authors. MIT license.
// Internal: the loopback relay a server's helper process (sshd) forwards to.
// Not part of the public API.

import { relaySources } from "./_client_source.ts";

interface Queued {
  readonly conn?: Deno.TcpConn;
  readonly error?: unknown;
  readonly taken: () => void;
}

/**
 * The relay a server helper forwards to: a listener on `127.0.0.1` and, on
 * the same port, one on each loopback address the helper asked for with
 * {@linkcode RelayListener.listenOn} (sshd's `permitopen` gives each client
 * key its own). A connection accepted on one of those counts, in the
 * per-source limits, against that address: every tunnel reaches the relay
 * from 127.0.0.1, and without it one client's channels would use up every
 * other client's share.
 *
 * Each listener accepts one connection at a time and waits until
 * {@linkcode RelayListener.accept} took it (or the error it met, so that
 * the caller's back-off applies), so nothing queues here.
 */
export class RelayListener implements Deno.Listener<Deno.TcpConn, Deno.NetAddr> {
  #base: Deno.TcpListener;
  #hosts = new Map<string, Deno.TcpListener>();
  #queue: Queued[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  #unref = false;

  /**
   * Listen on `127.0.0.1`, on `preferred` when it is free (the port of an
   * earlier run), else on any port.
   */
  constructor(preferred: number | undefined) {
    let base: Deno.TcpListener | undefined;
    if (preferred !== undefined && preferred > 0) {
      try {
        base = Deno.listen({ hostname: "127.0.0.1", port: preferred, transport: "tcp" });
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse)) throw error;
      }
    }
    this.#base = base ?? Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
    this.#run(this.#base, false);
  }

  get addr(): Deno.NetAddr {
    return this.#base.addr;
  }

  /**
   * Listen on the relay's port at these loopback addresses too (those
   * already listened on stay). An address that cannot be listened on is
   * skipped and its error returned.
   *
   * @returns The errors met, one per address skipped.
   */
  listenOn(hostnames: readonly string[]): Error[] {
    const errors: Error[] = [];
    for (const hostname of hostnames) {
      if (this.#closed || this.#hosts.has(hostname)) continue;
      try {
        const listener = Deno.listen({ hostname, port: this.addr.port, transport: "tcp" });
        if (this.#unref) listener.unref();
        this.#hosts.set(hostname, listener);
        this.#run(listener, true);
      } catch (error) {
        errors.push(error instanceof Error ? error : new Error(String(error)));
      }
    }
    return errors;
  }

  async #run(listener: Deno.TcpListener, keyed: boolean): Promise<void> {
    while (!this.#closed) {
      let item: Omit<Queued, "taken">;
      try {
        const conn = await listener.accept();
        if (this.#closed) {
          // Accepted as the relay closed: nothing would take it.
          conn.close();
          return;
        }
        // The address it was reached at identifies the client key.
        if (keyed) relaySources.set(conn, conn.localAddr);
        item = { conn };
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        item = { error };
      }
      const taken = Promise.withResolvers<void>();
      this.#queue.push({ ...item, taken: taken.resolve });
      this.#waiters.shift()?.();
      await taken.promise;
    }
  }

  async accept(): Promise<Deno.TcpConn> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.BadResource("Listener has been closed");
      const item = this.#queue.shift();
      if (item !== undefined) {
        item.taken();
        if (item.conn === undefined) throw item.error;
        return item.conn;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const listener of [this.#base, ...this.#hosts.values()]) {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
    }
    for (const item of this.#queue.splice(0)) {
      try {
        item.conn?.close();
      } catch {
        // Already closed.
      }
      item.taken();
    }
    for (const wake of this.#waiters.splice(0)) wake();
  }

  ref(): void {
    this.#unref = false;
    this.#base.ref();
    for (const listener of this.#hosts.values()) listener.ref();
  }

  unref(): void {
    this.#unref = true;
    this.#base.unref();
    for (const listener of this.#hosts.values()) listener.unref();
  }

  async *[Symbol.asyncIterator](): AsyncIterableIterator<Deno.TcpConn> {
    while (!this.#closed) {
      try {
        yield await this.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        throw error;
      }
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
