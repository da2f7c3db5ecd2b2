// Writes the unit files and the default configuration of lib/systemd/units.ts into this
// folder: deno run -A packaging/systemd/generate.ts  (tests/systemd/units_test.ts checks that
// they are current).
import { defaultConfig, serviceUnit, socketUnit } from "../../lib/systemd/units.ts";

/** The files of this folder and their texts. */
export const PACKAGING_FILES: Record<string, string> = {
  "usbipgw.service": serviceUnit(),
  "usbipgw.socket": socketUnit(),
  "usbipgw.toml": defaultConfig(),
};

if (import.meta.main) {
  for (const [name, text] of Object.entries(PACKAGING_FILES)) {
    const path = new URL(name, import.meta.url).pathname;
    await Deno.writeTextFile(path, text);
    console.log(`wrote ${path}`);
  }
}
