/**
 * `attach --persist`: keeps a remote device attached. After each attach it watches vhci's
 * status; when the port is freed (the connection dropped: the server closed it, or keep-alive
 * declared it dead) it removes the port record and attaches again, retrying with a capped
 * exponential backoff, until the signal aborts; then it detaches the port if it is still the
 * one it attached. Time, sleeping and the vhci operations are injected, so that tests drive
 * the state machine without a kernel.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger, type Logger } from "../logtape.ts";
import type { AttachResult } from "./attach.ts";
import { VdevStatus, type VhciPort } from "./vhci.ts";
import { sleep as sleepFor } from "../util/wait.ts";

/** The persist loop's states. */
export type PersistState = "attaching" | "attached" | "waiting" | "stopped";

/** What an attach made: the vhci port and what its status shows while it holds the device. */
export type AttachedPortId = Pick<AttachResult, "port" | "devid" | "sockfd">;

/**
 * What {@linkcode runPersistent} does its work with; `R` is what one attach gives (an
 * `AttachResult` when this process attaches, less when a gateway does it).
 */
export interface PersistOptions<R extends AttachedPortId = AttachResult> {
  /** One attach attempt. */
  attach(signal: AbortSignal): Promise<R>;
  /** vhci's ports now. */
  readPorts(): Promise<VhciPort[]>;
  /** Detaches a port (on stop). */
  detach(port: number): Promise<void>;
  /** Removes a port's record after the kernel freed the port itself. */
  removeRecord(port: number): Promise<void>;
  /** Errors that end the loop instead of being retried (vhci missing, policy refusal, ...). */
  isFatal(e: unknown): boolean;
  /** Called after every successful attach. */
  onAttached?(r: R): void | Promise<void>;
  /** What an attach holds, for the log (`127.0.0.1:3240/1-1`); default: its vhci port. */
  describe?(r: R): string;
  /** Called at every state change, with the time from `now()`. */
  onState?(state: PersistState, at: number): void;
  /** Aborting ends the loop (SIGINT/SIGTERM). */
  signal: AbortSignal;
  /** How often vhci's status is read while attached (default 500 ms). */
  pollMs?: number;
  /** The first retry delay (default 1000 ms); doubles per failure. */
  retryInitialMs?: number;
  /** The longest retry delay (default 10000 ms). */
  retryMaxMs?: number;
  /** Sleeps `ms` or until `signal` aborts (default: a timer). */
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
  /** Milliseconds on some clock (default `performance.now()`). */
  now?(): number;
  logger?: Logger;
}

/** How the loop ended. */
export interface PersistOutcome {
  /** Successful attaches. */
  attaches: number;
  /** Times the port was found freed under it. */
  drops: number;
  /** The port detached at the stop, if one was attached then. */
  detachedPort: number | undefined;
}

/**
 * Whether `port` still holds what `a` attached: the same port initializing or failing (vhci
 * shows no devid then), or in use with the same devid and sockfd. Free, or in use by another
 * attach, means the connection is gone.
 *
 * @example
 * ```ts
 * import { stillAttached } from "./persist.ts";
 * const port = {
 *   controller: 0, hub: "hs" as const, port: 0, status: 6, speed: 3, devid: 0x10002,
 *   busnum: 1, devnum: 2, sockfd: 5, localBusid: "3-1",
 * };
 * console.assert(stillAttached([port], { port: 0, devid: 0x10002, sockfd: 5 }));
 * console.assert(!stillAttached([{ ...port, status: 4 }], { port: 0, devid: 0x10002, sockfd: 5 }));
 * ```
 */
export function stillAttached(
  ports: readonly VhciPort[],
  a: AttachedPortId,
): boolean {
  const p = ports.find((x) => x.port === a.port);
  if (p === undefined) return false;
  switch (p.status) {
    case VdevStatus.VDEV_ST_NOTASSIGNED:
    case VdevStatus.VDEV_ST_ERROR:
      return true;
    case VdevStatus.VDEV_ST_USED:
      return p.devid === a.devid && (p.sockfd === null || p.sockfd === a.sockfd);
    default:
      return false;
  }
}

async function timerSleep(ms: number, signal: AbortSignal): Promise<void> {
  await sleepFor(ms, signal);
}

function message(e: unknown): string {
  return errorMessage(e);
}

/**
 * Runs the persist loop until `signal` aborts (then resolves) or a fatal error (then
 * rejects with it, after detaching what it attached).
 */
export async function runPersistent<R extends AttachedPortId = AttachResult>(
  o: PersistOptions<R>,
): Promise<PersistOutcome> {
  const log = o.logger ?? getLogger(["usbipgw", "client"]);
  const sleep = o.sleep ?? timerSleep;
  const now = o.now ?? (() => performance.now());
  const pollMs = o.pollMs ?? 500;
  const initial = o.retryInitialMs ?? 1000;
  const max = o.retryMaxMs ?? 10000;
  const signal = o.signal;
  const outcome: PersistOutcome = { attaches: 0, drops: 0, detachedPort: undefined };
  let current: R | undefined;
  let delay = initial;
  let lastError = "";
  const state = (s: PersistState) => o.onState?.(s, now());

  const stop = async () => {
    if (current !== undefined) {
      let ours = true;
      try {
        ours = stillAttached(await o.readPorts(), current);
      } catch {
        // Try the detach anyway.
      }
      if (ours) {
        try {
          await o.detach(current.port);
          outcome.detachedPort = current.port;
          log.info("Detached port {port}", { port: current.port });
        } catch (e) {
          log.warn("Cannot detach port {port}: {error}", { port: current.port, error: message(e) });
        }
      }
      current = undefined;
    }
    state("stopped");
  };

  try {
    while (!signal.aborted) {
      state("attaching");
      try {
        current = await o.attach(signal);
      } catch (e) {
        if (signal.aborted) break;
        if (o.isFatal(e)) throw e;
        const text = message(e);
        // The same failure again is logged once per change, not at every retry.
        if (text !== lastError) {
          log.warn("{error}; retrying (every {max} s at most)", { error: text, max: max / 1000 });
          lastError = text;
        } else {
          log.debug("{error}; retry in {s} s", { error: text, s: delay / 1000 });
        }
        state("waiting");
        await sleep(delay, signal);
        delay = Math.min(delay * 2, max);
        continue;
      }
      outcome.attaches++;
      delay = initial;
      lastError = "";
      state("attached");
      await o.onAttached?.(current);
      const since = now();
      while (!signal.aborted) {
        await sleep(pollMs, signal);
        if (signal.aborted) break;
        let ports: VhciPort[];
        try {
          ports = await o.readPorts();
        } catch (e) {
          if (o.isFatal(e)) throw e;
          log.warn("Cannot read vhci status: {error}", { error: message(e) });
          continue;
        }
        if (stillAttached(ports, current)) continue;
        outcome.drops++;
        log.warn(
          "Connection to {remote} lost: vhci port {port} was freed after {s} s; re-attaching",
          {
            remote: o.describe?.(current) ?? `vhci port ${current.port}`,
            port: current.port,
            s: ((now() - since) / 1000).toFixed(1),
          },
        );
        await o.removeRecord(current.port).catch(() => {});
        current = undefined;
        break;
      }
    }
  } finally {
    await stop();
  }
  return outcome;
}
