/**
 * The `mouse` device type: the HID boot mouse (see `../mouse.ts`), moved by text commands
 * written to its unix socket.
 *
 * @module
 */

import type { DeviceType } from "../device_type.ts";
import { HidMouse, hidMouseDescriptors } from "../mouse.ts";
import { pointerDeviceType, type PointerTypeOptions } from "./_pointer.ts";

/** The typed options of a `mouse` spec: its socket, resolved, and serial number. */
export type MouseTypeOptions = PointerTypeOptions;

/**
 * The `mouse` device type.
 *
 * @example A relative socket path resolves against the context's folder
 * ```ts
 * import { MOUSE_TYPE } from "./mouse.ts";
 * const r = MOUSE_TYPE.parse({ socket: "mouse.sock" }, { resolvePath: (p) => `/etc/usbipgw/${p}` });
 * console.assert(r.ok && r.options.socket === "/etc/usbipgw/mouse.sock");
 * ```
 */
export const MOUSE_TYPE: DeviceType<MouseTypeOptions> = pointerDeviceType({
  name: "mouse",
  summary: "HID boot mouse with 3 buttons and a wheel, moved by text commands",
  commands: "lines such as 'move 10 -5', 'scroll -1', 'click left', 'press right', 'release'",
  descriptors: hidMouseDescriptors,
  build: (options) => new HidMouse(options),
});
