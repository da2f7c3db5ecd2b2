/**
 * The `ftdi` device type: the FTDI FT232R serial converter (see `../ftdi.ts`) over a character
 * back-end.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import { type BackendSpec, openCharBackend } from "../../backends/char_backend.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { ftdiDescriptors, FtdiSerial } from "../ftdi.ts";
import { parseWith } from "./_keys.ts";
import { BACKEND_KEY, readBackend } from "./_backend.ts";

/** The typed options of an `ftdi` spec. */
export interface FtdiTypeOptions {
  /** The back-end, its path resolved. */
  readonly backend: BackendSpec;
  readonly serial?: string;
}

const NAME = "ftdi";
const KEYS: Readonly<Record<string, KeySpec>> = {
  backend: BACKEND_KEY,
  serial: { kind: "text", default: "USBIPGW1", help: "serial number string" },
};

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
export const FTDI_TYPE: DeviceType<FtdiTypeOptions> = {
  name: NAME,
  summary: "FTDI FT232R USB serial converter (0403:6001; Linux: /dev/ttyUSB*)",
  keys: KEYS,
  parse: (options, context) =>
    parseWith(NAME, KEYS, options, (r) => {
      const backend = readBackend(r, NAME, context.resolvePath);
      const serial = r.usbString("serial");
      return { options: { backend, ...(serial !== undefined ? { serial } : {}) } };
    }),
  describe: (options) =>
    Promise.resolve({
      descriptors: ftdiDescriptors(options),
      speed: Speed.FULL,
      origin: "emulated",
    }),
  async create(options, context) {
    const backend = await openCharBackend(options.backend, { label: context.label });
    try {
      const device = new FtdiSerial({
        backend,
        ...(options.serial !== undefined ? { serial: options.serial } : {}),
      });
      return { device, close: () => backend.close() };
    } catch (e) {
      await backend.close();
      throw e;
    }
  },
};
