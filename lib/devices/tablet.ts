/**
 * An emulated USB HID absolute pointer, a "tablet" as QEMU's usb-tablet is (HID 1.11: §7.2
 * class requests, §6.2.2 report descriptor items), which VMs use for a pointer that follows
 * the host's without capture.
 *
 * @module
 */

import { Speed } from "../protocol/constants.ts";
import type { UsbDescriptors } from "./descriptors.ts";
import { hidDeviceDescriptors } from "./hid.ts";
import { HidPointer, POINTER_REPORT_HEAD, type PointerCommand } from "./mouse.ts";

/** The largest coordinate: X and Y run from 0 (left, top) to this (right, bottom). */
export const TABLET_MAX = 0x7fff;

/**
 * The tablet's report descriptor: the layout of QEMU's usb-tablet without its wheel. A
 * Generic Desktop Mouse application holding a Pointer with 3 buttons, 5 bits of padding, and
 * absolute X and Y of 16 bits from 0 to 32767; a report is 5 bytes: buttons, X and Y
 * little-endian.
 */
export const TABLET_REPORT_DESCRIPTOR: Uint8Array = new Uint8Array([
  ...POINTER_REPORT_HEAD,
  ...[0x09, 0x30], //     Usage (X)
  ...[0x09, 0x31], //     Usage (Y)
  ...[0x15, 0x00], //     Logical Minimum (0)
  ...[0x26, 0xff, 0x7f], //     Logical Maximum (32767)
  ...[0x75, 0x10], //     Report Size (16)
  ...[0x95, 0x02], //     Report Count (2)
  ...[0x81, 0x02], //     Input (Data, Variable, Absolute): X, Y
  0xc0, //   End Collection
  0xc0, // End Collection
]);

/** Bytes of a tablet report. */
export const TABLET_REPORT_LENGTH = 5;

/** pid.codes' vendor ID and a test product ID, the tablet's defaults. */
export const HID_TABLET_IDS = { idVendor: 0x1209, idProduct: 0x0003 } as const;

/** The state behind one tablet report: held buttons and the position, each in 0..32767. */
export interface TabletState {
  /** The held buttons, bits of `PointerButton`. */
  buttons: number;
  /** The horizontal position, 0 (left) to {@linkcode TABLET_MAX} (right). */
  x: number;
  /** The vertical position, 0 (top) to {@linkcode TABLET_MAX} (bottom). */
  y: number;
}

/** Options of {@linkcode HidTablet}. */
export interface HidTabletOptions {
  /** Default 0x1209 (pid.codes). */
  vendorId?: number;
  /** Default 0x0003 (a pid.codes test PID). */
  productId?: number;
  /** The serial number string; none by default. */
  serial?: string;
}

/** The tablet's descriptor tree (a full-speed device; see {@linkcode HidTablet}). */
export function hidTabletDescriptors(options: HidTabletOptions = {}): UsbDescriptors {
  return hidDeviceDescriptors({
    idVendor: options.vendorId ?? HID_TABLET_IDS.idVendor,
    idProduct: options.productId ?? HID_TABLET_IDS.idProduct,
    manufacturer: "usbipgw",
    product: "Tablet",
    ...(options.serial !== undefined ? { serial: options.serial } : {}),
    bInterfaceSubClass: 0,
    bInterfaceProtocol: 0,
    reportDescriptor: TABLET_REPORT_DESCRIPTOR,
    maxPacketSize: 8,
  });
}

function _coordinate(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > TABLET_MAX) {
    throw new RangeError(`Tablet coordinates are integers in 0..${TABLET_MAX}, got ${n}`);
  }
  return n;
}

/**
 * A full-speed USB HID absolute pointer (interface class 3, subclass 0, protocol 0: not a
 * boot device, so GET/SET_PROTOCOL stall) with 3 buttons, one interrupt IN endpoint 0x81 of
 * 8 bytes, bInterval 10 ms. Reports are 5 bytes: buttons, X, Y (16-bit little-endian,
 * 0..32767). It starts at (0, 0). A position equal to the one the host has, with the same
 * buttons, is not sent again. See {@linkcode HidPointer} for how reports reach the host.
 *
 * @example Pointing at the middle of the screen
 * ```ts
 * import { HidTablet } from "./tablet.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * const tablet = new HidTablet();
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await tablet.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0,
 *   } });
 * const moved = tablet.moveTo(0.5, 0.5);
 * const r = await tablet.submit({ ...base, endpoint: 1, dirIn: true, type: "interrupt", length: 8 });
 * console.assert(r.data?.join() === "0,0,64,0,64");
 * await moved;
 * ```
 */
export class HidTablet extends HidPointer<TabletState> {
  /** Creates a tablet. */
  constructor(options: HidTabletOptions = {}) {
    super(hidTabletDescriptors(options), Speed.FULL, TABLET_REPORT_DESCRIPTOR, false);
  }

  /** Buttons up, at the top-left corner. */
  protected override initialState(): TabletState {
    return { buttons: 0, x: 0, y: 0 };
  }

  /** Buttons, X and Y little-endian. */
  protected override encode(s: TabletState): Uint8Array {
    const b = new Uint8Array(TABLET_REPORT_LENGTH);
    const v = new DataView(b.buffer);
    b[0] = s.buttons;
    v.setUint16(1, s.x, true);
    v.setUint16(3, s.y, true);
    return b;
  }

  /** The same buttons at the same place. */
  protected override unchanged(next: TabletState, current: TabletState): boolean {
    return next.buttons === current.buttons && next.x === current.x && next.y === current.y;
  }

  /** Absolute states repeat as they are. */
  protected override settled(s: TabletState): TabletState {
    return s;
  }

  /** The position, in 0..32767, once the queued reports are read. */
  get position(): { x: number; y: number } {
    const { x, y } = this.tail;
    return { x, y };
  }

  /**
   * Moves to (`x`, `y`), fractions of the width and height in 0..1 from the top-left
   * corner; they become `round(x × 32767)` and `round(y × 32767)`.
   *
   * @throws {RangeError} If `x` or `y` is outside 0..1.
   * @returns A promise that resolves when the host has read the report.
   */
  moveTo(x: number, y: number): Promise<void> {
    for (const f of [x, y]) {
      if (!(f >= 0 && f <= 1)) throw new RangeError(`Tablet positions are in 0..1, got ${f}`);
    }
    return this.moveToRaw(Math.round(x * TABLET_MAX), Math.round(y * TABLET_MAX));
  }

  /**
   * Moves to (`x`, `y`) in report units, integers in 0..32767.
   *
   * @throws {RangeError} If `x` or `y` is not an integer in 0..32767.
   * @returns A promise that resolves when the host has read the report.
   */
  moveToRaw(x: number, y: number): Promise<void> {
    const s = { buttons: this.buttons, x: _coordinate(x), y: _coordinate(y) };
    return this.enqueue([s]);
  }

  /** An absolute position; `move` throws `TypeError` (a tablet cannot, use a mouse). */
  protected override applyMotion(
    command: Extract<PointerCommand, { kind: "move" | "abs" }>,
  ): Promise<void> {
    if (command.kind === "move") {
      throw new TypeError('The tablet takes absolute positions: "move" needs a mouse');
    }
    return this.moveTo(command.x, command.y);
  }
}
