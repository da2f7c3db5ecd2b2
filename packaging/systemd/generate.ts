// Writes the unit files, the modules-load.d file and the default configuration of
// lib/systemd/units.ts into this folder: deno run -A packaging/systemd/generate.ts
// (tests/systemd/units_test.ts checks that they are current).
import {
  defaultConfig,
  modulesLoadConf,
  serviceUnit,
  socketUnit,
} from "../../lib/systemd/units.ts";

/** The files of this folder (paths relative to it) and their texts. */
export const PACKAGING_FILES: Record<string, string> = {
  "usbipgw.service": serviceUnit(),
  "usbipgw.socket": socketUnit(),
  "usbipgw.toml": defaultConfig(),
  // Installed as /etc/modules-load.d/usbipgw.conf.
  "modules-load.d/usbipgw.conf": modulesLoadConf(),
};

if (import.meta.main) {
  for (const [name, text] of Object.entries(PACKAGING_FILES)) {
    const url = new URL(name, import.meta.url);
    await Deno.mkdir(new URL(".", url), { recursive: true });
    await Deno.writeTextFile(url, text);
    console.log(`wrote ${url.pathname}`);
  }
}
