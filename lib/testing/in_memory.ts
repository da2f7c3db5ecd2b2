/**
 * Importing a device over the real USB/IP protocol without a socket: a {@linkcode UsbipServer}
 * serves one end of an in-memory connection pair, and {@linkcode importDevice} imports the
 * device over the other, so a test drives the device through the same session code (queues,
 * unlinks, RET_SUBMIT) the Linux kernel's client meets, URB by URB.
 *
 * @module
 */

import type { UsbDevice } from "../devices/usb_device.ts";
import { UsbipServer, type UsbipServerOptions } from "../server/server.ts";
import { memoryConnectionPair } from "../transport/memory.ts";
import { importDevice, type UrbChannel } from "../client/usbip_client.ts";

/** A device imported in memory: its URB channel, the server behind it, and how to end both. */
export interface InMemoryImport {
  /** Submit and unlink URBs here (`channel.submit({ ep, dirIn, length, data, setup })`). */
  channel: UrbChannel;
  /** The server that exports the device (one device, this one). */
  server: UsbipServer;
  /** Ends the session, as a client hanging up does, and closes the server. */
  close(): Promise<void>;
}

/**
 * Exports `device` on a new server as `busid` (default `1-1`) and imports it over an
 * in-memory connection. The server's `options` (policy, limits) apply as on a socket; the
 * peer is a unix peer of this process's uid.
 *
 * @example GET_DESCRIPTOR(DEVICE) through the session
 * ```ts
 * import { assert } from "@std/assert";
 * import { importInMemory } from "./in_memory.ts";
 * import { GadgetZero } from "../devices/gadget_zero.ts";
 * import { DescriptorType, Request, RequestType } from "../protocol/setup_packet.ts";
 * const { channel, close } = await importInMemory(new GadgetZero());
 * const reply = await channel.submit({
 *   ep: 0, dirIn: true, length: 18,
 *   setup: { bmRequestType: RequestType.DIR_IN, bRequest: Request.GET_DESCRIPTOR,
 *     wValue: DescriptorType.DEVICE << 8, wIndex: 0, wLength: 18 },
 * }).done;
 * assert(reply.status === 0 && reply.data[1] === DescriptorType.DEVICE);
 * await close();
 * ```
 */
export async function importInMemory(
  device: UsbDevice,
  o: { busid?: string; options?: UsbipServerOptions } = {},
): Promise<InMemoryImport> {
  const busid = o.busid ?? "1-1";
  const server = new UsbipServer(o.options ?? {});
  server.addDevice(device, { busid });
  const [client, end] = memoryConnectionPair();
  const served = server.accept(end);
  let channel: UrbChannel;
  try {
    channel = await importDevice(client, busid);
  } catch (e) {
    await served.catch(() => {});
    await server.close();
    throw e;
  }
  return {
    channel,
    server,
    async close() {
      await channel.close();
      await served.catch(() => {});
      await server.close();
    },
  };
}
