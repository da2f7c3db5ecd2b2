/**
 * An emulated USB HID boot mouse with a wheel (HID 1.11: §7.2 class requests, Appendix B.2
 * boot report, Appendix E.10 report descriptor), the HID pointer machinery it shares with the
 * tablet, and the parser of the text pointer commands both accept.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import { Speed, type SpeedValue } from "../protocol/constants.ts";
import type { UsbDescriptors } from "./descriptors.ts";
import { hidDeviceDescriptors, HidInputDevice, HidProtocol } from "./hid.ts";

const log = getLogger(["usbipgw", "device"]);

/** Button bits of the pointer reports (Button page usages 1..3, HID 1.11 Appendix B.2). */
export const PointerButton = { LEFT: 0x01, RIGHT: 0x02, MIDDLE: 0x04 } as const;

/** All three buttons: what `release()` with no argument lets go of. */
export const ALL_BUTTONS = 0x07;

/**
 * The start the mouse's and the tablet's report descriptors share: a Generic Desktop Mouse
 * application holding a Pointer with 3 buttons and 5 bits of padding, then the Generic Desktop
 * usage page for the axes that follow.
 */
export const POINTER_REPORT_HEAD: readonly number[] = [
  ...[0x05, 0x01], // Usage Page (Generic Desktop)
  ...[0x09, 0x02], // Usage (Mouse)
  ...[0xa1, 0x01], // Collection (Application)
  ...[0x09, 0x01], //   Usage (Pointer)
  ...[0xa1, 0x00], //   Collection (Physical)
  ...[0x05, 0x09], //     Usage Page (Button)
  ...[0x19, 0x01], //     Usage Minimum (Button 1)
  ...[0x29, 0x03], //     Usage Maximum (Button 3)
  ...[0x15, 0x00], //     Logical Minimum (0)
  ...[0x25, 0x01], //     Logical Maximum (1)
  ...[0x95, 0x03], //     Report Count (3)
  ...[0x75, 0x01], //     Report Size (1)
  ...[0x81, 0x02], //     Input (Data, Variable, Absolute): buttons
  ...[0x95, 0x01], //     Report Count (1)
  ...[0x75, 0x05], //     Report Size (5)
  ...[0x81, 0x01], //     Input (Constant): padding
  ...[0x05, 0x01], //     Usage Page (Generic Desktop)
];

/**
 * The mouse report descriptor: HID 1.11 Appendix E.10 (3 buttons, 5 bits of padding, relative
 * X and Y from -127 to 127) with a Wheel usage added to the X/Y main item, so a report-protocol
 * report is 4 bytes: buttons, X, Y, wheel. Its first 3 bytes are the boot report of
 * Appendix B.2.
 */
export const MOUSE_REPORT_DESCRIPTOR: Uint8Array = new Uint8Array([
  ...POINTER_REPORT_HEAD,
  ...[0x09, 0x30], //     Usage (X)
  ...[0x09, 0x31], //     Usage (Y)
  ...[0x09, 0x38], //     Usage (Wheel)
  ...[0x15, 0x81], //     Logical Minimum (-127)
  ...[0x25, 0x7f], //     Logical Maximum (127)
  ...[0x75, 0x08], //     Report Size (8)
  ...[0x95, 0x03], //     Report Count (3)
  ...[0x81, 0x06], //     Input (Data, Variable, Relative): X, Y, wheel
  0xc0, //   End Collection
  0xc0, // End Collection
]);

/** Bytes of a report-protocol mouse report (buttons, X, Y, wheel). */
export const MOUSE_REPORT_LENGTH = 4;
/** Bytes of a boot-protocol mouse report (buttons, X, Y; HID 1.11 Appendix B.2). */
export const MOUSE_BOOT_REPORT_LENGTH = 3;
/** The largest step of one relative report; larger moves are split. */
export const MAX_STEP = 127;

/** pid.codes' vendor ID and a test product ID, the mouse's defaults. */
export const HID_MOUSE_IDS = { idVendor: 0x1209, idProduct: 0x0002 } as const;

/** A pointer command, as {@linkcode parsePointerCommand} reads it from a line. */
export type PointerCommand =
  /** A relative move (mouse only); `wheel` is in detents, positive away from the user. */
  | { kind: "move"; dx: number; dy: number; wheel: number }
  /** An absolute position (tablet only), `x` and `y` in 0..1 from the top-left corner. */
  | { kind: "abs"; x: number; y: number }
  /** Hold these button bits down, in addition to those held. */
  | { kind: "press"; buttons: number }
  /** Let go of these button bits. */
  | { kind: "release"; buttons: number }
  /** Press and release these button bits. */
  | { kind: "click"; buttons: number };

