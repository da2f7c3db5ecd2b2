// Tests of the one "event, timeout or cancellation" wait: every outcome, and that none leaves
// an abort listener, a waiter or a timer behind.
import { assertEquals, assertRejects } from "@std/assert";
import { Notifier, sleep, waitFor } from "../../lib/util/wait.ts";
import { countedAbort, countTimers } from "./_listeners.ts";

/** A register function over a set of waiters, with `wake()` to wake them all. */
function waiters() {
  const set = new Set<() => void>();
  let unregistered = 0;
  return {
    set,
    get unregistered() {
      return unregistered;
    },
    register: (wake: () => void) => {
      set.add(wake);
      return () => {
        unregistered++;
        set.delete(wake);
      };
    },
    wake: () => {
      for (const w of [...set]) w();
    },
  };
}

/** A register function that wakes at once, counting its unregister calls. */
function wakesAtOnce() {
  const counts = { unregistered: 0 };
  const register = (wake: () => void) => {
    wake();
    return () => void counts.unregistered++;
  };
  return { counts, register };
}

function throwing(): never {
  throw new RangeError("no");
}

Deno.test("waitFor: the event first ends it as woken, removing listener, waiter and timer", async () => {
  using timers = countTimers();
  const w = waiters();
  const a = countedAbort();
  const waiting = waitFor(w.register, a.signal, 60_000);
  assertEquals([a.live, w.set.size, timers.pending], [1, 1, 1]);
  w.wake();
  w.wake(); // a second wake changes nothing
  assertEquals(await waiting, "woken");
  assertEquals([a.live, w.set.size, w.unregistered, timers.pending], [0, 0, 1, 0]);
});

Deno.test("waitFor: an abort first ends it as aborted and unregisters the waiter", async () => {
  using timers = countTimers();
  const w = waiters();
  const a = countedAbort();
  const waiting = waitFor(w.register, a.signal, 60_000);
  a.controller.abort();
  w.wake(); // too late: the waiter is gone already
  assertEquals(await waiting, "aborted");
  assertEquals([a.live, w.set.size, w.unregistered, timers.pending], [0, 0, 1, 0]);
});

Deno.test("waitFor: an already-aborted signal ends it at once without registering", async () => {
  using timers = countTimers();
  const w = waiters();
  const a = countedAbort();
  a.controller.abort();
  assertEquals(await waitFor(w.register, a.signal, 60_000), "aborted");
  assertEquals([w.unregistered, a.added, timers.started], [0, 0, 0]);
  const other = new AbortController().signal;
  assertEquals(await waitFor(w.register, [other, AbortSignal.abort()]), "aborted");
  assertEquals(w.set.size, 0);
});

Deno.test("waitFor: the time running out ends it as timeout; 0 waits for the next timer turn", async () => {
  using timers = countTimers();
  const w = waiters();
  const a = countedAbort();
  assertEquals(await waitFor(w.register, a.signal, 5), "timeout");
  assertEquals([a.live, w.set.size, w.unregistered, timers.pending], [0, 0, 1, 0]);
  const zero = waitFor(w.register, a.signal, 0);
  assertEquals(w.set.size, 1);
  assertEquals(await zero, "timeout");
  assertEquals([a.live, w.set.size, timers.pending], [0, 0, 0]);
});

Deno.test("waitFor: without a signal or a time it waits only for the event", async () => {
  using timers = countTimers();
  const w = waiters();
  const waiting = waitFor(w.register, undefined, Infinity);
  assertEquals(timers.started, 0);
  w.wake();
  assertEquals(await waiting, "woken");
  assertEquals(w.set.size, 0);
});

Deno.test("waitFor: a wake during register ends it as woken and adds nothing", async () => {
  using timers = countTimers();
  const a = countedAbort();
  const { counts, register } = wakesAtOnce();
  assertEquals(await waitFor(register, a.signal, 60_000), "woken");
  assertEquals([a.added, counts.unregistered, timers.started], [0, 1, 0]);
});

Deno.test("waitFor: a register that throws rejects and leaves nothing registered", async () => {
  using timers = countTimers();
  const a = countedAbort();
  await assertRejects(() => waitFor(throwing, a.signal, 60_000), RangeError, "no");
  assertEquals([a.added, timers.started], [0, 0]);
});

Deno.test("waitFor: any of several signals cancels it; the others lose their listener", async () => {
  const [a, b] = [countedAbort(), countedAbort()];
  const w = waiters();
  const waiting = waitFor(w.register, [a.signal, b.signal]);
  assertEquals([a.live, b.live], [1, 1]);
  b.controller.abort();
  assertEquals(await waiting, "aborted");
  assertEquals([a.live, b.live, w.set.size], [0, 0, 0]);
});

Deno.test("sleep: resolves timeout after the time, aborted on abort, clearing its timer", async () => {
  using timers = countTimers();
  const a = countedAbort();
  assertEquals(await sleep(1, a.signal), "timeout");
  assertEquals([a.live, timers.pending], [0, 0]);
  const slept = sleep(60_000, a.signal);
  a.controller.abort();
  assertEquals(await slept, "aborted");
  assertEquals(timers.pending, 0);
  assertEquals(await sleep(60_000, a.signal), "aborted");
  assertEquals(await sleep(1), "timeout");
});

Deno.test("Notifier: notify wakes every current waiter; an abort removes only its own", async () => {
  const n = new Notifier();
  const [a, b] = [countedAbort(), countedAbort()];
  const first = n.wait(a.signal);
  const second = n.wait(b.signal);
  assertEquals(n.waiting, 2);
  a.controller.abort();
  assertEquals(await first, "aborted");
  assertEquals(n.waiting, 1);
  n.notify();
  assertEquals(await second, "woken");
  assertEquals([n.waiting, a.live, b.live], [0, 0, 0]);
  assertEquals(await n.wait(undefined, 1), "timeout");
  assertEquals(n.waiting, 0);
});

Deno.test("10,000 waits on one signal, each woken first, leave no listener, waiter or timer", async () => {
  using timers = countTimers();
  const a = countedAbort();
  const n = new Notifier();
  for (let i = 0; i < 10_000; i++) {
    const waiting = n.wait(a.signal, 60_000);
    n.notify();
    assertEquals(await waiting, "woken");
  }
  // Each wait added one listener and one timer and removed both: never more than one live.
  const left = { added: a.added, live: a.live, peak: a.peak, waiting: n.waiting };
  assertEquals({ ...left, timers: timers.started, pendingTimers: timers.pending }, {
    added: 10_000,
    live: 0,
    peak: 1,
    waiting: 0,
    timers: 10_000,
    pendingTimers: 0,
  });
  // The signal still cancels the next wait.
  const last = n.wait(a.signal);
  a.controller.abort();
  assertEquals(await last, "aborted");
});
