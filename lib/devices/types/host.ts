/**
 * The `host` device type: a real USB device of this host, served through usbfs (see
 * `../passthrough/`). `busid` selects the host device by its host bus id, which is then also
 * the bus id it is exported under, as usbipd does; `vid`/`pid` (with `serial`) select it
 * instead; `export_busid` sets the exported bus id. Describing it reads sysfs only.
 *
 * @module
 */

import { busidProblem } from "../../protocol/busid.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { parseDescriptors } from "../passthrough/descriptor_parser.ts";
import {
  describeSelector,
  findHostDevice,
  type HostDeviceOptions,
  type HostDeviceSelector,
} from "../passthrough/host_devices.ts";
import { UsbfsDevice } from "../passthrough/usbfs_device.ts";
import { parseWith } from "./_keys.ts";

/** The typed options of a `host` spec. */
export interface HostTypeOptions {
  /** Which host device: by host bus id, or by VID/PID and serial number. */
  readonly selector: HostDeviceSelector;
  /** The bus id to export under instead of the host bus id. */
  readonly exportBusid?: string;
}

const NAME = "host";
const KEYS: Readonly<Record<string, KeySpec>> = {
  vid: { kind: "hex16", help: "vendor id in hex; with pid, names the device instead of busid" },
  pid: { kind: "hex16", help: "product id in hex" },
  serial: { kind: "text", help: "with vid and pid: only the device with this serial number" },
  export_busid: {
    kind: "busid",
    help: "bus id to export under; default the host bus id, as usbipd does",
  },
};
const NAMING = "name the device with busid=BUS-PORT, or with vid=VVVV,pid=PPPP";

/**
 * The `host` device type over the sysfs and device nodes `where` points at (tests use a fake
 * tree); {@linkcode HOST_TYPE} is the one over `/sys` and `/dev`.
 *
 * @example Describing a device that is not plugged in
 * ```ts
 * import { hostDeviceType } from "./host.ts";
 * const root = await Deno.makeTempDir();
 * const type = hostDeviceType({ sysfsRoot: root });
 * const r = type.parse({ busid: "1-1" }, { resolvePath: (p) => p });
 * console.assert(r.ok && r.busid === "1-1");
 * console.assert(r.ok && (await type.describe(r.options)) === undefined);
 * await Deno.remove(root);
 * ```
 */
export function hostDeviceType(where: HostDeviceOptions = {}): DeviceType<HostTypeOptions> {
  return {
    name: NAME,
    summary: "a real USB device of this host, through usbfs (root or access to its node)",
    keys: KEYS,
    parse: (options) =>
      parseWith(NAME, KEYS, options, (r) => {
        const exportBusid = r.text("export_busid");
        const exportWrong = exportBusid === undefined
          ? undefined
          : busidProblem(exportBusid, "export_busid");
        if (exportWrong !== undefined) return r.fail("export_busid", exportWrong);
        const busid = r.text("busid");
        const named = (["vid", "pid", "serial"] as const).filter((k) => r.text(k) !== undefined);
        let selector: HostDeviceSelector;
        if (busid !== undefined) {
          if (named.length > 0) {
            return r.fail(
              named[0]!,
              `Invalid host device: give either busid or vid and pid (with serial), not both`,
            );
          }
          selector = { busid };
        } else {
          if (!named.includes("vid") && !named.includes("pid")) {
            return r.fail("busid", `Missing host device: ${NAMING}`);
          }
          const idVendor = r.hex16("vid");
          const idProduct = r.hex16("pid");
          if (idVendor === undefined) return r.fail("vid", `Missing vid for host: ${NAMING}`);
          if (idProduct === undefined) return r.fail("pid", `Missing pid for host: ${NAMING}`);
          const serial = r.text("serial");
          if (serial === "") {
            return r.fail(
              "serial",
              "Invalid serial for host: it is empty; expected a serial number",
            );
          }
          selector = { idVendor, idProduct, ...(serial !== undefined ? { serial } : {}) };
        }
        const exported = exportBusid ?? ("busid" in selector ? selector.busid : undefined);
        return {
          options: { selector, ...(exportBusid !== undefined ? { exportBusid } : {}) },
          ...(exported !== undefined ? { busid: exported } : {}),
        };
      }),
    async describe(options) {
      const host = await findHostDevice(options.selector, where);
      if (host === undefined) return undefined;
      let raw: Uint8Array;
      try {
        // The device descriptor and every configuration's, as the usbfs node reads them.
        raw = await Deno.readFile(`${host.sysfsPath}/descriptors`);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return undefined; // unplugged meanwhile
        throw e;
      }
      return { descriptors: parseDescriptors(raw), speed: host.speed, origin: "passthrough" };
    },
    async create(options) {
      const { selector, exportBusid } = options;
      const host = await findHostDevice(selector, where);
      if (host === undefined) {
        throw new Error(`No host USB device matches ${describeSelector(selector)}`);
      }
      let device: UsbfsDevice;
      try {
        device = await UsbfsDevice.fromHost(host);
      } catch (e) {
        throw new Error(
          `Cannot open ${host.devnode}: ${e instanceof Error ? e.message : e}`,
          { cause: e },
        );
      }
      return {
        device,
        origin: "passthrough",
        busid: exportBusid ?? host.busid,
        close: () => device.close(),
      };
    },
  };
}

/** The `host` device type over `/sys` and `/dev`. */
export const HOST_TYPE: DeviceType<HostTypeOptions> = hostDeviceType();
