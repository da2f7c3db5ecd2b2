/**
 * Driving a {@linkcode UsbDevice} directly, as a host controller would, for tests of a device:
 * control requests (USB 2.0 §9.3, §9.4), descriptor reads, SET_CONFIGURATION, and bulk,
 * interrupt and isochronous transfers. No server, no socket: each call is one `submit()`.
 *
 * @module
 */

import { Request, RequestType, type SetupPacket } from "../protocol/setup_packet.ts";
import type { TransferResult, UsbDevice, UsbTransfer } from "../devices/usb_device.ts";

/** What a transfer carries by default: no data, no flags, not cancelled. */
function defaults(): Omit<UsbTransfer, "endpoint" | "dirIn" | "type" | "length"> {
  return {
    data: new Uint8Array(0),
    shortNotOk: false,
    zeroPacket: false,
    isoPackets: [],
    signal: new AbortController().signal,
  };
}

/**
 * A control transfer on endpoint 0: IN when bit 7 of `bmRequestType` is set (asking for
 * `wLength` bytes), else OUT with `data` as its data stage.
 *
 * @example Gadget Zero's vendor requests: 0x5b stores a buffer, 0x5c returns it
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { control } from "./device_requests.ts";
 * import { GadgetZero } from "../devices/gadget_zero.ts";
 * import { RequestType } from "../protocol/setup_packet.ts";
 * const gz = new GadgetZero();
 * const vendor = RequestType.TYPE_VENDOR | RequestType.RECIPIENT_DEVICE;
 * const data = new Uint8Array([1, 2, 3, 4]);
 * await control(gz, { bmRequestType: vendor, bRequest: 0x5b, wValue: 0, wIndex: 0, wLength: 4 }, data);
 * const back = await control(gz, {
 *   bmRequestType: RequestType.DIR_IN | vendor, bRequest: 0x5c, wValue: 0, wIndex: 0, wLength: 4,
 * });
 * assertEquals(back.data, data);
 * ```
 */
export async function control(
  device: UsbDevice,
  setup: SetupPacket,
  data?: Uint8Array,
  signal?: AbortSignal,
): Promise<TransferResult> {
  const dirIn = (setup.bmRequestType & RequestType.DIR_IN) !== 0;
  return await device.submit({
    ...defaults(),
    endpoint: 0,
    dirIn,
    type: "control",
    setup,
    length: dirIn ? setup.wLength : (data?.length ?? 0),
    data: data ?? new Uint8Array(0),
    ...(signal ? { signal } : {}),
  });
}

/**
 * GET_DESCRIPTOR of `type` (one of `DescriptorType`) and `index`, asking for `length`
 * bytes; `wIndex` is the language id of a string descriptor.
 *
 * @example The device descriptor
 * ```ts
 * import { assert } from "@std/assert";
 * import { getDescriptor } from "./device_requests.ts";
 * import { GadgetZero } from "../devices/gadget_zero.ts";
 * import { DescriptorType } from "../protocol/setup_packet.ts";
 * const r = await getDescriptor(new GadgetZero(), DescriptorType.DEVICE, 0, 18);
 * assert(r.data?.[1] === DescriptorType.DEVICE);
 * ```
 */
export function getDescriptor(
  device: UsbDevice,
  type: number,
  index: number,
  length = 4096,
  wIndex = 0,
): Promise<TransferResult> {
  return control(device, {
    bmRequestType: RequestType.DIR_IN,
    bRequest: Request.GET_DESCRIPTOR,
    wValue: (type << 8) | index,
    wIndex,
    wLength: length,
  });
}

/** SET_CONFIGURATION(`value`): 0 unconfigures the device. */
export function setConfiguration(device: UsbDevice, value: number): Promise<TransferResult> {
  return control(device, {
    bmRequestType: RequestType.TYPE_STANDARD | RequestType.RECIPIENT_DEVICE,
    bRequest: Request.SET_CONFIGURATION,
    wValue: value,
    wIndex: 0,
    wLength: 0,
  });
}

/** A class request to interface `iface`: IN with `wLength` bytes, or OUT with `data`. */
export function classRequest(
  device: UsbDevice,
  o: { dirIn: boolean; bRequest: number; wValue: number; iface?: number; wLength?: number },
  data?: Uint8Array,
): Promise<TransferResult> {
  return control(device, {
    bmRequestType: (o.dirIn ? RequestType.DIR_IN : 0) | RequestType.TYPE_CLASS |
      RequestType.RECIPIENT_INTERFACE,
    bRequest: o.bRequest,
    wValue: o.wValue,
    wIndex: o.iface ?? 0,
    wLength: o.dirIn ? (o.wLength ?? 0) : (data?.length ?? 0),
  }, data);
}

/**
 * A bulk, interrupt or isochronous transfer on endpoint `endpoint` (its type as the active
 * configuration declares it, bulk when it declares none): OUT sends `data`, IN asks for
 * `length` bytes. `signal` cancels it, as an unlink does.
 *
 * @example Loopback through Gadget Zero
 * ```ts
 * import { assert } from "@std/assert";
 * import { setConfiguration, transfer } from "./device_requests.ts";
 * import { GadgetZero } from "../devices/gadget_zero.ts";
 * const gz = new GadgetZero();
 * await setConfiguration(gz, 2); // the loopback configuration
 * await transfer(gz, 1, false, { data: new Uint8Array([1, 2, 3]) });
 * const back = await transfer(gz, 1, true, { length: 512 });
 * assert(back.data?.[2] === 3);
 * ```
 */
export async function transfer(
  device: UsbDevice,
  endpoint: number,
  dirIn: boolean,
  o: Partial<Omit<UsbTransfer, "endpoint" | "dirIn">> = {},
): Promise<TransferResult> {
  const data = o.data ?? new Uint8Array(0);
  return await device.submit({
    ...defaults(),
    type: device.transferType(endpoint, dirIn) ?? "bulk",
    length: data.length,
    ...o,
    endpoint,
    dirIn,
    data,
  });
}
