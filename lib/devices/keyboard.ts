/**
 * An emulated USB HID boot keyboard (HID 1.11: §7.2 class requests, §6.2 HID descriptor,
 * Appendix B.1 boot report, Appendix E.6 report descriptor) that types text on a US layout
 * and shows the host's LED output reports.
 *
 * @module
 */

import { Wakeup } from "./wakeup.ts";
import { Speed } from "../protocol/constants.ts";
import type { UsbDescriptors } from "./descriptors.ts";
import {
  BOOT_REPORT_LENGTH,
  encodeKeyboardReport,
  reportsFor,
  type TextReports,
} from "./hid_keymap.ts";
import { Request, RequestType } from "./setup_packet.ts";
import {
  CANCELLED,
  type ControlTransfer,
  dataResult,
  type MaybePromise,
  OK,
  STALL,
  type TransferResult,
  UsbDevice,
  type UsbTransfer,
} from "./usb_device.ts";

/** HID class request codes (HID 1.11 §7.2). */
export const HidRequest = {
  GET_REPORT: 0x01,
  GET_IDLE: 0x02,
  GET_PROTOCOL: 0x03,
  SET_REPORT: 0x09,
  SET_IDLE: 0x0a,
  SET_PROTOCOL: 0x0b,
} as const;

/** HID class descriptor types (HID 1.11 §7.1). */
export const HidDescriptorType = { HID: 0x21, REPORT: 0x22, PHYSICAL: 0x23 } as const;

/** Report types in the high byte of GET_REPORT/SET_REPORT's `wValue` (HID 1.11 §7.2.1). */
export const HidReportType = { INPUT: 1, OUTPUT: 2, FEATURE: 3 } as const;

/** `wValue` of SET_PROTOCOL and the byte GET_PROTOCOL returns (HID 1.11 §7.2.5). */
export const HidProtocol = { BOOT: 0, REPORT: 1 } as const;

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

/**
 * The 9-byte HID descriptor (HID 1.11 §6.2.1) for one report descriptor of `reportLength`
 * bytes: bcdHID 1.11, no country code.
 *
 * @example The descriptor for the boot keyboard report descriptor
 * ```ts
 * import { hidDescriptor } from "./keyboard.ts";
 * console.assert(hidDescriptor(63).join() === "9,33,17,1,0,1,34,63,0");
 * ```
 */
export function hidDescriptor(reportLength: number): Uint8Array {
  const b = new Uint8Array(9);
  const v = new DataView(b.buffer);
  b[0] = 9;
  b[1] = HidDescriptorType.HID;
  v.setUint16(2, 0x0111, true); // bcdHID
  b[4] = 0; // bCountryCode: not localized
  b[5] = 1; // bNumDescriptors
  b[6] = HidDescriptorType.REPORT;
  v.setUint16(7, reportLength, true);
  return b;
}

/** What tells one single-interface HID device's descriptors from another's. */
export interface HidDeviceShape {
  idVendor: number;
  idProduct: number;
  manufacturer: string;
  product: string;
  serial?: string;
  /** 1 for a boot interface, else 0 (HID 1.11 §4.2). */
  bInterfaceSubClass: number;
  /** With subclass 1: 1 keyboard, 2 mouse (HID 1.11 §4.3). */
  bInterfaceProtocol: number;
  reportDescriptor: Uint8Array;
  /** The interrupt IN endpoint's packet size. */
  maxPacketSize: number;
}

/**
 * The descriptors of a full-speed device with one HID interface (interface 0) and one
 * interrupt IN endpoint 0x81 polled every 10 ms: the shape of the keyboard, mouse, tablet and
 * Go!Temp.
 */
export function hidDeviceDescriptors(shape: HidDeviceShape): UsbDescriptors {
  const device: UsbDescriptors["device"] = {
    bcdUSB: 0x0200,
    bDeviceClass: 0,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    bMaxPacketSize0: 64,
    idVendor: shape.idVendor,
    idProduct: shape.idProduct,
    bcdDevice: 0x0100,
    iManufacturer: shape.manufacturer,
    iProduct: shape.product,
  };
  if (shape.serial !== undefined) device.iSerialNumber = shape.serial;
  return {
    device,
    configurations: [{
      bConfigurationValue: 1,
      bmAttributes: 0x80,
      bMaxPower: 50,
      interfaces: [{
        bInterfaceNumber: INTERFACE,
        bAlternateSetting: 0,
        bInterfaceClass: 3,
        bInterfaceSubClass: shape.bInterfaceSubClass,
        bInterfaceProtocol: shape.bInterfaceProtocol,
        extra: [hidDescriptor(shape.reportDescriptor.length)],
        endpoints: [{
          bEndpointAddress: ENDPOINT_IN,
          bmAttributes: INTERRUPT,
          wMaxPacketSize: shape.maxPacketSize,
          bInterval: 10,
        }],
      }],
    }],
  };
}

