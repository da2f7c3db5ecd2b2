/**
 * USB descriptors as a typed tree using the spec's field names, and the one encoder that turns
 * the tree into wire bytes (USB 2.0 §9.6, USB 3.2 §9.6 for BOS and SuperSpeed companions,
 * IAD ECN). Strings are given as text; the encoder assigns their indices.
 *
 * @module
 */

import { DescriptorType } from "../protocol/setup_packet.ts";

/** SuperSpeed endpoint companion (USB 3.2 §9.6.7). */
export interface SuperSpeedCompanion {
  /** Packets the endpoint moves in one burst, less one: 0..15 (USB 3.2 §9.6.7). */
  bMaxBurst: number;
  /** Bulk: MaxStreams in bits 4..0; isochronous: Mult in bits 1..0; else 0 (USB 3.2 §9.6.7). */
  bmAttributes: number;
  /** Bytes a periodic endpoint moves per service interval; 0 for bulk (USB 3.2 §9.6.7). */
  wBytesPerInterval: number;
}

/** An endpoint (USB 2.0 §9.6.6). */
export interface EndpointDescriptor {
  /** Endpoint number with bit 7 set for IN. */
  bEndpointAddress: number;
  /** Transfer type in bits 1..0: 0 control, 1 isochronous, 2 bulk, 3 interrupt. */
  bmAttributes: number;
  /** Largest packet in bits 10..0; bits 12..11 add high-speed transactions (USB 2.0 table 9-13). */
  wMaxPacketSize: number;
  /**
   * Polling interval of interrupt and isochronous endpoints: frames for a full- or low-speed
   * interrupt endpoint, else 2^(bInterval-1) frames or microframes (USB 2.0 table 9-13).
   */
  bInterval: number;
  /** Encoded right after the endpoint; every SuperSpeed endpoint needs one (USB 3.2 §9.6.7). */
  superSpeedCompanion?: SuperSpeedCompanion;
  /** Class-specific descriptors that follow the endpoint. */
  extra?: Uint8Array[];
}

/** An interface alternate setting (USB 2.0 §9.6.5). */
export interface InterfaceDescriptor {
  /** The interface's zero-based number in its configuration (USB 2.0 table 9-12). */
  bInterfaceNumber: number;
  /** This alternate setting's number, 0 the default; SET_INTERFACE selects (USB 2.0 table 9-12). */
  bAlternateSetting: number;
  /** Class code: 0x03 HID, 0x08 mass storage, 0xff vendor-specific, ... (USB 2.0 table 9-12). */
  bInterfaceClass: number;
  /** Subclass code, qualified by `bInterfaceClass` (USB 2.0 table 9-12). */
  bInterfaceSubClass: number;
  /** Protocol code, qualified by class and subclass (USB 2.0 table 9-12). */
  bInterfaceProtocol: number;
  /** The text of the interface's string; the encoder assigns `iInterface` (0 when absent). */
  iInterface?: string;
  /** Class-specific descriptors placed before the endpoints (HID, CDC functional, ...). */
  extra?: Uint8Array[];
  /** The endpoints other than endpoint 0; their count is written as `bNumEndpoints`. */
  endpoints: EndpointDescriptor[];
}

/** An interface association (IAD ECN), emitted before interface `bFirstInterface`. */
export interface InterfaceAssociation {
  /** The number of the function's first interface (IAD ECN table 9-Z). */
  bFirstInterface: number;
  /** How many contiguous interfaces, from `bFirstInterface` on, make up the function. */
  bInterfaceCount: number;
  /** The function's class code, as an interface's would be (e.g. 0x02 CDC). */
  bFunctionClass: number;
  /** The function's subclass code, qualified by `bFunctionClass`. */
  bFunctionSubClass: number;
  /** The function's protocol code, qualified by class and subclass. */
  bFunctionProtocol: number;
  /** The text of the function's string; the encoder assigns `iFunction` (0 when absent). */
  iFunction?: string;
}

/** A configuration (USB 2.0 §9.6.3); `interfaces` lists every alternate setting in order. */
export interface ConfigurationDescriptor {
  /** The non-zero value SET_CONFIGURATION selects this configuration by (USB 2.0 table 9-10). */
  bConfigurationValue: number;
  /** Bit 7 must be set; bit 6 self-powered; bit 5 remote wakeup. */
  bmAttributes: number;
  /** In units of 2 mA (8 mA for SuperSpeed). */
  bMaxPower: number;
  /** The text of the configuration's string; the encoder assigns `iConfiguration` (0 if absent). */
  iConfiguration?: string;
  /** Interface associations, each encoded before alternate setting 0 of its first interface. */
  associations?: InterfaceAssociation[];
  /** Every alternate setting in order; `bNumInterfaces` counts the distinct interface numbers. */
  interfaces: InterfaceDescriptor[];
}

