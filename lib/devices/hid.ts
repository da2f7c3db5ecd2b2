/**
 * What the HID devices share (HID 1.11): the class constants, the HID and device descriptors
 * of a one-interface HID device, and {@linkcode HidInputDevice}, the input-report machinery of
 * the keyboard, the mouse and the tablet (a report queue, the idle rate, the boot/report
 * protocol, and the class requests).
 *
 * @module
 */

import { Notifier } from "../util/wait.ts";
import type { SpeedValue } from "../protocol/constants.ts";
import { TransferType, type UsbDescriptors } from "./descriptors.ts";
import { Request, RequestType } from "../protocol/setup_packet.ts";
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

const INTERFACE = 0;
const ENDPOINT_IN = 0x81;
const CLASS_IN = RequestType.DIR_IN | RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const CLASS_OUT = RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const STANDARD_INTERFACE_IN = RequestType.DIR_IN | RequestType.RECIPIENT_INTERFACE;

/**
 * The 9-byte HID descriptor (HID 1.11 §6.2.1) for one report descriptor of `reportLength`
 * bytes: bcdHID 1.11, no country code.
 *
 * @example The descriptor for the boot keyboard report descriptor
 * ```ts
 * import { hidDescriptor } from "./hid.ts";
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
  /** The device descriptor's `idVendor`. */
  idVendor: number;
  /** The device descriptor's `idProduct`. */
  idProduct: number;
  /** The manufacturer string (`iManufacturer`). */
  manufacturer: string;
  /** The product string (`iProduct`). */
  product: string;
  /** The serial number string (`iSerialNumber`); none when absent. */
  serial?: string;
  /** 1 for a boot interface, else 0 (HID 1.11 §4.2). */
  bInterfaceSubClass: number;
  /** With subclass 1: 1 keyboard, 2 mouse (HID 1.11 §4.3). */
  bInterfaceProtocol: number;
  /** The report descriptor (HID 1.11 §6.2.2); its length goes into the HID descriptor. */
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
          bmAttributes: TransferType.INTERRUPT,
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

/** A report waiting for the host, and the caller to tell once the host has it. */
interface _Queued<S> {
  state: S;
  settle?: { resolve: () => void; reject: (e: unknown) => void };
}

/** How a {@linkcode HidInputDevice} answers the class requests. */
export interface HidInputOptions {
  /** The report descriptor GET_DESCRIPTOR(REPORT) returns. */
  reportDescriptor: Uint8Array;
  /** A boot interface answers GET/SET_PROTOCOL (HID 1.11 §7.2.5); others stall them. */
  boot: boolean;
  /** The idle rate after a reset or SET_CONFIGURATION, in units of 4 ms (§7.2.4). */
  defaultIdleRate: number;
}

/**
 * One HID interface (0) with one interrupt IN endpoint and report ID 0. Input states of type
 * `S` are queued and encoded when the host reads them (so a SET_PROTOCOL between queueing and
 * reading is honoured), one per interrupt IN transfer, in order; a state that would tell the
 * host nothing new is dropped. With idle rate 0 an IN transfer with nothing new stays pending
 * until a state is queued or its signal aborts; with idle rate N the current state is
 * repeated every N×4 ms, {@linkcode HidInputDevice.settled} (no relative motion). A bus reset
 * or SET_CONFIGURATION puts the idle rate back to its default and the protocol to report, and
 * forgets the host's view (its driver starts from the initial state); queued states survive
 * them. Class requests need the configured state. Output reports are refused unless a
 * subclass answers them ({@linkcode HidInputDevice.getOutputReport}, `setOutputReport`).
 */
export abstract class HidInputDevice<S> extends UsbDevice {
  #queue: _Queued<S>[] = [];
  /** The state the host was last given. */
  #current: S;
  #currentAt = performance.now();
  #idleRate: number;
  #protocol: number = HidProtocol.REPORT;
  #options: HidInputOptions;
  #wakeup = new Notifier();