/**
 * Answers GET_DESCRIPTOR with interface recipient for the HID descriptor (0x21) and the report
 * descriptor (0x22) of interface 0; everything else stalls.
 */
export function hidClassDescriptor(
  reportDescriptor: Uint8Array,
  wValue: number,
  wIndex: number,
): TransferResult {
  if (wIndex !== INTERFACE || (wValue & 0xff) !== 0) return STALL;
  switch (wValue >> 8) {
    case HidDescriptorType.HID:
      return dataResult(hidDescriptor(reportDescriptor.length));
    case HidDescriptorType.REPORT:
      return dataResult(reportDescriptor.slice());
    default:
      return STALL;
  }
}

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

const INTERFACE = 0;
const ENDPOINT_IN = 0x81;
const INTERRUPT = 3;
/** HID 1.11 §7.2.4 recommends 500 ms (125 units of 4 ms) as a keyboard's initial idle rate. */
const DEFAULT_IDLE_RATE = 125;
const CLASS_IN = RequestType.DIR_IN | RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const CLASS_OUT = RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const STANDARD_INTERFACE_IN = RequestType.DIR_IN | RequestType.RECIPIENT_INTERFACE;

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

/** A report waiting for the host, and the caller to tell once the host has it. */
interface _Queued {
  report: Uint8Array;
  settle?: { resolve: () => void; reject: (e: unknown) => void };
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
 * const kbd = new HidKeyboard();
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await kbd.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 } });
 * const typed = kbd.type("A");
 * const read = () => kbd.submit({ ...base, endpoint: 1, dirIn: true, type: "interrupt", length: 8 });
 * const press = await read();
 * const release = await read();
 * console.assert(press.data?.join() === "2,0,4,0,0,0,0,0");
 * console.assert(release.data?.join() === "0,0,0,0,0,0,0,0");
 * console.assert((await typed).typed === 1);
 * ```
 */
export class HidKeyboard extends UsbDevice {
  #queue: _Queued[] = [];
  /** The report the host was last given: the key state as the host sees it. */
  #current: Uint8Array = new Uint8Array(BOOT_REPORT_LENGTH);
  #currentAt = performance.now();
  #idleRate = DEFAULT_IDLE_RATE;
  #protocol: number = HidProtocol.REPORT;
  #leds = 0;
  #onLeds: ((leds: KeyboardLeds) => void) | undefined;
  #startupText: string | undefined;
  #wakeup = new Wakeup();

  /**
   * Creates a keyboard.
   *
   * @throws {TypeError} If `options.text` has a character with no key on the US layout.
   */
  constructor(options: HidKeyboardOptions = {}) {
    super(hidKeyboardDescriptors(options), Speed.FULL);
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
    this.disconnected.addEventListener("abort", () => {
      for (const q of this.#queue.splice(0)) q.settle?.reject(this.disconnected.reason);
    }, { once: true });
  }

  /** The LED state the host last set with SET_REPORT. */
  get leds(): KeyboardLeds {
    return _ledsOf(this.#leds);
  }

  /** The idle rate in units of 4 ms; 0 means reports are sent only on change. */
  get idleRate(): number {
    return this.#idleRate;
  }

  /** The protocol the host chose: {@linkcode HidProtocol.BOOT} or `REPORT`. */
  get protocol(): number {
    return this.#protocol;
  }

  /** The input report the host was last given (a copy). */
  get report(): Uint8Array {
    return this.#current.slice();
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
    return this.#enqueue(reports).then(() => result);
  }

  /**
   * Queues a report with `usages` held down (six at most are reported; more report
   * ErrorRollOver) and the `modifiers` bits set. Keys stay down until {@linkcode release}.
   *
   * @throws {RangeError} If a usage or the modifiers are not bytes.
   * @returns A promise that resolves when the host has read the report.
   */
  press(usages: readonly number[], modifiers = 0): Promise<void> {
    return this.#enqueue([encodeKeyboardReport(modifiers, usages)]);
  }

  /**
   * Queues a report with every key and modifier released.
   *
   * @returns A promise that resolves when the host has read the report.
   */
  release(): Promise<void> {
    return this.#enqueue([new Uint8Array(BOOT_REPORT_LENGTH)]);
  }

  #releasedAtTail(): boolean {
    const tail = this.#queue.at(-1)?.report ?? this.#current;
    return tail.every((b) => b === 0);
  }

  #enqueue(reports: Uint8Array[]): Promise<void> {
    if (this.disconnected.aborted) return Promise.reject(this.disconnected.reason);
    return new Promise((resolve, reject) => {
      reports.forEach((report, i) => {
        const q: _Queued = { report };
        if (i === reports.length - 1) q.settle = { resolve, reject };
        this.#queue.push(q);
      });
      this.#wakeup.wake();
    });
  }

  /**
   * Answers GET_DESCRIPTOR(HID or REPORT) to interface 0 and the HID class requests
   * (HID 1.11 §7.2) for report ID 0 while configured; stalls everything else.
   */
  protected override handleControl(c: ControlTransfer): TransferResult {
    const s = c.setup;
    if (s.bmRequestType === STANDARD_INTERFACE_IN && s.bRequest === Request.GET_DESCRIPTOR) {
      return hidClassDescriptor(BOOT_KEYBOARD_REPORT_DESCRIPTOR, s.wValue, s.wIndex);
    }
    const isClass = s.bmRequestType === CLASS_IN || s.bmRequestType === CLASS_OUT;
    if (!isClass || s.wIndex !== INTERFACE || this.configurationValue === 0) return STALL;
    const dirIn = s.bmRequestType === CLASS_IN;
    const reportId = s.wValue & 0xff;
    switch (s.bRequest) {
      case HidRequest.GET_REPORT:
        return dirIn && reportId === 0 ? this.#getReport(s.wValue >> 8) : STALL;
      case HidRequest.SET_REPORT:
        return !dirIn && reportId === 0 ? this.#setReport(s.wValue >> 8, c.data) : STALL;
      case HidRequest.GET_IDLE:
        return dirIn && s.wValue === 0 ? dataResult(new Uint8Array([this.#idleRate])) : STALL;
      case HidRequest.SET_IDLE:
        if (dirIn || reportId !== 0) return STALL;
        this.#idleRate = s.wValue >> 8;
        this.#wakeup.wake(); // waiting transfers recompute their deadline from the last report
        return OK;
      case HidRequest.GET_PROTOCOL:
        return dirIn && s.wValue === 0 ? dataResult(new Uint8Array([this.#protocol])) : STALL;
      case HidRequest.SET_PROTOCOL:
        if (dirIn || (s.wValue !== HidProtocol.BOOT && s.wValue !== HidProtocol.REPORT)) {
          return STALL;
        }
        this.#protocol = s.wValue;
        return OK;
      default:
        return STALL;
    }
  }

  #getReport(type: number): TransferResult {
    if (type === HidReportType.INPUT) return dataResult(this.#current.slice());
    if (type === HidReportType.OUTPUT) return dataResult(new Uint8Array([this.#leds]));
    return STALL;
  }

  #setReport(type: number, data: Uint8Array): TransferResult {
    const byte = data[0];
    if (type !== HidReportType.OUTPUT || byte === undefined) return STALL;
    this.#setLeds(byte & 0x1f);
    return OK;
  }

  #setLeds(raw: number): void {
    if (raw === this.#leds) return;
    this.#leds = raw;
    this.#onLeds?.(_ledsOf(raw));
  }

  /** Gives the interrupt IN transfer the next report, or keeps it pending until one is due. */
  protected override handleData(t: UsbTransfer): MaybePromise<TransferResult> {
    if (!t.dirIn) return STALL;
    if (t.signal.aborted) return CANCELLED;
    if (this.#startupText !== undefined) {
      const text = this.#startupText;
      this.#startupText = undefined;
      this.type(text).catch(() => {}); // rejects only on disconnect, when nobody is listening
    }
    return this.#poll(t.length) ?? this.#waitForReport(t);
  }

  /** The next report due now, or `undefined` if there is none. */
  #poll(length: number): TransferResult | undefined {
    let next = this.#queue.shift();
    while (next !== undefined && _sameReport(next.report, this.#current)) {
      next.settle?.resolve();
      next = this.#queue.shift();
    }
    if (next !== undefined) {
      this.#current = next.report;
      this.#currentAt = performance.now();
      next.settle?.resolve();
      return dataResult(next.report.slice(0, length));
    }
    if (this.#idleRate !== 0 && this.#idleDelay() === 0) {
      this.#currentAt = performance.now();
      return dataResult(this.#current.slice(0, length));
    }
    return undefined;
  }

  /** Milliseconds until the idle rate repeats the current report; `undefined` for never. */
  #idleDelay(): number | undefined {
    if (this.#idleRate === 0) return undefined;
    return Math.max(0, this.#currentAt + this.#idleRate * 4 - performance.now());
  }

  async #waitForReport(t: UsbTransfer): Promise<TransferResult> {
    while (true) {
      if (await this.#wakeup.wait(t.signal, this.#idleDelay())) return CANCELLED;
      const r = this.#poll(t.length);
      if (r !== undefined) return r;
    }
  }

  /** The host's driver starts over: it holds no keys, and the class state is initial. */
  #restart(): void {
    this.#current = new Uint8Array(BOOT_REPORT_LENGTH);
    this.#currentAt = performance.now();
    this.#idleRate = DEFAULT_IDLE_RATE;
    this.#protocol = HidProtocol.REPORT;
    this.#wakeup.wake();
  }

  /** The host's driver starts over after SET_CONFIGURATION. */
  protected override onConfigurationChanged(): void {
    this.#restart();
  }

  /** A bus reset: as SET_CONFIGURATION, and the LEDs go off. */
  protected override onReset(): void {
    this.#restart();
    this.#setLeds(0);
  }
}
