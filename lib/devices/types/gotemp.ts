/**
 * The `gotemp` device type: the Vernier Go!Temp thermometer (see `../gotemp.ts`) with its
 * readings from a temperature source.
 *
 * @module
 */

import { Speed } from "../../protocol/constants.ts";
import {
  openTemperatureSource,
  parseTemperatureSource,
  type TemperatureSourceSpec,
} from "../../backends/temperature_source.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { GoTemp, goTempDescriptors } from "../gotemp.ts";
import { parseWith } from "./_keys.ts";

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
const KEYS: Readonly<Record<string, KeySpec>> = {
  source: {
    kind: "source",
    default: DEFAULT_SOURCE,
    help: "temperature source: constant:C, sine:MIN:MAX:PERIOD_S, file:PATH or unix:PATH",
  },
  rate: { kind: "number", default: "10", help: "samples per second, > 0 and <= 1000" },
  serial: { kind: "text", help: "serial number string" },
};

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
export const GOTEMP_TYPE: DeviceType<GoTempTypeOptions> = {
  name: NAME,
  summary: "Vernier Go!Temp USB thermometer (08f7:0002, HID; Linux: ldusb)",
  keys: KEYS,
  parse: (options, context) =>
    parseWith(NAME, KEYS, options, (r) => {
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
      const serial = r.usbString("serial");
      return {
        options: {
          source,
          ...(rate !== undefined ? { rate } : {}),
          ...(serial !== undefined ? { serial } : {}),
        },
      };
    }),
  describe: (options) =>
    Promise.resolve({
      descriptors: goTempDescriptors(options),
      speed: Speed.FULL,
      origin: "emulated",
    }),
  async create(options, context) {
    // A file that holds no readings is a TypeError from here: parse does not read the file.
    const source = await openTemperatureSource(options.source, { label: context.label });
    try {
      const device = new GoTemp({
        source,
        ...(options.rate !== undefined ? { rate: options.rate } : {}),
        ...(options.serial !== undefined ? { serial: options.serial } : {}),
      });
      return { device, close: () => source.close() };
    } catch (e) {
      await source.close();
      throw e;
    }
  },
};
