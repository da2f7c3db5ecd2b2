/**
 * The `tablet` device type: the HID absolute pointer (see `../tablet.ts`), positioned by text
 * commands written to its unix socket.
 *
 * @module
 */

import type { DeviceType } from "../device_type.ts";
import { HidTablet, hidTabletDescriptors } from "../tablet.ts";
import { pointerDeviceType, type PointerTypeOptions } from "./_pointer.ts";

/** The typed options of a `tablet` spec: its socket, resolved, and serial number. */
export type TabletTypeOptions = PointerTypeOptions;

/**
 * The `tablet` device type.
 *
 * @example Describing a tablet opens nothing
 * ```ts
 * import { TABLET_TYPE } from "./tablet.ts";
 * const r = TABLET_TYPE.parse({ serial: "T1" }, { resolvePath: (p) => p });
 * const d = r.ok ? await TABLET_TYPE.describe(r.options) : undefined;
 * console.assert(d?.descriptors.device.iSerialNumber === "T1");
 * ```
 */
export const TABLET_TYPE: DeviceType<TabletTypeOptions> = pointerDeviceType({
  name: "tablet",
  summary: "HID absolute pointer (like QEMU's usb-tablet), positioned by text commands",
  commands:
    "lines such as 'abs 0.5 0.25' (0..1 from top-left), 'click left', 'press right', 'release'",
  descriptors: hidTabletDescriptors,
  build: (options) => new HidTablet(options),
});
