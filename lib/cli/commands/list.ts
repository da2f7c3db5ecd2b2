/**
 * `usbipgw list`: the devices a USB/IP server exports (OP_REQ_DEVLIST), like `usbip list -r`;
 * `list -l` lists this host's devices, like `usbip list -l` (the `host` command).
 *
 * @module
 */

import { requestDeviceList } from "../../client/usbip_client.ts";
import { USBIP_PORT } from "../../protocol/constants.ts";
import { connectTcp, connectUnix, parseHostPort } from "../../transport/mod.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { formatDeviceJson, formatDeviceTable } from "../list.ts";
import { UsageError } from "../usage_error.ts";
import { HOST_FLAGS, listLocalDevices } from "./host.ts";

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  if (flags.has("local")) {
    if (flags.one("remote") !== undefined || flags.one("unix") !== undefined) {
      throw new UsageError(`"list -l" lists this host's devices: it takes no -r or --unix`);
    }
    return await listLocalDevices(flags, io);
  }
  for (const name of ["config", "device", "sysfs"]) {
    if (flags.many(name).length > 0) {
      throw new UsageError(`--${name} is for "list -l" (this host's devices) only`);
    }
  }
  flags.noMorePositional();
  const remote = flags.one("remote");
  const unix = flags.one("unix");
  if ((remote === undefined) === (unix === undefined)) {
    throw new UsageError(`"list" needs exactly one of -r HOST[:PORT] or --unix PATH`);
  }
  let target: string;
  let conn;
  if (remote !== undefined) {
    let address;
    try {
      address = parseHostPort(remote, USBIP_PORT, { role: "connect" });
    } catch (e) {
      throw new UsageError(`Invalid -r ${remote}: ${(e as Error).message}`);
    }
    target = remote;
    conn = await connectTcp(address.hostname, address.port);
  } else {
    target = unix!;
    conn = await connectUnix(unix!);
  }
  const devices = await requestDeviceList(conn);
  await io.out(flags.has("json") ? formatDeviceJson(devices) : formatDeviceTable(target, devices));
  return ExitCode.OK;
}

/** `usbipgw list`. */
export const listCommand: Command = {
  name: "list",
  summary: "show the devices a USB/IP server exports (-l: this host's devices)",
  usage: [
    "list (-r|--remote) HOST[:PORT] [--json]",
    "list --unix PATH [--json]",
    "list (-l|--local) [--json] [--config FILE] [--device SPEC]... [--sysfs PATH]",
  ],
  description: `Shows the devices a USB/IP server exports, like "usbip list -r". With -l, lists this
host's USB devices instead, like "usbip list -l" (the same as "usbipgw host").`,
  flags: [
    {
      name: "remote",
      short: "r",
      value: "HOST[:PORT]",
      help: `the server (port ${USBIP_PORT} by default)`,
    },
    { name: "unix", value: "PATH", help: "the server's unix socket", complete: "file" },
    { name: "local", short: "l", help: `this host's devices, as "usbipgw host" lists them` },
    ...HOST_FLAGS,
  ],
  epilogue: "Exit codes: 0, 1 error, 2 usage, 3 cannot connect to the server.",
  run,
};