  /** Builds the device from its descriptors and how it answers the class requests. */
  constructor(descriptors: UsbDescriptors, speed: SpeedValue, options: HidInputOptions) {
    super(descriptors, speed);
    this.#options = options;
    this.#idleRate = options.defaultIdleRate;
    this.#current = this.initialState();
    this.disconnected.addEventListener("abort", () => {
      for (const q of this.#queue.splice(0)) q.settle?.reject(this.disconnected.reason);
    }, { once: true });
  }

  /** The state a driver assumes when it starts (nothing held). */
  protected abstract initialState(): S;
  /** The input report for `state` in the current {@linkcode protocol}; a fresh buffer. */
  protected abstract encode(state: S): Uint8Array;
  /** Whether `next` would tell a host that has `current` nothing new. */
  protected abstract unchanged(next: S, current: S): boolean;
  /** `state` as sent again by the idle rate or GET_REPORT: relative motion removed. */
  protected abstract settled(state: S): S;

  /** The output report GET_REPORT(OUTPUT) returns; none (a stall) by default. */
  protected getOutputReport(): Uint8Array | undefined {
    return undefined;
  }

  /** Takes an output report from SET_REPORT(OUTPUT); false (a stall) by default. */
  protected setOutputReport(_data: Uint8Array): boolean {
    return false;
  }

  /** The idle rate in units of 4 ms; 0 means reports are sent only on change. */
  get idleRate(): number {
    return this.#idleRate;
  }

  /** The protocol the host chose: {@linkcode HidProtocol.BOOT} or `REPORT`. */
  get protocol(): number {
    return this.#protocol;
  }

  /** The input report of the state the host has, as GET_REPORT gives it (a copy). */
  get report(): Uint8Array {
    return this.encode(this.settled(this.#current));
  }

  /** The state of the last queued report, or the host's if none is queued. */
  protected get tail(): S {
    return this.#queue.at(-1)?.state ?? this.#current;
  }

  /**
   * Queues states for the host.
   *
   * @returns A promise that resolves when the host has read the last, or rejects if the
   * device is disconnected first.
   */
  protected enqueue(states: S[]): Promise<void> {
    if (this.disconnected.aborted) return Promise.reject(this.disconnected.reason);
    if (states.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      states.forEach((state, i) => {
        const q: _Queued<S> = { state };
        if (i === states.length - 1) q.settle = { resolve, reject };
        this.#queue.push(q);
      });
      this.#wakeup.notify();
    });
  }

  /**
   * Answers GET_DESCRIPTOR(HID or REPORT) to interface 0 and the HID class requests
   * (HID 1.11 §7.2) for report ID 0 while configured; stalls everything else.
   */
  protected override handleControl(c: ControlTransfer): TransferResult {
    const s = c.setup;
    if (s.bmRequestType === STANDARD_INTERFACE_IN && s.bRequest === Request.GET_DESCRIPTOR) {
      return hidClassDescriptor(this.#options.reportDescriptor, s.wValue, s.wIndex);
    }
    const isClass = s.bmRequestType === CLASS_IN || s.bmRequestType === CLASS_OUT;
    if (!isClass || s.wIndex !== INTERFACE || this.configurationValue === 0) return STALL;
    const dirIn = s.bmRequestType === CLASS_IN;
    const reportId = s.wValue & 0xff;
    const boot = this.#options.boot;
    switch (s.bRequest) {
      case HidRequest.GET_REPORT: {
        if (!dirIn || reportId !== 0) return STALL;
        const type = s.wValue >> 8;
        const report = type === HidReportType.INPUT
          ? this.report
          : type === HidReportType.OUTPUT
          ? this.getOutputReport()
          : undefined;
        return report === undefined ? STALL : dataResult(report);
      }
      case HidRequest.SET_REPORT:
        return !dirIn && reportId === 0 && s.wValue >> 8 === HidReportType.OUTPUT &&
            this.setOutputReport(c.data)
          ? OK
          : STALL;
      case HidRequest.GET_IDLE:
        return dirIn && s.wValue === 0 ? dataResult(new Uint8Array([this.#idleRate])) : STALL;
      case HidRequest.SET_IDLE:
        if (dirIn || reportId !== 0) return STALL;
        this.#idleRate = s.wValue >> 8;
        this.#wakeup.notify(); // waiting transfers recompute their deadline from the last report
        return OK;
      case HidRequest.GET_PROTOCOL:
        return boot && dirIn && s.wValue === 0
          ? dataResult(new Uint8Array([this.#protocol]))
          : STALL;
      case HidRequest.SET_PROTOCOL:
        if (!boot || dirIn || (s.wValue !== HidProtocol.BOOT && s.wValue !== HidProtocol.REPORT)) {
          return STALL;
        }
        this.#protocol = s.wValue;
        return OK;
      default:
        return STALL;
    }
  }

  /** Gives the interrupt IN transfer the next report, or keeps it pending until one is due. */
  protected override handleData(t: UsbTransfer): MaybePromise<TransferResult> {
    if (!t.dirIn) return STALL;
    if (t.signal.aborted) return CANCELLED;
    return this.#poll(t.length) ?? this.#waitForReport(t);
  }

  /** The next report due now, or `undefined` if there is none. */
  #poll(length: number): TransferResult | undefined {
    let next = this.#queue.shift();
    while (next !== undefined && this.unchanged(next.state, this.#current)) {
      next.settle?.resolve();
      next = this.#queue.shift();
    }
    if (next !== undefined) {
      this.#current = next.state;
      this.#currentAt = performance.now();
      next.settle?.resolve();
      return dataResult(this.encode(next.state).subarray(0, length));
    }
    if (this.#idleRate !== 0 && this.#idleDelay() === 0) {
      this.#current = this.settled(this.#current);
      this.#currentAt = performance.now();
      return dataResult(this.encode(this.#current).subarray(0, length));
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
      if (await this.#wakeup.wait(t.signal, this.#idleDelay()) === "aborted") return CANCELLED;
      const r = this.#poll(t.length);
      if (r !== undefined) return r;
    }
  }

  /** The host's driver starts over: nothing held, class state initial. */
  #restart(): void {
    this.#current = this.initialState();
    this.#currentAt = performance.now();
    this.#idleRate = this.#options.defaultIdleRate;
    this.#protocol = HidProtocol.REPORT;
    this.#wakeup.notify();
  }

  /** The host's driver starts over after SET_CONFIGURATION. */
  protected override onConfigurationChanged(): void {
    this.#restart();
  }

  /** A bus reset: as SET_CONFIGURATION. */
  protected override onReset(): void {
    this.#restart();
  }
}
