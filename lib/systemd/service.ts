/**
 * The gateway's side of a `Type=notify` systemd service: `READY=1` once it serves, a `STATUS=`
 * line kept current (devices, listeners, imports, connections), `WATCHDOG=1` pings,
 * `RELOADING=1` ... `READY=1` around a configuration reload, and `STOPPING=1` at shutdown
 * (sd_notify(3), systemd.service(5)).
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import { SystemdNotifier, watchdogIntervalMs } from "./notify.ts";

const log = getLogger(["usbipgw", "systemd"]);

/** How often the status text is recomputed; a changed text is sent at once. */
export const STATUS_INTERVAL_MS = 1000;

/** Options of {@linkcode ServiceNotifications.start}, as `main.ts` reads them. */
export interface ServiceNotifyOptions {
  /** `$NOTIFY_SOCKET`; without it there is no service manager to tell. */
  notifySocket?: string | undefined;
  /** `$WATCHDOG_USEC`. */
  watchdogUsec?: string | undefined;
  /** `$WATCHDOG_PID`. */
  watchdogPid?: string | undefined;
  /** This process's id. */
  pid: number;
  /** The current status text (a `STATUS=` value). */
  status: () => string;
  /** How often to recompute `status`; {@linkcode STATUS_INTERVAL_MS} by default. */
  statusIntervalMs?: number;
}

/** Notifications of a running service; made by {@linkcode ServiceNotifications.start}. */
export class ServiceNotifications {
  readonly #notifier: SystemdNotifier;
  readonly #status: () => string;
  readonly #pid: number;
  /** The watchdog interval in milliseconds, when the watchdog is on. */
  readonly watchdogMs: number | undefined;
  #lastStatus = "";
  #timers: ReturnType<typeof setInterval>[] = [];
  #paused = false;

  private constructor(notifier: SystemdNotifier, options: ServiceNotifyOptions) {
    this.#notifier = notifier;
    this.#status = options.status;
    this.#pid = options.pid;
    this.watchdogMs = watchdogIntervalMs(
      { WATCHDOG_USEC: options.watchdogUsec, WATCHDOG_PID: options.watchdogPid },
      options.pid,
    );
  }

  /**
   * Tells the service manager the service is ready (`READY=1`, `STATUS=`, `MAINPID=`), then
   * keeps the status current and pings the watchdog. `undefined` without `notifySocket`, or
   * when it is malformed or no socket can be made (logged as an error: the service manager
   * will then time the service out).
   */
  static async start(options: ServiceNotifyOptions): Promise<ServiceNotifications | undefined> {
    if (options.notifySocket === undefined || options.notifySocket === "") return undefined;
    let notifier: SystemdNotifier;
    try {
      notifier = SystemdNotifier.open(options.notifySocket);
    } catch (e) {
      log.error("Cannot notify the service manager: {error}", {
        error: errorMessage(e),
      });
      return undefined;
    }
    const service = new ServiceNotifications(notifier, options);
    await service.ready();
    const every = (ms: number, f: () => void) => {
      const id = setInterval(f, ms);
      // The service stops on a signal, not when its timers are the only thing left.
      Deno.unrefTimer(id);
      service.#timers.push(id);
    };
    if (service.watchdogMs !== undefined) {
      every(service.watchdogMs, () => void service.#notifier.notify({ WATCHDOG: 1 }));
    }
    every(options.statusIntervalMs ?? STATUS_INTERVAL_MS, () => void service.refresh());
    return service;
  }

  /** Sends `READY=1` with the current status (also after a reload). */
  async ready(): Promise<void> {
    this.#paused = false;
    this.#lastStatus = this.#status();
    await this.#notifier.notify({ READY: 1, STATUS: this.#lastStatus, MAINPID: this.#pid });
  }

  /** Sends the status when it changed since the last one sent. */
  async refresh(): Promise<void> {
    if (this.#paused) return;
    const status = this.#status();
    if (status === this.#lastStatus) return;
    this.#lastStatus = status;
    await this.#notifier.notify({ STATUS: status });
  }

  /** Sends `RELOADING=1`; call {@linkcode ServiceNotifications.ready} when done. */
  async reloading(): Promise<void> {
    this.#paused = true;
    await this.#notifier.notify({ RELOADING: 1, STATUS: "Reloading the configuration" });
  }

  /** Sends `STOPPING=1`, stops the status updates and the watchdog, and closes the socket. */
  async stopping(reason: string): Promise<void> {
    for (const id of this.#timers.splice(0)) clearInterval(id);
    this.#paused = true;
    await this.#notifier.notify({ STOPPING: 1, STATUS: `Stopping: ${reason}` });
    this.#notifier.close();
  }
}
