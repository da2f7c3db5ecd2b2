/**
 * usbipgw as a library: write a virtual USB device by subclassing {@linkcode UsbDevice},
 * export it with {@linkcode UsbipServer}, and serve it over TCP or a unix socket to the Linux
 * kernel's USB/IP client (or drive it yourself with {@linkcode importDevice}).
 *
 * @example A vendor device that echoes bulk data back
 * ```ts
 * import { TcpListener, UsbDevice, UsbipServer, type EndpointDescriptor,
 *   type TransferResult, type UsbTransfer } from "./mod.ts";
 *
 * class Echo extends UsbDevice {
 *   #last = new Uint8Array(0);
 *   constructor() {
 *     super({
 *       device: { bcdUSB: 0x200, bDeviceClass: 0xff, bDeviceSubClass: 0, bDeviceProtocol: 0,
 *         bMaxPacketSize0: 64, idVendor: 0x1209, idProduct: 0x000f, bcdDevice: 0x100,
 *         iProduct: "Echo" },
 *       configurations: [{ bConfigurationValue: 1, bmAttributes: 0x80, bMaxPower: 50,
 *         interfaces: [{ bInterfaceNumber: 0, bAlternateSetting: 0, bInterfaceClass: 0xff,
 *           bInterfaceSubClass: 0, bInterfaceProtocol: 0, endpoints: [
 *             { bEndpointAddress: 0x81, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
 *             { bEndpointAddress: 0x01, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
 *           ] }] }],
 *     }, 3);
 *   }
 *   protected override handleData(t: UsbTransfer, _ep: EndpointDescriptor): TransferResult {
 *     if (!t.dirIn) {
 *       this.#last = t.data.slice();
 *       return { status: "ok" };
 *     }
 *     return { status: "ok", data: this.#last.subarray(0, t.length) };
 *   }
 * }
 *
 * const server = new UsbipServer();
 * server.addDevice(new Echo(), { busid: "1-1", name: "echo" });
 * const listener = new TcpListener({ hostname: "127.0.0.1", port: 0 });
 * server.listen(listener);
 * // ... `usbip attach -r 127.0.0.1 -b 1-1` on the client (with --tcp-port for a non-default port)
 * await server.close();
 * ```
 *
 * @module
 */

export * from "./lib/protocol/mod.ts";
export * from "./lib/transport/mod.ts";
export * from "./lib/devices/mod.ts";
export * from "./lib/policy/mod.ts";
export * from "./lib/server/mod.ts";
export * from "./lib/client/usbip_client.ts";
export * from "./lib/client/gateway_requests.ts";
export * from "./lib/client/own_device.ts";