const BUTTON_WORDS: Readonly<Record<string, number>> = {
  left: PointerButton.LEFT,
  right: PointerButton.RIGHT,
  middle: PointerButton.MIDDLE,
  "1": PointerButton.LEFT,
  "2": PointerButton.RIGHT,
  "3": PointerButton.MIDDLE,
};
const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)$/;

/**
 * Reads one pointer command line. Words are separated by blanks; case does not matter:
 *
 * - `move DX DY [WHEEL]`: a relative move by integers (Y grows downwards);
 * - `scroll N`: `move 0 0 N`;
 * - `abs X Y`: an absolute position, X and Y decimals in 0..1;
 * - `press BUTTON...`, `release [BUTTON...]` (all buttons when none is named),
 *   `click [BUTTON...]` (left when none is named), with buttons `left`, `right`, `middle`
 *   or `1`, `2`, `3`.
 *
 * @throws {TypeError} For an empty line, an unknown command or button, a malformed or
 * out-of-range number, a missing or extra word; the message names the word.
 *
 * @example
 * ```ts
 * import { parsePointerCommand } from "./mouse.ts";
 * const c = parsePointerCommand("move 10 -5");
 * console.assert(c.kind === "move" && c.dx === 10 && c.dy === -5 && c.wheel === 0);
 * ```
 */
export function parsePointerCommand(line: string): PointerCommand {
  const words = line.trim().split(/\s+/).filter((w) => w !== "");
  const [verb, ...args] = words;
  if (verb === undefined) throw new TypeError("Empty pointer command");
  const bad = (what: string, word: string) =>
    new TypeError(`${what} "${word}" in pointer command "${line.trim()}"`);
  const arity = (min: number, max: number, usage: string) => {
    const extra = args[max];
    if (extra !== undefined) throw bad("Unexpected word", extra);
    if (args.length < min) throw bad(`Missing arguments (${usage}) after`, verb);
  };
  const integer = (word: string) => {
    if (!INTEGER.test(word)) throw bad("Not an integer:", word);
    const n = Number(word);
    if (!Number.isSafeInteger(n)) throw bad("Integer out of range:", word);
    return n;
  };
  const fraction = (word: string) => {
    if (!DECIMAL.test(word)) throw bad("Not a number:", word);
    const n = Number(word);
    if (n < 0 || n > 1) throw bad("Not in 0..1:", word);
    return n;
  };
  const buttons = (fallback: number) => {
    if (args.length === 0) return fallback;
    let mask = 0;
    for (const word of args) {
      const bit = BUTTON_WORDS[word.toLowerCase()];
      if (bit === undefined) throw bad("Unknown button", word);
      mask |= bit;
    }
    return mask;
  };
  switch (verb.toLowerCase()) {
    case "move": {
      arity(2, 3, "DX DY [WHEEL]");
      const [dx, dy, wheel] = args as [string, string, string | undefined];
      return {
        kind: "move",
        dx: integer(dx),
        dy: integer(dy),
        wheel: wheel === undefined ? 0 : integer(wheel),
      };
    }
    case "scroll":
      arity(1, 1, "N");
      return { kind: "move", dx: 0, dy: 0, wheel: integer(args[0] as string) };
    case "abs": {
      arity(2, 2, "X Y");
      const [x, y] = args as [string, string];
      return { kind: "abs", x: fraction(x), y: fraction(y) };
    }
    case "press":
      arity(1, Infinity, "BUTTON...");
      return { kind: "press", buttons: buttons(0) };
    case "release":
      return { kind: "release", buttons: buttons(ALL_BUTTONS) };
    case "click":
      return { kind: "click", buttons: buttons(PointerButton.LEFT) };
    default:
      throw bad("Unknown pointer command", verb);
  }
}

/** Something that takes pointer commands: {@linkcode HidMouse} or `HidTablet`. */
export interface PointerCommandTarget {
  /** Carries out one command; resolves when the host has read its reports. */
  apply(command: PointerCommand): Promise<void>;
}

/**
 * A text consumer (for `openTextSocket`) that splits the text into lines, whatever the chunks,
 * and applies each as a {@linkcode parsePointerCommand} command, one after the other: the
 * returned promise settles when the host has read the reports of every complete line. Blank
 * lines and lines starting with `#` are skipped; a line that does not parse or that the device
 * cannot carry out (an `abs` to a mouse) is logged and skipped.
 */
