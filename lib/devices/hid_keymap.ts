/**
 * The US keyboard layout as HID usages (HID Usage Tables 1.12 §10, Keyboard/Keypad page 0x07)
 * and the 8-byte boot keyboard input report (HID 1.11 Appendix B.1): which key, with which
 * modifiers, types a character, and the press/release reports that type a text.
 *
 * @module
 */

/** Bits of the modifier byte, byte 0 of the report (usages 0xE0..0xE7, HID 1.11 §8.3). */
export const Modifier = {
  LEFT_CTRL: 0x01,
  LEFT_SHIFT: 0x02,
  LEFT_ALT: 0x04,
  LEFT_GUI: 0x08,
  RIGHT_CTRL: 0x10,
  RIGHT_SHIFT: 0x20,
  RIGHT_ALT: 0x40,
  RIGHT_GUI: 0x80,
} as const;

/** Usage IDs of the Keyboard/Keypad page (0x07) that are not letters or digits. */
export const KeyUsage = {
  /** Reported in every key slot when more keys are down than the report holds. */
  ERROR_ROLL_OVER: 0x01,
  A: 0x04,
  Z: 0x1d,
  /** Digits 1..9 are 0x1e..0x26 and 0 is 0x27. */
  DIGIT_1: 0x1e,
  DIGIT_0: 0x27,
  ENTER: 0x28,
  ESCAPE: 0x29,
  BACKSPACE: 0x2a,
  TAB: 0x2b,
  SPACE: 0x2c,
  MINUS: 0x2d,
  EQUAL: 0x2e,
  LEFT_BRACKET: 0x2f,
  RIGHT_BRACKET: 0x30,
  BACKSLASH: 0x31,
  SEMICOLON: 0x33,
  APOSTROPHE: 0x34,
  GRAVE: 0x35,
  COMMA: 0x36,
  PERIOD: 0x37,
  SLASH: 0x38,
  CAPS_LOCK: 0x39,
} as const;

/** The length of a boot keyboard input report: modifiers, reserved, six key slots. */
export const BOOT_REPORT_LENGTH = 8;

/** A key and the modifiers held with it. */
export interface KeyStroke {
  /** Modifier bits ({@linkcode Modifier}). */
  modifiers: number;
  /** Usage ID on the Keyboard/Keypad page. */
  usage: number;
}

/** What {@linkcode reportsFor} makes of a text. */
export interface TextReports {
  /** A press report and then an all-released report for each character that has a key. */
  reports: Uint8Array[];
  /** The characters with no key on the US layout, in the order they appear. */
  unmapped: string[];
}

/** Options of {@linkcode reportsFor}. */
export interface ReportsForOptions {
  /** The host's Caps Lock is on: letters are typed with the opposite shift. Default false. */
  capsLock?: boolean;
}

const SHIFT = Modifier.LEFT_SHIFT;

function _buildKeymap(): Map<string, KeyStroke> {
  const map = new Map<string, KeyStroke>();
  const put = (char: string, usage: number, modifiers = 0) => map.set(char, { modifiers, usage });
  for (let i = 0; i < 26; i++) {
    put(String.fromCharCode(0x61 + i), KeyUsage.A + i);
    put(String.fromCharCode(0x41 + i), KeyUsage.A + i, SHIFT);
  }
  const digits = "1234567890";
  const shiftedDigits = "!@#$%^&*()";
  for (let i = 0; i < 10; i++) {
    put(digits[i]!, KeyUsage.DIGIT_1 + i);
    put(shiftedDigits[i]!, KeyUsage.DIGIT_1 + i, SHIFT);
  }
  const symbols: [number, string, string][] = [
    [KeyUsage.MINUS, "-", "_"],
    [KeyUsage.EQUAL, "=", "+"],
    [KeyUsage.LEFT_BRACKET, "[", "{"],
    [KeyUsage.RIGHT_BRACKET, "]", "}"],
    [KeyUsage.BACKSLASH, "\\", "|"],
    [KeyUsage.SEMICOLON, ";", ":"],
    [KeyUsage.APOSTROPHE, "'", '"'],
    [KeyUsage.GRAVE, "`", "~"],
    [KeyUsage.COMMA, ",", "<"],
    [KeyUsage.PERIOD, ".", ">"],
    [KeyUsage.SLASH, "/", "?"],
  ];
  for (const [usage, plain, shifted] of symbols) {
    put(plain, usage);
    put(shifted, usage, SHIFT);
  }
  put(" ", KeyUsage.SPACE);
  put("\n", KeyUsage.ENTER);
  put("\t", KeyUsage.TAB);
  put("\b", KeyUsage.BACKSPACE);
  put("\x1b", KeyUsage.ESCAPE);
  return map;
}

