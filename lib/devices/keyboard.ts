/**
 * An emulated USB HID boot keyboard (HID 1.11: §7.2 class requests, §6.2 HID descriptor,
 * Appendix B.1 boot report, Appendix E.6 report descriptor) that types text on a US layout
 * and shows the host's LED output reports.
 *
 * @module
 */

import { Speed } from "../protocol/constants.ts";
import type { UsbDescriptors } from "./descriptors.ts";
import {
  BOOT_REPORT_LENGTH,
  encodeKeyboardReport,
  reportsFor,
  type TextReports,
} from "./hid_keymap.ts";
import { hidDeviceDescriptors, HidInputDevice } from "./hid.ts";
import type { MaybePromise, TransferResult, UsbTransfer } from "./usb_device.ts";

/** Bits of the LED output report (LED page 0x08, usages 1..5). */
export const Led = {
  NUM_LOCK: 0x01,
  CAPS_LOCK: 0x02,
  SCROLL_LOCK: 0x04,
  COMPOSE: 0x08,
  KANA: 0x10,
} as const;

/**
 * The boot keyboard report descriptor of HID 1.11 Appendix E.6: an 8-bit modifier field,
 * a reserved byte, 5 LED output bits with 3 bits of padding, and a 6-byte key array of
 * usages 0..101. Its input report is the 8-byte boot report of Appendix B.1, so the report
 * and boot protocols produce the same bytes.
 */
export const BOOT_KEYBOARD_REPORT_DESCRIPTOR: Uint8Array = new Uint8Array([
  ...[0x05, 0x01], // Usage Page (Generic Desktop)
  ...[0x09, 0x06], // Usage (Keyboard)
  ...[0xa1, 0x01], // Collection (Application)
  ...[0x05, 0x07], //   Usage Page (Keyboard/Keypad)
  ...[0x19, 0xe0], //   Usage Minimum (Left Control)
  ...[0x29, 0xe7], //   Usage Maximum (Right GUI)
  ...[0x15, 0x00], //   Logical Minimum (0)
  ...[0x25, 0x01], //   Logical Maximum (1)
  ...[0x75, 0x01], //   Report Size (1)
  ...[0x95, 0x08], //   Report Count (8)
  ...[0x81, 0x02], //   Input (Data, Variable, Absolute): modifier byte
  ...[0x95, 0x01], //   Report Count (1)
  ...[0x75, 0x08], //   Report Size (8)
  ...[0x81, 0x01], //   Input (Constant): reserved byte
  ...[0x95, 0x05], //   Report Count (5)
  ...[0x75, 0x01], //   Report Size (1)
  ...[0x05, 0x08], //   Usage Page (LEDs)
  ...[0x19, 0x01], //   Usage Minimum (Num Lock)
  ...[0x29, 0x05], //   Usage Maximum (Kana)
  ...[0x91, 0x02], //   Output (Data, Variable, Absolute): LED report
  ...[0x95, 0x01], //   Report Count (1)
  ...[0x75, 0x03], //   Report Size (3)
  ...[0x91, 0x01], //   Output (Constant): LED report padding
  ...[0x95, 0x06], //   Report Count (6)
  ...[0x75, 0x08], //   Report Size (8)
  ...[0x15, 0x00], //   Logical Minimum (0)
  ...[0x25, 0x65], //   Logical Maximum (101)
  ...[0x05, 0x07], //   Usage Page (Keyboard/Keypad)
  ...[0x19, 0x00], //   Usage Minimum (0)
  ...[0x29, 0x65], //   Usage Maximum (101)
  ...[0x81, 0x00], //   Input (Data, Array): key array
  0xc0, // End Collection
]);

/** The LED state the host last set, as bits and as flags. */
export interface KeyboardLeds {
  /** The LED byte of the output report (bits of {@linkcode Led}; padding bits cleared). */
  raw: number;
  /** Num Lock, bit 0. */
  numLock: boolean;
  /** Caps Lock, bit 1. */
  capsLock: boolean;
  /** Scroll Lock, bit 2. */
  scrollLock: boolean;
  /** Compose, bit 3. */
  compose: boolean;
  /** Kana, bit 4. */
  kana: boolean;
}

/** How a {@linkcode HidKeyboard.type} call went. */
export interface TypeResult {
  /** Characters that were typed. */
  typed: number;
  /** Characters with no key on the US layout, skipped, in the order they appear. */
  unmapped: string[];
}

