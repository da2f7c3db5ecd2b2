/**
 * What the pointer device types (`mouse`, `tablet`) share: an optional unix socket whose
 * command lines (`pointerCommandConsumer`) move the pointer, and a serial number. Private to
 * `lib/devices/types/`.
 *
 * @module
 */

import type { UsbDescriptors } from "../descriptors.ts";
import type { DeviceType } from "../device_type.ts";
import { pointerCommandConsumer, type PointerCommandTarget } from "../mouse.ts";
import type { UsbDevice } from "../usb_device.ts";
import { emulatedType, fedByTextSocket } from "./_emulated.ts";
import { definedOnly, SERIAL_KEY } from "./_keys.ts";

/** The typed options of a pointer device type's spec. */
export interface PointerTypeOptions {
  /** The unix socket whose command lines move the pointer, resolved. */
  readonly socket?: string;
  readonly serial?: string;
}

/** What tells one pointer device type from another. */
export interface PointerKind {
  readonly name: string;
  /** One line for `serve --help`. */
  readonly summary: string;
  /** The command lines its socket takes, for the help: `lines such as 'move 10 -5', ...`. */
  readonly commands: string;
  /** The descriptors of the device with `options`. */
  descriptors(options: PointerTypeOptions): UsbDescriptors;
  /** Builds the device with `options`. */
  build(options: PointerTypeOptions): UsbDevice & PointerCommandTarget;
}

/** The pointer device type of `kind`: keys `socket` and `serial`, full speed. */
export function pointerDeviceType(kind: PointerKind): DeviceType<PointerTypeOptions> {
  return emulatedType<PointerTypeOptions>({
    name: kind.name,
    summary: kind.summary,
    keys: {
      socket: { kind: "path", help: `unix socket path: ${kind.commands}` },
      serial: SERIAL_KEY,
    },
    read: (r, context) =>
      definedOnly({
        socket: r.path("socket", context.resolvePath),
        serial: r.usbString("serial"),
      }),
    descriptors: (options) => kind.descriptors(options),
    create(options, context) {
      const device = kind.build(definedOnly({ serial: options.serial }));
      return fedByTextSocket(device, options.socket, context, pointerCommandConsumer(device));
    },
  });
}