/** The device descriptor's fields (USB 2.0 §9.6.1); `bNumConfigurations` is derived. */
export interface DeviceDescriptor {
  /** The USB release in BCD, 0x0200 for USB 2.0 (USB 2.0 table 9-8). */
  bcdUSB: number;
  /** Class code; 0 when each interface names its own, 0xff vendor-specific (USB 2.0 table 9-8). */
  bDeviceClass: number;
  /** Subclass code, qualified by `bDeviceClass` (USB 2.0 table 9-8). */
  bDeviceSubClass: number;
  /** Protocol code, qualified by class and subclass (USB 2.0 table 9-8). */
  bDeviceProtocol: number;
  /** Endpoint 0's largest packet: 8, 16, 32 or 64 (USB 2.0 table 9-8); 9 (512) at SuperSpeed. */
  bMaxPacketSize0: number;
  /** The vendor ID, assigned by the USB-IF (USB 2.0 table 9-8). */
  idVendor: number;
  /** The product ID, assigned by the vendor (USB 2.0 table 9-8). */
  idProduct: number;
  /** The device release number in BCD (USB 2.0 table 9-8). */
  bcdDevice: number;
  /** The manufacturer's name; the encoder assigns `iManufacturer` (0 when absent). */
  iManufacturer?: string;
  /** The product's name; the encoder assigns `iProduct` (0 when absent). */
  iProduct?: string;
  /** The serial number; the encoder assigns `iSerialNumber` (0 when absent). */
  iSerialNumber?: string;
}

/** Everything a device describes about itself. */
export interface UsbDescriptors {
  /** The device descriptor; its `bNumConfigurations` is the length of `configurations`. */
  device: DeviceDescriptor;
  /** The configurations at the speed the device runs at. */
  configurations: ConfigurationDescriptor[];
  /**
   * The configurations at the other speed of a high-speed-capable device; when present the
   * device answers DEVICE_QUALIFIER and OTHER_SPEED_CONFIGURATION.
   */
  otherSpeedConfigurations?: ConfigurationDescriptor[];
  /** Device capability descriptors for the BOS (needed from bcdUSB 0x0201 on). */
  capabilities?: Uint8Array[];
  /** The one language the strings are in; default 0x0409 (English, US). */
  languageId?: number;
}

/** Transfer types as in `bmAttributes` bits 1..0. */
export const TransferType = { CONTROL: 0, ISOCHRONOUS: 1, BULK: 2, INTERRUPT: 3 } as const;

/** The transfer type names used by devices. */
export type TransferTypeName = "control" | "isochronous" | "bulk" | "interrupt";

const TYPE_NAMES: readonly TransferTypeName[] = ["control", "isochronous", "bulk", "interrupt"];

/** The transfer type of an endpoint descriptor. */
export function endpointType(ep: EndpointDescriptor): TransferTypeName {
  return TYPE_NAMES[ep.bmAttributes & 3]!;
}

/** An interface's class, subclass and protocol: what a device list and a policy see of it. */
export type InterfaceClass = Pick<
  InterfaceDescriptor,
  "bInterfaceClass" | "bInterfaceSubClass" | "bInterfaceProtocol"
>;

/**
 * The interfaces of `configuration` as a device list (and a policy's `InterfaceFacts`) shows
 * them: alternate setting 0 of each, by class, subclass and protocol; none without a
 * configuration.
 *
 * @example An alternate setting is not another interface
 * ```ts
 * import { interfaceClasses } from "./descriptors.ts";
 * const i = { bInterfaceNumber: 0, bInterfaceSubClass: 0, bInterfaceProtocol: 0, endpoints: [] };
 * const classes = interfaceClasses({
 *   bConfigurationValue: 1,
 *   bmAttributes: 0x80,
 *   bMaxPower: 50,
 *   interfaces: [
 *     { ...i, bAlternateSetting: 0, bInterfaceClass: 0x08 },
 *     { ...i, bAlternateSetting: 1, bInterfaceClass: 0x08 },
 *   ],
 * });
 * console.assert(classes.length === 1 && classes[0]?.bInterfaceClass === 0x08);
 * console.assert(interfaceClasses(undefined).length === 0);
 * ```
 */
