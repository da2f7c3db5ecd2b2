/**
 * An emulated Vernier Go!Temp USB thermometer (08f7:0002, HID 1.11 class device) whose input
 * reports follow the format Linux's ldusb driver (drivers/usb/misc/ldusb.c) passes through and
 * Vernier's GoIO software reads: sample count, sequence number, raw temperature words.
 *
 * Facts followed: the IDs (Vernier's vendor 0x08F7, product 0x0002 "USB direct temp", in Linux
 * ldusb's ID table and Vernier's GoIO SDK); 8-byte input reports: byte 0 is the number of
 * samples (0..3), byte 1 a sequence number that rolls over at 256, then three little-endian
 * signed 16-bit raw words, of which the first `count` are samples; raw = °C × 128.
 *
 * Decisions (not found in a source; chosen here):
 * - Descriptors: full speed, bMaxPacketSize0 64, bcdDevice 1.00, bus-powered 100 mA; one
 *   interface (class 3/0/0) with interrupt IN 0x81, 8 bytes, bInterval 10 ms; the report
 *   descriptor is {@linkcode GOTEMP_REPORT_DESCRIPTOR} (vendor page 0xFF00, an 8-byte input and
 *   an 8-byte output report, no report ID).
 * - The device samples from the moment it is configured (ldusb just reads); sample k is taken
 *   at `start + k·period` (k ≥ 1, period = 1000/rate ms). A report goes out when an IN transfer
 *   finds at least one sample due; it carries up to 3 samples, the latest due ones (older
 *   overdue samples are skipped, as a device that can buffer only one report would). Unused
 *   words are 0. Readings are rounded to raw units and clamped to −32768..32767.
 * - Commands come as output reports by SET_REPORT on ep0 (any report type: ldusb sends its
 *   writes with report type 1, hidraw with 2 or 3; report ID 0); byte 0 is the command.
 *   {@linkcode GoTempCommand.START_MEASUREMENTS} (0x12) resumes sampling (the schedule restarts
 *   one period later) and {@linkcode GoTempCommand.STOP_MEASUREMENTS} (0x18) stops it: pending
 *   IN transfers then wait until a start. Every output report is recorded (the last 64), and
 *   other commands are accepted without effect.
 * - GET_REPORT(input) returns the last input report sent (8 zero bytes before the first);
 *   GET_REPORT(output or feature) the last output report received, zero-padded to 8 bytes.
 *   GET/SET_IDLE are answered and stored but do not change when reports go out; SET_PROTOCOL
 *   stalls (not a boot device).
 * - SET_CONFIGURATION and a bus reset start sampling again and restart the sequence at 0.
 * - A source with no reading yet (a `unix:` socket before its first line) yields no sample;
 *   the transfer keeps waiting for the next sample time.
 *
 * @module
 */

import { Notifier } from "../util/wait.ts";
import { Speed } from "../protocol/constants.ts";
import { constantSource, type TemperatureSource } from "../backends/temperature_source.ts";
import type { UsbDescriptors } from "./descriptors.ts";
import { hidClassDescriptor, hidDeviceDescriptors, HidReportType, HidRequest } from "./hid.ts";
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

/** Vernier's vendor ID and the Go!Temp's product ID. */
export const GOTEMP_IDS = { idVendor: 0x08f7, idProduct: 0x0002 } as const;

/** The size of the Go!Temp's input and output reports. */
export const GOTEMP_REPORT_LENGTH = 8;

/** Samples one input report can carry. */
export const GOTEMP_MAX_SAMPLES = 3;

/** Raw units per degree Celsius: raw = °C × 128. */
export const GOTEMP_RAW_PER_CELSIUS = 128;

/** Default samples per second. */
export const GOTEMP_DEFAULT_RATE = 10;

/** Command bytes (byte 0 of an output report) the device acts on. */
export const GoTempCommand = {
  START_MEASUREMENTS: 0x12,
  STOP_MEASUREMENTS: 0x18,
} as const;

/**
 * The report descriptor: a vendor-defined (page 0xFF00) application collection with one 8-byte
 * input report and one 8-byte output report, without report IDs.
 */
export const GOTEMP_REPORT_DESCRIPTOR: Uint8Array = new Uint8Array([
  ...[0x06, 0x00, 0xff], // Usage Page (Vendor Defined 0xFF00)
  ...[0x09, 0x01], // Usage (1)
  ...[0xa1, 0x01], // Collection (Application)
  ...[0x15, 0x00], //   Logical Minimum (0)
  ...[0x26, 0xff, 0x00], //   Logical Maximum (255)
  ...[0x75, 0x08], //   Report Size (8)
  ...[0x95, 0x08], //   Report Count (8)
  ...[0x09, 0x01], //   Usage (1)
  ...[0x81, 0x02], //   Input (Data, Variable, Absolute): the 8-byte sample report
  ...[0x09, 0x01], //   Usage (1)
  ...[0x91, 0x02], //   Output (Data, Variable, Absolute): the 8-byte command report
  0xc0, // End Collection
]);

