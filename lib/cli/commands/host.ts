/**
 * `usbipgw host` (also `list -l`): this host's USB devices from sysfs, to pick one for a
 * `host:` device, and which of them are exported.
 *
 * @module
 */

import { listHostDevices, matchesHostDevice } from "../../devices/passthrough/host_devices.ts";
import {
  formatHostJson,
  formatHostTable,
  hostDeviceRow,
} from "../../devices/passthrough/host_table.ts";
import type { Command, CommandIo, Flag, ParsedFlags } from "../command.ts";
import { validateConfig } from "../config.ts";
import { ExitCode } from "../exit_codes.ts";
import { gatewayInput } from "./serve.ts";

/** The flags of `host`, which `list -l` takes too. */
export const HOST_FLAGS: readonly Flag[] = [
  { name: "json", help: "print JSON instead of a table" },
  {
    name: "config",
    value: "FILE",
    help: "mark the devices this configuration exports",
    complete: "file",
  },
  {
    name: "device",
    value: "SPEC",
    repeat: true,
    help: "mark the devices this host:... spec names; repeatable",
  },
  { name: "sysfs", value: "PATH", help: "read this sysfs mount instead of /sys", complete: "dir" },
];

/** Lists this host's devices; shared by `host` and `list -l`. */
export async function listLocalDevices(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  // The host devices "serve" would export with the same --config and --device.
  const config = await validateConfig(await gatewayInput(flags, io));
  const specs = config.devices.flatMap((d) =>
    d.device.name === "host" ? [d.device.options.selector] : []
  );
  const sysfsRoot = flags.one("sysfs");
  const devices = await listHostDevices(sysfsRoot !== undefined ? { sysfsRoot } : {});
  const rows = devices.map((d) => hostDeviceRow(d, specs.some((s) => matchesHostDevice(d, s))));
  await io.out(flags.has("json") ? formatHostJson(rows) : formatHostTable(rows));
  return ExitCode.OK;
}

/** `usbipgw host`. */
export const hostCommand: Command = {
  name: "host",
  summary: `show this host's USB devices, for host:... device specs ("list -l")`,
  usage: ["host [--json] [--config FILE] [--device SPEC]... [--sysfs PATH]"],
  description:
    `Lists the USB devices of this host from sysfs (not root hubs, not interfaces): bus id,
VID:PID, speed, class, drivers, whether the device is exported, and its strings. EXPORTED is
"usbip-host" when the kernel's usbip-host holds it, "usbfs" when a program (usbipgw while a
client has imported it) holds its interfaces, "configured" when a host device of --config or
--device names it. "usbipgw list -l" is the same command.`,
  flags: HOST_FLAGS,
  run: listLocalDevices,
};
