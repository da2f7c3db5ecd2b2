// Counting what a wait leaves behind. A real AbortSignal whose "abort" listeners are counted
// through wrappers of its own addEventListener and removeEventListener: an EventTarget keeps a
// listener until it is removed or, added with `once`, until it has run
// (https://dom.spec.whatwg.org/#interface-eventtarget). And the timers setTimeout left pending.

/** An AbortController whose signal reports how many "abort" listeners it holds. */
export interface CountedAbort {
  controller: AbortController;
  signal: AbortSignal;
  /** "abort" listeners the signal holds now. */
  readonly live: number;
  /** The most it held at one time. */
  readonly peak: number;
  /** addEventListener("abort") calls so far. */
  readonly added: number;
}

/** A fresh controller whose signal counts its "abort" listeners. */
export function countedAbort(): CountedAbort {
  const controller = new AbortController();
  const signal = controller.signal;
  /** Listener to whether it was added with `once` (the dispatch drops those by itself). */
  const listeners = new Map<EventListenerOrEventListenerObject, boolean>();
  let peak = 0;
  let added = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  Object.defineProperty(signal, "addEventListener", {
    value: (
      type: string,
      l: EventListenerOrEventListenerObject,
      o?: boolean | AddEventListenerOptions,
    ) => {
      if (type === "abort" && !listeners.has(l)) {
        added++;
        listeners.set(l, typeof o === "object" && o.once === true);
        peak = Math.max(peak, listeners.size);
      }
      add(type, l, o);
    },
  });
  Object.defineProperty(signal, "removeEventListener", {
    value: (
      type: string,
      l: EventListenerOrEventListenerObject,
      o?: boolean | EventListenerOptions,
    ) => {
      if (type === "abort") listeners.delete(l);
      remove(type, l, o);
    },
  });
  return {
    controller,
    signal,
    get live() {
      if (!signal.aborted) return listeners.size;
      return [...listeners.values()].filter((once) => !once).length;
    },
    get peak() {
      return peak;
    },
    get added() {
      return added;
    },
  };
}

/** Counts the timers `setTimeout` made that have neither run nor been cleared. */
export interface CountedTimers extends Disposable {
  /** Timers pending now. */
  readonly pending: number;
  /** setTimeout calls so far. */
  readonly started: number;
}

/**
 * Wraps the global setTimeout and clearTimeout until disposed, to count pending timers (test
 * sanitizers do not report a timer left pending); `using timers = countTimers();`.
 */
export function countTimers(): CountedTimers {
  const { setTimeout: set, clearTimeout: clear } = globalThis;
  const pending = new Set<unknown>();
  let started = 0;
  globalThis.setTimeout = ((f: () => void, ms?: number) => {
    started++;
    const id = set(() => {
      pending.delete(id);
      f();
    }, ms);
    pending.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id: Parameters<typeof clearTimeout>[0]) => {
    pending.delete(id);
    clear(id);
  }) as typeof clearTimeout;
  return {
    get pending() {
      return pending.size;
    },
    get started() {
      return started;
    },
    [Symbol.dispose]() {
      globalThis.setTimeout = set;
      globalThis.clearTimeout = clear;
    },
  };
}