/** Options of {@linkcode GoTemp}. */
export interface GoTempOptions {
  /** Where readings come from; default a constant 21.5 °C. The device does not close it. */
  source?: TemperatureSource;
  /** Samples per second, > 0 and ≤ 1000; default {@linkcode GOTEMP_DEFAULT_RATE}. */
  rate?: number;
  /** The serial number string; none by default. */
  serial?: string;
  /**
   * The clock in milliseconds, used for sample times and passed to the source; default
   * `performance.timeOrigin + performance.now()` (monotonic, on the Unix epoch).
   */
  now?: () => number;
  /** Called with every output report the host sends (a copy). */
  onCommand?: (report: Uint8Array) => void;
}

/** A reading in °C as the Go!Temp's raw word: °C × 128, rounded, clamped to int16. */
export function celsiusToRaw(celsius: number): number {
  const raw = Math.round(celsius * GOTEMP_RAW_PER_CELSIUS);
  return Math.max(-32768, Math.min(32767, raw));
}

/**
 * Encodes an input report: the sample count, the sequence number (mod 256) and up to three
 * readings in °C as little-endian int16 raw words.
 *
 * @throws {RangeError} If there are more than 3 readings.
 *
 * @example 21.5 °C is raw 2752 (0x0ac0)
 * ```ts
 * import { encodeGoTempReport } from "./gotemp.ts";
 * console.assert(encodeGoTempReport(7, [21.5]).join() === "1,7,192,10,0,0,0,0");
 * ```
 */
export function encodeGoTempReport(sequence: number, celsius: readonly number[]): Uint8Array {
  if (celsius.length > GOTEMP_MAX_SAMPLES) {
    throw new RangeError(`A Go!Temp report holds at most 3 samples, not ${celsius.length}`);
  }
  const b = new Uint8Array(GOTEMP_REPORT_LENGTH);
  const v = new DataView(b.buffer);
  b[0] = celsius.length;
  b[1] = sequence & 0xff;
  celsius.forEach((c, i) => v.setInt16(2 + 2 * i, celsiusToRaw(c), true));
  return b;
}

/** The Go!Temp's descriptor tree (see {@linkcode GoTemp}). */
export function goTempDescriptors(options: Pick<GoTempOptions, "serial"> = {}): UsbDescriptors {
  return hidDeviceDescriptors({
    idVendor: GOTEMP_IDS.idVendor,
    idProduct: GOTEMP_IDS.idProduct,
    manufacturer: "Vernier Software & Technology",
    product: "Go! Temp",
    ...(options.serial !== undefined ? { serial: options.serial } : {}),
    bInterfaceSubClass: 0,
    bInterfaceProtocol: 0,
    reportDescriptor: GOTEMP_REPORT_DESCRIPTOR,
    maxPacketSize: GOTEMP_REPORT_LENGTH,
  });
}

const INTERFACE = 0;
const COMMAND_LOG = 64;
const CLASS_IN = RequestType.DIR_IN | RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const CLASS_OUT = RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const STANDARD_INTERFACE_IN = RequestType.DIR_IN | RequestType.RECIPIENT_INTERFACE;

const defaultClock = () => performance.timeOrigin + performance.now();

/**
 * A Vernier Go!Temp: a full-speed HID device that sends temperature samples from a
 * {@linkcode TemperatureSource} at a fixed rate on its interrupt IN endpoint. An IN transfer
 * completes only when a sample is due (never empty), stays pending while sampling is stopped,
 * and completes with "cancelled" when its signal aborts. See the module doc for the decisions.
 *
 * @example Reading one report
 * ```ts
 * import { GoTemp } from "./gotemp.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * let now = 0;
 * const dev = new GoTemp({ now: () => now });
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await dev.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0,
 *   } });
 * now = 100;
 * const r = await dev.submit({ ...base, endpoint: 1, dirIn: true, type: "interrupt", length: 8 });
 * console.assert(r.data?.join() === "1,0,192,10,0,0,0,0");
 * ```
 */
export class GoTemp extends UsbDevice {
  #source: TemperatureSource;
  #period: number;
  #now: () => number;
  #onCommand: ((report: Uint8Array) => void) | undefined;
  #sampling = true;
  #nextDue: number;
  #sequence = 0;
  #lastInput: Uint8Array = new Uint8Array(GOTEMP_REPORT_LENGTH);
  #lastOutput: Uint8Array = new Uint8Array(GOTEMP_REPORT_LENGTH);
  #commands: Uint8Array[] = [];
  #idleRate = 0;
  #wakeup = new Notifier();

  /**
   * Creates a Go!Temp.
   *
   * @throws {RangeError} If `options.rate` is not a number in (0, 1000].
   */
  constructor(options: GoTempOptions = {}) {
    super(goTempDescriptors(options), Speed.FULL);
    const rate = options.rate ?? GOTEMP_DEFAULT_RATE;
    if (!(rate > 0 && rate <= 1000)) {
      throw new RangeError(
        `Invalid Go!Temp rate ${rate}: expected samples per second in (0, 1000]`,
      );
    }
    this.#period = 1000 / rate;
    this.#source = options.source ?? constantSource(21.5);
    this.#now = options.now ?? defaultClock;
    this.#onCommand = options.onCommand;
    this.#nextDue = this.#now() + this.#period;
  }