/** Options of {@linkcode HidKeyboard}. */
export interface HidKeyboardOptions {
  /** Default 0x1209 (pid.codes). */
  vendorId?: number;
  /** Default 0x0001 (the pid.codes test PID). */
  productId?: number;
  /** The serial number string; none by default. */
  serial?: string;
  /**
   * Text typed once, when the host first polls the interrupt endpoint of the configured
   * device (that is, when a driver has bound and is listening). The constructor throws a
   * `TypeError` if a character of it has no key.
   */
  text?: string;
  /** Called with the new LED state when a SET_REPORT changes the LEDs or a reset clears them. */
  onLeds?: (leds: KeyboardLeds) => void;
}

/** pid.codes' vendor ID and test product ID, the keyboard's defaults. */
export const HID_KEYBOARD_IDS = { idVendor: 0x1209, idProduct: 0x0001 } as const;

/** HID 1.11 §7.2.4 recommends 500 ms (125 units of 4 ms) as a keyboard's initial idle rate. */
const DEFAULT_IDLE_RATE = 125;

/** The keyboard's descriptor tree (a full-speed device; see {@linkcode HidKeyboard}). */
export function hidKeyboardDescriptors(options: HidKeyboardOptions = {}): UsbDescriptors {
  return hidDeviceDescriptors({
    idVendor: options.vendorId ?? HID_KEYBOARD_IDS.idVendor,
    idProduct: options.productId ?? HID_KEYBOARD_IDS.idProduct,
    manufacturer: "usbipgw",
    product: "Keyboard",
    ...(options.serial !== undefined ? { serial: options.serial } : {}),
    bInterfaceSubClass: 1,
    bInterfaceProtocol: 1,
    reportDescriptor: BOOT_KEYBOARD_REPORT_DESCRIPTOR,
    maxPacketSize: BOOT_REPORT_LENGTH,
  });
}

function _ledsOf(raw: number): KeyboardLeds {
  return {
    raw,
    numLock: (raw & Led.NUM_LOCK) !== 0,
    capsLock: (raw & Led.CAPS_LOCK) !== 0,
    scrollLock: (raw & Led.SCROLL_LOCK) !== 0,
    compose: (raw & Led.COMPOSE) !== 0,
    kana: (raw & Led.KANA) !== 0,
  };
}

