/**
 * The `mouse` device type: the HID boot mouse (see `../mouse.ts`), moved by text commands
 * written to its unix socket.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import { openTextSocket } from "../../backends/text_socket.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { HidMouse, hidMouseDescriptors, pointerCommandConsumer } from "../mouse.ts";
import { parseWith } from "./_keys.ts";

/** The typed options of a `mouse` spec. */
export interface MouseTypeOptions {
  /** The unix socket whose command lines move the mouse, resolved. */
  readonly socket?: string;
  readonly serial?: string;
}

const NAME = "mouse";
const KEYS: Readonly<Record<string, KeySpec>> = {
  socket: {
    kind: "path",
    help:
      "unix socket path: lines such as 'move 10 -5', 'scroll -1', 'click left', 'press right', 'release'",
  },
  serial: { kind: "text", help: "serial number string" },
};

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
export const MOUSE_TYPE: DeviceType<MouseTypeOptions> = {
  name: NAME,
  summary: "HID boot mouse with 3 buttons and a wheel, moved by text commands",
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
      descriptors: hidMouseDescriptors(options),
      speed: Speed.FULL,
      origin: "emulated",
    }),
  async create(options, context) {
    const { socket, serial } = options;
    const mouse = new HidMouse(serial !== undefined ? { serial } : {});
    if (socket === undefined) return { device: mouse };
    const input = await openTextSocket(
      { path: socket, mode: 0o600, label: context.label },
      pointerCommandConsumer(mouse),
    );
    return { device: mouse, close: () => input.close() };
  },
};
