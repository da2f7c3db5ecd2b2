/**
 * SIGINT and SIGTERM, the signals that stop a command that stays in the foreground (`serve`,
 * `attach --persist`, the relay of `attach --tls`, `tunnel`), handled the same way everywhere.
 *
 * @module
 */

/** The signals that stop a foreground command. */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** One of {@linkcode STOP_SIGNALS}. */
export type StopSignal = typeof STOP_SIGNALS[number];

/**
 * Calls `handler` with the signal each time SIGINT or SIGTERM arrives, until the returned
 * function is called (it removes the listeners; calling it twice is harmless).
 */
export function onStopSignals(handler: (signal: StopSignal) => void): () => void {
  const handlers = STOP_SIGNALS.map((s) => [s, () => handler(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  let removed = false;
  return () => {
    if (removed) return;
    removed = true;
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  };
}
