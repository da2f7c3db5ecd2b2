// The device tests' transfer helpers: the public ones of testing.ts, under the names these
// tests use, plus the HID shapes (interrupt IN on endpoint 1, class requests and descriptor
// reads to interface 0).
import { Request, RequestType, type TransferResult, type UsbDevice } from "../../mod.ts";
import { classRequest, control, transfer } from "../../testing.ts";

export { control, getDescriptor, setConfiguration, transfer as data } from "../../testing.ts";

/**
 * GET_DESCRIPTOR of `type` and `index` to interface `iface` (bmRequestType 0x81), as a HID
 * driver reads the HID and report descriptors (HID 1.11 §7.1.1), asking for `length` bytes.
 */
export function interfaceDescriptor(
  dev: UsbDevice,
  type: number,
  index: number,
  length = 255,
  iface = 0,
): Promise<TransferResult> {
  return control(dev, {
    bmRequestType: RequestType.DIR_IN | RequestType.RECIPIENT_INTERFACE,
    bRequest: Request.GET_DESCRIPTOR,
    wValue: (type << 8) | index,
    wIndex: iface,
    wLength: length,
  });
}

/** An interrupt IN transfer of `length` bytes on endpoint 1, as a HID driver polls it. */
export function interruptIn(
  dev: UsbDevice,
  length: number,
  signal?: AbortSignal,
): Promise<TransferResult> {
  return transfer(dev, 1, true, { type: "interrupt", length, ...(signal ? { signal } : {}) });
}

/** A class request to interface 0, IN (bmRequestType 0xa1), as the HID tests send them. */
export function classIn(dev: UsbDevice, bRequest: number, wValue: number, wLength: number) {
  return classRequest(dev, { dirIn: true, bRequest, wValue, wLength });
}

/** A class request to interface 0, OUT (bmRequestType 0x21), with `data` as its data stage. */
export function classOut(dev: UsbDevice, bRequest: number, wValue: number, data?: Uint8Array) {
  return classRequest(dev, { dirIn: false, bRequest, wValue }, data);
}