export function pointerCommandConsumer(
  target: PointerCommandTarget,
): (text: string) => Promise<void> {
  let partial = "";
  return async (text: string) => {
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const raw of lines) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      try {
        await target.apply(parsePointerCommand(line));
      } catch (e) {
        if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
        log.warn("Skipped pointer command: {error}", { error: e.message });
      }
    }
  };
}

/**
 * What the mouse and the tablet share: a {@linkcode HidInputDevice} with no output or feature
 * reports and idle rate 0 by default (what HID 1.11 §7.2.4 recommends for pointers, and what
 * Linux sets), fed by {@linkcode PointerCommand}s.
 */
export abstract class HidPointer<S extends { buttons: number }> extends HidInputDevice<S> {
  /**
   * Builds the device. `boot` says whether the interface is a boot device, which answers
   * GET/SET_PROTOCOL (HID 1.11 §7.2.5); others stall them.
   */
  constructor(
    descriptors: UsbDescriptors,
    speed: SpeedValue,
    reportDescriptor: Uint8Array,
    boot: boolean,
  ) {
    super(descriptors, speed, { reportDescriptor, boot, defaultIdleRate: 0 });
  }

  /** The buttons held once the queued reports are read. */
  get buttons(): number {
    return this.tail.buttons;
  }

  /** The state with `buttons` held where the pointer is, with no motion. */
  #withButtons(buttons: number): S {
    return this.settled({ ...this.tail, buttons });
  }

  /**
   * Holds `buttons` (bits of {@linkcode PointerButton}) down, with those already held.
   *
   * @throws {RangeError} If `buttons` is not made of the 3 button bits.
   * @returns A promise that resolves when the host has read the report.
   */
  press(buttons: number): Promise<void> {
    _checkButtons(buttons);
    return this.enqueue([this.#withButtons(this.buttons | buttons)]);
  }

  /**
   * Lets go of `buttons`, all of them by default.
   *
   * @throws {RangeError} If `buttons` is not made of the 3 button bits.
   * @returns A promise that resolves when the host has read the report.
   */
  release(buttons: number = ALL_BUTTONS): Promise<void> {
    _checkButtons(buttons);
    return this.enqueue([this.#withButtons(this.buttons & ~buttons)]);
  }

  /**
   * Presses and releases `button` (default left) where the pointer is: two reports.
   *
   * @throws {RangeError} If `button` is not made of the 3 button bits.
   * @returns A promise that resolves when the host has read both reports.
   */
  click(button: number = PointerButton.LEFT): Promise<void> {
    _checkButtons(button);
    const held = this.buttons;
    return this.enqueue([this.#withButtons(held | button), this.#withButtons(held & ~button)]);
  }

  /**
   * Carries out a pointer command.
   *
   * @throws {TypeError} For a motion the device cannot make: `abs` on a mouse, `move` on a
   * tablet.
   */
  apply(command: PointerCommand): Promise<void> {
    switch (command.kind) {
      case "press":
        return this.press(command.buttons);
      case "release":
        return this.release(command.buttons);
      case "click":
        return this.click(command.buttons);
      default:
        return this.applyMotion(command);
    }
  }

  /** Carries out a `move` or `abs` command, or throws `TypeError` for the one it cannot do. */
  protected abstract applyMotion(
    command: Extract<PointerCommand, { kind: "move" | "abs" }>,
  ): Promise<void>;
}

/** The state behind one mouse report: held buttons and the motion since the last report. */
export interface MouseState {
  /** The held buttons, bits of {@linkcode PointerButton}. */
  buttons: number;
  /** Motion to the right in counts, -127..127 (negative: left). */
  dx: number;
  /** Motion downwards in counts, -127..127 (negative: up). */
  dy: number;
  /** Wheel detents, -127..127 (positive: away from the user); not sent in the boot protocol. */
  wheel: number;
}

/** Options of {@linkcode HidMouse}. */
export interface HidMouseOptions {
  /** Default 0x1209 (pid.codes). */
  vendorId?: number;
  /** Default 0x0002 (a pid.codes test PID). */
  productId?: number;
  /** The serial number string; none by default. */
  serial?: string;
}

/** The mouse's descriptor tree (a full-speed device; see {@linkcode HidMouse}). */
export function hidMouseDescriptors(options: HidMouseOptions = {}): UsbDescriptors {
  return hidDeviceDescriptors({
    idVendor: options.vendorId ?? HID_MOUSE_IDS.idVendor,
    idProduct: options.productId ?? HID_MOUSE_IDS.idProduct,
    manufacturer: "usbipgw",
    product: "Mouse",
    ...(options.serial !== undefined ? { serial: options.serial } : {}),
    bInterfaceSubClass: 1,
    bInterfaceProtocol: 2,
    reportDescriptor: MOUSE_REPORT_DESCRIPTOR,
    maxPacketSize: MOUSE_REPORT_LENGTH,
  });
}

function _checkButtons(buttons: number): void {
  if (!Number.isInteger(buttons) || buttons < 0 || buttons > ALL_BUTTONS) {
    throw new RangeError(`Buttons must be bits of 0..${ALL_BUTTONS}, got ${buttons}`);
  }
}

function _step(remaining: number): number {
  return Math.max(-MAX_STEP, Math.min(MAX_STEP, remaining));
}

/**
 * A full-speed USB HID boot mouse (interface class 3, subclass 1, protocol 2) with 3 buttons
 * and a wheel, one interrupt IN endpoint 0x81 of 4 bytes, bInterval 10 ms. In the report
 * protocol a report is buttons, X, Y, wheel (signed bytes); in the boot protocol the wheel is
 * left out (HID 1.11 Appendix B.2). See {@linkcode HidPointer} for how reports reach the host.
 *
 * @example Moving a configured mouse
 * ```ts
 * import { HidMouse } from "./mouse.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * const mouse = new HidMouse();
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await mouse.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0,
 *   } });
 * const moved = mouse.move(10, -5);
 * const r = await mouse.submit({ ...base, endpoint: 1, dirIn: true, type: "interrupt", length: 4 });
 * console.assert(r.data?.join() === "0,10,251,0");
 * await moved;
 * ```
 */
export class HidMouse extends HidPointer<MouseState> {
  /** Creates a mouse. */
  constructor(options: HidMouseOptions = {}) {
    super(hidMouseDescriptors(options), Speed.FULL, MOUSE_REPORT_DESCRIPTOR, true);
  }

  /** Buttons up, no motion. */
  protected override initialState(): MouseState {
    return { buttons: 0, dx: 0, dy: 0, wheel: 0 };
  }

  /** 4 bytes in the report protocol, 3 in the boot protocol. */
  protected override encode(s: MouseState): Uint8Array {
    const boot = this.protocol === HidProtocol.BOOT;
    const b = new Uint8Array(boot ? MOUSE_BOOT_REPORT_LENGTH : MOUSE_REPORT_LENGTH);
    b[0] = s.buttons;
    b[1] = s.dx & 0xff;
    b[2] = s.dy & 0xff;
    if (!boot) b[3] = s.wheel & 0xff;
    return b;
  }

  /** No motion and the same buttons. */
  protected override unchanged(next: MouseState, current: MouseState): boolean {
    return next.dx === 0 && next.dy === 0 && next.wheel === 0 && next.buttons === current.buttons;
  }

  /** The buttons without the motion. */
  protected override settled(s: MouseState): MouseState {
    return { buttons: s.buttons, dx: 0, dy: 0, wheel: 0 };
  }

  /**
   * Moves by `dx`, `dy` (Y grows downwards) and turns the wheel by `wheel` detents, in as
   * many reports as it takes to keep each step within -127..127, with the held buttons.
   *
   * @throws {RangeError} If an amount is not a safe integer.
   * @returns A promise that resolves when the host has read the reports (at once for no
   * motion), or rejects if the device is disconnected first.
   */
  move(dx: number, dy: number, wheel = 0): Promise<void> {
    for (const n of [dx, dy, wheel]) {
      if (!Number.isSafeInteger(n)) throw new RangeError(`Moves are integers, got ${n}`);
    }
    const buttons = this.buttons;
    const states: MouseState[] = [];
    while (dx !== 0 || dy !== 0 || wheel !== 0) {
      const s = { buttons, dx: _step(dx), dy: _step(dy), wheel: _step(wheel) };
      states.push(s);
      dx -= s.dx;
      dy -= s.dy;
      wheel -= s.wheel;
    }
    return this.enqueue(states);
  }

  /** A relative move; `abs` throws `TypeError` (a mouse cannot, use a tablet). */
  protected override applyMotion(
    command: Extract<PointerCommand, { kind: "move" | "abs" }>,
  ): Promise<void> {
    if (command.kind === "abs") {
      throw new TypeError('The mouse moves only relatively: "abs" needs a tablet');
    }
    return this.move(command.dx, command.dy, command.wheel);
  }
}
