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
import { interfaceClasses, type UsbDescriptors } from "../devices/descriptors.ts";

/** An exported device. */
export interface ExportedDevice {
  /** The bus id clients import it by, e.g. `1-1` or `2-1.3`. */
  readonly busid: string;
  /** The bus number: the part of the bus id before the dash, 1..255. */
  readonly busnum: number;
  /** The device number on that bus, the lowest free from 2 up, as the device record sends it. */
  readonly devnum: number;
  /** `busnum << 16 | devnum`. */
  readonly devid: number;
  /** The device that answers the importer's transfers. */
  readonly device: UsbDevice;
  /** "emulated" (written with this library) or "passthrough" (a host device). */
  readonly origin: "emulated" | "passthrough";
  /** A short name for logs and lists, e.g. `gadget-zero`. */
  readonly name: string;
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
  return {
    busid,
    idVendor: d.idVendor,
    idProduct: d.idProduct,
    bDeviceClass: d.bDeviceClass,
    interfaces: interfaceClasses(description.descriptors.configurations[0]),
    ...(d.iSerialNumber !== undefined ? { serial: d.iSerialNumber } : {}),
    origin: description.origin,
  };
}
