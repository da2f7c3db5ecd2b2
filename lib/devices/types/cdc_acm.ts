/**
 * The `cdc-acm` device type: the CDC-ACM serial port (see `../cdc_acm.ts`) over a character
 * back-end.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import type { DeviceType } from "../device_type.ts";
import { CdcAcm, cdcAcmDescriptors } from "../cdc_acm.ts";
import { definedOnly, SERIAL_KEY } from "./_keys.ts";
import { serialDeviceType, type SerialTypeOptions } from "./_backend.ts";

/** The typed options of a `cdc-acm` spec. */
export interface CdcAcmTypeOptions extends SerialTypeOptions {
  readonly vendorId?: number;
  readonly productId?: number;
  readonly serial?: string;
  readonly speed: "high" | "full";
}

const SPEEDS = ["high", "full"] as const;

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
export const CDC_ACM_TYPE: DeviceType<CdcAcmTypeOptions> = serialDeviceType({
  name: "cdc-acm",
  summary: "CDC-ACM serial port (Linux: /dev/ttyACM*) over a character back-end",
  keys: {
    vid: { kind: "hex16", default: "0x1209", help: "vendor ID in hex (pid.codes)" },
    pid: { kind: "hex16", default: "0x0006", help: "product ID in hex (a pid.codes test PID)" },
    serial: SERIAL_KEY,
    speed: { kind: "choice", choices: SPEEDS, default: "high", help: "USB speed: high or full" },
  },
  read: (r) => ({
    ...definedOnly({
      vendorId: r.hex16("vid"),
      productId: r.hex16("pid"),
      serial: r.usbString("serial"),
    }),
    speed: r.choice("speed", SPEEDS),
  }),
  descriptors: cdcAcmDescriptors,
  speed: (options) => options.speed === "full" ? Speed.FULL : Speed.HIGH,
  build: (backend, options) => new CdcAcm({ ...options, backend }),
});
