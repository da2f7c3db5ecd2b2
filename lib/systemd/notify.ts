/**
 * The sd_notify(3) protocol: newline-separated `KEY=value` datagrams sent to the unix socket
 * named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket): `READY=1`,
 * `STATUS=...`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`, `MAINPID=...`. The watchdog
 * applies when `$WATCHDOG_USEC` is set and `$WATCHDOG_PID` is unset or names this process
 * (sd_watchdog_enabled(3)); pings then go out at half that interval.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";

const log = getLogger(["usbipgw", "systemd"]);

/** The longest `$NOTIFY_SOCKET` a `sockaddr_un` can hold (108 bytes with the terminator). */
const MAX_SOCKET_PATH = 107;

/**
 * The socket address of a `$NOTIFY_SOCKET` value: an absolute path as it is, `@name` as the
 * abstract address `"\0name"`.
 *
 * @throws {TypeError} For a relative path, an empty or over-long value.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { notifySocketAddress } from "./notify.ts";
 * assertEquals(notifySocketAddress("/run/systemd/notify"), "/run/systemd/notify");
 * assertEquals(notifySocketAddress("@sd-notify"), "\0sd-notify");
 * ```
 */
export function notifySocketAddress(value: string): string {
  const bytes = new TextEncoder().encode(value).length;
  if (bytes < 2 || bytes > MAX_SOCKET_PATH || !(value.startsWith("/") || value.startsWith("@"))) {
    throw new TypeError(
      `Cannot use NOTIFY_SOCKET=${
        JSON.stringify(value)
      }: expected an absolute path or @name of at most ${MAX_SOCKET_PATH} bytes`,
    );
  }
  return value.startsWith("@") ? `\0${value.slice(1)}` : value;
}

/** The watchdog variables, as the process environment has them. */
export interface WatchdogEnv {
  WATCHDOG_USEC?: string | undefined;
  WATCHDOG_PID?: string | undefined;
}

/**
 * How often to send `WATCHDOG=1`, in milliseconds: half of `$WATCHDOG_USEC`, when it is set
 * and `$WATCHDOG_PID` is unset or equals `pid`; otherwise `undefined`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { watchdogIntervalMs } from "./notify.ts";
 * assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "20000000" }, 7), 10000);
 * assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "8" }, 7), undefined);
 * ```
 */
export function watchdogIntervalMs(env: WatchdogEnv, pid: number): number | undefined {
  const { WATCHDOG_USEC: usec, WATCHDOG_PID: watchedPid } = env;
  if (usec === undefined || !/^\d+$/.test(usec) || Number(usec) === 0) return undefined;
  if (watchedPid !== undefined && watchedPid !== String(pid)) return undefined;
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/**
 * One notification datagram: a `KEY=value` line per field, in order. A newline in a value
 * would start a new field, so it becomes a space.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { formatNotifyMessage } from "./notify.ts";
 * assertEquals(formatNotifyMessage({ READY: 1, STATUS: "Serving\n2 devices" }), "READY=1\nSTATUS=Serving 2 devices\n");
 * ```
 */
export function formatNotifyMessage(fields: Record<string, string | number>): string {
  return Object.entries(fields).map(([k, v]) => `${k}=${String(v).replace(/\n/g, " ")}\n`)
    .join("");
}

/** Sends sd_notify(3) datagrams to the service manager. */
export class SystemdNotifier {
  readonly #address: string;
  readonly #socket: Deno.DatagramConn;
  #warned = false;
  #closed = false;

  private constructor(address: string, socket: Deno.DatagramConn) {
    this.#address = address;
    this.#socket = socket;
  }

  /**
   * A notifier for the `$NOTIFY_SOCKET` value `value` (see {@linkcode notifySocketAddress}),
   * sending from an unbound unix datagram socket.
   */
  static open(value: string): SystemdNotifier {
    const address = notifySocketAddress(value);
    // An unbound datagram socket: Deno's types want a path, the call works without one.
    const socket = Deno.listenDatagram(
      { transport: "unixpacket" } as Deno.UnixListenOptions & { transport: "unixpacket" },
    );
    return new SystemdNotifier(address, socket);
  }

  /**
   * Sends one datagram with `fields`. Resolves `false` when it could not be sent (the first
   * failure is logged as a warning); it never throws, the service goes on either way.
   */
  async notify(fields: Record<string, string | number>): Promise<boolean> {
    if (this.#closed) return false;
    try {
      await this.#socket.send(new TextEncoder().encode(formatNotifyMessage(fields)), {
        transport: "unixpacket",
        path: this.#address,
      });
      return true;
    } catch (e) {
      if (!this.#warned) {
        this.#warned = true;
        log.warn("Cannot notify the service manager at {socket}: {error}", {
          socket: this.#address.replace("\0", "@"),
          error: errorMessage(e),
        });
      }
      return false;
    }
  }

  /** Closes the sending socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
  }
}
