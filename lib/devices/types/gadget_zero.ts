/**
 * The `gadget-zero` device type: Linux's Gadget Zero (see `../gadget_zero.ts`), with its data
 * pattern and speed as keys.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import type { DeviceType } from "../device_type.ts";
import { GadgetZero, gadgetZeroDescriptors } from "../gadget_zero.ts";
import { emulatedType } from "./_emulated.ts";

/** The typed options of a `gadget-zero` spec. */
export interface GadgetZeroTypeOptions {
  /** 0: zeros; 1: `(i % maxpacket) % 63`. */
  readonly pattern: 0 | 1;
  readonly speed: "high" | "full";
}

const PATTERNS = ["0", "1"] as const;
const SPEEDS = ["high", "full"] as const;

/**
 * The `gadget-zero` device type.
 *
 * @example Parsing a spec's options
 * ```ts
 * import { GADGET_ZERO_TYPE } from "./gadget_zero.ts";
 * const r = GADGET_ZERO_TYPE.parse({ pattern: "1" }, { resolvePath: (p) => p });
 * console.assert(r.ok && r.options.pattern === 1 && r.options.speed === "high");
 * ```
 */
export const GADGET_ZERO_TYPE: DeviceType<GadgetZeroTypeOptions> = emulatedType<
  GadgetZeroTypeOptions
>({
  name: "gadget-zero",
  summary: "Linux Gadget Zero (0525:a4a0), the usbtest conformance device",
  keys: {
    pattern: {
      kind: "choice",
      choices: PATTERNS,
      default: "0",
      help: "IN data and OUT check: 0 zeros, 1 (i % maxpacket) % 63",
    },
    speed: { kind: "choice", choices: SPEEDS, default: "high", help: "USB speed: high or full" },
  },
  read: (r) => ({
    pattern: r.choice("pattern", PATTERNS) === "1" ? 1 : 0,
    speed: r.choice("speed", SPEEDS),
  }),
  descriptors: gadgetZeroDescriptors,
  speed: (options) => options.speed === "full" ? Speed.FULL : Speed.HIGH,
  create: (options) => Promise.resolve({ device: new GadgetZero(options) }),
});
