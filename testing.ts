/**
 * Helpers for testing a virtual device the way usbipgw tests its own: drive it directly
 * (control requests, descriptor reads, SET_CONFIGURATION, bulk, interrupt and isochronous
 * transfers), or import it over the real USB/IP session in memory and submit URBs as the
 * Linux kernel's client does.
 *
 * @example A device's descriptor, then data through the session
 * ```ts
 * import { assert } from "@std/assert";
 * import { DescriptorType, GadgetZero, Request } from "./mod.ts";
 * import { getDescriptor, importInMemory } from "./testing.ts";
 *
 * const gz = new GadgetZero();
 * const d = await getDescriptor(gz, DescriptorType.DEVICE, 0, 18);
 * assert(d.status === "ok" && d.data?.[1] === DescriptorType.DEVICE);
 *
 * const { channel, close } = await importInMemory(new GadgetZero());
 * const config = await channel.submit({
 *   ep: 0, dirIn: false,
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 3, wIndex: 0, wLength: 0,
 *   },
 * }).done;
 * assert(config.status === 0);
 * const bulk = await channel.submit({ ep: 1, dirIn: true, length: 512 }).done;
 * assert(bulk.actualLength === 512);
 * await close();
 * ```
 *
 * @module
 */

export {
  classRequest,
  control,
  getDescriptor,
  setConfiguration,
  transfer,
} from "./lib/testing/device_requests.ts";
export { importInMemory, type InMemoryImport } from "./lib/testing/in_memory.ts";