export function interfaceClasses(
  configuration: ConfigurationDescriptor | undefined,
): InterfaceClass[] {
  return (configuration?.interfaces ?? [])
    .filter((i) => i.bAlternateSetting === 0)
    .map(({ bInterfaceClass, bInterfaceSubClass, bInterfaceProtocol }) => ({
      bInterfaceClass,
      bInterfaceSubClass,
      bInterfaceProtocol,
    }));
}

/** A USB 2.0 Extension capability (USB 3.2 §9.6.2.1); bit 1 of `bmAttributes` is LPM. */
export function usb2ExtensionCapability(bmAttributes = 0): Uint8Array {
  const b = new Uint8Array(7);
  b.set([7, DescriptorType.DEVICE_CAPABILITY, 0x02]);
  new DataView(b.buffer).setUint32(3, bmAttributes, true);
  return b;
}

/** A SuperSpeed USB capability (USB 3.2 §9.6.2.2). */
export function superSpeedCapability(
  wSpeedsSupported = 0x000e,
  bFunctionalitySupport = 1,
  bU1DevExitLat = 10,
  wU2DevExitLat = 0x07ff,
): Uint8Array {
  const b = new Uint8Array(10);
  const v = new DataView(b.buffer);
  b.set([10, DescriptorType.DEVICE_CAPABILITY, 0x03, 0]);
  v.setUint16(4, wSpeedsSupported, true);
  b[6] = bFunctionalitySupport;
  b[7] = bU1DevExitLat;
  v.setUint16(8, wU2DevExitLat, true);
  return b;
}

function u16(out: number[], v: number) {
  out.push(v & 0xff, (v >> 8) & 0xff);
}

/**
 * The encoded form of a {@linkcode UsbDescriptors} tree: the bytes of every descriptor a host
 * may ask for, and lookups over the tree. Built once per device.
 *
 * @example Encoding a minimal device
 * ```ts
 * import { DescriptorSet } from "./descriptors.ts";
 * const set = new DescriptorSet({
 *   device: { bcdUSB: 0x200, bDeviceClass: 0, bDeviceSubClass: 0, bDeviceProtocol: 0,
 *     bMaxPacketSize0: 64, idVendor: 0x1234, idProduct: 0x5678, bcdDevice: 0x100,
 *     iProduct: "Demo" },
 *   configurations: [{ bConfigurationValue: 1, bmAttributes: 0x80, bMaxPower: 50,
 *     interfaces: [] }],
 * });
 * console.assert(set.device.length === 18 && set.device[15] === 1);
 * ```
 */
export class DescriptorSet {
  /** The source tree. */
  readonly tree: UsbDescriptors;
  /** The 18-byte device descriptor. */
  readonly device: Uint8Array;
  /** Full configuration descriptors, by index. */
  readonly configurations: Uint8Array[];
  /** Other-speed configuration descriptors, by index (type 7). */
  readonly otherSpeedConfigurations: Uint8Array[];
  /** The device qualifier, for high-speed-capable devices. */
  readonly qualifier: Uint8Array | undefined;
  /** The BOS with its capabilities, if any were given. */
  readonly bos: Uint8Array | undefined;
  readonly #strings = new Map<string, number>();
  readonly #stringBytes: Uint8Array[] = [];

  /** Encodes `tree`; throws `RangeError` for a value that does not fit its field. */
  constructor(tree: UsbDescriptors) {
    this.tree = tree;
    const lang = tree.languageId ?? 0x0409;
    this.#stringBytes.push(new Uint8Array([4, DescriptorType.STRING, lang & 0xff, lang >> 8]));
    const d = tree.device;
    const dev: number[] = [18, DescriptorType.DEVICE];
    u16(dev, d.bcdUSB);
    dev.push(d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol, d.bMaxPacketSize0);
    u16(dev, d.idVendor);
    u16(dev, d.idProduct);
    u16(dev, d.bcdDevice);
    dev.push(
      this.#string(d.iManufacturer),
      this.#string(d.iProduct),
      this.#string(d.iSerialNumber),
      tree.configurations.length,
    );
    this.device = this.#bytes(dev, "device");
    this.configurations = tree.configurations.map((c) =>
      this.#configuration(c, DescriptorType.CONFIGURATION)
    );
    const other = tree.otherSpeedConfigurations;
    this.otherSpeedConfigurations = (other ?? []).map((c) =>
      this.#configuration(c, DescriptorType.OTHER_SPEED_CONFIGURATION)
    );
    if (other !== undefined) {
      const q: number[] = [10, DescriptorType.DEVICE_QUALIFIER];
      u16(q, d.bcdUSB);
      q.push(d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol, d.bMaxPacketSize0);
      q.push(other.length, 0);
      this.qualifier = new Uint8Array(q);
    }
    if (tree.capabilities !== undefined) {
      const caps = tree.capabilities;
      const total = 5 + caps.reduce((n, c) => n + c.length, 0);
      const bos = new Uint8Array(total);
      bos.set([5, DescriptorType.BOS, total & 0xff, total >> 8, caps.length]);
      let o = 5;
      for (const c of caps) {
        bos.set(c, o);
        o += c.length;
      }
      this.bos = bos;
    }
  }

