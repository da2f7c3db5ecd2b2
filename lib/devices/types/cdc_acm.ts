/**
 * The `cdc-acm` device type: the CDC-ACM serial port (see `../cdc_acm.ts`) over a character
 * back-end.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import { type BackendSpec, openCharBackend } from "../../backends/char_backend.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { CdcAcm, cdcAcmDescriptors } from "../cdc_acm.ts";
import { parseWith } from "./_keys.ts";
import { BACKEND_KEY, readBackend } from "./_backend.ts";

/** The typed options of a `cdc-acm` spec. */
export interface CdcAcmTypeOptions {
  /** The back-end, its path resolved. */
  readonly backend: BackendSpec;
  readonly vendorId?: number;
  readonly productId?: number;
  readonly serial?: string;
  readonly speed: "high" | "full";
}

const NAME = "cdc-acm";
const SPEEDS = ["high", "full"] as const;
const KEYS: Readonly<Record<string, KeySpec>> = {
  backend: BACKEND_KEY,
  vid: { kind: "hex16", default: "0x1209", help: "vendor ID in hex (pid.codes)" },
  pid: { kind: "hex16", default: "0x0006", help: "product ID in hex (a pid.codes test PID)" },
  serial: { kind: "text", help: "serial number string" },
  speed: { kind: "choice", choices: SPEEDS, default: "high", help: "USB speed: high or full" },
};

/**
 * The `cdc-acm` device type.
 *
 * @example The back-end is checked without being opened
 * ```ts
 * import { CDC_ACM_TYPE } from "./cdc_acm.ts";
 * const ctx = { resolvePath: (p: string) => p };
 * const r = CDC_ACM_TYPE.parse({ backend: "tcp:127.0.0.1:4555", vid: "1d50" }, ctx);
 * console.assert(r.ok && r.options.backend.kind === "tcp" && r.options.vendorId === 0x1d50);
 * const bad = CDC_ACM_TYPE.parse({ backend: "bogus:1" }, ctx);
 * console.assert(!bad.ok && bad.key === "backend");
 * ```
 */
export const CDC_ACM_TYPE: DeviceType<CdcAcmTypeOptions> = {
  name: NAME,
  summary: "CDC-ACM serial port (Linux: /dev/ttyACM*) over a character back-end",
  keys: KEYS,
  parse: (options, context) =>
    parseWith(NAME, KEYS, options, (r) => {
      const backend = readBackend(r, NAME, context.resolvePath);
      const vendorId = r.hex16("vid");
      const productId = r.hex16("pid");
      const serial = r.usbString("serial");
      const speed = r.choice("speed", SPEEDS);
      return {
        options: {
          backend,
          ...(vendorId !== undefined ? { vendorId } : {}),
          ...(productId !== undefined ? { productId } : {}),
          ...(serial !== undefined ? { serial } : {}),
          speed,
        },
      };
    }),
  describe: (options) =>
    Promise.resolve({
      descriptors: cdcAcmDescriptors(options),
      speed: options.speed === "full" ? Speed.FULL : Speed.HIGH,
      origin: "emulated",
    }),
  async create(options, context) {
    const { backend: spec, ...rest } = options;
    const backend = await openCharBackend(spec, { label: context.label });
    try {
      const device = new CdcAcm({ ...rest, backend });
      return { device, close: () => backend.close() };
    } catch (e) {
      await backend.close();
      throw e;
    }
  },
};
