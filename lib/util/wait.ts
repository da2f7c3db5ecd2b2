/**
 * Waiting for "something happened, time ran out, or the wait was cancelled", written once.
 * A wait ends exactly once and, however it ends, leaves no abort listener, waiter or timer
 * behind: an `AbortSignal` keeps every listener added to it until it is removed or, with
 * `once`, until it runs (DOM Standard, EventTarget and AbortSignal:
 * https://dom.spec.whatwg.org/#interface-eventtarget,
 * https://dom.spec.whatwg.org/#interface-abortsignal), so a long-lived signal that is waited
 * on many times would otherwise collect one listener per wait. No imports: devices, back-ends
 * and the client may all use it.
 *
 * @module
 */

/** How a wait ended: woken by its event, its time ran out, or a signal aborted. */
export type WaitOutcome = "woken" | "timeout" | "aborted";

/** What cancels a wait: one signal, several (any of them), or nothing. */
export type Cancellation = AbortSignal | readonly AbortSignal[] | undefined;

/**
 * Registers a waiter: calls `wake` when the awaited thing happens (at most once matters) and
 * returns a function that unregisters it, or nothing if there is nothing to undo.
 */
export type Register = (wake: () => void) => (() => void) | void;

function signalsOf(signal: Cancellation): readonly AbortSignal[] {
  if (signal === undefined) return [];
  return signal instanceof AbortSignal ? [signal] : signal;
}

/**
 * Waits until `register`'s `wake` is called ("woken"), `timeoutMs` milliseconds pass
 * ("timeout"; never when absent or `Infinity`) or a signal of `signal` aborts ("aborted").
 * An already-aborted signal ends the wait at once without calling `register`; `wake` called
 * during `register` ends it as "woken". On every outcome the abort listeners are removed,
 * the timer is cleared and the unregister function `register` returned is called. If
 * `register` throws, the promise rejects with its error and nothing stays registered.
 *
 * @example Data or cancellation
 * ```ts
 * import { waitFor } from "./wait.ts";
 * const waiters = new Set<() => void>();
 * const controller = new AbortController();
 * const waiting = waitFor((wake) => {
 *   waiters.add(wake);
 *   return () => waiters.delete(wake);
 * }, controller.signal);
 * for (const w of waiters) w(); // the data came first
 * console.assert((await waiting) === "woken" && waiters.size === 0);
 * ```
 */
export function waitFor(
  register: Register,
  signal?: Cancellation,
  timeoutMs?: number,
): Promise<WaitOutcome> {
  const signals = signalsOf(signal);
  if (signals.some((s) => s.aborted)) return Promise.resolve("aborted");
  return new Promise((resolve) => {
    let done = false;
    let unregister: (() => void) | void = undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (outcome: WaitOutcome) => {
      if (done) return;
      done = true;
      for (const s of signals) s.removeEventListener("abort", onAbort);
      if (timer !== undefined) clearTimeout(timer);
      unregister?.();
      resolve(outcome);
    };
    const onAbort = () => finish("aborted");
    unregister = register(() => finish("woken"));
    if (done) {
      // Woken during `register`: nothing was added yet, only undo the registration.
      unregister?.();
      return;
    }
    for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined && timeoutMs !== Infinity) {
      timer = setTimeout(() => finish("timeout"), Math.max(0, timeoutMs));
    }
  });
}

/**
 * Waits `ms` milliseconds or until a signal of `signal` aborts, whichever comes first; an
 * already-aborted signal resolves at once. Leaves no timer or listener behind.
 *
 * @example A retry delay that a stop cuts short
 * ```ts
 * import { sleep } from "./wait.ts";
 * const stop = new AbortController();
 * const slept = sleep(60_000, stop.signal);
 * stop.abort();
 * console.assert((await slept) === "aborted");
 * ```
 */
export function sleep(ms: number, signal?: Cancellation): Promise<"timeout" | "aborted"> {
  return waitFor(() => {}, signal, ms) as Promise<"timeout" | "aborted">;
}

/**
 * Waiters woken all at once: each {@linkcode Notifier.notify} ends every current
 * {@linkcode Notifier.wait} as "woken", and the waiters check their own condition again.
 *
 * @example A transfer waiting for data or its cancellation
 * ```ts
 * import { Notifier } from "./wait.ts";
 * const changed = new Notifier();
 * const controller = new AbortController();
 * const waiting = changed.wait(controller.signal);
 * changed.notify();
 * console.assert((await waiting) === "woken" && changed.waiting === 0);
 * console.assert((await changed.wait(AbortSignal.abort())) === "aborted");
 * ```
 */
export class Notifier {
  #waiters = new Set<() => void>();
  #listeners = new Set<() => void>();

  /** How many waits are pending now. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Wakes every current waiter (waits that begin during the call are not woken) and calls
   * every listener.
   */
  notify(): void {
    for (const w of [...this.#waiters]) w();
    for (const l of [...this.#listeners]) l();
  }

  /** Calls `listener` at every {@linkcode Notifier.notify} until the returned function is called. */
  listen(listener: () => void): () => void {
    const l = () => listener();
    this.#listeners.add(l);
    return () => void this.#listeners.delete(l);
  }

  /**
   * Waits for the next {@linkcode Notifier.notify}, `timeoutMs` milliseconds (never when
   * absent) or the abort of a signal of `signal`; see {@linkcode waitFor}.
   */
  wait(signal?: Cancellation, timeoutMs?: number): Promise<WaitOutcome> {
    return waitFor(
      (wake) => {
        this.#waiters.add(wake);
        return () => this.#waiters.delete(wake);
      },
      signal,
      timeoutMs,
    );
  }
}
