// Copyright the ptkit authors. MIT license.

// Internal: what an accept error means and how errors are reported without
// flooding, apart from the accept loop itself (the managed proxy's logging
// needs these before any listener serves).

/**
 * Called when accepting failed or a connection was refused by a limit: at
 * once for the first error of a kind, then at most once every 10 s with the
 * number of errors of that kind since (so a flood gives a few lines, not one
 * per connection). Messages hold no address.
 */
export type AcceptErrorHandler = (error: Error, count: number) => void;

/**
 * Connections a listener closed for one of its limits after accepting them
 * (a source's handshake evicted to make room, a reported client over its
 * limit). The listener reports those through `onAcceptError`; whoever
 * serves the connection does not report the close again as a failure.
 */
export const closedForLimit: WeakSet<object> = new WeakSet();

/** How long errors of one kind are counted before they are reported again, in ms. */
const DIGEST_INTERVAL = 10_000;

/** Errors that mean the process or the system ran out of something: back off. */
const EXHAUSTION = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Errors that concern one connection only (it was reset, aborted, refused by a firewall...). */
const PER_CONNECTION = new Set([
  "ECONNABORTED",
  "ECONNRESET",
  "ENOTCONN",
  "EPROTO",
  "EPERM",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENONET",
  "ENOPROTOOPT",
  "EOPNOTSUPP",
  "EAGAIN",
  "EWOULDBLOCK",
  "EINTR",
]);

/**
 * A connection a listener accepted but could not give its transport: the
 * server side's `pair()` threw, or returned no pair. It is the transport's
 * (or its configuration's) fault, not the network's: reported to
 * `onAcceptError` with the transport named, and logged by the managed proxy
 * as a warning. The original error is the `cause`.
 */
export class TransportPairError extends Error {
  /**
   * @param transport The transport's name.
   * @param cause What `pair()` threw (or the check of what it returned).
   */
  constructor(transport: string, cause: unknown) {
    const text = cause instanceof Error ? cause.message : String(cause);
    // The check of a returned pair names the transport already.
    super(
      text.startsWith(`Cannot make a '${transport}' connection:`)
        ? text
        : `Cannot make a '${transport}' connection: pair() threw: ${text}`,
      { cause },
    );
    this.name = "TransportPairError";
  }
}

/**
 * What to do after an accept error: `"closed"` (the listener is closed:
 * stop), `"exhausted"` (out of descriptors, buffers or memory: back off),
 * `"connection"` (one connection failed: accept the next at once) or
 * `"unknown"`.
 */
export function acceptErrorKind(error: unknown): "closed" | "exhausted" | "connection" | "unknown" {
  if (error instanceof Deno.errors.BadResource) return "closed";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    if (EXHAUSTION.has(code)) return "exhausted";
    if (PER_CONNECTION.has(code)) return "connection";
  }
  if (
    error instanceof Deno.errors.NotConnected || error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.TimedOut || error instanceof Deno.errors.PermissionDenied
  ) {
    return "connection";
  }
  return "unknown";
}

/**
 * Reports an application's callback that threw, on the console, the first
 * time only: the server goes on (a callback is a log, not a part of the
 * service), but the fault does not go unseen. The thrown value is the
 * application's own; the message adds only the callback's name.
 *
 * @param callback The callback, for the message (`"proxy() onError"`).
 * @returns What to call with each value the callback threw.
 */
export function callbackThrew(callback: string): (thrown: unknown) => void {
  let reported = false;
  return (thrown) => {
    if (reported) return;
    reported = true;
    try {
      console.error(
        `The ${callback} callback threw; the server goes on, and later throws are not reported:`,
        thrown,
      );
    } catch {
      // A console that fails has nowhere to report to.
    }
  };
}

/**
 * An application's callback that cannot throw into the caller: a throw is
 * reported once, as {@linkcode callbackThrew} does, and the caller goes on.
 *
 * @param callback The application's callback, if any.
 * @param name The callback, for the message (`"serveUdpClient() onError"`).
 * @returns The guarded callback, or `undefined` when none was given.
 */
export function guardCallback<A extends unknown[]>(
  callback: ((...args: A) => void) | undefined,
  name: string,
): ((...args: A) => void) | undefined {
  if (callback === undefined) return undefined;
  const threw = callbackThrew(name);
  return (...args) => {
    try {
      callback(...args);
    } catch (thrown) {
      threw(thrown);
    }
  };
}

/**
 * Reports errors without flooding: the first `burst` of a kind at once, then
 * the count of that kind once per interval (10 s) while they keep coming.
 */
export class ErrorDigest {
  #report: AcceptErrorHandler;
  #burst: number;
  #kinds = new Map<string, { error: Error; count: number; passed: number }>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Told what `report` threw (the first time, on the console). */
  #threw = callbackThrew("onAcceptError");

  /**
   * @param report Where reports go; what it throws is reported once, on the console.
   * @param burst How many errors of a kind are reported one by one per interval.
   */
  constructor(report: AcceptErrorHandler, burst = 1) {
    this.#report = report;
    this.#burst = burst;
  }

  /** Count one error of `kind`. */
  add(kind: string, error: Error): void {
    const seen = this.#kinds.get(kind);
    if (seen === undefined) {
      this.#kinds.set(kind, { error, count: 0, passed: 1 });
      this.#emit(error, 1);
      if (this.#timer === undefined) this.#schedule();
    } else if (seen.passed < this.#burst) {
      seen.passed++;
      this.#emit(error, 1);
    } else {
      seen.error = error;
      seen.count++;
    }
  }

  /** Report what is still counted and stop. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const { error, count } of this.#kinds.values()) if (count > 0) this.#emit(error, count);
    this.#kinds.clear();
  }

  #tick(): void {
    this.#timer = undefined;
    for (const [kind, seen] of this.#kinds) {
      if (seen.count === 0) {
        this.#kinds.delete(kind);
        continue;
      }
      this.#emit(seen.error, seen.count);
      seen.count = 0;
      seen.passed = 0;
    }
    if (this.#kinds.size > 0) this.#schedule();
  }

  #schedule(): void {
    const timer = setTimeout(() => this.#tick(), DIGEST_INTERVAL);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #emit(error: Error, count: number): void {
    try {
      this.#report(error, count);
    } catch (thrown) {
      // A failing log must not end the loop, nor go unseen.
      this.#threw(thrown);
    }
  }
}
