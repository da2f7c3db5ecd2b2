/**
 * The `gadget-zero` device type: Linux's Gadget Zero (see `../gadget_zero.ts`), with its data
 * pattern and speed as keys, and at SuperSpeed its companions' burst and isochronous Mult.
 *
 * @module
 */

import { Speed, type SpeedValue } from "../../protocol/constants.ts";
import type { DeviceType } from "../device_type.ts";
import { GADGET_ZERO, GadgetZero, gadgetZeroDescriptors } from "../gadget_zero.ts";
import type { KeyReader } from "./_keys.ts";
import { emulatedType } from "./_emulated.ts";

/** The speeds of a `gadget-zero`. */
type GadgetZeroSpeed = "high" | "full" | "super";

/** The typed options of a `gadget-zero` spec. */
export interface GadgetZeroTypeOptions {
  /** 0: zeros; 1: `(i % maxpacket) % 63`. */
  readonly pattern: 0 | 1;
  readonly speed: GadgetZeroSpeed;
  /** With speed `super` only (and then always): the companions' bMaxBurst, 0..15. */
  readonly maxBurst?: number;
  /** With speed `super` only (and then always): the isochronous companions' Mult, 0..2. */
  readonly isoMult?: number;
  /** Present (false) only with `iso=0`: no alternate setting 1, no isochronous endpoints. */
  readonly iso?: false;
}

const NAME = "gadget-zero";
const PATTERNS = ["0", "1"] as const;
const SPEEDS = ["high", "full", "super"] as const;
const ISO = ["1", "0"] as const;
const SPEED_VALUES: Readonly<Record<GadgetZeroSpeed, SpeedValue>> = {
  full: Speed.FULL,
  high: Speed.HIGH,
  super: Speed.SUPER,
};

/**
 * The integer `key` holds, 0..`max`, its default 0 when absent; refused below SuperSpeed,
 * where no endpoint companion carries it (USB 3.2 §9.6.7).
 */
function companionValue(r: KeyReader, key: string, max: number, speed: GadgetZeroSpeed): number {
  const text = r.text(key);
  if (text === undefined) return 0;
  if (!/^\d{1,2}$/.test(text) || Number(text) > max) return r.invalid(key, `an integer 0..${max}`);
  if (speed !== "super") {
    return r.fail(
      key,
      `Invalid ${key}="${text}" for ${NAME}: it sets a SuperSpeed endpoint companion, so it needs speed=super (speed is ${speed})`,
    );
  }
  return Number(text);
}

/**
 * The `gadget-zero` device type.
 *
 * @example Parsing a spec's options
 * ```ts
 * import { GADGET_ZERO_TYPE } from "./gadget_zero.ts";
 * const r = GADGET_ZERO_TYPE.parse({ pattern: "1" }, { resolvePath: (p) => p });
 * console.assert(r.ok && r.options.pattern === 1 && r.options.speed === "high");
 * const ss = GADGET_ZERO_TYPE.parse({ speed: "super", maxburst: "3" }, { resolvePath: (p) => p });
 * console.assert(ss.ok && ss.options.maxBurst === 3 && ss.options.isoMult === 0);
 * const bad = GADGET_ZERO_TYPE.parse({ mult: "1" }, { resolvePath: (p) => p });
 * console.assert(!bad.ok && bad.key === "mult");
 * ```
 */
export const GADGET_ZERO_TYPE: DeviceType<GadgetZeroTypeOptions> = emulatedType<
  GadgetZeroTypeOptions
>({
  name: NAME,
  summary: "Linux Gadget Zero (0525:a4a0), the usbtest conformance device",
  keys: {
    pattern: {
      kind: "choice",
      choices: PATTERNS,
      default: "0",
      help: "IN data and OUT check: 0 zeros, 1 (i % maxpacket) % 63",
    },
    speed: {
      kind: "choice",
      choices: SPEEDS,
      default: "high",
      help:
        "USB speed: high, full or super (SuperSpeed: 1024-byte bulk packets, companions, a BOS)",
    },
    maxburst: {
      kind: "number",
      default: "0",
      help:
        `speed=super only: bMaxBurst of the source/sink bulk and ISO companions, 0..${GADGET_ZERO.MAX_BURST}`,
    },
    mult: {
      kind: "number",
      default: "0",
      help:
        `speed=super only: Mult of the ISO companions, 0..${GADGET_ZERO.MAX_ISO_MULT}; an ISO packet holds up to 1024 x (mult+1) x (maxburst+1) bytes`,
    },
    iso: {
      kind: "choice",
      choices: ISO,
      default: "1",
      help:
        "source/sink alternate setting 1 with isochronous IN and OUT: 1, or 0 to leave it out (as f_sourcesink does on a controller without isochronous endpoints, such as dummy_hcd)",
    },
  },
  read: (r) => {
    const pattern = r.choice("pattern", PATTERNS) === "1" ? 1 : 0;
    const speed = r.choice("speed", SPEEDS);
    const maxBurst = companionValue(r, "maxburst", GADGET_ZERO.MAX_BURST, speed);
    const isoMult = companionValue(r, "mult", GADGET_ZERO.MAX_ISO_MULT, speed);
    const iso = r.choice("iso", ISO) === "0" ? { iso: false as const } : {};
    return speed === "super"
      ? { pattern, speed, maxBurst, isoMult, ...iso }
      : { pattern, speed, ...iso };
  },
  descriptors: gadgetZeroDescriptors,
  speed: (options) => SPEED_VALUES[options.speed],
  create: (options) => Promise.resolve({ device: new GadgetZero(options) }),
});