function _sameReport(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * A full-speed USB HID boot keyboard (interface class 3, subclass 1, protocol 1) with one
 * interrupt IN endpoint, 0x81, 8 bytes, bInterval 10 ms: a common value for real keyboards;
 * over USB/IP it only tells the host how often to poll, and an IN transfer completes as soon
 * as a report is due. LED output reports arrive by SET_REPORT on ep0, as on boot keyboards.
 *
 * Reports are queued and given to interrupt IN transfers one per transfer, in order; a report
 * equal to the last one given is dropped, since the host already has that state. With idle
 * rate 0 (what Linux sets) an IN transfer with nothing new stays pending until a report is
 * queued or its signal aborts; with idle rate N the last report is repeated every N×4 ms
 * while nothing changes (HID 1.11 §7.2.4). A bus reset or SET_CONFIGURATION puts the idle
 * rate back to 500 ms and the protocol to report (§7.2.4, §7.2.6) and forgets which report
 * the host has (its driver starts from all keys released); a bus reset also clears the LEDs.
 * Queued reports survive both and reach the host once it polls again, so text typed before
 * the host attaches is not lost. The boot and report protocols give the same 8-byte reports,
 * since the report descriptor is the boot one. Class requests need the configured state.
 *
 * @example Typing into a configured keyboard
 * ```ts
 * import { HidKeyboard } from "./keyboard.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * const kbd = new HidKeyboard();
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await kbd.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0,
 *   } });
 * const typed = kbd.type("A");
 * const read = () => kbd.submit({ ...base, endpoint: 1, dirIn: true, type: "interrupt", length: 8 });
 * const press = await read();
 * const release = await read();
 * console.assert(press.data?.join() === "2,0,4,0,0,0,0,0");
 * console.assert(release.data?.join() === "0,0,0,0,0,0,0,0");
 * console.assert((await typed).typed === 1);
 * ```
 */
export class HidKeyboard extends HidInputDevice<Uint8Array> {
  #leds = 0;
  #onLeds: ((leds: KeyboardLeds) => void) | undefined;
  #startupText: string | undefined;

  /**
   * Creates a keyboard.
   *
   * @throws {TypeError} If `options.text` has a character with no key on the US layout.
   */
  constructor(options: HidKeyboardOptions = {}) {
    super(hidKeyboardDescriptors(options), Speed.FULL, {
      reportDescriptor: BOOT_KEYBOARD_REPORT_DESCRIPTOR,
      boot: true,
      defaultIdleRate: DEFAULT_IDLE_RATE,
    });
    if (options.text !== undefined) {
      const { unmapped } = reportsFor(options.text);
      if (unmapped.length > 0) {
        throw new TypeError(
          `Cannot type the keyboard's text: no key for ${unmapped.map((c) => JSON.stringify(c))}`,
        );
      }
      this.#startupText = options.text;
    }
    this.#onLeds = options.onLeds;
  }

  /** The LED state the host last set with SET_REPORT. */
  get leds(): KeyboardLeds {
    return _ledsOf(this.#leds);
  }

  /**
   * Types `text` on a US layout: each character is a press report and then an all-released
   * report (after a release first, if keys are held). Letters follow the host's Caps Lock LED
   * at the time of the call, so the text comes out as written. Characters with no key are
   * skipped and listed in the result; nothing is thrown for them.
   *
   * @returns A promise that resolves when the host has read all the reports, or rejects if
   * the device is disconnected first.
   */
  type(text: string): Promise<TypeResult> {
    const { reports, unmapped }: TextReports = reportsFor(text, {
      capsLock: (this.#leds & Led.CAPS_LOCK) !== 0,
    });
    const result: TypeResult = { typed: reports.length / 2, unmapped };
    if (reports.length === 0) return Promise.resolve(result);
    if (!this.#releasedAtTail()) reports.unshift(new Uint8Array(BOOT_REPORT_LENGTH));
    return this.enqueue(reports).then(() => result);
  }

  /**
   * Queues a report with `usages` held down (six at most are reported; more report
   * ErrorRollOver) and the `modifiers` bits set. Keys stay down until {@linkcode release}.
   *
   * @throws {RangeError} If a usage or the modifiers are not bytes.
   * @returns A promise that resolves when the host has read the report.
   */
  press(usages: readonly number[], modifiers = 0): Promise<void> {
    return this.enqueue([encodeKeyboardReport(modifiers, usages)]);
  }

  /**
   * Queues a report with every key and modifier released.
   *
   * @returns A promise that resolves when the host has read the report.
   */
  release(): Promise<void> {
    return this.enqueue([new Uint8Array(BOOT_REPORT_LENGTH)]);
  }

  #releasedAtTail(): boolean {
    return this.tail.every((b) => b === 0);
  }

  /** No key and no modifier held: 8 zero bytes. */
  protected initialState(): Uint8Array {
    return new Uint8Array(BOOT_REPORT_LENGTH);
  }

  /** The boot and report protocols give the same 8 bytes. */
  protected encode(report: Uint8Array): Uint8Array {
    return report.slice();
  }

  /** Byte for byte the report the host has. */
  protected unchanged(next: Uint8Array, current: Uint8Array): boolean {
    return _sameReport(next, current);
  }

  /** A key report has no relative motion: it is repeated as it is. */
  protected settled(report: Uint8Array): Uint8Array {
    return report;
  }

  /** GET_REPORT(OUTPUT): the LED byte. */
  protected override getOutputReport(): Uint8Array {
    return new Uint8Array([this.#leds]);
  }

  /** SET_REPORT(OUTPUT): the LEDs (padding bits cleared). */
  protected override setOutputReport(data: Uint8Array): boolean {
    const byte = data[0];
    if (byte === undefined) return false;
    this.#setLeds(byte & 0x1f);
    return true;
  }

  #setLeds(raw: number): void {
    if (raw === this.#leds) return;
    this.#leds = raw;
    this.#onLeds?.(_ledsOf(raw));
  }

  /** Types the `text` option once a host first reads, then serves reports as every HID device. */
  protected override handleData(t: UsbTransfer): MaybePromise<TransferResult> {
    if (t.dirIn && !t.signal.aborted && this.#startupText !== undefined) {
      const text = this.#startupText;
      this.#startupText = undefined;
      this.type(text).catch(() => {}); // rejects only on disconnect, when nobody is listening
    }
    return super.handleData(t);
  }

  /** A bus reset: as SET_CONFIGURATION, and the LEDs go off. */
  protected override onReset(): void {
    super.onReset();
    this.#setLeds(0);
  }
}
