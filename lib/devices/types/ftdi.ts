/**
 * The `ftdi` device type: the FTDI FT232R serial converter (see `../ftdi.ts`) over a character
 * back-end.
 *
 * @module
 */

import type { DeviceType } from "../device_type.ts";
import { ftdiDescriptors, FtdiSerial } from "../ftdi.ts";
import { definedOnly } from "./_keys.ts";
import { serialDeviceType, type SerialTypeOptions } from "./_backend.ts";

/** The typed options of an `ftdi` spec. */
export interface FtdiTypeOptions extends SerialTypeOptions {
  readonly serial?: string;
}

/**
 * The `ftdi` device type.
 *
 * @example A `unix:` back-end's path resolves against the context's folder
 * ```ts
 * import { FTDI_TYPE } from "./ftdi.ts";
 * const r = FTDI_TYPE.parse({ backend: "unix:ftdi.sock" }, { resolvePath: (p) => `/srv/${p}` });
 * console.assert(r.ok && r.options.backend.kind === "unix");
 * console.assert(r.ok && "path" in r.options.backend && r.options.backend.path === "/srv/ftdi.sock");
 * ```
 */
export const FTDI_TYPE: DeviceType<FtdiTypeOptions> = serialDeviceType({
  name: "ftdi",
  summary: "FTDI FT232R USB serial converter (0403:6001; Linux: /dev/ttyUSB*)",
  keys: { serial: { kind: "text", default: "USBIPGW1", help: "serial number string" } },
  read: (r) => definedOnly({ serial: r.usbString("serial") }),
  descriptors: ftdiDescriptors,
  build: (backend, options) => new FtdiSerial({ ...options, backend }),
});