  #string(text: string | undefined): number {
    if (text === undefined) return 0;
    const known = this.#strings.get(text);
    if (known !== undefined) return known;
    const units = Array.from(text, (ch) => ch.codePointAt(0)!);
    const utf16: number[] = [];
    for (const cp of units) {
      if (cp > 0xffff) {
        const v = cp - 0x10000;
        utf16.push(0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
      } else {
        utf16.push(cp);
      }
    }
    const length = 2 + utf16.length * 2;
    if (length > 255) {
      throw new RangeError(`Cannot encode string "${text}": it is ${length} bytes, limit is 255`);
    }
    const b = new Uint8Array(length);
    b[0] = length;
    b[1] = DescriptorType.STRING;
    const v = new DataView(b.buffer);
    utf16.forEach((u, i) => v.setUint16(2 + i * 2, u, true));
    const index = this.#stringBytes.length;
    if (index > 255) throw new RangeError("Cannot encode strings: more than 255");
    this.#stringBytes.push(b);
    this.#strings.set(text, index);
    return index;
  }

  #bytes(fields: number[], what: string): Uint8Array {
    for (const f of fields) {
      if (!Number.isInteger(f) || f < 0 || f > 255) {
        throw new RangeError(`Cannot encode ${what} descriptor: a field is ${f}, expected a byte`);
      }
    }
    return new Uint8Array(fields);
  }

  #configuration(c: ConfigurationDescriptor, type: number): Uint8Array {
    const body: number[] = [];
    const numbers = new Set(c.interfaces.map((i) => i.bInterfaceNumber));
    for (const i of c.interfaces) {
      const iad = c.associations?.find((a) => a.bFirstInterface === i.bInterfaceNumber);
      if (iad && i.bAlternateSetting === 0) {
        body.push(
          8,
          DescriptorType.INTERFACE_ASSOCIATION,
          iad.bFirstInterface,
          iad.bInterfaceCount,
          iad.bFunctionClass,
          iad.bFunctionSubClass,
          iad.bFunctionProtocol,
          this.#string(iad.iFunction),
        );
      }
      body.push(
        9,
        DescriptorType.INTERFACE,
        i.bInterfaceNumber,
        i.bAlternateSetting,
        i.endpoints.length,
        i.bInterfaceClass,
        i.bInterfaceSubClass,
        i.bInterfaceProtocol,
        this.#string(i.iInterface),
      );
      for (const x of i.extra ?? []) body.push(...x);
      for (const e of i.endpoints) {
        body.push(7, DescriptorType.ENDPOINT, e.bEndpointAddress, e.bmAttributes);
        u16(body, e.wMaxPacketSize);
        body.push(e.bInterval);
        const ss = e.superSpeedCompanion;
        if (ss) {
          body.push(6, DescriptorType.SS_ENDPOINT_COMPANION, ss.bMaxBurst, ss.bmAttributes);
          u16(body, ss.wBytesPerInterval);
        }
        for (const x of e.extra ?? []) body.push(...x);
      }
    }
    const total = 9 + body.length;
    if (total > 0xffff) {
      throw new RangeError(`Cannot encode configuration ${c.bConfigurationValue}: ${total} bytes`);
    }
    const head: number[] = [9, type];
    u16(head, total);
    head.push(
      numbers.size,
      c.bConfigurationValue,
      this.#string(c.iConfiguration),
      c.bmAttributes,
      c.bMaxPower,
    );
    return this.#bytes([...head, ...body], "configuration");
  }

  /** The string descriptor at `index` (0 is the language table), or `undefined`. */
  string(index: number): Uint8Array | undefined {
    return this.#stringBytes[index];
  }

  /** The configuration whose `bConfigurationValue` is `value`. */
  configuration(value: number): ConfigurationDescriptor | undefined {
    return this.tree.configurations.find((c) => c.bConfigurationValue === value);
  }
}
