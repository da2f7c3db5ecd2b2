/**
 * The `keyboard` device type: the HID boot keyboard (see `../keyboard.ts`), which types a text
 * once the host polls it and whatever is written to its unix socket.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import { openTextSocket } from "../../backends/text_socket.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { reportsFor } from "../hid_keymap.ts";
import { HidKeyboard, hidKeyboardDescriptors } from "../keyboard.ts";
import { parseWith } from "./_keys.ts";

/** The typed options of a `keyboard` spec. */
export interface KeyboardTypeOptions {
  /** Typed once the host starts polling; every character has a key on the US layout. */
  readonly text?: string;
  /** The unix socket whose input is typed, resolved. */
  readonly socket?: string;
  readonly serial?: string;
}

const NAME = "keyboard";
const KEYS: Readonly<Record<string, KeySpec>> = {
  text: { kind: "text", help: "text typed once the host starts polling the keyboard" },
  socket: { kind: "path", help: "unix socket path: text written to it is typed" },
  serial: { kind: "text", help: "serial number string" },
};

/**
 * The `keyboard` device type.
 *
 * @example A text with a character the US layout has no key for is refused
 * ```ts
 * import { KEYBOARD_TYPE } from "./keyboard.ts";
 * const r = KEYBOARD_TYPE.parse({ text: "café" }, { resolvePath: (p) => p });
 * console.assert(!r.ok && r.key === "text");
 * ```
 */
export const KEYBOARD_TYPE: DeviceType<KeyboardTypeOptions> = {
  name: NAME,
  summary: "HID boot keyboard that types text",
  keys: KEYS,
  parse: (options, context) =>
    parseWith(NAME, KEYS, options, (r) => {
      const text = r.text("text");
      if (text !== undefined) {
        const { unmapped } = reportsFor(text);
        if (unmapped.length > 0) {
          return r.fail(
            "text",
            `Invalid text for ${NAME}: no key on the US layout for ${
              [...new Set(unmapped)].map((c) => JSON.stringify(c)).join(", ")
            }; expected ASCII letters, digits and symbols, space, \\n, \\t, \\b or \\x1b`,
          );
        }
      }
      const socket = r.path("socket", context.resolvePath);
      const serial = r.usbString("serial");
      return {
        options: {
          ...(text !== undefined ? { text } : {}),
          ...(socket !== undefined ? { socket } : {}),
          ...(serial !== undefined ? { serial } : {}),
        },
      };
    }),
  describe: (options) =>
    Promise.resolve({
      descriptors: hidKeyboardDescriptors(options),
      speed: Speed.FULL,
      origin: "emulated",
    }),
  async create(options, context) {
    const { text, socket, serial } = options;
    const keyboard = new HidKeyboard({
      ...(text !== undefined ? { text } : {}),
      ...(serial !== undefined ? { serial } : {}),
    });
    if (socket === undefined) return { device: keyboard };
    const input = await openTextSocket(
      { path: socket, mode: 0o600, label: context.label },
      (t) => keyboard.type(t),
    );
    return { device: keyboard, close: () => input.close() };
  },
};
