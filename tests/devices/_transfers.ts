// Helpers that build UsbTransfer objects for device tests.
import type { SetupPacket, TransferResult, UsbDevice, UsbTransfer } from "../../mod.ts";

const base = () => ({
  data: new Uint8Array(0),
  shortNotOk: false,
  zeroPacket: false,
  isoPackets: [],
  signal: new AbortController().signal,
});

/** Runs a control transfer: IN when bit 7 of bmRequestType is set, else OUT with `data`. */
export async function control(
  dev: UsbDevice,
  setup: SetupPacket,
  data?: Uint8Array,
): Promise<TransferResult> {
  const dirIn = (setup.bmRequestType & 0x80) !== 0;
  return await dev.submit({
    ...base(),
    endpoint: 0,
    dirIn,
    type: "control",
    setup,
    length: dirIn ? setup.wLength : (data?.length ?? 0),
    data: data ?? new Uint8Array(0),
  });
}

/** GET_DESCRIPTOR(type, index) with wLength `length`. */
export function getDescriptor(
  dev: UsbDevice,
  type: number,
  index: number,
  length = 4096,
  wIndex = 0,
) {
  return control(dev, {
    bmRequestType: 0x80,
    bRequest: 6,
    wValue: (type << 8) | index,
    wIndex,
    wLength: length,
  });
}

/** SET_CONFIGURATION(value). */
export function setConfiguration(dev: UsbDevice, value: number) {
  return control(dev, { bmRequestType: 0x00, bRequest: 9, wValue: value, wIndex: 0, wLength: 0 });
}

/** A data transfer on endpoint `ep`. */
export async function data(
  dev: UsbDevice,
  ep: number,
  dirIn: boolean,
  o: Partial<UsbTransfer> & { length?: number } = {},
): Promise<TransferResult> {
  const payload = o.data ?? new Uint8Array(0);
  const type = dev.transferType(ep, dirIn) ?? "bulk";
  return await dev.submit({
    ...base(),
    endpoint: ep,
    dirIn,
    type,
    length: o.length ?? payload.length,
    ...o,
    data: payload,
  });
}

/** An interrupt IN transfer of `length` bytes on endpoint 1, as a HID driver polls it. */
export function interruptIn(
  dev: UsbDevice,
  length: number,
  signal?: AbortSignal,
): Promise<TransferResult> {
  return data(dev, 1, true, { type: "interrupt", length, ...(signal ? { signal } : {}) });
}

/** A class request to interface 0, IN (bmRequestType 0xa1), as the HID tests send them. */
export function classIn(dev: UsbDevice, bRequest: number, wValue: number, wLength: number) {
  return control(dev, { bmRequestType: 0xa1, bRequest, wValue, wIndex: 0, wLength });
}

/** A class request to interface 0, OUT (bmRequestType 0x21), with `data` as its data stage. */
export function classOut(dev: UsbDevice, bRequest: number, wValue: number, data?: Uint8Array) {
  return control(dev, {
    bmRequestType: 0x21,
    bRequest,
    wValue,
    wIndex: 0,
    wLength: data?.length ?? 0,
  }, data);
}
