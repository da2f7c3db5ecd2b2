// The device tests' transfer helpers: the public ones of testing.ts, under the names these
// tests use, plus the HID shapes (interrupt IN on endpoint 1, class requests to interface 0).
import type { TransferResult, UsbDevice } from "../../mod.ts";
import { classRequest, transfer } from "../../testing.ts";

export { control, getDescriptor, setConfiguration, transfer as data } from "../../testing.ts";

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
