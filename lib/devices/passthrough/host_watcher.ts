/**
 * Hot-plug of host USB devices, seen by polling sysfs (`/sys/bus/usb/devices`, see
 * host_devices.ts): which devices that match a selector arrive and leave. A re-plugged device
 * comes back with a new device number, so it is told apart from one that stayed; a device whose
 * own driver changed is reported as leaving and arriving again.
 *
 * @module
 */

import {
  type HostDevice,
  type HostDeviceOptions,
  type HostDeviceSelector,
  hostDevicesSignature,
  listHostDevices,
  matchesHostDevice,
} from "./host_devices.ts";

/** Options of {@linkcode HostDeviceWatcher}. */
export interface HostDeviceWatcherOptions extends HostDeviceOptions {
  /** How often sysfs is read, in ms; default 1000. */
  intervalMs?: number;
}

/** What the watcher reports. */
export interface HostDeviceEvents {
  /** A matching device appeared (also called for those present at the first scan). */
  added(device: HostDevice): void | Promise<void>;
  /** A device reported by `added` is gone. */
  removed(device: HostDevice): void | Promise<void>;
}

/**
 * What tells one appearance of a device from the next: its port, its device number (new at a
 * re-plug) and its own driver. A driver's unbind closes every usbfs handle of the device
 * (usb_generic_driver_disconnect() notifies usbfs, drivers/usb/core/generic.c and devio.c), so
 * a device that usbip-host took and gave back, or that was deauthorized and authorized again,
 * must be opened afresh, as after a re-plug.
 */
function key(d: HostDevice): string {
  return `${d.busid}/${d.devnum}/${d.driver ?? ""}`;
}

/**
 * Watches sysfs for devices that match `selector`. Every second it lists the devices and their
 * usbfs nodes ({@linkcode hostDevicesSignature}), and reads the devices' attributes only when
 * that list changed, and once more a second later. Each step of an enumeration changes the
 * list (the device's folder; its node, which devtmpfs makes after the attributes, device_add()
 * in drivers/base/core.c; its interfaces' folders at SET_CONFIGURATION), so a device caught in
 * the middle of one is read again. Polling works where inotify on sysfs does not; a netlink
 * uevent socket would be the event-driven alternative.
 *
 * @example Scanning a fake tree once
 * ```ts
 * import { HostDeviceWatcher } from "./host_watcher.ts";
 * const root = await Deno.makeTempDir();
 * const seen: string[] = [];
 * const w = new HostDeviceWatcher({ busid: "1-1" }, {
 *   added: (d) => void seen.push(d.busid),
 *   removed: () => {},
 * }, { sysfsRoot: root });
 * await w.scan();
 * console.assert(seen.length === 0);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class HostDeviceWatcher {
  readonly #selector: HostDeviceSelector;
  readonly #events: HostDeviceEvents;
  readonly #options: HostDeviceWatcherOptions;
  readonly #present = new Map<string, HostDevice>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  /** The signature the last scan followed, and whether it had changed from the one before. */
  #signature: string | undefined;
  #changedBefore = false;

  /** Builds a watcher; nothing is read until {@linkcode start} or {@linkcode scan}. */
  constructor(
    selector: HostDeviceSelector,
    events: HostDeviceEvents,
    options: HostDeviceWatcherOptions = {},
  ) {
    this.#selector = selector;
    this.#events = events;
    this.#options = options;
  }

  /** The matching devices seen at the last scan. */
  get present(): HostDevice[] {
    return [...this.#present.values()];
  }

  /** Reads sysfs once and reports the changes since the last scan (removals first). */
  async scan(): Promise<void> {
    const now = new Map(
      (await listHostDevices(this.#options))
        .filter((d) => matchesHostDevice(d, this.#selector))
        .map((d) => [key(d), d]),
    );
    for (const [k, d] of this.#present) {
      if (!now.has(k)) {
        this.#present.delete(k);
        await this.#events.removed(d);
      }
    }
    for (const [k, d] of now) {
      if (!this.#present.has(k)) {
        this.#present.set(k, d);
        await this.#events.added(d);
      }
    }
  }

  /** Scans now and then every `intervalMs` until {@linkcode stop}. Scan errors are retried. */
  start(onError: (e: unknown) => void = () => {}): void {
    if (this.#running !== undefined || this.#stopped) return;
    const tick = async () => {
      try {
        await this.#poll();
      } catch (e) {
        onError(e);
      }
      if (!this.#stopped) this.#timer = setTimeout(run, this.#options.intervalMs ?? 1000);
    };
    const run = () => {
      this.#running = tick();
    };
    run();
  }

  /** A scan when the signature changed at this tick or the one before. */
  async #poll(): Promise<void> {
    const signature = await hostDevicesSignature(this.#options);
    const changed = signature !== this.#signature;
    if (!changed && !this.#changedBefore) return;
    this.#signature = undefined; // a scan that fails is tried again at the next tick
    await this.scan();
    this.#signature = signature;
    this.#changedBefore = changed;
  }

  /** Stops watching; resolves when a scan under way has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
