/**
 * A wake-up for transfers that wait: an idle interrupt IN waits until a device has something
 * to report, its deadline passes, or the host cancels it (USBIP.md, "Queueing rules").
 *
 * @module
 */

/**
 * Waiters woken all at once.
 *
 * @example
 * ```ts
 * import { Wakeup } from "./wakeup.ts";
 * const w = new Wakeup();
 * const waiting = w.wait(new AbortController().signal);
 * w.wake();
 * console.assert((await waiting) === false);
 * ```
 */
export class Wakeup {
  #waiters = new Set<() => void>();

  /** Wakes every current waiter. */
  wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Waits for {@linkcode Wakeup.wake}, `ms` milliseconds (never, when absent) or the abort of
   * `signal`; resolves `true` for the abort. Leaves no listener or timer behind.
   */
  wait(signal: AbortSignal, ms?: number): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (aborted: boolean) => {
        this.#waiters.delete(wake);
        signal.removeEventListener("abort", onAbort);
        if (timer !== undefined) clearTimeout(timer);
        resolve(aborted);
      };
      const wake = () => finish(false);
      const onAbort = () => finish(true);
      this.#waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
      if (ms !== undefined) timer = setTimeout(wake, ms);
    });
  }
}
