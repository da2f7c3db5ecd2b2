/**
 * The `gotemp` device type: the Vernier Go!Temp thermometer (see `../gotemp.ts`) with its
 * readings from a temperature source.
 *
 * @module
 */

import {
  openTemperatureSource,
  parseTemperatureSource,
  type TemperatureSourceSpec,
} from "../../backends/temperature_source.ts";
import type { DeviceType } from "../device_type.ts";
import { GoTemp, goTempDescriptors } from "../gotemp.ts";
import { emulatedType, overBackEnd } from "./_emulated.ts";
import { definedOnly, SERIAL_KEY } from "./_keys.ts";

/** The typed options of a `gotemp` spec. */
export interface GoTempTypeOptions {
  /** Where readings come from, a `file:` or `unix:` path resolved. */
  readonly source: TemperatureSourceSpec;
  /** Samples per second, in (0, 1000]. */
  readonly rate?: number;
  readonly serial?: string;
}

const NAME = "gotemp";
const DEFAULT_SOURCE = "constant:21.5";

/**
 * The `gotemp` device type.
 *
 * @example The source is checked without being opened
 * ```ts
 * import { GOTEMP_TYPE } from "./gotemp.ts";
 * const ctx = { resolvePath: (p: string) => p };
 * const r = GOTEMP_TYPE.parse({ source: "sine:18:25:60", rate: "2" }, ctx);
 * console.assert(r.ok && r.options.source.kind === "sine" && r.options.rate === 2);
 * const bad = GOTEMP_TYPE.parse({ rate: "0" }, ctx);
 * console.assert(!bad.ok && bad.key === "rate");
 * ```
 */
export const GOTEMP_TYPE: DeviceType<GoTempTypeOptions> = emulatedType<GoTempTypeOptions>({
  name: NAME,
  summary: "Vernier Go!Temp USB thermometer (08f7:0002, HID; Linux: ldusb)",
  keys: {
    source: {
      kind: "source",
      default: DEFAULT_SOURCE,
      help: "temperature source: constant:C, sine:MIN:MAX:PERIOD_S, file:PATH or unix:PATH",
    },
    rate: { kind: "number", default: "10", help: "samples per second, > 0 and <= 1000" },
    serial: SERIAL_KEY,
  },
  read(r, context) {
    let source: TemperatureSourceSpec;
    try {
      source = parseTemperatureSource(r.text("source") ?? DEFAULT_SOURCE);
    } catch (e) {
      return r.fail("source", `Invalid source for ${NAME}: ${(e as Error).message}`);
    }
    if (source.kind === "file" || source.kind === "unix") {
      source = { kind: source.kind, path: context.resolvePath(source.path) };
    }
    const rateText = r.text("rate");
    const rate = rateText === undefined ? undefined : Number(rateText);
    if (rate !== undefined && !(rate > 0 && rate <= 1000)) {
      return r.invalid("rate", "samples per second in (0, 1000]");
    }
    return { source, ...definedOnly({ rate, serial: r.usbString("serial") }) };
  },
  descriptors: goTempDescriptors,
  // A file that holds no readings is a TypeError from here: parse does not read the file.
  create: async ({ source, ...rest }, context) =>
    overBackEnd(
      await openTemperatureSource(source, { label: context.label }),
      (readings) => new GoTemp({ source: readings, ...rest }),
    ),
});