  /** Whether the device is sampling (not stopped by the host). */
  get sampling(): boolean {
    return this.#sampling;
  }

  /** The sequence number the next input report will carry. */
  get sequence(): number {
    return this.#sequence;
  }

  /** Milliseconds between samples. */
  get period(): number {
    return this.#period;
  }

  /** The last input report sent (a copy; zeros before the first). */
  get report(): Uint8Array {
    return this.#lastInput.slice();
  }

  /** The output reports received, oldest first (the last 64; copies). */
  get commands(): Uint8Array[] {
    return this.#commands.map((c) => c.slice());
  }

  /** Answers the HID descriptors and class requests; stalls everything else. */
  protected override handleControl(c: ControlTransfer): TransferResult {
    const s = c.setup;
    if (s.bmRequestType === STANDARD_INTERFACE_IN && s.bRequest === Request.GET_DESCRIPTOR) {
      return hidClassDescriptor(GOTEMP_REPORT_DESCRIPTOR, s.wValue, s.wIndex);
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
        return dirIn && reportId === 0 ? dataResult(new Uint8Array([this.#idleRate])) : STALL;
      case HidRequest.SET_IDLE:
        if (dirIn || reportId !== 0) return STALL;
        this.#idleRate = s.wValue >> 8;
        return OK;
      default:
        return STALL;
    }
  }

  #getReport(type: number): TransferResult {
    if (type === HidReportType.INPUT) return dataResult(this.#lastInput.slice());
    if (type === HidReportType.OUTPUT || type === HidReportType.FEATURE) {
      return dataResult(this.#lastOutput.slice());
    }
    return STALL;
  }

  #setReport(type: number, data: Uint8Array): TransferResult {
    if (type < HidReportType.INPUT || type > HidReportType.FEATURE) return STALL;
    const report = new Uint8Array(GOTEMP_REPORT_LENGTH);
    report.set(data.subarray(0, GOTEMP_REPORT_LENGTH));
    this.#lastOutput = report;
    this.#commands.push(report.slice());
    if (this.#commands.length > COMMAND_LOG) this.#commands.shift();
    if (data.length > 0) {
      if (data[0] === GoTempCommand.START_MEASUREMENTS) this.#start();
      else if (data[0] === GoTempCommand.STOP_MEASUREMENTS) this.#stop();
    }
    this.#onCommand?.(report.slice());
    return OK;
  }

  #start(): void {
    if (this.#sampling) return;
    this.#sampling = true;
    this.#nextDue = this.#now() + this.#period;
    this.#wakeup.notify();
  }

  #stop(): void {
    this.#sampling = false;
    this.#wakeup.notify();
  }

  /** Gives the interrupt IN transfer the next report, or keeps it pending until one is due. */
  protected override handleData(t: UsbTransfer): MaybePromise<TransferResult> {
    if (!t.dirIn) return STALL;
    if (t.signal.aborted) return CANCELLED;
    return this.#poll(t.length) ?? this.#waitForReport(t);
  }

  /** The report due now, or `undefined` if none is. */
  #poll(length: number): TransferResult | undefined {
    if (!this.#sampling) return undefined;
    const now = this.#now();
    if (now < this.#nextDue) return undefined;
    const due = Math.floor((now - this.#nextDue) / this.#period) + 1;
    const readings: number[] = [];
    for (let k = Math.max(0, due - GOTEMP_MAX_SAMPLES); k < due; k++) {
      const c = this.#source.read(this.#nextDue + k * this.#period);
      if (c !== undefined) readings.push(c);
    }
    this.#nextDue += due * this.#period;
    if (readings.length === 0) return undefined;
    const report = encodeGoTempReport(this.#sequence, readings);
    this.#sequence = (this.#sequence + 1) & 0xff;
    this.#lastInput = report;
    return dataResult(report.slice(0, length));
  }

  async #waitForReport(t: UsbTransfer): Promise<TransferResult> {
    while (true) {
      const delay = this.#sampling ? Math.max(0, this.#nextDue - this.#now()) : undefined;
      if (await this.#wakeup.wait(t.signal, delay) === "aborted") return CANCELLED;
      const r = this.#poll(t.length);
      if (r !== undefined) return r;
    }
  }

  #restart(): void {
    this.#sampling = true;
    this.#sequence = 0;
    this.#idleRate = 0;
    this.#nextDue = this.#now() + this.#period;
    this.#wakeup.notify();
  }

  /** SET_CONFIGURATION: sampling starts over, sequence 0. */
  protected override onConfigurationChanged(): void {
    this.#restart();
  }

  /** A bus reset: as SET_CONFIGURATION. */
  protected override onReset(): void {
    this.#restart();
  }
}
