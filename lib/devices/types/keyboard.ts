/**
 * The `keyboard` device type: the HID boot keyboard (see `../keyboard.ts`), which types a text
 * once the host polls it and whatever is written to its unix socket.
 *
 * @module
 */

import type { DeviceType } from "../device_type.ts";
import { reportsFor } from "../hid_keymap.ts";
import { HidKeyboard, hidKeyboardDescriptors } from "../keyboard.ts";
import { emulatedType, fedByTextSocket } from "./_emulated.ts";
import { definedOnly, SERIAL_KEY } from "./_keys.ts";

/** The typed options of a `keyboard` spec. */
export interface KeyboardTypeOptions {
  /** Typed once the host starts polling; every character has a key on the US layout. */
  readonly text?: string;
  /** The unix socket whose input is typed, resolved. */
  readonly socket?: string;
  readonly serial?: string;
}

const NAME = "keyboard";

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
export const KEYBOARD_TYPE: DeviceType<KeyboardTypeOptions> = emulatedType<KeyboardTypeOptions>({
  name: NAME,
  summary: "HID boot keyboard that types text",
  keys: {
    text: { kind: "text", help: "text typed once the host starts polling the keyboard" },
    socket: { kind: "path", help: "unix socket path: text written to it is typed" },
    serial: SERIAL_KEY,
  },
  read(r, context) {
    const text = r.text("text");
    const unmapped = text === undefined ? [] : reportsFor(text).unmapped;
    if (unmapped.length > 0) {
      return r.fail(
        "text",
        `Invalid text for ${NAME}: no key on the US layout for ${
          [...new Set(unmapped)].map((c) => JSON.stringify(c)).join(", ")
        }; expected ASCII letters, digits and symbols, space, \\n, \\t, \\b or \\x1b`,
      );
    }
    return definedOnly({
      text,
      socket: r.path("socket", context.resolvePath),
      serial: r.usbString("serial"),
    });
  },
  descriptors: hidKeyboardDescriptors,
  create(options, context) {
    const keyboard = new HidKeyboard(definedOnly({ text: options.text, serial: options.serial }));
    return fedByTextSocket(keyboard, options.socket, context, (t) => keyboard.type(t));
  },
});
