/**
 * The `tablet` device type: the HID absolute pointer (see `../tablet.ts`), positioned by text
 * commands written to its unix socket.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import { openTextSocket } from "../../backends/text_socket.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { pointerCommandConsumer } from "../mouse.ts";
import { HidTablet, hidTabletDescriptors } from "../tablet.ts";
import { parseWith } from "./_keys.ts";

/** The typed options of a `tablet` spec. */
export interface TabletTypeOptions {
  /** The unix socket whose command lines position the pointer, resolved. */
  readonly socket?: string;
  readonly serial?: string;
}

const NAME = "tablet";
const KEYS: Readonly<Record<string, KeySpec>> = {
  socket: {
    kind: "path",
    help:
      "unix socket path: lines such as 'abs 0.5 0.25' (0..1 from top-left), 'click left', 'press right', 'release'",
  },
  serial: { kind: "text", help: "serial number string" },
};

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
export const TABLET_TYPE: DeviceType<TabletTypeOptions> = {
  name: NAME,
  summary: "HID absolute pointer (like QEMU's usb-tablet), positioned by text commands",
  keys: KEYS,
  parse: (options, context) =>
    parseWith(NAME, KEYS, options, (r) => {
      const socket = r.path("socket", context.resolvePath);
      const serial = r.usbString("serial");
      return {
        options: {
          ...(socket !== undefined ? { socket } : {}),
          ...(serial !== undefined ? { serial } : {}),
        },
      };
    }),
  describe: (options) =>
    Promise.resolve({
      descriptors: hidTabletDescriptors(options),
      speed: Speed.FULL,
      origin: "emulated",
    }),
  async create(options, context) {
    const { socket, serial } = options;
    const tablet = new HidTablet(serial !== undefined ? { serial } : {});
    if (socket === undefined) return { device: tablet };
    const input = await openTextSocket(
      { path: socket, mode: 0o600, label: context.label },
      pointerCommandConsumer(tablet),
    );
    return { device: tablet, close: () => input.close() };
  },
};
