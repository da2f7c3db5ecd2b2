/**
 * A device as the server exports it: the device, its bus id and device id, and which session
 * holds it. Bus ids follow Linux's `BUS-PORT[.PORT...]` form; `devid` is
 * `busnum << 16 | devnum` as in usbip_common.h.
 *
 * @module
 */

import type { UsbipExportedDevice } from "../protocol/op_messages.ts";
import type { DeviceFacts } from "../policy/policy.ts";
import type { UsbDevice } from "../devices/usb_device.ts";
import type { UsbDescriptors } from "../devices/descriptors.ts";

/** The form of a bus id: bus number, a dash, and one or more dot-separated port numbers. */
export const BUSID_PATTERN = /^([1-9]\d{0,2})-([1-9]\d{0,2})((?:\.[1-9]\d{0,2})*)$/;

/** An exported device. */
export interface ExportedDevice {
  readonly busid: string;
  readonly busnum: number;
  readonly devnum: number;
  /** `busnum << 16 | devnum`. */
  readonly devid: number;
  readonly device: UsbDevice;
  readonly origin: "emulated" | "passthrough";
  /** A short name for logs and lists, e.g. `gadget-zero`. */
  readonly name: string;
}

/** Parses a bus id into its bus number; throws `TypeError` naming the accepted form. */
export function busnumOf(busid: string): number {
  const m = BUSID_PATTERN.exec(busid);
  if (m === null || Number(m[1]) > 255) {
    throw new TypeError(
      `Invalid busid "${busid}": expected BUS-PORT[.PORT...] with numbers 1..255, e.g. 1-1 or 2-1.3`,
    );
  }
  return Number(m[1]);
}

/** The OP_REP_DEVLIST/OP_REP_IMPORT record of an exported device. */
export function deviceRecord(d: ExportedDevice): UsbipExportedDevice {
  const s = d.device.summary();
  return {
    path: `/sys/devices/platform/usbipgw/usb${d.busnum}/${d.busid}`,
    busid: d.busid,
    busnum: d.busnum,
    devnum: d.devnum,
    speed: s.speed,
    idVendor: s.idVendor,
    idProduct: s.idProduct,
    bcdDevice: s.bcdDevice,
    bDeviceClass: s.bDeviceClass,
    bDeviceSubClass: s.bDeviceSubClass,
    bDeviceProtocol: s.bDeviceProtocol,
    bConfigurationValue: s.bConfigurationValue,
    bNumConfigurations: s.bNumConfigurations,
    bNumInterfaces: s.interfaces.length,
    interfaces: s.interfaces,
  };
}

/** What the policy sees of an exported device. */
export function deviceFacts(d: ExportedDevice): DeviceFacts {
  const s = d.device.summary();
  const serial = d.device.descriptors.tree.device.iSerialNumber;
  return {
    busid: d.busid,
    idVendor: s.idVendor,
    idProduct: s.idProduct,
    bDeviceClass: s.bDeviceClass,
    interfaces: s.interfaces,
    ...(serial !== undefined ? { serial } : {}),
    origin: d.origin,
  };
}

/**
 * What the policy sees of a device that is not exported yet, from its descriptors (as a device
 * type describes it): the first configuration's interfaces, alternate setting 0, as an
 * unconfigured device shows them at import.
 */
export function descriptorFacts(
  busid: string,
  description: { descriptors: UsbDescriptors; origin: "emulated" | "passthrough" },
): DeviceFacts {
  const d = description.descriptors.device;
  const interfaces = (description.descriptors.configurations[0]?.interfaces ?? [])
    .filter((i) => i.bAlternateSetting === 0)
    .map(({ bInterfaceClass, bInterfaceSubClass, bInterfaceProtocol }) => ({
      bInterfaceClass,
      bInterfaceSubClass,
      bInterfaceProtocol,
    }));
  return {
    busid,
    idVendor: d.idVendor,
    idProduct: d.idProduct,
    bDeviceClass: d.bDeviceClass,
    interfaces,
    ...(d.iSerialNumber !== undefined ? { serial: d.iSerialNumber } : {}),
    origin: description.origin,
  };
}
