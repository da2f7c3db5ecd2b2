/**
 * Raw USB descriptors, as reading a usbfs device node yields them (the device descriptor, then
 * every configuration's full descriptor set), parsed into a {@linkcode UsbDescriptors} tree
 * (USB 2.0 §9.6, USB 3.2 §9.6.7 SuperSpeed endpoint companions, the IAD ECN).
 *
 * @module
 */

import type {
  ConfigurationDescriptor,
  DeviceDescriptor,
  EndpointDescriptor,
  InterfaceAssociation,
  InterfaceDescriptor,
  UsbDescriptors,
} from "../descriptors.ts";
import { DescriptorType } from "../../protocol/setup_packet.ts";

function u16(b: Uint8Array, o: number): number {
  return (b[o] ?? 0) | ((b[o + 1] ?? 0) << 8);
}

/**
 * Parses an 18-byte device descriptor. String indices are dropped: the tree holds strings as
 * text, and a passthrough device answers GET_DESCRIPTOR(STRING) from the real device.
 * Throws `SyntaxError` for a malformed descriptor.
 */
export function parseDeviceDescriptor(b: Uint8Array): DeviceDescriptor {
  if (b.length < 18 || b[0]! < 18 || b[1] !== DescriptorType.DEVICE) {
    throw new SyntaxError(
      `Cannot parse the device descriptor: ${b.length} bytes, bLength ${b[0]}, type ${b[1]}`,
    );
  }
  return {
    bcdUSB: u16(b, 2),
    bDeviceClass: b[4]!,
    bDeviceSubClass: b[5]!,
    bDeviceProtocol: b[6]!,
    bMaxPacketSize0: b[7]!,
    idVendor: u16(b, 8),
    idProduct: u16(b, 10),
    bcdDevice: u16(b, 12),
  };
}

/**
 * Parses one configuration's full descriptor set (`wTotalLength` bytes from the configuration
 * descriptor on). Interface alternate settings are listed in order; class-specific descriptors
 * go to `extra` of the interface they follow (before its first endpoint) or of the endpoint
 * they follow. Descriptors before the first interface, other than IADs, are dropped. A
 * descriptor whose `bLength` is below 2 or runs past the end ends the walk. Throws
 * `SyntaxError` when the configuration descriptor itself is malformed.
 */
export function parseConfiguration(b: Uint8Array): ConfigurationDescriptor {
  if (
    b.length < 9 || b[0]! < 9 ||
    (b[1] !== DescriptorType.CONFIGURATION && b[1] !== DescriptorType.OTHER_SPEED_CONFIGURATION)
  ) {
    throw new SyntaxError(
      `Cannot parse a configuration descriptor: ${b.length} bytes, bLength ${b[0]}, type ${b[1]}`,
    );
  }
  const total = Math.min(u16(b, 2), b.length);
  const config: ConfigurationDescriptor = {
    bConfigurationValue: b[5]!,
    bmAttributes: b[7]!,
    bMaxPower: b[8]!,
    interfaces: [],
  };
  const associations: InterfaceAssociation[] = [];
  let iface: InterfaceDescriptor | undefined;
  let endpoint: EndpointDescriptor | undefined;
  for (let o = b[0]!; o + 2 <= total;) {
    const len = b[o]!;
    const type = b[o + 1]!;
    if (len < 2 || o + len > total) break;
    const d = b.subarray(o, o + len);
    o += len;
    if (type === DescriptorType.INTERFACE && len >= 9) {
      iface = {
        bInterfaceNumber: d[2]!,
        bAlternateSetting: d[3]!,
        bInterfaceClass: d[5]!,
        bInterfaceSubClass: d[6]!,
        bInterfaceProtocol: d[7]!,
        endpoints: [],
      };
      endpoint = undefined;
      config.interfaces.push(iface);
    } else if (type === DescriptorType.ENDPOINT && len >= 7 && iface !== undefined) {
      endpoint = {
        bEndpointAddress: d[2]!,
        bmAttributes: d[3]!,
        wMaxPacketSize: u16(d, 4),
        bInterval: d[6]!,
      };
      iface.endpoints.push(endpoint);
    } else if (
      type === DescriptorType.SS_ENDPOINT_COMPANION && len >= 6 && endpoint !== undefined &&
      endpoint.superSpeedCompanion === undefined
    ) {
      endpoint.superSpeedCompanion = {
        bMaxBurst: d[2]!,
        bmAttributes: d[3]!,
        wBytesPerInterval: u16(d, 4),
      };
    } else if (type === DescriptorType.INTERFACE_ASSOCIATION && len >= 8) {
      associations.push({
        bFirstInterface: d[2]!,
        bInterfaceCount: d[3]!,
        bFunctionClass: d[4]!,
        bFunctionSubClass: d[5]!,
        bFunctionProtocol: d[6]!,
      });
    } else if (endpoint !== undefined) {
      (endpoint.extra ??= []).push(d.slice());
    } else if (iface !== undefined) {
      (iface.extra ??= []).push(d.slice());
    }
    // Anything before the first interface (but IADs) has no place in the tree.
  }
  if (associations.length > 0) config.associations = associations;
  return config;
}

/**
 * Parses what a usbfs device node reads as: the device descriptor followed by each
 * configuration's full descriptor set. Throws `SyntaxError` when the device descriptor or a
 * configuration header is malformed or the bytes end early.
 *
 * @example A device with one configuration and no interfaces
 * ```ts
 * import { parseDescriptors } from "./descriptor_parser.ts";
 * const tree = parseDescriptors(new Uint8Array([
 *   18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x34, 0x12, 0x78, 0x56, 0x00, 0x01, 1, 2, 0, 1,
 *   9, 2, 9, 0, 0, 1, 0, 0x80, 50,
 * ]));
 * console.assert(tree.device.idVendor === 0x1234 && tree.configurations.length === 1);
 * ```
 */
export function parseDescriptors(raw: Uint8Array): UsbDescriptors {
  const device = parseDeviceDescriptor(raw);
  const count = raw[17]!;
  const configurations: ConfigurationDescriptor[] = [];
  let o = raw[0]!;
  for (let i = 0; i < count; i++) {
    if (o + 9 > raw.length) {
      throw new SyntaxError(
        `Cannot parse configuration ${i}: the descriptors end at byte ${raw.length}`,
      );
    }
    const total = u16(raw, o + 2);
    if (total < 9 || o + total > raw.length) {
      throw new SyntaxError(
        `Cannot parse configuration ${i}: wTotalLength ${total} at byte ${o}, ${raw.length} bytes read`,
      );
    }
    configurations.push(parseConfiguration(raw.subarray(o, o + total)));
    o += total;
  }
  return { device, configurations };
}