const KEYMAP: ReadonlyMap<string, KeyStroke> = _buildKeymap();

/**
 * The key that types `char` on a US keyboard, or `undefined` when no key does. Letters,
 * digits, the printable ASCII symbols, space, `"\n"` (Enter), `"\t"` (Tab), `"\b"`
 * (Backspace) and `"\x1b"` (Escape) have keys; `"\r"` and everything outside ASCII do not.
 *
 * @example Capitals are the letter's key with left shift
 * ```ts
 * import { keyFor, Modifier } from "./hid_keymap.ts";
 * console.assert(keyFor("a")?.usage === 0x04 && keyFor("a")?.modifiers === 0);
 * console.assert(keyFor("Z")?.usage === 0x1d && keyFor("Z")?.modifiers === Modifier.LEFT_SHIFT);
 * console.assert(keyFor("é") === undefined);
 * ```
 */
export function keyFor(char: string): KeyStroke | undefined {
  const k = KEYMAP.get(char);
  return k && { ...k };
}

/**
 * Encodes a boot keyboard input report: the modifier byte, a reserved zero byte and up to six
 * usages. With more than six keys every slot holds ErrorRollOver (0x01), as HID 1.11
 * Appendix C asks of a keyboard that cannot report all its keys.
 *
 * @throws {RangeError} If a modifier or usage is not a byte.
 *
 * @example Left shift and "a"
 * ```ts
 * import { encodeKeyboardReport } from "./hid_keymap.ts";
 * const r = encodeKeyboardReport(0x02, [0x04]);
 * console.assert(r.join() === "2,0,4,0,0,0,0,0");
 * ```
 */
export function encodeKeyboardReport(modifiers: number, usages: readonly number[]): Uint8Array {
  for (const v of [modifiers, ...usages]) {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) {
      throw new RangeError(`Cannot encode keyboard report: a value is ${v}, expected a byte`);
    }
  }
  const r = new Uint8Array(BOOT_REPORT_LENGTH);
  r[0] = modifiers;
  if (usages.length > 6) r.fill(KeyUsage.ERROR_ROLL_OVER, 2);
  else r.set(usages, 2);
  return r;
}

/**
 * The reports that type `text`: for each character with a key, a report pressing it (with
 * shift where needed) followed by an all-released report, so that repeated characters are
 * seen as separate presses. Characters without a key are skipped and listed in `unmapped`.
 * Text is read by code point, so a character outside the BMP is one unmapped entry.
 *
 * @example Two reports per character
 * ```ts
 * import { reportsFor } from "./hid_keymap.ts";
 * const { reports, unmapped } = reportsFor("Hi✓");
 * console.assert(reports.length === 4 && reports[0]!.join() === "2,0,11,0,0,0,0,0");
 * console.assert(reports[1]!.every((b) => b === 0) && unmapped.join() === "✓");
 * ```
 */
export function reportsFor(text: string, options: ReportsForOptions = {}): TextReports {
  const reports: Uint8Array[] = [];
  const unmapped: string[] = [];
  for (const char of text) {
    const k = KEYMAP.get(char);
    if (k === undefined) {
      unmapped.push(char);
      continue;
    }
    const isLetter = k.usage >= KeyUsage.A && k.usage <= KeyUsage.Z;
    const modifiers = options.capsLock && isLetter ? k.modifiers ^ SHIFT : k.modifiers;
    reports.push(encodeKeyboardReport(modifiers, [k.usage]), new Uint8Array(BOOT_REPORT_LENGTH));
  }
  return { reports, unmapped };
}
